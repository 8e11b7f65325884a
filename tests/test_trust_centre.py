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


# ---- the commands that adopt a join the hub never recorded ------------------

MP_DECODE = r"""
import json, sys
from binascii import unhexlify, hexlify
from han import ezsp_frames as F
out = []
for ver, name, rsp in json.loads(sys.stdin.read()):
    fid, tx, rx = F.lookup(ver, name)
    v = F.decode_params(ver, rx, unhexlify(rsp), 0, True)
    out.append([fid, [hexlify(x).decode() if isinstance(x, bytes) else x for x in v]])
print(json.dumps(out))
"""


@pytest.mark.parametrize("version", [8, 13, 14])
def test_key_table_and_lookup_frames_against_bellows(version: int) -> None:
    """lookupEui64ByNodeId and the key-table reads (v8 findKeyTableEntry +
    getKeyTableEntry, v13/v14 exportLinkKeyByEui): the emulator's responses
    parse completely with bellows' tables, the firmware decodes the same bytes
    to the same EUI-64, key and status, and both use bellows' frame ids."""
    import json

    import bellows.types as t
    from bellows.ezsp.v8.commands import COMMANDS as C8
    from bellows.ezsp.v13.commands import COMMANDS as C13
    from bellows.ezsp.v14.commands import COMMANDS as C14
    from zigpy.types import EUI64

    from hil.ncp.emulator import ID
    from mpy import run_mp

    table = {8: C8, 13: C13, 14: C14}[version]
    eui, other = bytes.fromhex("70B3D5C11D000003"), bytes.fromhex("70B3D5C1E5E00001")
    key = install_code_key(b"IHD-code")
    emu = NcpEmulator(version, Han())
    emu.network_up = True
    emu.add_node(Node(eui=eui, link_key=key, node_id=0x2002, joined=True))
    emu.han.key_table[other] = bytes(16)
    emu.han.key_table[eui] = key

    def ask(name: str, **params: object) -> bytes:
        fid, tx, _rx = table[name]
        assert ID[name] == fid, name
        args = b"".join(tx[k](v).serialize() for k, v in params.items())
        return getattr(emu, "_c_" + name)(args)

    def e64(b: bytes) -> EUI64:
        return EUI64(b[::-1])

    asks: list[tuple[str, bytes]] = [("lookupEui64ByNodeId", ask("lookupEui64ByNodeId", nodeId=0x2002)),
                                     ("lookupEui64ByNodeId", ask("lookupEui64ByNodeId", nodeId=0x2003))]
    if version == 8:
        asks.append(("findKeyTableEntry", ask("findKeyTableEntry", address=e64(eui), linkKey=True)))
        asks.append(("getKeyTableEntry", ask("getKeyTableEntry", index=1)))
    else:
        asks.append(("exportLinkKeyByEui", ask("exportLinkKeyByEui", eui64=e64(eui))))
        asks.append(("exportLinkKeyByEui", ask("exportLinkKeyByEui", eui64=e64(bytes(8)))))
    bl = []
    for name, rsp in asks:
        vals, rest = t.deserialize_dict(rsp, table[name][2])
        assert rest == b"", name
        bl.append(vals)
    r = run_mp(code=MP_DECODE, stdin=json.dumps([[version, n, rsp.hex()] for n, rsp in asks]).encode())
    assert r.returncode == 0, r.stderr + r.stdout
    fw = json.loads(r.stdout)
    for (name, _rsp), (fid, _v) in zip(asks, fw, strict=True):
        assert fid == table[name][0], name
    # lookupEui64ByNodeId: found / not found
    assert bl[0]["status"] == 0 and bl[0]["eui64"] == e64(eui) and fw[0][1] == [0, eui.hex()]
    assert bl[1]["status"] != 0 and fw[1][1][0] != 0
    if version == 8:
        assert bl[2]["index"] == 1 and fw[2][1] == [1]
        ks = bl[3]["keyStruct"]
        assert bl[3]["status"] == 0 and bytes(ks.key) == key and ks.partnerEUI64 == e64(eui)
        assert fw[3][1][0] == 0 and fw[3][1][3] == key.hex() and fw[3][1][7] == eui.hex()
    elif version == 13:
        assert bl[2]["status"] == 0 and bytes(bl[2]["plaintext_key"]) == key and bl[2]["index"] == 1
        assert fw[2][1][0] == key.hex() and fw[2][1][6] == 0
        assert bl[3]["status"] != 0 and fw[3][1][6] != 0
    else:
        b = bl[2]
        assert b["status"] == 0 and bytes(b["plaintext_key"]) == key and b["context"].eui64 == e64(eui)
        assert fw[2][1][0] == 0 and fw[2][1][4] == eui.hex() and fw[2][1][8] == key.hex()
        assert bl[3]["status"] != 0 and fw[3][1][0] != 0
