"""The emulated devices' own ZCL / APS byte coding (CPython, written for the
rig independently of the firmware's han.zcl; tests cross-check it against
zigpy's serialisers)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

# frame control
CLUSTER_SPECIFIC = 0x01
MANUFACTURER = 0x04
SERVER_TO_CLIENT = 0x08
NO_DEFAULT_RESPONSE = 0x10

# global commands
READ_ATTRIBUTES = 0x00
READ_ATTRIBUTES_RSP = 0x01
REPORT_ATTRIBUTES = 0x0A
DEFAULT_RSP = 0x0B

SUCCESS = 0x00
UNSUP_CLUSTER_COMMAND = 0x81
UNSUP_GENERAL_COMMAND = 0x82
UNSUPPORTED_ATTRIBUTE = 0x86
UNSUPPORTED_CLUSTER = 0xC3

# tunneling cluster 0x0704
TUNNELING = 0x0704
REQUEST_TUNNEL = 0x00  # client -> server
CLOSE_TUNNEL = 0x01
TRANSFER_DATA_C2S = 0x02
TRANSFER_DATA_ERROR_C2S = 0x03
REQUEST_TUNNEL_RSP = 0x00  # server -> client
TRANSFER_DATA_S2C = 0x01
TRANSFER_DATA_ERROR_S2C = 0x02
GB_HRGP = 6
TUNNEL_OK = 0x00
TUNNEL_PROTOCOL_NOT_SUPPORTED = 0x03
NO_SUCH_TUNNEL = 0x00

APS_FRAGMENT = 0x8000

# data types: id -> (struct format or size, kind)
_FIXED = {0x10: "<B", 0x18: "<B", 0x19: "<H", 0x1B: "<I", 0x20: "<B", 0x21: "<H", 0x23: "<I",
          0x28: "<b", 0x29: "<h", 0x2B: "<i", 0x30: "<B", 0x31: "<H", 0xE2: "<I"}
CHARSTR = 0x42
OCTSTR = 0x41
_UINT_N = {0x22: 3, 0x25: 6}  # uint24, uint48 (little-endian, no struct format)


@dataclass
class Zcl:
    """A decoded ZCL frame."""

    fc: int
    tsn: int
    command: int
    payload: bytes
    manufacturer: int | None = None

    @property
    def cluster_specific(self) -> bool:
        return bool(self.fc & CLUSTER_SPECIFIC)

    @property
    def from_server(self) -> bool:
        return bool(self.fc & SERVER_TO_CLIENT)

    @property
    def no_default_response(self) -> bool:
        return bool(self.fc & NO_DEFAULT_RESPONSE)


def frame(fc: int, tsn: int, command: int, payload: bytes = b"") -> bytes:
    return bytes((fc, tsn, command)) + payload


def parse(b: bytes) -> Zcl:
    if len(b) < 3:
        raise ValueError(f"ZCL frame of {len(b)} bytes")
    fc = b[0]
    if fc & MANUFACTURER:
        if len(b) < 5:
            raise ValueError("ZCL frame too short for a manufacturer code")
        return Zcl(fc, b[3], b[4], bytes(b[5:]), b[1] | b[2] << 8)
    return Zcl(fc, b[1], b[2], bytes(b[3:]))


def encode_value(t: int, v: object) -> bytes:
    if t in (CHARSTR, OCTSTR):
        raw = v.encode() if isinstance(v, str) else bytes(v)  # type: ignore[arg-type]
        return bytes((len(raw),)) + raw
    if t in _UINT_N:
        return int(v).to_bytes(_UINT_N[t], "little")  # type: ignore[call-overload]
    fmt = _FIXED.get(t)
    if fmt is None:
        raise ValueError(f"type 0x{t:02X} not emulated")
    return struct.pack(fmt, v)


def decode_value(t: int, b: bytes, o: int) -> tuple[object, int]:
    if t in (CHARSTR, OCTSTR):
        n = b[o]
        if o + 1 + n > len(b):
            raise ValueError("string runs past the frame")
        raw = bytes(b[o + 1:o + 1 + n])
        return (raw.decode() if t == CHARSTR else raw), o + 1 + n
    if t in _UINT_N:
        n = _UINT_N[t]
        if o + n > len(b):
            raise ValueError("value runs past the frame")
        return int.from_bytes(b[o:o + n], "little"), o + n
    fmt = _FIXED.get(t)
    if fmt is None:
        raise ValueError(f"type 0x{t:02X} not emulated")
    n = struct.calcsize(fmt)
    if o + n > len(b):
        raise ValueError("value runs past the frame")
    return struct.unpack_from(fmt, b, o)[0], o + n


def read_attributes(tsn: int, ids: list[int]) -> bytes:
    return frame(0x00, tsn, READ_ATTRIBUTES, b"".join(struct.pack("<H", a) for a in ids))


def read_attributes_rsp(tsn: int, records: list[tuple[int, int, int, object]]) -> bytes:
    """records: (attr, status, type, value)."""
    out = bytearray()
    for a, st, t, v in records:
        out += struct.pack("<HB", a, st)
        if st == SUCCESS:
            out.append(t)
            out += encode_value(t, v)
    return frame(SERVER_TO_CLIENT | NO_DEFAULT_RESPONSE, tsn, READ_ATTRIBUTES_RSP, bytes(out))


def parse_read_attributes_rsp(p: bytes) -> dict[int, tuple[int, int | None, object]]:
    """attr -> (status, type, value)."""
    out: dict[int, tuple[int, int | None, object]] = {}
    o = 0
    while o < len(p):
        if o + 3 > len(p):
            raise ValueError("truncated read attributes record")
        a, st = struct.unpack_from("<HB", p, o)
        o += 3
        if st != SUCCESS:
            out[a] = (st, None, None)
            continue
        t = p[o]
        v, o = decode_value(t, p, o + 1)
        out[a] = (st, t, v)
    return out


def report_attributes(tsn: int, records: list[tuple[int, int, object]]) -> bytes:
    out = bytearray()
    for a, t, v in records:
        out += struct.pack("<HB", a, t) + encode_value(t, v)
    return frame(SERVER_TO_CLIENT | NO_DEFAULT_RESPONSE, tsn, REPORT_ATTRIBUTES, bytes(out))


def default_rsp(req: Zcl, status: int) -> bytes | None:
    if not req.cluster_specific and req.command == DEFAULT_RSP:
        return None
    if status == SUCCESS and req.no_default_response:
        return None
    fc = (0 if req.from_server else SERVER_TO_CLIENT) | NO_DEFAULT_RESPONSE
    return frame(fc, req.tsn, DEFAULT_RSP, bytes((req.command, status)))


# --- tunneling --------------------------------------------------------------
def request_tunnel(tsn: int, protocol: int = GB_HRGP, manufacturer: int = 0xFFFF, flow_control: bool = False,
                   max_in: int = 1500) -> bytes:
    return frame(CLUSTER_SPECIFIC, tsn, REQUEST_TUNNEL,
                 struct.pack("<BHBH", protocol, manufacturer, int(flow_control), max_in))


def request_tunnel_rsp(tsn: int, tunnel_id: int, status: int, max_in: int) -> bytes:
    return frame(CLUSTER_SPECIFIC | SERVER_TO_CLIENT | NO_DEFAULT_RESPONSE, tsn, REQUEST_TUNNEL_RSP,
                 struct.pack("<HBH", tunnel_id, status, max_in))


def transfer_data(tsn: int, tunnel_id: int, data: bytes, from_server: bool) -> bytes:
    fc = CLUSTER_SPECIFIC | NO_DEFAULT_RESPONSE | (SERVER_TO_CLIENT if from_server else 0)
    return frame(fc, tsn, TRANSFER_DATA_S2C if from_server else TRANSFER_DATA_C2S,
                 struct.pack("<H", tunnel_id) + data)


def transfer_data_error(tsn: int, tunnel_id: int, status: int, from_server: bool) -> bytes:
    fc = CLUSTER_SPECIFIC | NO_DEFAULT_RESPONSE | (SERVER_TO_CLIENT if from_server else 0)
    return frame(fc, tsn, TRANSFER_DATA_ERROR_S2C if from_server else TRANSFER_DATA_ERROR_C2S,
                 struct.pack("<HB", tunnel_id, status))


def fragment(payload: bytes, size: int) -> list[tuple[int, bytes]]:
    """APS fragments: [(groupId, chunk)] with groupId = count << 8 | index;
    one unfragmented message -> [(-1, payload)]."""
    if len(payload) <= size:
        return [(-1, payload)]
    count = -(-len(payload) // size)
    if count > 255:
        raise ValueError("message too long for APS fragmentation")
    return [((count << 8) | i, payload[i * size:(i + 1) * size]) for i in range(count)]
