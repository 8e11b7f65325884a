"""HIL: the router, the ESME path and the GSME's command buffer, end to end.

The hub (built image, under micropython, on the emulated board) with the
rig's NCP emulator, SIM7600 emulator and head-end. Two emulated meters join
with the RTDS EUIs: an ESME (00DB1234567890A0, always awake, answers RTDS
commands over the tunnel the hub opens: hil/meters/esme.py) and a sleepy GSME
(00DB1234567890A1, GETs its buffered commands and PUTs responses and alerts:
hil/meters/gsme.py). Commands come from the head-end over the WAN link (or
the local port's send_gbcs, exactly as from the WAN); what the hub sends
back is checked byte for byte against the RTDS and, for the hub's own
alerts, MAC-checked by the head-end with the test DCC's keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from chubcore.paths import vectors_dir
from hil.han_setup import DeviceSpec
from hil.headend.gbcs import parse_frame
from hil.meters import rtds_answers
from hil.meters.esme import EsmeMeter
from hil.meters.gsme import GsmeMeter
from hil.system import EmulatedSystem

ESME_EUI = "00DB1234567890A0"
GSME_EUI = "00DB1234567890A1"
RTDS = vectors_dir() / "gbcs" / "rtds"
ESME_SPEC = DeviceSpec("rtds_esme", ESME_EUI, 1, bytes.fromhex("E5E0C0DE00112233445566778899AA00"))
GSME_SPEC = DeviceSpec("rtds_gsme", GSME_EUI, 0, bytes.fromhex("647EC0DE0102030405060708090A0B00"), sleepy=True)
# the other parties of the RTDS join folders: always-awake tunnel devices
OTHER_SPECS = [DeviceSpec("rtds_a4", "00DB1234567890A4", 5, bytes.fromhex("A4A4C0DE0102030405060708090A0B00")),
               DeviceSpec("rtds_a5", "00DB1234567890A5", 4, bytes.fromhex("A5A5C0DE0102030405060708090A0B00"))]
JOIN_FOLDERS = ["8.7.1_CS03A1", "8.7.1_CS03A2Critical", "8.7.1_CS03CCritical", "8.7.2_CS03A2NonCritical",
                "8.7.2_CS03B", "8.7.2_CS03CNonCritical", "8.8.1_CS04ACCritical", "8.8.2_CS04ACNonCritical",
                "8.8.2_CS04B", "8.9_CS07"]
TOM_FOLDERS = ["1.1.1_GCS01a", "1.2.1_GCS01b", "2.1_GCS05", "3.1_GCS07", "3.3_CS11", "6.6_GCS23", "6.8_GCS25",
               "3.4_GCS44"]
EV_UNKNOWN_RECIPIENT = 0x8FE8
EV_BUFFER_FULL = 0x8FE9
EV_QUEUE_DROPPED = 0x8FEA


def _hex(rel: str) -> bytes:
    return bytes.fromhex((RTDS / rel).read_text().strip())


@pytest.fixture(scope="module")
def sysm(tmp_path_factory: pytest.TempPathFactory, hub_image: Path) -> Iterator[SimpleNamespace]:
    if not RTDS.is_dir():
        pytest.skip("RTDS vectors not available")
    # the board's default heap (1024k): the GPF's use cases load with the
    # first TOM command and take the eighth name pool (docs/proof.md)
    s = EmulatedSystem(tmp_path_factory.mktemp("route") / "sys", image=hub_image, fresh=True)
    s.han_demo = False  # type: ignore[attr-defined]
    s.keep_connection = True
    s.call_timeout = 15
    s.start()
    try:
        han = s.han  # type: ignore[attr-defined]
        s.wait_until(lambda: s.call("han_status")["state"] == "up", 20, "the HAN up")
        specs = [ESME_SPEC, GSME_SPEC, *OTHER_SPECS]
        for spec in specs:
            han.add_device(spec)
            r = s.call("device_log_add", eui=spec.eui, type=spec.dev_type, install_code=spec.install_code_hex,
                       join_timeout=600)
            assert r["code"] == 0, r
            han.power_on(spec.name)
        assert han.wait_joined([x.name for x in specs], 20)
        assert han.wait_hub_joined(s, [x.name for x in specs], 20)
        answers = rtds_answers()

        async def meters() -> tuple[EsmeMeter, GsmeMeter, list[EsmeMeter]]:
            return (EsmeMeter(han.device(ESME_SPEC.name), answers),
                    GsmeMeter(han.device(GSME_SPEC.name), answers, wake_s=None),
                    [EsmeMeter(han.device(x.name), answers) for x in OTHER_SPECS])

        esme, gsme, others = han.run(meters())
        s.call("route_config", esme_timeout_ms=3000, expiry_check_s=1)
        # the GPF's alerts (0x819D, 0x819E) need its own ACB anchor
        s.call("provision_test_dcc", anchors=s.headend.headend.test_dcc_anchors(), device="gpf")  # type: ignore[attr-defined]
        s.wait_until(lambda: s.headend.connected, 20, "the head-end link")  # type: ignore[attr-defined]
        yield SimpleNamespace(system=s, han=han, esme=esme, gsme=gsme, others=others,
                              server=s.headend)  # type: ignore[attr-defined]
    finally:
        s.stop()


def _received_after(server, n: int) -> list[bytes]:  # noqa: ANN001
    return [r.raw for r in server.received[n:]]


def _wake(t: SimpleNamespace) -> int:
    return int(t.han.run(t.gsme.wake()))


def test_unknown_recipient_is_refused_and_logged(sysm: SimpleNamespace) -> None:
    raw = bytearray(_hex("3.3_CS11/CS11_3.3_SUCCESS_COMMAND_GBCS.HEX"))
    i = raw.index(b"\x08" + bytes.fromhex(GSME_EUI))
    raw[i + 1 : i + 9] = bytes.fromhex("00DB1234567890B9")
    assert sysm.server.send_raw(bytes(raw), 15) == "rejected"
    rows = sysm.system.call("logs", which="security")["entries"]
    want = "90b3d51f30010000" + "00db1234567890b9" + "01" + (1000).to_bytes(8, "big").hex()
    assert any(r[1] == EV_UNKNOWN_RECIPIENT and r[2] == want for r in rows), rows[:5]
    assert sysm.system.call("route_status")["buffer"] == {}


def test_esme_round_trip_over_the_wan(sysm: SimpleNamespace) -> None:
    cmd = _hex("8.7.1_CS03A1/CS03A1_8.7.1_SUCCESS_COMMAND_GBCS.HEX")
    rsp = _hex("8.7.1_CS03A1/CS03A1_8.7.1_SUCCESS_RESPONSE_GBCS.HEX")
    n = len(sysm.server.received)
    assert sysm.server.send_raw(cmd, 15) == "done"
    sysm.system.wait_until(lambda: rsp in _received_after(sysm.server, n), 10, "the ESME's response at the head-end")
    assert sysm.esme.received[-1] == cmd
    assert sysm.system.call("route_status")["counters"]["tunnel"] >= 1


def test_esme_switched_off_raises_8f84_without_holding_the_wan(sysm: SimpleNamespace) -> None:
    """The ESME delivery runs in a task of its own: the head-end frame is
    ACKed at once, a CHF command sent right after is answered while the
    exchange with the switched-off ESME is still waiting, and 0x8F84 leaves
    later through the outbox."""
    cmd = _hex("8.7.1_CS03A1/CS03A1_8.7.1_ERROR_COMMAND_GBCS.HEX")
    f = parse_frame(cmd)
    assert f.recipient.hex().upper() == ESME_EUI
    ident = sysm.system.call("identity")
    chf = ident["chf"]["eui"].lower()
    timeout_ms = 4000
    sysm.system.call("route_config", esme_timeout_ms=timeout_ms)
    sysm.esme.silent = True  # hears the command, never answers: the exchange times out
    n = len(sysm.server.received)
    try:
        t0 = time.monotonic()
        assert sysm.server.send_raw(cmd, 15) == "done"
        t_ack = time.monotonic() - t0
        reply = sysm.server.send_command(RTDS / "6.2.4_ECS26i/ECS26i_6.2.4_SUCCESS_COMMAND_GBCS.HEX", timeout=15)
        t_chf = time.monotonic() - t0
        assert reply.frame.cra == 2

        def alert() -> bytes | None:
            for raw in _received_after(sysm.server, n):
                g = parse_frame(raw)
                if g.cra == 3 and g.originator.hex() == chf and g.message_code == 0x00D5:
                    return raw
            return None

        raw = sysm.system.wait_until(alert, 15, "0x8F84 at the head-end")
        t_alert = time.monotonic() - t0
    finally:
        sysm.esme.silent = False
        sysm.system.call("route_config", esme_timeout_ms=3000)
    print(f"\nESME silent: ACK {t_ack * 1000:.0f} ms, CHF response {t_chf * 1000:.0f} ms, "
          f"0x8F84 {t_alert * 1000:.0f} ms")
    assert isinstance(raw, bytes)
    a = sysm.server.headend.verify(raw, cra=3)  # MAC'd by the CHF, checked with the ACB's key
    assert a.message_code == 0x00D5 and a.originator.hex() == chf
    body = f.originator + f.recipient + bytes((1,)) + f.counter.to_bytes(8, "big")
    assert a.payload.endswith(b"\x09\x19" + body), a.payload.hex()
    assert b"\x12\x8f\x84" in a.payload
    # the WAN was not held: the CHF answered before the ESME exchange gave up
    assert t_ack < timeout_ms / 2000 and t_chf < t_alert and t_chf < timeout_ms / 1000 - 1, (t_ack, t_chf, t_alert)
    assert t_alert >= timeout_ms / 1000 - 0.5  # it really waited for the meter
    ev = [r for r in sysm.system.call("logs", which="event")["entries"] if r[1] == 0x8F84]
    assert ev and bytes.fromhex(ev[-1][2]) == body + b"timeout"
    # switched off (no route): 0x8F84 too; the local port's send_gbcs (the
    # HHT) waits for the delivery and gets the alert in hand, as it gets the
    # CHF's alerts
    k = len(ev)
    sysm.han.run(_call(sysm.esme.switch_off))
    try:
        r = sysm.system.call("send_gbcs", frame=cmd.hex(), timeout=20)
        assert r["response"] is None and len(r["alerts"]) == 1, r
        a = parse_frame(bytes.fromhex(r["alerts"][0]))
        assert a.message_code == 0x00D5 and b"\x12\x8f\x84" in a.payload
    finally:
        sysm.han.run(_call(sysm.esme.switch_on))
    ev = [r for r in sysm.system.call("logs", which="event")["entries"] if r[1] == 0x8F84]
    assert len(ev) == k + 1 and bytes.fromhex(ev[-1][2]).startswith(body)


def test_esme_alert_during_an_exchange_is_forwarded_as_an_alert(sysm: SimpleNamespace) -> None:
    cmd = _hex("8.7.1_CS03A1/CS03A1_8.7.1_SUCCESS_COMMAND_GBCS.HEX")
    rsp = _hex("8.7.1_CS03A1/CS03A1_8.7.1_SUCCESS_RESPONSE_GBCS.HEX")
    alert = _with_originator(_hex("NA_CS14/CS14_NA_8F12_ALERT_GBCS.HEX"), ESME_EUI)
    c0 = sysm.system.call("route_status")["counters"]
    sysm.esme.alert_mid_exchange = alert
    n = len(sysm.server.received)
    assert sysm.server.send_raw(cmd, 15) == "done"
    sysm.system.wait_until(lambda: {rsp, alert} <= set(_received_after(sysm.server, n)), 15, "the alert and the response")
    assert sysm.esme.pushed == [alert]
    c1 = sysm.system.call("route_status")["counters"]
    # the alert went out as an alert (a device message), the response as the
    # exchange's answer; without match= the alert would have been taken as
    # the response and the response sent later as a second "response"
    assert c1["emitted_alert"] - c0["emitted_alert"] == 1, (c0, c1)
    assert c1["emitted_response"] - c0["emitted_response"] == 1, (c0, c1)
    assert c1["device_messages"] - c0["device_messages"] == 1
    assert c1["undelivered"] == c0["undelivered"]


def _with_originator(data: bytes, eui_hex: str) -> bytes:
    f = parse_frame(data)
    b = bytearray(data)
    i = data.index(b"\x08" + f.originator)
    b[i + 1 : i + 9] = bytes.fromhex(eui_hex)
    return bytes(b)


async def _call(fn: Callable[[], object]) -> object:
    return fn()


def test_gsme_buffer_get_put_end_to_end(sysm: SimpleNamespace) -> None:
    sysm.gsme.forget_counters()
    cmd = _hex("3.1_GCS07/GCS07_3.1_SUCCESS_COMMAND_GBCS.HEX")
    rsp = _hex("3.1_GCS07/GCS07_3.1_SUCCESS_RESPONSE_GBCS.HEX")
    n = len(sysm.server.received)
    assert sysm.server.send_raw(cmd, 15) == "done"
    st = sysm.system.call("route_status")
    assert st["buffer"] == {GSME_EUI: 1}, st
    assert sysm.system.call("gpf_status")["tunnel_pending"] is True
    assert sysm.gsme.executed == [] or cmd not in sysm.gsme.executed
    assert _wake(sysm) == 1
    assert sysm.gsme.executed[-1] == cmd
    sysm.system.wait_until(lambda: rsp in _received_after(sysm.server, n), 10, "the GSME's response at the head-end")
    assert sysm.system.call("route_status")["buffer"] == {}
    assert sysm.system.call("gpf_status")["tunnel_pending"] is False
    assert _wake(sysm) == 0  # 02 00: nothing left


def test_gsme_get_answer_lost_on_the_radio_is_offered_again(sysm: SimpleNamespace) -> None:
    """The radio loses the hub's answer to the GSME's GET (the NCP reports
    the unicast failed). The GSME times out and GETs again: it must get the
    same command, not a confirmation of a command it never had."""
    sysm.gsme.forget_counters()
    cmd = _hex("3.1_GCS07/GCS07_3.1_SUCCESS_COMMAND_GBCS.HEX")
    rsp = _hex("3.1_GCS07/GCS07_3.1_SUCCESS_RESPONSE_GBCS.HEX")
    n = len(sysm.server.received)
    lost0 = sysm.system.call("route_status")["counters"]["get_answers_lost"]
    ex0 = sysm.gsme.executed.count(cmd)
    assert sysm.server.send_raw(cmd, 15) == "done"
    gsme_eui = bytes.fromhex(GSME_EUI)
    dropped: list[bytes] = []

    def drop_one_get_answer(node, aps, payload: bytes) -> bool:  # noqa: ANN001
        # ZCL: fc, tsn, TransferData (0x01 server->client), tunnel id (2), then 02 count msg...
        if dropped or node.eui != gsme_eui or len(payload) < 8 or payload[2] != 0x01 or payload[5] != 0x02:
            return False
        dropped.append(payload)
        return True

    emu = sysm.han.emu
    emu.han.drop = drop_one_get_answer
    try:
        got = int(sysm.han.run(sysm.gsme.wake(timeout=2.0)))
    finally:
        emu.han.drop = None
    assert len(dropped) == 1, "the GET answer was never sent"
    assert got == 1 and sysm.gsme.executed.count(cmd) == ex0 + 1, sysm.gsme.errors
    sysm.system.wait_until(lambda: rsp in _received_after(sysm.server, n), 10, "the GSME's response at the head-end")
    st = sysm.system.call("route_status")
    assert st["counters"]["get_answers_lost"] == lost0 + 1, st["counters"]
    assert st["buffer"] == {}
    assert _wake(sysm) == 0


def test_gsme_tom_folders_end_to_end(sysm: SimpleNamespace) -> None:
    """Every RTDS GSME TOM command queued, one wake-up: every RTDS response
    and alert of those scenarios reaches the head-end byte for byte."""
    answers = rtds_answers(TOM_FOLDERS)
    cmds = [c for c, a in sorted(answers.items(), key=lambda kv: (kv[1].folder, kv[1].scenario))
            if parse_frame(c).recipient.hex().upper() == GSME_EUI]
    assert len(cmds) >= 20
    sysm.gsme.forget_counters()  # the RTDS counters again: a "new" meter
    n = len(sysm.server.received)
    for c in cmds:
        assert sysm.server.send_raw(c, 15) == "done"
    assert sysm.system.call("route_status")["buffer"] == {GSME_EUI: len(cmds)}
    sysm.gsme.rtds_scenarios = True  # the folders re-use counters across scenarios
    try:
        assert _wake(sysm) == len(cmds)
    finally:
        sysm.gsme.rtds_scenarios = False
    want = [x for c in cmds for x in (answers[c].response, *answers[c].alerts)]
    sysm.system.wait_until(lambda: set(want) <= set(_received_after(sysm.server, n)), 20, "every TOM response and alert")
    got = _received_after(sysm.server, n)
    folders = {answers[c].folder for c in cmds}
    ok = {f for f in folders if all(answers[c].response in got for c in cmds if answers[c].folder == f)}
    print(f"\nGSME TOM folders end to end: {len(ok)} of {len(folders)}")
    assert ok == folders == set(TOM_FOLDERS)
    assert sysm.gsme.executed[-len(cmds):] == cmds  # in the order they were sent


def test_join_folders_are_routed_end_to_end(sysm: SimpleNamespace) -> None:
    """CS03A1/A2/B/C, CS04, CS07: each command goes to its recipient (over
    the tunnel, or the GSME's buffer) and the device's RTDS response reaches
    the head-end unchanged."""
    answers = rtds_answers(JOIN_FOLDERS)
    cmds = sorted(answers, key=lambda c: (answers[c].folder, answers[c].scenario))
    assert {answers[c].folder for c in cmds} == set(JOIN_FOLDERS)
    sysm.gsme.forget_counters()
    n = len(sysm.server.received)
    to_gsme = 0
    for c in cmds:
        assert sysm.server.send_raw(c, 15) == "done", answers[c].scenario
        to_gsme += parse_frame(c).recipient.hex().upper() == GSME_EUI
    sysm.gsme.rtds_scenarios = True
    try:
        assert to_gsme and _wake(sysm) == to_gsme
    finally:
        sysm.gsme.rtds_scenarios = False
    sysm.system.wait_until(lambda: {answers[c].response for c in cmds} <= set(_received_after(sysm.server, n)), 20,
           "every join response")
    got = _received_after(sysm.server, n)
    ok = {f for f in JOIN_FOLDERS if all(answers[c].response in got for c in cmds if answers[c].folder == f)}
    print(f"\njoin folders end to end: {len(ok)} of {len(JOIN_FOLDERS)}")
    assert ok == set(JOIN_FOLDERS)


def test_full_queue_is_refused(sysm: SimpleNamespace) -> None:
    sysm.system.call("route_config", capacity=2)
    try:
        cmd = _hex("3.3_CS11/CS11_3.3_SUCCESS_COMMAND_GBCS.HEX")
        assert [sysm.server.send_raw(cmd, 15) for _ in range(3)] == ["done", "done", "rejected"]
        assert sysm.system.call("route_status")["buffer"] == {GSME_EUI: 2}
        assert any(r[1] == EV_BUFFER_FULL for r in sysm.system.call("logs", which="event")["entries"])
    finally:
        sysm.system.call("route_config", capacity=32)
    sysm.gsme.forget_counters()
    k = len(sysm.gsme.executed)
    assert _wake(sysm) == 2
    # the same command (same originator counter) twice: executed once, refused once
    assert sysm.gsme.executed[k:] == [cmd] and sysm.gsme.refused[-1] == cmd
    # the refused one (no PUT for it) stays in hand until the meter's next GET
    assert sysm.system.call("route_status")["buffer"] == {GSME_EUI: 1}
    assert _wake(sysm) == 0
    assert sysm.system.call("route_status")["buffer"] == {}


def test_gsme_that_never_wakes_gets_819d(sysm: SimpleNamespace) -> None:
    sysm.system.call("route_config", expiry_s=2)
    try:
        cmd = _hex("6.6_GCS23/GCS23_6.6_SUCCESS_COMMAND_GBCS.HEX")
        n = len(sysm.server.received)
        assert sysm.server.send_raw(cmd, 15) == "done"
        ident = sysm.system.call("identity")

        def alert() -> bytes | None:
            for raw in _received_after(sysm.server, n):
                f = parse_frame(raw)
                if f.cra == 3 and f.originator.hex() == ident["gpf"]["eui"].lower() and f.payload[3:5] == b"\x81\x9d":
                    return raw
            return None

        raw = sysm.system.wait_until(alert, 10, "0x819D at the head-end")
        assert isinstance(raw, bytes)
        sysm.server.headend.verify(raw, cra=3)
        f = parse_frame(cmd)
        want = (f.originator + f.recipient + b"\x01" + f.counter.to_bytes(8, "big")).hex()
        assert any(r[1] == 0x819D and r[2] == want for r in sysm.system.call("logs", which="event")["entries"])
        assert sysm.system.call("route_status")["buffer"] == {}
    finally:
        sysm.system.call("route_config", expiry_s=86400)
    assert _wake(sysm) == 0  # the expired command is not delivered late


def test_buffer_survives_a_power_cut(sysm: SimpleNamespace) -> None:
    """The GSME got the first command and executed it, then the hub lost
    power before the meter's PUT or next GET: the command is still on flash
    and offered again after the restart; the meter refuses it by its
    originator counter. Nothing lost, nothing executed twice, the response
    at the head-end once."""
    # counters 1000, 1001, 1002 from the same originator (the meter executes
    # only increasing counters)
    cmds = [_hex("3.3_CS11/CS11_3.3_SUCCESS_COMMAND_GBCS.HEX"), _hex("3.4_GCS44/GCS44_3.4_SUCCESS_COMMAND_GBCS.HEX"),
            _hex("6.8_GCS25/GCS25_6.8_SUCCESS_COMMAND_GBCS.HEX")]
    answers = rtds_answers(["3.4_GCS44", "6.8_GCS25", "3.3_CS11"])
    sysm.gsme.forget_counters()
    n = len(sysm.server.received)
    for c in cmds:
        assert sysm.server.send_raw(c, 15) == "done"
    k = len(sysm.gsme.executed)
    r = len(sysm.gsme.refused)
    assert int(sysm.han.run(sysm.gsme.wake(max_commands=1, put=False))) == 1
    assert sysm.gsme.executed[k:] == cmds[:1] and sysm.gsme.held
    assert sysm.system.call("route_status")["buffer"] == {GSME_EUI: 3}  # in hand, not confirmed
    sysm.system.reboot(power_cut=True)
    sysm.system.drop_connection()
    assert sysm.system.call("route_status")["buffer"] == {GSME_EUI: 3}
    sysm.system.wait_until(lambda: sysm.system.call("han_status")["state"] == "up", 20, "the HAN up again")
    # the held PUT goes first (the hub had nothing in hand after the restart),
    # then GETs: the first command again (refused), then the other two
    assert _wake(sysm) == 3
    assert sysm.gsme.refused[r:] == cmds[:1]
    assert sysm.gsme.executed[k:] == cmds
    assert _wake(sysm) == 0
    assert sysm.system.call("route_status")["buffer"] == {}
    want = [answers[c].response for c in cmds]
    sysm.system.wait_until(lambda: set(want) <= set(_received_after(sysm.server, n)), 15, "the three responses")
    got = _received_after(sysm.server, n)
    assert [got.count(w) for w in want] == [1, 1, 1]


def test_hht_send_gbcs_of_a_gsme_command_says_buffered(sysm: SimpleNamespace, tmp_path: Path) -> None:
    """`chub hht send-gbcs` of a GSME command: the hub buffers it (no
    response now); the CLI says so instead of crashing, and writes no
    response file."""
    from click.testing import CliRunner

    from chub.cli import main

    sysm.gsme.forget_counters()
    cmd = _hex("3.1_GCS07/GCS07_3.1_SUCCESS_COMMAND_GBCS.HEX")
    (tmp_path / "gsme.hex").write_text(cmd.hex())
    sysm.system.drop_connection()  # the CLI opens its own installer session
    r = CliRunner().invoke(main, ["hht", "--port", sysm.system.local_port_url, "--timeout", "20", "send-gbcs",
                                  "--in", str(tmp_path / "gsme.hex"), "--out", str(tmp_path / "rsp.hex")])
    assert r.exit_code == 0, r.output
    assert "buffered" in r.output and not (tmp_path / "rsp.hex").exists()
    assert sysm.system.call("route_status")["buffer"] == {GSME_EUI: 1}
    assert _wake(sysm) == 1  # the GSME collects it and PUTs its response
    sysm.system.wait_until(lambda: sysm.system.call("route_status")["buffer"] == {}, 10, "the buffer drained")


def test_removed_device_queue_is_dropped(sysm: SimpleNamespace) -> None:
    cmd = _hex("3.3_CS11/CS11_3.3_SUCCESS_COMMAND_GBCS.HEX")
    assert sysm.server.send_raw(cmd, 15) == "done"
    assert sysm.system.call("route_status")["buffer"] == {GSME_EUI: 1}
    assert sysm.system.call("device_log_remove", eui=GSME_EUI)["code"] == 0
    assert sysm.system.call("route_status")["buffer"] == {}
    assert any(r[1] == EV_QUEUE_DROPPED for r in sysm.system.call("logs", which="event")["entries"])
    assert sysm.server.send_raw(cmd, 15) == "rejected"  # no longer in the Device Log
