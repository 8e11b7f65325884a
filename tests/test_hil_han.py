"""HIL: the HAN end to end. The hub (built image, under micropython, on the
emulated board) drives the rig's NCP emulator: it forms the network on the
quietest channel, devices added with `chub hht device-log add` join with
their install codes, a device that is not whitelisted and one holding the
wrong install code are refused and appear in `chub hht logs --which
security`; after a power cut the hub resumes the same network (networkInit,
no scan, no formNetwork) with its Device Log; after an NCP reboot mid-session
it recovers on its own. The devices' link keys come from the emulator's own
CPython AES-MMO, independent of the firmware's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from chub.cli import main
from hil.han_setup import DEVICES, QUIET_CHANNEL, DeviceSpec
from hil.system import EmulatedSystem

EV_UNKNOWN_JOIN = 0x8F3E  # codes.EV_UNKNOWN_JOIN
EV_JOIN_BAD_KEY = 0x8F53  # codes.EV_JOIN_BAD_KEY
INTRUDER = "70B3D5C1BAD00005"
WRONG = DeviceSpec("wrong", "70B3D5C1BAD00006", 5, bytes.fromhex("00112233445566778899AABBCCDDEEFF"),
                   device_code=bytes.fromhex("FFEEDDCCBBAA99887766554433221100"))


def _system(tmp: Path, image: Path, demo: bool, version: int = 13) -> EmulatedSystem:
    # the board's default heap (docs/proof.md, the qstr trap)
    s = EmulatedSystem(tmp, image=image, fresh=True)
    s.han_demo = demo  # type: ignore[attr-defined]
    s.han_version = version  # type: ignore[attr-defined]
    return s


@pytest.fixture
def plain(tmp_path: Path, hub_image: Path) -> Iterator[EmulatedSystem]:
    s = _system(tmp_path / "sys", hub_image, demo=False).start()
    yield s
    s.stop()


def _cli(system: EmulatedSystem, *args: str) -> dict:
    r = CliRunner().invoke(main, ["hht", "--port", system.local_port_url, *args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output.strip().splitlines()[-1])


def _up(system: EmulatedSystem) -> dict:
    return system.wait_until(lambda: (st := system.call("han_status"))["state"] == "up" and st, 20, "the HAN up")  # type: ignore[return-value]


def _joined(system: EmulatedSystem) -> set[str]:
    return {e["eui"] for e in _cli(system, "device-log", "list")["entries"] if e["join_state"] == "joined"}


def _security(system: EmulatedSystem) -> list[tuple[int, str]]:
    return [(e[1], e[2].upper()) for e in _cli(system, "logs", "--which", "security")["entries"]]


def test_whitelist_joins_refusals_and_power_cut(plain: EmulatedSystem) -> None:
    han = plain.han
    st = _up(plain)
    # formed on the quietest channel of the emulator's energy scan
    assert st["channel"] == QUIET_CHANNEL == han.network["channel"]
    assert st["pan_id"] == han.network["pan_id"] and st["ext_pan_id"].upper() == han.network["ext_pan_id"]
    assert han.commands.count("formNetwork") == 1 and "startScan" in han.commands
    # three devices whitelisted through the HHT CLI join with their install
    # codes; a fourth log entry (WRONG) keeps joining open meanwhile
    han.add_device(WRONG)
    three = ["esme", "gsme", "ihd"]
    for spec in [DEVICES[n] for n in three] + [WRONG]:
        r = _cli(plain, "device-log", "add", "--eui", spec.eui, "--type", str(spec.dev_type),
                 "--install-code", spec.install_code_hex, "--join-timeout", "600")
        assert r["code"] == 0
    for name in three:
        han.power_on(name)
    assert han.wait_joined(three, 10)
    want = {DEVICES[n].eui for n in three}
    plain.wait_until(lambda: want <= _joined(plain), 10, "the hub to record the joins")
    assert plain.call("han_status")["node_count"] == 3
    # the PPMID is not whitelisted: it cannot join even with its own code
    han.power_on("ppmid")
    plain.wait_until(lambda: han.devices["ppmid"]["state"] in ("refused", "gave up"), 10, "the PPMID refused")
    assert not han.devices["ppmid"]["joined"]
    assert han.unknown_join(INTRUDER) == "refused"
    sec = plain.wait_until(lambda: (s := _security(plain)) and (EV_UNKNOWN_JOIN, INTRUDER) in s and s, 10, "security log")
    assert (EV_UNKNOWN_JOIN, DEVICES["ppmid"].eui) in sec  # type: ignore[operator]
    # a whitelisted device holding the wrong install code is refused and logged
    han.power_on("wrong")
    plain.wait_until(lambda: (EV_JOIN_BAD_KEY, WRONG.eui) in _security(plain), 10, "the wrong-key refusal")
    assert not han.devices["wrong"]["joined"] and WRONG.eui not in _joined(plain)
    assert _joined(plain) == want
    # a joined device talks: the hub records its link quality
    assert han.send("esme", bytes((0x18, 0x02, 0x0A, 0, 0, 0x20, 3)))
    row = plain.wait_until(lambda: next((e for e in _cli(plain, "device-log", "list")["entries"]
                                         if e["eui"] == DEVICES["esme"].eui and e["rssi"]), None), 5, "ESME stats")
    rssi, lqi = han.nodes["esme"].rssi, han.nodes["esme"].lqi
    assert row["rssi"] == [rssi] * 3 and row["lqi"] == [lqi] * 3 and row["last_comm"]  # type: ignore[index]

    # power cut: the hub comes back on the same network without re-forming it
    net = dict(han.network)
    mark = len(han.commands)
    connections = han.connections
    plain.reboot(power_cut=True)
    st = _up(plain)
    after = han.commands[mark:]
    assert han.connections == connections + 1
    assert "networkInit" in after and "formNetwork" not in after and "startScan" not in after
    assert (st["channel"], st["pan_id"]) == (net["channel"], net["pan_id"]) and han.network == net
    # still joined in the log, but not heard since the hub started: it says so
    rows = {e["eui"]: e["join_state"] for e in _cli(plain, "device-log", "list")["entries"]}
    assert {e for e, js in rows.items() if js == "not heard since start"} == want and not _joined(plain)
    assert sorted(plain.call("han_status")["not_heard"]) == sorted(want)
    # a device heard again is joined again
    assert han.send("esme", bytes((0x18, 0x04, 0x0A, 0, 0, 0x20, 3)))
    plain.wait_until(lambda: DEVICES["esme"].eui in _joined(plain), 5, "the ESME heard again")
    # the device log's join windows are still served: the keys are back in the NCP
    key_cmd = "importTransientKey"
    plain.wait_until(lambda: key_cmd in han.commands[mark:], 5, "the join keys re-imported")


@pytest.mark.parametrize("version", [14])
def test_demo_han_and_ncp_reset(tmp_path: Path, hub_image: Path, version: int) -> None:
    s = _system(tmp_path / "sys", hub_image, demo=True, version=version).start()
    try:
        han = s.han
        # the demo system (what `chub sim` shows): four devices joined
        assert _joined(s) == {d.eui for d in DEVICES.values()}
        st = _up(s)
        assert st["ezsp_version"] == version and st["node_count"] == 4 and st["restarts"] == 0
        status = s.call("status")
        assert status["han"]["state"] == "up" and status["jobs"]["han"]["state"] == "running"
        mark = len(han.commands)
        han.reset_ncp()  # unsolicited RSTACK mid-session
        s.wait_until(lambda: s.call("han_status")["restarts"] >= 1, 10, "the coordinator to notice")
        st = _up(s)
        after = han.commands[mark:]
        assert "networkInit" in after and "formNetwork" not in after and "startScan" not in after
        assert st["counters"]["ncp_resets"] == 1 and st["counters"]["hard_resets"] == 0
        assert st["channel"] == han.network["channel"] and st["node_count"] == 4
        # the link works again: a message from the IHD reaches the Device Log
        before = st["counters"]["rx"]
        assert han.send("ihd", bytes((0x18, 0x03, 0x0A, 0, 0, 0x20, 3)))
        s.wait_until(lambda: s.call("han_status")["counters"]["rx"] > before, 5, "the IHD's message")
    finally:
        s.stop()
