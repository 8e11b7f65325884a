# firmware/wan/service.py WanService: emit() queues into the persistent
# outbox from the moment the service is built, before the WAN job ever runs;
# a power cut (remount) keeps every emitted message once, in order, with its
# class.
import asyncio
import sys

import board
import flashfs
from clock import Clock
from store import Store
from wan import outbox as ob
from wan import service, settings
from wan.local_commands import page

HEAP = "384k"  # wan.sim7600 (with its TLS commands) compiles from source here


class _HubParts:  # what app.Hub.clock_step reads of the hub: wan, event_log
    pass


def _wan(event_log=None):
    """The WAN service as app.py wires it, with the clock's step recorder
    (app.Hub.clock_step)."""
    st = Store(flashfs.ROOT + "/data")
    clk = Clock(board.utc, board.set_utc, board.ticks_ms)
    w = service.WanService(st, None, clk, board.utc, board.power_fail, asyncio.Event())
    if event_log is not None:
        w.attach_chf(None, event_log(st), None)
        from app import Hub

        h = _HubParts()
        h.wan, h.event_log = w, w.event_log
        clk.on_step = lambda name, step, outcome: Hub.clock_step(h, name, step, outcome)
    settings.apply_clock(clk, w.settings)
    return w, clk


def _event_log(utc):
    from chf.logs import open_logs

    return lambda st: open_logs(st, 8, utc=lambda: utc)[0]


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
    w, _ = _wan()
    assert w.session is None
    a = w.emit(b"\xdd\x01alert", "alert")
    r = w.emit(memoryview(b"\xdd\x02resp"), "response")
    n = w.emit(b"\xdd\x03minor", "alert", critical=False)
    c = w.emit(b"\xdd\x04resp-nc", "response", critical=False)
    assert a < r < n < c
    for bad in ("event", None, 2):
        try:
            w.emit(b"x", bad)
        except ValueError:
            continue
        raise AssertionError("kind %r accepted" % (bad,))
    # power cut: a new hub on the same flash sees all four, nothing else
    flashfs.remount()
    box = _wan()[0].outbox
    assert len(box) == 4
    got = [box.read(s) for s in box.j.seqs()]
    assert box.j.seqs() == [a, r, n, c]
    assert got[0] == (ob.KIND_ALERT, ob.CRITICAL, 0, b"\xdd\x01alert"), got[0]
    assert got[1] == (ob.KIND_RESPONSE, ob.CRITICAL, 0, b"\xdd\x02resp"), got[1]
    assert got[2][:2] == (ob.KIND_ALERT, ob.NON_CRITICAL) and got[2][3] == b"\xdd\x03minor"
    assert got[3][:2] == (ob.KIND_RESPONSE, ob.NON_CRITICAL)


def test_emit_alert_class_follows_critical_alerts_setting():
    flashfs.fresh()
    Store(flashfs.ROOT + "/data").kv("wan").set("critical_alerts", False)
    w, _ = _wan()
    s = w.emit(b"\xdd\x05", "alert")
    assert w.outbox.read(s)[1] == ob.NON_CRITICAL
    s = w.emit(b"\xdd\x06", "response")
    assert w.outbox.read(s)[1] == ob.CRITICAL
    s = w.emit(b"\xdd\x07", "scheduled")
    assert w.outbox.read(s)[:2] == (ob.KIND_SCHEDULED, ob.NON_CRITICAL)


def test_clock_step_logged_and_in_status():
    import struct

    from codes import EV_CLOCK_ADJUSTED, EV_CLOCK_DISAGREES, EV_CLOCK_STEP

    flashfs.fresh()
    w, clk = _wan(_event_log(1000))
    st = clk.status()  # what `status` reports as "clock" (tests/test_hil_wan_faults.py)
    assert st["valid"] is False and st["source"] is None
    t = board.utc()
    assert clk.from_source("headend", t - 30) in (-30, -31)  # not valid yet: set
    assert abs(board.utc() - (t - 30)) <= 1  # the board RTC was corrected
    ev = w.event_log.entries()
    assert len(ev) == 1 and ev[0][1] == EV_CLOCK_STEP, ev
    step = struct.unpack(">i", ev[0][2][:4])[0]
    assert step in (-30, -31) and ev[0][2][4:] == b"headend"
    tx = [e for e in page(w.txlog, None, 1 << 30) if e["event"] == "time_step"]
    assert len(tx) == 1 and tx[0]["detail"] == "%+d headend set" % step
    clk.from_source("headend", board.utc() + 3)  # within tolerance: adjusted, 0x8145
    assert [e[1] for e in w.event_log.entries()] == [EV_CLOCK_STEP, EV_CLOCK_ADJUSTED]
    clk.cross_check("network", board.utc() + 600)  # the network disagrees: an event, no step
    assert w.event_log.entries()[-1][1] == EV_CLOCK_DISAGREES and abs(board.utc() - (t - 27)) <= 1
    st = clk.status()
    assert st["valid"] and st["source"] == "headend" and st["steps"] == 1 and st["disagreements"] == 1


