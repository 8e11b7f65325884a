"""The emulated devices' own ZCL/APS coding (hil/devices/zcl.py) against
zigpy's serialisers: headers, Read Attributes and its response, Report
Attributes, Default Response, and the Tunneling commands (zigpy has no
Tunneling command schemas, so their fields are serialised with zigpy's
types in the SE 1.4 layout); and against the captured Time vectors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import zigpy.types as t
from zigpy.zcl import foundation as f

from hil.devices import zcl as Z


def _hdr(tsn: int, cmd: int, cluster_specific: bool, from_server: bool, no_dr: bool) -> bytes:
    fc = f.FrameControl(frame_type=f.FrameType.CLUSTER_COMMAND if cluster_specific else f.FrameType.GLOBAL_COMMAND,
                        is_manufacturer_specific=False,
                        direction=f.Direction.Server_to_Client if from_server else f.Direction.Client_to_Server,
                        disable_default_response=no_dr, reserved=0)
    return f.ZCLHeader(frame_control=fc, tsn=tsn, command_id=cmd).serialize()


def test_global_commands_match_zigpy() -> None:
    rng = random.Random(7)
    for _ in range(30):
        tsn = rng.randrange(256)
        ids = [rng.randrange(0x10000) for _ in range(rng.randint(1, 6))]
        want = _hdr(tsn, 0x00, False, False, False) + b"".join(t.uint16_t(a).serialize() for a in ids)
        assert Z.read_attributes(tsn, ids) == want
        # a response mixing every emulated type with unsupported attributes
        recs: list[tuple[int, int, int, object]] = []
        zrecs = []
        for a in ids:
            if rng.random() < 0.25:
                recs.append((a, Z.UNSUPPORTED_ATTRIBUTE, 0, None))
                zrecs.append(f.ReadAttributeRecord(a, f.Status.UNSUPPORTED_ATTRIBUTE))
                continue
            tid = rng.choice([0x10, 0x18, 0x19, 0x1B, 0x20, 0x21, 0x23, 0x28, 0x29, 0x2B, 0x30, 0x31, 0xE2, 0x42,
                              0x41])
            if tid in (0x41, 0x42):
                raw = bytes(rng.randrange(32, 127) for _ in range(rng.randint(0, 20)))
                v: object = raw.decode() if tid == 0x42 else raw
                zv: object = t.CharacterString(raw.decode()) if tid == 0x42 else t.LVBytes(raw)
            else:
                fmt = Z._FIXED[tid]
                bits = {"B": 8, "H": 16, "I": 32, "b": 8, "h": 16, "i": 32}[fmt[1]]
                v = rng.randrange(1 << bits) - ((1 << (bits - 1)) if fmt[1].islower() else 0)
                if tid == 0x10:
                    v = rng.randrange(2)
                zv = f.DataType.from_type_id(tid).python_type(v)
            recs.append((a, 0, tid, v))
            zrecs.append(f.ReadAttributeRecord(a, f.Status.SUCCESS, f.TypeValue(tid, zv)))
        rsp = Z.read_attributes_rsp(tsn, recs)
        assert rsp == _hdr(tsn, 0x01, False, True, True) + b"".join(r.serialize() for r in zrecs)
        # and the device parses zigpy's bytes back
        got = Z.parse_read_attributes_rsp(b"".join(r.serialize() for r in zrecs))
        for a, st, tid, v in recs:
            assert got[a] == ((st, tid, v) if st == 0 else (st, None, None))
    rep = Z.report_attributes(9, [(0x0000, 0x20, 3), (0x0400, 0x23, 70000)])
    attrs = [f.Attribute(0x0000, f.TypeValue(0x20, t.uint8_t(3))),
             f.Attribute(0x0400, f.TypeValue(0x23, t.uint32_t(70000)))]
    assert rep == _hdr(9, 0x0A, False, True, True) + b"".join(x.serialize() for x in attrs)


def test_default_response_matches_zigpy() -> None:
    req = Z.parse(_hdr(0x31, 0x00, True, False, False) + b"\x01")
    want = _hdr(0x31, 0x0B, False, True, True) + f.DefaultResponse(command_id=0, status=f.Status.UNSUP_CLUSTER_COMMAND
                                                                   ).serialize()
    assert Z.default_rsp(req, Z.UNSUP_CLUSTER_COMMAND) == want
    assert Z.default_rsp(Z.parse(_hdr(1, 0x00, False, False, True)), Z.SUCCESS) is None  # disabled
    assert Z.default_rsp(Z.parse(_hdr(1, 0x0B, False, True, True) + b"\x00\x00"), 0x81) is None  # never to a DR


def test_tunneling_commands_in_the_se_layout() -> None:
    # RequestTunnel: enum8 protocol, uint16 manufacturer, bool flow control, uint16 max incoming
    assert Z.request_tunnel(5, 6, 0xFFFF, False, 1500) == (
        _hdr(5, 0x00, True, False, False) + t.enum8(6).serialize() + t.uint16_t(0xFFFF).serialize()
        + t.Bool(False).serialize() + t.uint16_t(1500).serialize())
    # RequestTunnelResponse: uint16 id, enum8 status, uint16 max incoming
    assert Z.request_tunnel_rsp(6, 0x0102, 0, 1200) == (
        _hdr(6, 0x00, True, True, True) + t.uint16_t(0x0102).serialize() + t.enum8(0).serialize()
        + t.uint16_t(1200).serialize())
    # TransferData (both directions): uint16 id, then the octets (no length)
    data = bytes(range(40))
    assert Z.transfer_data(7, 3, data, False) == _hdr(7, 0x02, True, False, True) + t.uint16_t(3).serialize() + data
    assert Z.transfer_data(8, 3, data, True) == _hdr(8, 0x01, True, True, True) + t.uint16_t(3).serialize() + data
    # TransferDataError: uint16 id, enum8 status
    assert Z.transfer_data_error(9, 4, 2, True) == (
        _hdr(9, 0x02, True, True, True) + t.uint16_t(4).serialize() + t.enum8(2).serialize())
    assert Z.transfer_data_error(9, 4, 0, False)[2] == 0x03


def test_aps_fragments() -> None:
    msg = bytes(range(256)) * 5
    frags = Z.fragment(msg, 64)
    assert len(frags) == 20 and b"".join(c for _g, c in frags) == msg
    assert [g for g, _c in frags] == [(20 << 8) | i for i in range(20)]
    assert Z.fragment(b"abc", 64) == [(-1, b"abc")]


def test_time_vectors_parse(vectors: Path) -> None:
    frames = {x["name"]: bytes.fromhex(x["frame"])
              for x in json.loads((vectors / "zigbee" / "vectors.json").read_text())["zcl"]["frames"]}
    assert Z.read_attributes(0x06, [0, 1]) == frames["time_read_attributes_request"]
    z = Z.parse(frames["time_read_attributes_response"])
    assert (z.tsn, z.command, z.from_server, z.no_default_response) == (0x06, 0x01, True, True)
    assert Z.parse_read_attributes_rsp(z.payload) == {0: (0, 0xE2, 770558400), 1: (0, 0x18, 3)}
    assert Z.read_attributes_rsp(0x06, [(0, 0, 0xE2, 770558400), (1, 0, 0x18, 3)]) == \
        frames["time_read_attributes_response"]
