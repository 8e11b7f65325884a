"""Firmware EZSP codec (han.ezsp_frames, under micropython) against the
bellows-generated vectors and against bellows' own serialisers."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import bellows.types as t
import zigpy.types as zt
from bellows.ezsp.v8.commands import COMMANDS as C8
from bellows.ezsp.v13.commands import COMMANDS as C13
from bellows.ezsp.v14.commands import COMMANDS as C14

from mpy import run_mp

TABLES = {8: C8, 13: C13, 14: C14}
NAMES = [
    "version", "getConfigurationValue", "setConfigurationValue", "setPolicy", "setValue", "getValue",
    "getEui64", "getNodeId", "networkInit", "networkState", "getNetworkParameters",
    "setInitialSecurityState", "formNetwork", "startScan", "energyScanResultHandler",
    "scanCompleteHandler", "permitJoining", "leaveNetwork", "importTransientKey", "addTransientLinkKey",
    "clearTransientLinkKeys", "sendUnicast", "incomingMessageHandler", "messageSentHandler",
    "trustCenterJoinHandler", "stackStatusHandler", "broadcastNextNetworkKey",
    "broadcastNetworkKeySwitch", "setExtendedTimeout", "invalidCommand", "removeDevice", "sendReply",
]

MP_VECTORS = r"""
import json, sys
from binascii import unhexlify, hexlify
from han import ezsp_frames as F
from han import peer
cases = json.loads(sys.stdin.read())
out = []
for c in cases:
    ver = c["ver"]; raw = unhexlify(c["frame"])
    seq, fc, name, vals = peer.ezsp_decode_frame(ver, raw)
    sch = F.lookup(ver, name)[2 if fc & 0x80 else 1]
    again = hexlify(F.encode_frame(ver, seq, name, vals, fc)).decode().upper()
    fields = [hexlify(F.encode_params(ver, s, [v], bytearray())).decode().upper() for s, v in zip(sch, vals)]
    out.append([name, seq, fc, again, fields])
print(json.dumps(out))
"""


def _mp(code: str, data: Any) -> Any:
    r = run_mp(code=code, stdin=json.dumps(data).encode(), heap="2m")
    assert r.returncode == 0, r.stderr.decode() + r.stdout.decode()
    return json.loads(r.stdout)


def test_every_ezsp_vector_byte_exact(vectors: Path) -> None:
    frames = json.loads((vectors / "zigbee" / "vectors.json").read_text())["ezsp"]["frames"]
    cases = [{"ver": f["ezsp_version"], "frame": f["frame"]} for f in frames]
    got = _mp(MP_VECTORS, cases)
    assert len(got) == len(frames) == 68
    for f, (name, seq, fc, again, fields) in zip(frames, got, strict=True):
        assert name == f["command"], f["name"]
        assert seq == f["header"]["sequence"]
        fc_v = f["header"].get("frame_control_low", f["header"].get("frame_control"))
        assert fc == int(fc_v, 16)
        assert again == f["frame"], f["name"]
        assert fields == [p["hex"] for p in f["parameters"]], f["name"]


# ---- round trips through bellows' serialisers ------------------------------

def _rand_value(typ: Any, rng: random.Random) -> tuple[Any, Any]:
    """(firmware value, bellows value) for one bellows schema type."""
    if issubclass(typ, (zt.EUI64, t.ExtendedPanId)):
        b = rng.randbytes(8)
        return b.hex(), typ(b[::-1])
    if issubclass(typ, zt.KeyData):
        b = rng.randbytes(16)
        return b.hex(), typ(b)
    if issubclass(typ, zt.LVBytes):
        b = rng.randbytes(rng.randrange(0, 40))
        return b.hex(), typ(b)
    if issubclass(typ, t.EmberApsFrame):
        v = [rng.randrange(65536), rng.randrange(65536), rng.randrange(256), rng.randrange(256),
             rng.choice([0, 0x20, 0x40, 0x160]), rng.randrange(65536), rng.randrange(256)]
        return v, t.EmberApsFrame(*v)
    if issubclass(typ, t.EmberNetworkParameters):
        xp, xpb = _rand_value(t.ExtendedPanId, rng)
        v = [xp, rng.randrange(65536), rng.randrange(256), rng.randrange(11, 27), 0, rng.randrange(65536),
             rng.randrange(256), rng.randrange(1 << 27) << 5 & 0x07FFF800]
        return v, t.EmberNetworkParameters(xpb, t.EmberPanId(v[1]), v[2], v[3], t.EmberJoinMethod(0),
                                           t.EmberNodeId(v[5]), v[6], t.Channels(v[7]))
    if issubclass(typ, t.EmberInitialSecurityState):
        k1, k1b = _rand_value(zt.KeyData, rng)
        k2, k2b = _rand_value(zt.KeyData, rng)
        e, eb = _rand_value(zt.EUI64, rng)
        bm, seq = 0x0B44, rng.randrange(256)
        return [bm, k1, k2, seq, e], t.EmberInitialSecurityState(
            t.EmberInitialSecurityBitmask(bm), k1b, k2b, seq, eb)
    if issubclass(typ, zt.int_t):
        n = typ._bits
        v = rng.randrange(-(1 << (n - 1)), 1 << (n - 1))
        return v, typ(v)
    if issubclass(typ, zt.uint_t) or hasattr(typ, "_bits"):
        v = rng.randrange(1 << typ._bits)
        return v, typ(v)
    # enums / flags: pick a defined member
    members = list(typ)
    m = rng.choice(members)
    return int(m), m


MP_ENCODE = r"""
import json, sys
from binascii import unhexlify, hexlify
from han import ezsp_frames as F
def conv(v):
    if isinstance(v, str):
        return unhexlify(v)
    if isinstance(v, list):
        return tuple(conv(x) for x in v)
    return v