def test_last_gasp_without_alert_keys_logs_and_restores():
    # no CHF (no ACB, no keys): the alert cannot be built, the event log and
    # the outage note still work, and the restoration is reported once
    from codes import ALERT_POWER_OUTAGE, ALERT_POWER_RESTORED

    flashfs.fresh()
    w, _ = _wan(_event_log(1000))
    assert "wan.lastgasp" not in sys.modules  # loaded only when needed

    async def fail_soon():  # the job "last_gasp", woken by the board's power-fail signal
        task = asyncio.create_task(w.watch_power())
        await asyncio.sleep_ms(10)
        assert not task.done()
        board.power_fail.set()
        await task

    asyncio.run(fail_soon())
    lg = w.last_gasp()
    assert lg.outage_id is None and len(w.outbox) == 0
    assert [c for _, c, _ in w.event_log.entries()] == [ALERT_POWER_OUTAGE]
    flashfs.remount()
    w, _ = _wan(_event_log(2000))
    assert w.store.kv("wan_power").get("lost") is not None
    from wan.lastgasp import LastGasp

    lg = LastGasp(w.store, w.chf, w.event_log, w.emit, w.outbox, lambda: 2000)
    assert lg.restored() is None  # (no alert without keys)
    assert w.store.kv("wan_power").get("lost") is None
    assert [c for _, c, _ in w.event_log.entries()] == [ALERT_POWER_OUTAGE, ALERT_POWER_RESTORED]
    assert lg.restored() is None and len(w.event_log.entries()) == 2


def test_wan_commands_answer_before_the_job_runs():
    # wan_config and transactions work on the WAN service's settings and
    # transaction log, which exist before the job's session does
    from wan import local_commands as commands

    flashfs.fresh()
    w, clk = _wan()

    class Hub:  # what the WAN's commands read from the hub
        wan = w
        clock = clk

    assert w.session is None
    r = asyncio.run(commands.wan_config(Hub, {"set": {"ping_ms": 30000}}))
    assert r["ping_ms"] == 30000 and w.settings["ping_ms"] == 30000
    t = asyncio.run(commands.transactions(Hub, {}))
    assert t["total"] == 0 and t["entries"] == []
    try:
        asyncio.run(commands.wan_config(Hub, {"set": {"ping_ms": "x"}}))
        raise AssertionError("a wrong type was taken")
    except ValueError:
        pass
    assert w.settings["ping_ms"] == 30000


# The WAN's standing share of the working set at capacity (docs/proof.md,
# "The heap on the 32-bit frozen build", branch wanws). Bounds in words
# (W: 8 on the 64-bit unix port, 4 on the 32-bit build) plus the bytes a
# part holds by design.
def _held(fn):
    import gc

    gc.collect()
    a = gc.mem_alloc()
    keep = fn()
    gc.collect()
    return gc.mem_alloc() - a, keep


def test_the_link_decoder_holds_no_buffer_between_frames():
    # the head-end's frames are taken from the modem's chunk itself; only a
    # frame split across chunks is copied, into a buffer of its own length
    # (it was a standing 512-byte buffer). Measured 704 -> 96 bytes idle on
    # the 64-bit port, 608 -> 48 on the 32-bit build.
    import gc

    from wan import link

    W = 8 if sys.maxsize > 2**31 else 4
    frames = [link.encode(link.GBCS, i, bytes((i,)) * (40 + 90 * i)) for i in range(1, 6)] + [link.ack(9)]
    stream = b"".join(frames)
    want = [(f[2], int.from_bytes(f[3:7], "big"), f[9:-4]) for f in frames]
    idle, d = _held(link.Decoder)
    assert idle <= 20 * W, idle
    for step in (len(stream), 512, 97, 7):  # one chunk; chunks that split frames and headers
        k = 0
        for i in range(0, len(stream), step):
            chunk = stream[i:i + step]
            assert d.feed(chunk) == len(chunk)  # the whole chunk, always
            fr = d.next()
            while fr is not None:
                assert (fr[0], fr[1], bytes(fr[2])) == want[k], (step, k)
                k += 1
                fr = d.next()
        assert k == len(want), (step, k)
    assert d.buf is None  # nothing held once the frames are taken
    # a frame split across chunks: held in a buffer of its own length
    f = link.encode(link.GBCS, 7, b"x" * 300)
    gc.collect()
    a = gc.mem_alloc()
    assert d.feed(f[:100]) == 100 and d.next() is None
    gc.collect()
    part = gc.mem_alloc() - a
    assert part <= len(f) + 8 * W, part
    assert d.feed(f, 100) == len(f)
    fr = d.next()
    assert fr[1] == 7 and bytes(fr[2]) == b"x" * 300 and d.next() is None
    assert d.buf is None


