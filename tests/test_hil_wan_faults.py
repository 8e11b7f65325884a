"""HIL: the WAN job's recovery from every modem fault, its health measures,
the clock and the last gasp — the real hub under micropython against the
SIM7600 emulator and the head-end server (docs/modem.md, docs/headend-link.md,
docs/clock.md).

One emulated system for the module; fast timings through `wan_config`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hil.headend.gbcs import decode_access_response
from hil.system import EmulatedSystem

ECS26I = "6.2.4_ECS26i/ECS26i_6.2.4_SUCCESS_COMMAND_GBCS.HEX"
CCS01 = "8.11_CCS01/CCS01_8.11_SUCCESS_COMMAND_GBCS.HEX"
TIMINGS = {"cmd": 1500, "at": 300, "at_retries": 2, "cpin_retries": 2, "cpin_interval": 50, "netopen": 3000,
           "netclose": 2000, "cipopen": 3000, "cipsend": 3000, "cipclose": 2000, "boot": 3000, "reg_poll": 50,
           "grace": 50}
# rx_poll_ms 60 s: the receive safety net stays out of the way, every frame
# must come through the driver's "+CIPRXGET: 1,0" handling
FAST = {"retry_ms": 100, "retry_max_ms": 400, "reg_timeout_ms": 1000, "hello_timeout_ms": 3000,
        "signal_ms": 300, "max_errors": 4, "rx_poll_ms": 60000, "timings": TIMINGS}


@pytest.fixture(scope="module")
def system(hub_image: Path, tmp_path_factory: pytest.TempPathFactory, vectors: Path) -> Iterator[EmulatedSystem]:
    s = EmulatedSystem(tmp_path_factory.mktemp("wanf"), image=hub_image, fresh=True).start()
    s.keep_connection = True  # one installer session for the module's many calls
    assert s.headend.headend is not None, "the test DCC was not provisioned"
    s.call("wan_config", set=FAST)
    s.headend.wait_hello(1, timeout=30)
    yield s
    s.drop_connection()
    s.stop()


def on_rig(s: EmulatedSystem, fn: Callable[[], object]) -> None:
    async def go() -> None:
        fn()

    assert s.rig is not None
    s.rig.call(go())


def tx_events(s: EmulatedSystem) -> list[dict]:
    """The whole transaction log, oldest first (the reply is paged, newest first)."""
    out: list[dict] = []
    before = None
    while True:
        r = s.call("transactions", **({} if before is None else {"before": before}))
        out = r["entries"] + out
        if not r["entries"] or len(out) >= r["total"]:
            return out
        before = r["entries"][0]["seq"]


def command_ok(s: EmulatedSystem, vectors: Path, timeout: float = 20) -> None:
    reply = s.headend.send_command(vectors / "gbcs" / "rtds" / ECS26I, timeout=timeout)
    assert all(code == 0 for _, code in decode_access_response(reply.frame.payload).results)


def count(s: EmulatedSystem, event: str, detail: str | None = None) -> int:
    return sum(1 for e in tx_events(s) if e["event"] == event and (detail is None or e["detail"] == detail))


def relink(s: EmulatedSystem, hellos: int, timeout: float = 20) -> None:
    """Wait for a HELLO after `hellos` and the hub saying it is connected."""
    s.headend.wait_hello(hellos + 1, timeout=timeout)
    s.wait_until(lambda: s.call("wan_status")["connected"], timeout, "link up")


def test_pdp_refresh_and_periodic_reinit(system: EmulatedSystem, vectors: Path) -> None:
    he, emu = system.headend, system.modem
    refreshes, ups, hellos = count(system, "pdp_refresh"), count(system, "pdp_up"), len(he.hellos)
    netclose = emu.commands.count("AT+NETCLOSE")
    system.call("wan_config", set={"pdp_refresh_ms": 1500})
    try:
        system.wait_until(lambda: count(system, "pdp_refresh") > refreshes, 20, "PDP refresh")
    finally:
        system.call("wan_config", set={"pdp_refresh_ms": 86400000})
    relink(system, hellos)
    assert count(system, "pdp_up") > ups  # the context was activated again
    assert emu.commands.count("AT+NETCLOSE") > netclose
    command_ok(system, vectors)
    resets, hellos, periodic = emu.resets, len(he.hellos), count(system, "modem_reset", "periodic")
    system.call("wan_config", set={"reinit_ms": 1500})
    try:
        system.wait_until(lambda: count(system, "modem_reset", "periodic") > periodic, 20, "periodic re-init")
    finally:
        system.call("wan_config", set={"reinit_ms": 604800000})
    assert emu.resets > resets and "modem" in system.rig.resets
    relink(system, hellos)
    command_ok(system, vectors)
    # stuck: no link for stuck_ms while the modem answers (searching for ever) -> reset
    stuck, hellos = count(system, "modem_reset", "stuck"), len(he.hellos)
    system.call("wan_config", set={"stuck_ms": 2500, "max_errors": 100})
    try:
        on_rig(system, lambda: (emu.lose_registration(2), emu.drop_network()))
        system.wait_until(lambda: count(system, "modem_reset", "stuck") > stuck, 20, "reset when stuck")
    finally:
        system.call("wan_config", set={"stuck_ms": 1800000, "max_errors": FAST["max_errors"]})
    relink(system, hellos)  # the reset brought registration back
    # radio mode set remotely: applied at once (link re-made) and again after a modem reset
    with pytest.raises(Exception, match="radio must be one of"):
        system.call("wan_config", set={"radio": "5g"})
    hellos = len(he.hellos)
    system.call("wan_config", set={"radio": "lte"})
    relink(system, hellos)
    assert emu.cnmp == 38
    hellos = len(he.hellos)
    on_rig(system, emu.hw_reset)  # the modem reboots on its own: CNMP back to 2 ...
    relink(system, hellos)
    assert emu.cnmp == 38  # ... and set again
    system.call("wan_config", set={"radio": "auto"})
    system.wait_until(lambda: emu.cnmp == 2, 20, "radio auto")


def alert_code(raw_payload: bytes) -> int | None:
    """Alert code of a DLMS DataNotification {long-unsigned code, date-time, ...}."""
    from hil.headend.gbcs import decode_data

    p = raw_payload
    if not p or p[0] != 0x0F:
        return None
    o = 5  # tag + invoke-id
    o += 1 if p[o] == 0 else 1 + p[o]  # absent or length-prefixed date-time
    (tag, items), _ = decode_data(p, o)
    assert tag == 2 and items[0][0] == 0x12, items
    return items[0][1]


def alerts(s: EmulatedSystem, code: int) -> list:
    he = s.headend
    out = []
    for r in he.received:
        if r.frame is not None and r.frame.cra == 3 and alert_code(r.frame.payload) == code:
            out.append(r)
    return out


def event_codes(s: EmulatedSystem) -> list[int]:
    return [e[1] for e in s.call("logs", which="event")["entries"]]


def test_last_gasp_and_restoration(system: EmulatedSystem, vectors: Path) -> None:
    he = system.headend
    system.wait_until(lambda: system.call("wan_status")["connected"], 20, "link up")
    assert system.rig is not None
    system.rig.power_fail()
    out = system.wait_until(lambda: alerts(system, 0x8FF0), 10, "power-outage alert")
    he.headend.verify(out[0].raw, cra=3)  # MAC'd to the ACB with the CHF's alert counter
    assert out[0].frame.message_code == 0x0000
    assert 0x8FF0 in event_codes(system)
    hellos = len(he.hellos)
    system.reboot(power_cut=True)
    he.wait_hello(hellos + 1, timeout=30)
    back = system.wait_until(lambda: alerts(system, 0x8FF1), 15, "power-restored alert")
    he.headend.verify(back[0].raw, cra=3)
    assert back[0].frame.counter > out[0].frame.counter
    assert 0x8FF1 in event_codes(system)
    system.wait_until(lambda: system.call("wan_status")["outbox_pending"] == 0, 20, "outbox empty")
    assert len(alerts(system, 0x8FF0)) == 1 and len(alerts(system, 0x8FF1)) == 1
    assert out[0].copies == 1 and back[0].copies == 1
    system.call("wan_config", set=FAST)  # (settings persist; re-applied for the driver timings)
    command_ok(system, vectors)


# ---------------------------------------------------------------- the full scenario, every fault


class Chain:
    """Each step: a command goes out; the moment the hub ACKs it (its
    response is on flash in the outbox) the fault is injected and that
    connection's remaining input is ignored. The response must arrive on a
    later connection, once, after the hub recovered by itself (plus what a
    step does to heal the emulated world, e.g. a SIM put back)."""

    def __init__(self, s: EmulatedSystem, vectors: Path) -> None:
        self.s = s
        self.rtds = vectors / "gbcs" / "rtds"
        self.counters: list[int] = []
        self.done: list[str] = []

    def step(self, name: str, inject: Callable[[], object], meanwhile: Callable[[], object] | None = None,
             timeout: float = 45, cmd: str = ECS26I) -> None:
        he = self.s.headend
        self.s.wait_until(lambda: self.s.call("wan_status")["connected"], 20, "link before " + name)
        conn = he.connections
        fired: list[int] = []

        def hook(fid: int) -> None:
            he.on_command_acked = None
            fired.append(fid)
            inject()

        he.on_command_acked = hook
        assert he.loop is not None
        fut = asyncio.run_coroutine_threadsafe(he.asend_command(self.rtds / cmd, timeout=timeout), he.loop)
        try:
            self.s.wait_until(lambda: fired, 15, name + " injected")
            if meanwhile is not None:
                meanwhile()
            reply = fut.result(timeout + 5)
        finally:
            he.on_command_acked = None
        assert all(code == 0 for _, code in decode_access_response(reply.frame.payload).results), name
        got = [r for r in he.received if r.frame is not None and r.frame.cra == 2
               and r.frame.counter == reply.frame.counter]
        assert len(got) == 1, (name, got)
        assert got[0].connection > conn, f"{name}: the response left before the fault"
        self.counters.append(reply.frame.counter)
        self.done.append(name)


def hub_time(s: EmulatedSystem, timeout: float = 30) -> dict:
    """The emulated IHD reads the hub's Time cluster (retried while the hub's
    HAN is still coming back after a reboot)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return s.han.run(s.han.device("ihd").read_hub_time(timeout=3), timeout=10)
        except (TimeoutError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def status_has(s: EmulatedSystem, text: str) -> Callable[[], bool]:
    return lambda: text in (s.call("wan_status")["last_error"] or "")


def test_full_scenario_every_fault(system: EmulatedSystem, vectors: Path) -> None:
    s, he, emu = system, system.headend, system.modem
    assert s.rig is not None
    s.call("wan_config", set=FAST)
    ch = Chain(s, vectors)
    rig = lambda fn: on_rig(s, fn)  # noqa: E731

    # no SIM, found at boot after a power cut: the clock has no source yet
    def no_sim_meanwhile() -> None:
        s.reboot(power_cut=True)
        s.wait_until(status_has(s, "NoSim"), 20, "NoSim")
        clk = s.call("status")["clock"]
        assert clk["valid"] is False and clk["source"] is None, clk
        # ... and the HAN's Time cluster says Master but not Synchronized
        t = hub_time(s)
        assert t["status"] & 0x03 == 0x01, t
        rig(emu.insert_sim)

    ch.step("no SIM", lambda: (emu.remove_sim(urc=True), emu.drop_network()), no_sim_meanwhile)
    assert s.call("status")["clock"]["valid"] is True  # HELLO_ACK / the network gave the time
    t = hub_time(s)
    assert t["status"] & 0x03 == 0x03 and abs(t["unix"] - time.time()) <= 2, t

    # PIN required after a modem reboot: the PIN is configured remotely and stored
    def pin_meanwhile() -> None:
        s.wait_until(status_has(s, "PinRequired"), 20, "PinRequired")
        assert s.call("wan_config", set={"pin": "4321"})["pin"] == "4321"

    ch.step("PIN required", lambda: (emu.require_pin("4321"), emu.hw_reset()), pin_meanwhile)

    # registration denied (also after a reset): the hub resets the modem after max_errors
    resets = count(s, "modem_reset", "errors")

    def denied() -> None:
        emu.cfg.reg_stat = 3
        emu.deny_registration()
        emu.drop_network()

    def denied_meanwhile() -> None:
        s.wait_until(lambda: count(s, "modem_reset", "errors") > resets, 20, "reset after repeated errors")
        assert emu.sim == "SIM PIN" or emu.sim == "READY"

        def heal() -> None:
            emu.cfg.reg_stat = 1
            emu.regain_registration()

        rig(heal)

    ch.step("registration denied", denied, denied_meanwhile)

    # registration lost (searching) until the network comes back
    def lost_meanwhile() -> None:
        s.wait_until(status_has(s, "not registered"), 20, "not registered")
        rig(lambda: emu.regain_registration(1))

    ch.step("registration lost", lambda: (emu.lose_registration(2), emu.drop_network()), lost_meanwhile)

    # weak signal: the link works; HELLO carries the weak value
    hellos = len(he.hellos)
    ch.step("weak signal", lambda: (emu.set_csq(3), emu.remote_close(0)))
    assert he.hellos[hellos].signal_dbm == -107
    rig(lambda: emu.set_csq(21))

    # PDP activation failure, logged, until the network accepts the context
    fails = count(s, "pdp_fail")

    def pdp_meanwhile() -> None:
        s.wait_until(lambda: count(s, "pdp_fail") > fails, 20, "pdp_fail")
        rig(lambda: emu.fail_pdp(None))

    ch.step("PDP activation failure", lambda: (emu.fail_pdp("urc"), emu.drop_network()), pdp_meanwhile)

    # the TLS session fails to open three times (+CCHOPEN: 0,10), then works
    opens = sum(c.startswith("AT+CCHOPEN=") for c in emu.commands)
    ch.step("socket open failure", lambda: (emu.fail_socket_open(10, times=3), emu.remote_close(0)))
    assert emu.socket_open_failures == []  # all three failures were met ...
    assert sum(c.startswith("AT+CCHOPEN=") for c in emu.commands) >= opens + 4  # ... and retried past

    # the modem stops answering: hardware reset through the board
    silent = count(s, "modem_reset", "silent")
    ch.step("silent modem", emu.go_silent)
    assert count(s, "modem_reset", "silent") > silent

    # network drop with an alert queued too: CCS01 -> response + CS14 alert, both
    # on flash when the link goes; each delivered once, MAC-checked
    conn = he.connections
    ch.step("network drop", emu.drop_network, cmd=CCS01)
    cs14 = s.wait_until(lambda: [r for r in he.received if r.frame is not None and r.frame.cra == 3
                                 and r.connection > conn], 5, "CS14 alert")
    assert len(cs14) == 1 and cs14[0].copies == 1 and cs14[0].frame.message_code == 0x0018, cs14
    he.headend.verify(cs14[0].raw, cra=3)

    # garbled lines on the UART: counted, the link stays up, commands answered
    st = s.call("wan_status")
    rig(emu.garble)
    rig(lambda: emu.inject_urc("+CGREG: 2,\"zz", False))
    command_ok(s, vectors)
    st2 = s.call("wan_status")
    assert st2["garbled"] >= st["garbled"] + 4 and st2["drops"] == st["drops"], (st, st2)
    ch.done.append("garbled lines")

    # clock: the hub 30 s behind. The network's time (not authenticated) only
    # cross-checks: a disagreement is an event (0x81C6), not a step. The
    # head-end's time (authenticated) is refused on a valid clock (0x8F0C, more
    # than 10 s) until three readings in a row agree: then it is set (0x8FF2)
    steps = count(s, "time_step")
    s.rig.set_rtc_offset(-30)
    s.wait_until(lambda: abs(s.call("status")["utc"] - (time.time() - 30)) <= 2, 5, "RTC offset applied")
    rig(lambda: emu.network_time(time.time()))
    s.wait_until(lambda: count(s, "time_step") > steps, 20, "network time cross-checked")
    d = [e for e in tx_events(s) if e["event"] == "time_step"][-1]["detail"]
    assert d.endswith(" network disagrees") and 28 <= int(d.split()[0]) <= 32, d
    assert abs(s.call("status")["utc"] - (time.time() - 30)) <= 2  # not moved
    for i, word in enumerate(("refused", "refused", "set")):
        he.send_time()
        s.wait_until(lambda i=i: count(s, "time_step") > steps + 1 + i, 10, f"head-end time #{i + 1}")
        d = [e for e in tx_events(s) if e["event"] == "time_step"][-1]["detail"]
        assert d.endswith(" headend " + word) and 28 <= int(d.split()[0]) <= 32, d
    assert abs(s.call("status")["utc"] - time.time()) <= 2
    codes = [e[1] for e in s.call("logs", which="event")["entries"]]  # [t, code, data(, count)]
    assert {0x81C6, 0x8F0C, 0x8FF2} <= set(codes), codes
    assert s.call("status")["clock"]["valid"] is True

    # everything delivered once, nothing left, no receive poll needed
    s.wait_until(lambda: s.call("wan_status")["outbox_pending"] == 0, 20, "outbox empty")
    assert len(set(ch.counters)) == len(ch.counters) == 9, ch.done
    st = s.call("wan_status")
    assert st["connected"] and st["rx_polls_found"] == 0, st
    resp = [r for r in he.received if r.frame is not None and r.frame.cra == 2 and r.frame.counter in ch.counters]
    assert len(resp) == 9 and all(r.copies == 1 for r in resp), [(r.id, r.copies) for r in resp]



def test_retry_schedule_per_class_follows_configuration(system: EmulatedSystem, vectors: Path) -> None:
    """The retry class follows the GBCS use case (issue 21): ECS26i's
    response (a code the use-case table does not class: critical, the safe
    side) on the critical back-off, CCS01's response (SME.C.NC) and its CS14
    alert (SME.A.NC) on the non-critical one, while the head-end holds its
    ACKs; exhausted messages are logged and kept, and go out again after
    the next reconnect."""
    s, he = system, system.headend
    s.wait_until(lambda: s.call("wan_status")["connected"], 20, "link")
    exhausted = count(s, "exhausted")
    s.call("wan_config", set={"crit_retries": 2, "crit_backoff_ms": 400, "crit_backoff_max_ms": 500,
                               "noncrit_retries": 1, "noncrit_backoff_ms": 900, "on_exhausted": "keep"})
    he.ack_hub_frames = False
    rtds = vectors / "gbcs" / "rtds"
    try:
        n = len(he.received)
        r1 = he.send_command(rtds / ECS26I, timeout=15)
        crit = next(r for r in he.received[n:] if r.frame is not None and r.frame.counter == r1.frame.counter)
        n2 = len(he.received)
        reply = he.send_command(rtds / CCS01, timeout=15)
        resp = next(r for r in he.received[n2:] if r.frame is not None and r.frame.counter == reply.frame.counter)
        alert = s.wait_until(lambda: [r for r in he.received[n2:] if r.frame and r.frame.cra == 3], 5, "CS14 alert")[0]
        he.wait(lambda: crit.copies >= 3 and resp.copies >= 2 and alert.copies >= 2, 10, "resends")
        s.wait_until(lambda: count(s, "exhausted") >= exhausted + 3, 10, "all three exhausted")
        time.sleep(1.0)
        assert (crit.copies, resp.copies, alert.copies) == (3, 2, 2)  # no more: kept, parked
        gaps = [b - a for a, b in zip(crit.times, crit.times[1:], strict=False)]
        # 400 ms, then 800 capped to 500 (lower bounds exact: never early; upper ones loose for a busy CI)
        assert 0.38 <= gaps[0] <= 0.7 and 0.48 <= gaps[1] <= 0.75, gaps
        for r in (resp, alert):
            gap = r.times[1] - r.times[0]
            assert 0.88 <= gap <= 1.4, gap
        assert s.call("wan_status")["outbox_pending"] >= 3
    finally:
        he.ack_hub_frames = True
        s.call("wan_config", set={"crit_retries": 8, "crit_backoff_ms": 10000, "crit_backoff_max_ms": 600000,
                                   "noncrit_retries": 3, "noncrit_backoff_ms": 60000})
    hellos = len(he.hellos)
    he.disconnect()  # a new link: kept messages get a fresh budget and go out again
    relink(s, hellos)
    s.wait_until(lambda: s.call("wan_status")["outbox_pending"] == 0, 20, "outbox empty")
    assert (crit.copies, resp.copies, alert.copies) == (4, 3, 3)


def test_transaction_log_through_chub_hht_logs(system: EmulatedSystem, vectors: Path) -> None:
    import json

    from click.testing import CliRunner

    from chub.cli import main

    system.wait_until(lambda: system.call("wan_status")["connected"], 20, "link")
    # a command of its own: the log then holds an "ack" whichever tests of the
    # module ran before on this system (pytest -n 2 splits the module)
    command_ok(system, vectors)
    system.wait_until(lambda: count(system, "ack") > 0, 10, "ack logged")
    before = tx_events(system)
    system.drop_connection()
    r = CliRunner().invoke(main, ["hht", "--port", system.local_port_url, "logs", "--which", "transactions",
                                  "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    assert got["entries"] == before[-len(got["entries"]):] and len(got["entries"]) == got["total"]
    ev = {e["event"] for e in got["entries"]}
    assert {"pdp_up", "link_up", "ack"} <= ev, ev
    r = CliRunner().invoke(main, ["hht", "--port", system.local_port_url, "logs", "--which", "transactions"],
                           env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "WAN transaction log" in r.output and "link_up" in r.output, r.output


def test_malformed_and_replayed_commands_refused_link_kept(system: EmulatedSystem, vectors: Path) -> None:
    s, he = system, system.headend
    s.wait_until(lambda: s.call("wan_status")["connected"], 20, "link")
    drops, rejects = s.call("wan_status")["drops"], count(s, "reject")
    assert he.send_raw(b"\x00\x01 not a GBCS frame") == "rejected"
    # a command replayed with the counter the hub already accepted
    raw, _ = he.headend.rebuild(bytes.fromhex((vectors / "gbcs" / "rtds" / ECS26I).read_text().strip()))
    assert he.send_raw(raw) == "done"
    assert he.send_raw(raw) == "rejected"  # new link id, same GBCS counter: refused by the CHF
    assert count(s, "reject") == rejects + 2
    st = s.call("wan_status")
    assert st["connected"] and st["drops"] == drops
    command_ok(s, vectors)


def test_headend_time_frame_and_validity_hold(system: EmulatedSystem) -> None:
    s, he = system, system.headend
    s.wait_until(lambda: s.call("wan_status")["connected"], 20, "link")
    steps = count(s, "time_step")
    he.send_time(int(time.time()) + 25)  # a TIME frame 25 s ahead: over 10 s on a valid clock
    s.wait_until(lambda: count(s, "time_step") > steps, 5, "time step")
    d = [e for e in tx_events(s) if e["event"] == "time_step"][-1]["detail"]
    assert d.endswith(" headend refused") and 24 <= int(d.split()[0]) <= 26, d
    assert abs(s.call("status")["utc"] - time.time()) <= 2 and s.call("status")["clock"]["refused"] >= 1
    syncs = s.call("status")["clock"]["syncs"]
    he.send_time()  # the right time: nothing to adjust, the refusals are forgotten
    # taken before the hold is cut: a TIME frame still in flight would make the clock valid again
    s.wait_until(lambda: s.call("status")["clock"]["syncs"] > syncs, 5, "right time taken")
    # no source for longer than the hold: not valid (and the Time cluster says so)
    s.call("wan_config", set={"clock_hold_s": 2})
    try:
        s.wait_until(lambda: s.call("status")["clock"]["valid"] is False, 6, "clock invalid")
        t = hub_time(s)
        assert t["status"] & 0x02 == 0, t
        he.send_time(int(time.time()) + 25)  # not valid: the authenticated time sets it
        s.wait_until(lambda: s.call("status")["clock"]["valid"] is True, 5, "valid again")
        assert abs(s.call("status")["utc"] - (time.time() + 25)) <= 2
        d = [e for e in tx_events(s) if e["event"] == "time_step"][-1]["detail"]
        assert d.endswith(" headend set"), d
    finally:
        s.call("wan_config", set={"clock_hold_s": 432000})
    for _ in range(3):  # back: three readings in a row agreeing on -25 s
        he.send_time()
    s.wait_until(lambda: abs(s.call("status")["utc"] - time.time()) <= 2, 5, "time back")