out = []
for ver, name, resp, vals in json.loads(sys.stdin.read()):
    sch = F.lookup(ver, name)[2 if resp else 1]
    b = F.encode_params(ver, sch, [conv(v) for v in vals], bytearray())
    back = F.decode_params(ver, sch, b, 0, True)
    out.append([hexlify(b).decode(), back == tuple(conv(v) for v in vals)])
print(json.dumps(out))
"""


def test_round_trips_against_bellows_serialisers() -> None:
    rng = random.Random(1234)
    cases: list[list[Any]] = []
    expect: list[tuple[str, bytes, dict[str, Any]]] = []
    for ver, table in TABLES.items():
        for name in NAMES:
            if name not in table:
                continue
            _id, tx, rx = table[name]
            for resp, schema in ((False, tx), (True, rx)):
                if name.endswith("Handler") and not resp:
                    continue
                for _ in range(4):
                    fw_vals, bl_vals = [], {}
                    for field, typ in schema.items():
                        if name == "version" and field == "desiredProtocolVersion":
                            fw, bl = ver, zt.uint8_t(ver)
                        else:
                            fw, bl = _rand_value(typ, rng)
                        fw_vals.append(fw)
                        bl_vals[field] = bl
                    cases.append([ver, name, resp, fw_vals])
                    expect.append((f"v{ver} {name} {'rx' if resp else 'tx'}", _ser(bl_vals, schema), schema))
    got = _mp(MP_ENCODE, cases)
    assert len(got) == len(expect)
    for (label, want, schema), (hexed, round_ok) in zip(expect, got, strict=True):
        assert bytes.fromhex(hexed) == want, label
        assert round_ok, label
        # and bellows parses the firmware's bytes completely
        _vals, rest = t.deserialize_dict(bytes.fromhex(hexed), schema)
        assert rest == b"", label
    assert len(got) >= 250, len(got)
    print(f"bellows round trips: {len(got)} frames")


def _ser(values: dict[str, Any], schema: dict[str, Any]) -> bytes:
    return b"".join(schema[k](v).serialize() if not isinstance(v, schema[k]) else v.serialize()
                    for k, v in values.items())


MP_IDS = r"""
import json, sys
from han import ezsp_frames as F
out = {}
for ver, name in json.loads(sys.stdin.read()):
    try:
        out["%d %s" % (ver, name)] = F.lookup(ver, name)[0]
    except F.EzspError:
        out["%d %s" % (ver, name)] = None
print(json.dumps(out))
"""


def test_frame_ids_match_bellows_command_tables() -> None:
    """Every command the firmware knows has bellows' frame id at v8, v13 and
    v14 (removeDevice 0xA8 and sendReply 0x39 among them)."""
    asks = [[ver, name] for ver in TABLES for name in NAMES]
    got = _mp(MP_IDS, asks)
    for ver, table in TABLES.items():
        for name in NAMES:
            fw = got[f"{ver} {name}"]
            if name in table:
                assert fw == table[name][0], (ver, name, fw)
            else:
                assert fw is None, (ver, name)
    assert got["14 removeDevice"] == 0xA8 and got["8 removeDevice"] == 0xA8