def test_the_seen_frame_ids_hold_their_count_not_twice_it():
    # link.seen_add keeps the newest `size` ids: the list never grows past
    # size (a list appended past its room doubles: 64 slots for 32 ids)
    from wan import link

    W = 8 if sys.maxsize > 2**31 else 4

    def fill():
        s = []
        for i in range(100):
            link.seen_add(s, i, 32)
        return s

    n, s = _held(fill)
    assert s == list(range(68, 100))
    assert n <= 32 * W + 4 * W, n


def test_a_session_and_its_modem_hold_a_bounded_standing_heap():
    # the WAN session (wan.session.Wan) with its link decoder, and the
    # SIM7600 driver with its AT channel (the parser's 256-byte line buffer
    # and the last 32 signal samples: ticks 128 bytes, dBm 32). Measured
    # on the 32-bit build 1168 -> 400 bytes for the session (its decoder
    # idle, the KV stores opened when used), 1568 -> 1056 for the driver
    # (no standing line buffer, the dBm one byte a sample, no ticks function
    # held, one Flag, no empty list for pushed data); 1824 -> 800 and
    # 2624 -> 1952 on the 64-bit port. Branch wanpk: the session reads its
    # parts through the WAN service (one attribute for eleven), its
    # bring-up module through sys.modules, new link credentials seen by
    # their Flag (no generation kept), the modem's init due as its radio
    # mode False, the link decoder in the link loop's frame (made per
    # session): 400 -> 240 (64-bit 800 -> 480);
    # the driver keeps each signal sample in one 32-bit word (tick and dBm),
    # no data callback and no count of bad lines (the parser's garbled
    # count has them), its parser 23 attributes and no list of handlers,
    # its channel's closed state in its reader task's place, the three
    # registration stats in one int and the SIM's READY as a constant:
    # after a boot's notices 1088 -> 816 (64-bit 2016 -> 1504), and no
    # longer keeps the modem's
    # revision and IP address once the link is up
    from wan import session
    from wan.sim7600 import Sim7600

    W = 8 if sys.maxsize > 2**31 else 4
    flashfs.fresh()
    w, clk = _wan()

    def wan():
        return session.Wan(w)

    wan()  # its KV stores opened (the store keeps them)
    n, s = _held(wan)
    print("session: %d bytes" % n)
    def driver():
        d = Sim7600(None, None)
        # a boot's notices: the SIM state and the registrations are kept
        d.at.p.feed(b"\r\nRDY\r\n\r\n+CPIN: READY\r\n\r\n+CREG: 1\r\n\r\n+CEREG: 5\r\n")
        assert d.sim == b"READY" and d.reg_stat == 5, (d.sim, d.reg_stat)
        return d

    driver()  # names interned on the first run are not the driver's
    m, d = _held(driver)
    print("driver: %d bytes" % m)
    assert n <= 60 * W, n
    assert m <= 128 + 172 * W, m


def test_the_link_loop_holds_small_coroutine_frames():
    # while the link serves, the job's coroutine frames are run's and
    # _serve's (a frame holds every local and its value stack as long as it
    # awaits). What follows a session's end (counts, fall-back, modem
    # health, back-off) runs in a frame of its own, made only while it
    # runs. Measured on the 32-bit build run 176 -> 128 bytes, _serve 128
    # (64-bit 352 -> 256, 256): its planned-end checks in a method of their
    # own took 16 bytes off _serve and put ~60 in the boot set
    from wan import session

    W = 8 if sys.maxsize > 2**31 else 4
    flashfs.fresh()
    w, clk = _wan()
    s = session.Wan(w)
    run, _ = _held(s.run)
    serve, _ = _held(lambda: s._serve(None))
    print("run %d, _serve %d bytes" % (run, serve))
    assert run <= 32 * W and serve <= 32 * W, (run, serve)


def test_pushed_data_is_queued_for_recv_in_order():
    # +RECEIVE / +IPD (push modes): the driver queues the blocks, made on
    # the first one, and recv() hands them over in order
    from wan.sim7600 import Sim7600

    m = Sim7600(None, None)
    assert m._rxq is None
    m.at.p.feed(b"\r\n+RECEIVE,0,3\r\nabc\r\n+IPD2\r\nde")
    assert asyncio.run(m.recv(0)) == b"abc" and asyncio.run(m.recv(0)) == b"de"


