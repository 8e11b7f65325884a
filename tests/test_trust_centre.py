"""The firmware trust centre (han.trust_centre + chf.device_log + Ezsp + Ash,
under micropython) against the rig's NCP emulator over TCP loopback: three
devices join with their install codes; an unknown device, a wrong install
code and a join after the window closed are refused and logged; the device
log survives a remount. The NCP side computes the devices' link keys with
the emulator's own CPython AES-MMO (independent of the firmware's)."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest

from hil.ncp.emulator import Han, NcpEmulator, Node, install_code_key
from mpy import run_rig_scenario

# name: (EUI, device type or "-" for not in the Device Log, install code the
# hub is given, install code the device holds)
DEVICES = {
    "esme": ("00DB1234567890A0", "1", b"0123456789ABCDEF", b"0123456789ABCDEF"),
    "gsme": ("00DB1234567890B0", "0", bytes(range(16)), bytes(range(16))),
    "ihd": ("00DB1234567890D0", "6", b"IHD-code", b"IHD-code"),
    "wrongkey": ("00DB1234567890E0", "5", b"ppmid-right-code", b"ppmid-wrong-code"),
    "intruder": ("00DB1234567890F0", "-", b"\x99" * 16, b"\x99" * 16),
}
# the PPMID again, this time holding the right code
LATE = ("00DB1234567890E0", b"ppmid-right-code")


def _tc_join_cb(node_id: int, eui: bytes, status: int, decision: int) -> bytes:
    return struct.pack("<H", node_id) + eui[::-1] + bytes((status, decision)) + struct.pack("<H", 0)


async def _session(version: int, tmp: str) -> tuple[NcpEmulator, str]:
    han = Han()
    emu = NcpEmulator(version, han)
    port = await emu.start()
    nodes = {n: Node(eui=bytes.fromhex(e), link_key=install_code_key(dev)) for n, (e, _t, _h, dev) in DEVICES.items()}
    nodes["late"] = Node(eui=bytes.fromhex(LATE[0]), link_key=install_code_key(LATE[1]))
    spec = ";".join(f"{n},{e},{t},{h.hex()}" for n, (e, t, h, _d) in DEVICES.items())
    loop = asyncio.get_running_loop()

    def answer(words: list[str]) -> str:
        cmd, arg = words[0], (words[1] if len(words) > 1 else "")
        if cmd == "join":
            # a refusal while joining is open is reported by the emulator
            # itself (DENY_JOIN), as EmberZNet does
            return str(int(emu.join(nodes[arg])))
        if cmd == "stale":  # an NCP that still holds a key for it
            emu.transient_keys[nodes[arg].eui] = nodes[arg].link_key
            return str(int(emu.join(nodes[arg])))
        if cmd == "rejoin":  # secured rejoin of a joined device
            n = nodes[arg]
            assert n.joined and n.node_id is not None
            emu.callback("trustCenterJoinHandler", _tc_join_cb(n.node_id, n.eui, 0, 0))
            return "1"
        if cmd == "permit":
            return str(int(loop.time() < emu.permit_until))
        if cmd == "keys":
            return str(len(emu.transient_keys))
        return "?"

    try:
        rc, text = await run_rig_scenario(
            "import mp_device_log; mp_device_log.scenario_tc()", answer,
            env={"NCP_PORT": str(port), "TC_DEVICES": spec}, cwd=Path(tmp), heap="512k", timeout=30)
    finally:
        await emu.stop()
    assert rc == 0 and "SCENARIO OK" in text, text
    return emu, text


@pytest.mark.parametrize("version", [8, 14])
def test_trust_centre_against_emulator(version: int, tmp_path) -> None:
    emu, _text = asyncio.run(_session(version, str(tmp_path)))
    joined = {n.eui.hex().upper() for n in emu.han.nodes.values() if n.joined}
    # the emulator saw exactly the three whitelisted devices (and the two the
    # firmware then refused: the stale-key intruder and the late PPMID) join
    assert {"00DB1234567890A0", "00DB1234567890B0", "00DB1234567890D0"} <= joined
    key_cmd = "importTransientKey" if version >= 13 else "addTransientLinkKey"
    assert emu.log.count(key_cmd) >= 5
    assert "clearTransientLinkKeys" in emu.log and "broadcastNextNetworkKey" in emu.log
