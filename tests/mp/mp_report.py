# The send window (wan.window) and the periodic report job (wan.report),
# issue 21: each hub's time lies inside the window, is the same after a
# reboot and differs between hubs and windows; the job sends one report per
# window at that time, not again after a reboot, and keeps running (the VM
# free) when the period changes after a report (a stored window number from
# a 12 s period against a 1-day one once made it count windows for hours).
import asyncio
import json

import board
import flashfs
from clock import Clock
from store import Store
from wan import outbox as ob
from wan import report, service
from wan.window import next_send, offset_ms

HEAP = "384k"
EUI = b"\x00\xdb\x12\x34\x56\x78\x90\xa0"


def test_window_times_inside_spread_and_stable():
    start, period, length = 7200, 86400, 1800000
    now = 1796600000000
    t, k = next_send(now, EUI, start, period, length)
    opens = start * 1000 + k * period * 1000
    assert t > now and opens <= t < opens + length
    assert next_send(now, EUI, start, period, length) == (t, k)  # after a reboot: the same
    assert next_send(t, EUI, start, period, length)[1] == k + 1  # then the next window
    offs = set(offset_ms(bytes((i,)) + EUI[1:], k, length) for i in range(50))
    assert len(offs) == 50  # 50 hubs, 50 different times
    assert offset_ms(EUI, k, length) != offset_ms(EUI, k + 1, length)
    assert next_send(now, EUI, start, 0, length) is None  # no period: no schedule
    # a window longer than the period is cut to it
    t2, k2 = next_send(now, EUI, 0, 10, 60000)
    assert t2 - k2 * 10000 < 10000


class _Sess:
    connects = drops = resets = 0

    def signal_report(self):
        return {"signal_avg_dbm": -71.0, "signal_dbm": -71, "cell": None, "reg": 1}


def _wan(utc):
    st = Store(flashfs.ROOT + "/data")
    clk = Clock(lambda: utc[0], None, board.ticks_ms)
    clk.from_source("headend", utc[0])  # a valid clock
    w = service.WanService(st, None, clk, lambda: utc[0], board.power_fail, asyncio.Event())
    w.session = _Sess()
    return w


def _reports(w):
    out = []
    for seq in w.outbox.j.seqs():
        kind, cls, _, body = w.outbox.read(seq)
        if kind == ob.KIND_REPORT:
            out.append(json.loads(body))
    return out


def test_report_once_per_window_not_again_after_reboot_and_period_change():
    flashfs.fresh()
    utc = [1796600000]
    w = _wan(utc)
    # a window of 2 s every 4 s opening now: the report is due within 2 s
    w.store.kv("wan").update({"report_period_s": 4, "sched_window_ms": 2000, "window_start_s": utc[0] % 4})
    ticks = [0]

    async def tick():  # the VM stays free: this task runs all along
        while True:
            ticks[0] += 1
            await asyncio.sleep_ms(10)

    async def go(w, ms):
        t = asyncio.create_task(report.run(w, lambda: utc[0], EUI))
        k = asyncio.create_task(tick())
        for _ in range(ms // 100):
            await asyncio.sleep_ms(100)
            utc[0] = 1796600000 + (board.ticks_ms() - t0[0]) // 1000
        t.cancel()
        k.cancel()

    t0 = [board.ticks_ms()]
    asyncio.run(go(w, 3000))
    got = _reports(w)
    assert len(got) == 1 and got[0]["t"] == "health" and got[0]["signal_avg_dbm"] == -71.0, got
    # a reboot within the same window: no second report for it
    flashfs.remount()
    w2 = _wan(utc)
    n0 = len(_reports(w2))
    # the period goes to a day (the window to 30 min) after the report
    w2.store.kv("wan").update({"report_period_s": 86400, "sched_window_ms": 1800000, "window_start_s": 7200})
    before = ticks[0]
    asyncio.run(go(w2, 500))
    assert ticks[0] - before > 10, "the report job held the VM"
    assert len(_reports(w2)) == n0


def test_report_job_runs_on_default_settings():
    # a fresh hub: KV "wan" holds none of the window's settings (the window
    # length is an outbox default): the job waits for its window, it does not fail
    flashfs.fresh()
    utc = [1796600000]
    w = _wan(utc)
    out = []

    async def go():
        t = asyncio.create_task(report.run(w, lambda: utc[0], EUI))
        await asyncio.sleep_ms(300)
        out.append(t.done())
        t.cancel()

    asyncio.run(go())
    assert out == [False], out
    assert _reports(w) == []