def test_a_send_in_flight_holds_a_shallow_chain():
    # a frame going to the head-end (AT+CIPSEND, the prompt, the data):
    # while the channel waits for the modem's prompt, the send holds its
    # coroutine frames only: the driver's send and the channel's cmd, no
    # waiting coroutine, no closures per wait, no drain frame held.
    # Measured on the 32-bit build 512 -> 368 bytes
    # (the 64-bit port: 992 -> 704), the sending task's own ~32 included
    import gc

    from modemline import Line
    from wan.sim7600 import Sim7600

    W = 8 if sys.maxsize > 2**31 else 4
    seen = []
    sent = asyncio.Event()

    def answer(b):
        if b.startswith(b"AT+CIPSEND=0,"):
            sent.set()  # the prompt comes once the heap is read
            return None
        seen.append(b)
        return b"\r\nOK\r\n\r\n+CIPSEND: 0,%d,%d\r\n" % (len(b), len(b))

    async def main():
        ln = Line(answer)
        m = Sim7600(ln, ln)
        m.socket_open = True
        m.at.start()
        frame = bytes(100)
        await asyncio.sleep_ms(0)
        gc.collect()
        a = gc.mem_alloc()
        t = asyncio.create_task(m.send(frame))
        await sent.wait()
        for _ in range(3):
            await asyncio.sleep_ms(0)
        gc.collect()
        held = gc.mem_alloc() - a
        ln.reply(b"\r\n> ")
        assert await t == 100 and seen == [frame]
        m.at.stop()
        return held

    held = asyncio.run(main())
    print("send in flight: %d bytes" % held)
    assert held <= 96 * W, held


def _cip_line(sent):
    # the SIM7600's answers to AT+CIPSEND: the prompt, then the send's
    # confirmation once the data came (the bytes sent go to `sent`)
    from modemline import Line

    want = []

    def answer(b):
        if b.startswith(b"AT+CIPSEND=0,"):
            want.append(int(b[13:-1]))
            return b"\r\n> "
        sent.append(b)
        return b"\r\nOK\r\n\r\n+CIPSEND: 0,%d,%d\r\n" % (want[-1], want[-1])

    return Line(answer)


def _frames(w, clk, fids):
    # a session answering GBCS frames `fids` from the head-end (the router
    # answers nothing) -> (the frames routed, the bytes sent)
    from wan import link, session
    from wan.sim7600 import Sim7600

    routed = []

    async def route(frame, tag):
        routed.append(tag)
        return None, ()

    async def main():
        sent = []
        ln = _cip_line(sent)
        w.route = route
        s = session.Wan(w)
        s.modem = m = Sim7600(ln, ln)
        m.socket_open = True
        m.at.start()
        d = link.Decoder()
        for fid in fids:
            d.feed(link.encode(link.GBCS, fid, b"\xdd\x00"))
            assert await s._frame(d)
        m.at.stop()
        return sent

    return routed, asyncio.run(main())


def test_the_seen_frame_ids_are_on_flash_after_each_frame():
    # each head-end GBCS frame's id is written to KV "wan_seen" once it is
    # answered, and a session built after a power cut knows them all (the
    # duplicate memory). On main only the first id reached the flash: the
    # list was changed in place, so the store saw no change after its first
    # write.
    from wan import link

    flashfs.fresh()
    w, clk = _wan()
    routed, sent = _frames(w, clk, (7, 8, 9, 8))
    assert len(routed) == 3 and sent[3] == link.ack(8, link.ACK_DUPLICATE), (routed, sent)
    flashfs.remount()
    w, clk = _wan()
    assert w.store.kv("wan_seen").get("ids") == [7, 8, 9], w.store.kv("wan_seen").get("ids")
    routed, sent = _frames(w, clk, (9, 8, 7, 10))
    assert sent == [link.ack(f, link.ACK_DUPLICATE) for f in (9, 8, 7)] + [link.ack(10)], sent
    assert len(routed) == 1


def test_the_transaction_log_holds_no_open_file_between_entries():
    # the transaction log is appended now and then (a link event, an acked
    # message): like the event and security logs its file is opened for each
    # entry, not held with its littlefs cache (~0.25 KB) while the hub rests;
    # the outbox, appended and acked for every message, keeps its file open
    flashfs.fresh(128)
    w, _clk = _wan()
    ring = w.txlog.ring
    assert ring._f is None
    for i in range(5):
        w.txlog.add("link_up", i)
        assert ring._f is None
    w.emit(b"\xdd" * 40, "alert")
    assert ring._f is None and w.outbox.j._f is not None
    assert [e["id"] for e in page(w.txlog)] == [0, 1, 2, 3, 4]
    assert len(w.txlog) == 5
