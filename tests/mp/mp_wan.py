# firmware/wan/service.py install(): hub.emit() queues into the persistent
# outbox from install time, before the WAN job ever runs; a power cut
# (remount) keeps every emitted message once, in order, with its class.
import flashfs
from store import Store
from wan import outbox as ob
from wan import service

HEAP = "256k"


class _Sup:
    def __init__(self):
        self.spawned = []
        self.factories = {}

    def spawn(self, name, fn):
        self.spawned.append(name)  # the job itself is not run here
        self.factories[name] = fn


class _Hub:
    def __init__(self):
        self.store = Store(flashfs.ROOT + "/data")
        self.commands = {}
        self.supervisor = _Sup()


def test_modem_timings_change_one_driver_not_the_defaults():
    from wan import sim7600

    before = dict(sim7600.TIMINGS)
    a, b = sim7600.Sim7600(None, None), sim7600.Sim7600(None, None)
    a.set_timings({"cmd": 50, "grace": 7})
    assert a.t["cmd"] == 50 and a.at.timeout_ms == 50 and a.at.grace_ms == 7
    assert sim7600.TIMINGS == before and b.t["cmd"] == before["cmd"]
    c = sim7600.Sim7600(None, None, timings={"rxget": 9})
    assert c.t["rxget"] == 9 and sim7600.TIMINGS["rxget"] == before["rxget"]
    try:
        a.set_timings({"nope": 1})
        raise AssertionError("an unknown timing was taken")
    except ValueError:
        pass


def test_emit_persists_before_the_job_runs():
    flashfs.fresh()
    hub = _Hub()
    service.install(hub)
    assert hub.supervisor.spawned == ["clock", "last_gasp", "wan"] and hub.wan is None
    a = hub.emit(b"\xdd\x01alert", "alert")
    r = hub.emit(memoryview(b"\xdd\x02resp"), "response")
    n = hub.emit(b"\xdd\x03minor", "alert", critical=False)
    c = hub.emit(b"\xdd\x04resp-nc", "response", critical=False)
    assert a < r < n < c
    for bad in ("event", None, 2):
        try:
            hub.emit(b"x", bad)
        except ValueError:
            continue
        raise AssertionError("kind %r accepted" % (bad,))
    # power cut: a new hub on the same flash sees all four, nothing else
    flashfs.remount()
    hub2 = _Hub()
    service.install(hub2)
    box = hub2.outbox
    assert len(box) == 4
    got = [box.read(s) for s in box.j.seqs()]
    assert box.j.seqs() == [a, r, n, c]
    assert got[0] == (ob.KIND_ALERT, ob.CRITICAL, 0, b"\xdd\x01alert"), got[0]
    assert got[1] == (ob.KIND_RESPONSE, ob.CRITICAL, 0, b"\xdd\x02resp"), got[1]
    assert got[2][:2] == (ob.KIND_ALERT, ob.NON_CRITICAL) and got[2][3] == b"\xdd\x03minor"
    assert got[3][:2] == (ob.KIND_RESPONSE, ob.NON_CRITICAL)


def test_emit_alert_class_follows_critical_alerts_setting():
    flashfs.fresh()
    hub = _Hub()
    hub.store.kv("wan").set("critical_alerts", False)
    service.install(hub)
    s = hub.emit(b"\xdd\x05", "alert")
    assert hub.outbox.read(s)[1] == ob.NON_CRITICAL
    s = hub.emit(b"\xdd\x06", "response")
    assert hub.outbox.read(s)[1] == ob.CRITICAL
    s = hub.emit(b"\xdd\x07", "scheduled")
    assert hub.outbox.read(s)[:2] == (ob.KIND_SCHEDULED, ob.NON_CRITICAL)


def test_clock_step_logged_and_in_status():
    import struct

    import board
    from chf.logs import open_logs

    flashfs.fresh()
    hub = _Hub()
    hub.event_log, _ = open_logs(hub.store, 8, utc=lambda: 1000)

    service.install(hub)
    clk = hub.clock
    st = clk.status()  # what `status` reports as "clock" (tests/test_hil_wan_faults.py)
    assert st["valid"] is False and st["source"] is None
    t = board.utc()
    assert clk.from_source("network", t - 30) in (-30, -31)
    assert abs(board.utc() - (t - 30)) <= 1  # the board RTC was corrected
    ev = hub.event_log.entries()
    assert len(ev) == 1 and ev[0][1] == service.EV_CLOCK_STEP, ev
    step = struct.unpack(">i", ev[0][2][:4])[0]
    assert step in (-30, -31) and ev[0][2][4:] == b"network"
    tx = [e for e in hub.txlog.entries() if e["event"] == "time_step"]
    assert len(tx) == 1 and tx[0]["detail"] == "%+d network" % step
    clk.from_source("headend", board.utc() + 3)  # small: corrected, not logged
    assert len(hub.event_log.entries()) == 1
    st = clk.status()
    assert st["valid"] and st["source"] == "headend" and st["steps"] == 1


def test_last_gasp_without_alert_keys_logs_and_restores():
    # no CHF (no ACB, no keys): the alert cannot be built, the event log and
    # the outage note still work, and the restoration is reported once
    import asyncio

    import board
    from chf.logs import open_logs
    from wan.lastgasp import ALERT_POWER_OUTAGE, ALERT_POWER_RESTORED, LastGasp

    flashfs.fresh()
    hub = _Hub()
    hub.event_log, _ = open_logs(hub.store, 8, utc=lambda: 1000)
    service.install(hub)
    assert hub.last_gasp is None  # loaded only when needed

    async def fail_soon():  # the installed job, woken by the board's power-fail signal
        task = asyncio.create_task(hub.supervisor.factories["last_gasp"]())
        await asyncio.sleep_ms(10)
        assert not task.done()
        board.power_fail.set()
        await task

    asyncio.run(fail_soon())
    lg = hub.last_gasp
    assert lg is not None and lg.outage_id is None and len(hub.outbox) == 0
    assert [c for _, c, _ in hub.event_log.entries()] == [ALERT_POWER_OUTAGE]
    flashfs.remount()
    hub = _Hub()
    hub.event_log, _ = open_logs(hub.store, 8, utc=lambda: 2000)
    service.install(hub)
    assert hub.store.kv("wan_power").get("lost") is not None
    lg = LastGasp(hub, lambda: 2000)
    assert lg.restored() is None  # (no alert without keys)
    assert hub.store.kv("wan_power").get("lost") is None
    assert [c for _, c, _ in hub.event_log.entries()] == [ALERT_POWER_OUTAGE, ALERT_POWER_RESTORED]
    assert lg.restored() is None and len(hub.event_log.entries()) == 2
