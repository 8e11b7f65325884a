# ZCL foundation: frame header, the global (profile-wide) commands the hub
# uses, status codes, the attribute data types and the byte helpers the
# cluster payload codecs share. Cluster payloads live apart: Basic, Time and
# Metering in han/zcl_clusters.py, Tunneling in han/tunnel.py.
import struct

from micropython import const

from log import KindError

# frame control
FT_GLOBAL = const(0)
FT_CLUSTER = const(1)
_FC_MANUF = const(0x04)
FC_SERVER_TO_CLIENT = const(0x08)
FC_DISABLE_DEFAULT_RSP = const(0x10)

# global commands
READ_ATTRIBUTES = const(0x00)
READ_ATTRIBUTES_RSP = const(0x01)
WRITE_ATTRIBUTES = const(0x02)
WRITE_ATTRIBUTES_UNDIVIDED = const(0x03)
WRITE_ATTRIBUTES_RSP = const(0x04)
WRITE_ATTRIBUTES_NO_RSP = const(0x05)
_CONFIGURE_REPORTING = const(0x06)
CONFIGURE_REPORTING_RSP = const(0x07)
REPORT_ATTRIBUTES = const(0x0A)
DEFAULT_RSP = const(0x0B)

# statuses
SUCCESS = const(0x00)
FAILURE = const(0x01)
MALFORMED_COMMAND = const(0x80)
UNSUP_CLUSTER_COMMAND = const(0x81)
UNSUP_GENERAL_COMMAND = const(0x82)
UNSUP_MANUF_CLUSTER_COMMAND = const(0x83)
UNSUP_MANUF_GENERAL_COMMAND = const(0x84)
UNSUPPORTED_ATTRIBUTE = const(0x86)
_INVALID_VALUE = const(0x87)
READ_ONLY = const(0x88)
_INVALID_DATA_TYPE = const(0x8D)
_UNREPORTABLE_ATTRIBUTE = const(0x8C)
UNSUPPORTED_CLUSTER = const(0xC3)

# data types
_T_NODATA = const(0x00)
_T_BOOL = const(0x10)
T_MAP8 = const(0x18)
_T_MAP16 = const(0x19)
_T_MAP24 = const(0x1A)
T_MAP32 = const(0x1B)
T_UINT8 = const(0x20)
T_UINT16 = const(0x21)
T_UINT24 = const(0x22)
T_UINT32 = const(0x23)
_T_UINT40 = const(0x24)
_T_UINT48 = const(0x25)
_T_UINT56 = const(0x26)
_T_UINT64 = const(0x27)
_T_INT8 = const(0x28)
_T_INT16 = const(0x29)
_T_INT24 = const(0x2A)
T_INT32 = const(0x2B)
T_ENUM8 = const(0x30)
_T_ENUM16 = const(0x31)
_T_SEMI = const(0x38)
_T_SINGLE = const(0x39)
_T_DOUBLE = const(0x3A)
_T_OCTSTR = const(0x41)
T_CHARSTR = const(0x42)
_T_LONG_OCTSTR = const(0x43)
_T_LONG_CHARSTR = const(0x44)
_T_TOD = const(0xE0)
_T_DATE = const(0xE1)
T_UTC = const(0xE2)
_T_CLUSTER_ID = const(0xE8)
_T_ATTR_ID = const(0xE9)
_T_EUI64 = const(0xF0)
_T_KEY128 = const(0xF1)

UTC_INVALID = const(0xFFFFFFFF)  # UTCTime: no time


class ZclError(KindError):
    """A bad ZCL frame or value, raised as ZclError(kind, message); the kinds
    (the classes of before): ZclTruncated, ZclTypeError, ZclValueError."""


# --------------------------------------------------------- byte helpers ----
# little-endian fields, shared with the cluster payload codecs


def need(b, o, n):
    """ZclError (kind ZclTruncated) unless b holds n bytes at offset o."""
    if o + n > len(b):
        raise ZclError("ZclTruncated", "need %d bytes at offset %d, have %d" % (n, o, len(b) - o))


def get_uint(b, o, n):
    v = 0
    for i in range(n - 1, -1, -1):
        v = (v << 8) | b[o + i]
    return v


def get_u16(b, o):
    need(b, o, 2)
    return b[o] | (b[o + 1] << 8)


def put_u16(out, v):
    if not 0 <= v <= 0xFFFF:
        raise ZclError("ZclValueError", "uint16 out of range: %r" % v)
    out.append(v & 0xFF)
    out.append(v >> 8)


# ----------------------------------------------------------- data types ----

# fixed sizes for 0xE0..0xF1
# the other fixed-size types and, at the same place, their sizes (constant
# tuples: in flash when frozen)
_FIXED_T = const((_T_TOD, _T_DATE, T_UTC, _T_CLUSTER_ID, _T_ATTR_ID, 0xEA, _T_EUI64, _T_KEY128))
_FIXED_N = const((4, 4, 4, 2, 2, 4, 8, 16))


def type_size(t):
    """Fixed size of a data type, -1 for a length-prefixed string;
    ZclError (kind ZclTypeError) for types this codec does not handle
    (arrays, structs...)."""
    if t == _T_NODATA:
        return 0
    if 0x08 <= t <= 0x0F:  # data8..data64
        return t - 0x07
    if t == _T_BOOL:
        return 1
    if 0x18 <= t <= 0x1F:
        return t - 0x17
    if 0x20 <= t <= 0x27:
        return t - 0x1F
    if 0x28 <= t <= 0x2F:
        return t - 0x27
    if t == T_ENUM8:
        return 1
    if t == _T_ENUM16:
        return 2
    if t == _T_SEMI:
        return 2
    if t == _T_SINGLE:
        return 4
    if t == _T_DOUBLE:
        return 8
    if _T_OCTSTR <= t <= _T_LONG_CHARSTR:
        return -1
    if t not in _FIXED_T:
        raise ZclError("ZclTypeError", "unsupported data type 0x%02X" % t)
    return _FIXED_N[_FIXED_T.index(t)]


def decode_value(t, b, o):
    """Decode a value of type t at b[o:]; return (value, next offset).
    Integers/bitmaps/enums/times -> int, bool -> bool, floats -> float,
    strings -> bytes (None for the invalid length 0xFF/0xFFFF),
    EUI64/key128 -> bytes in wire order, semi-precision -> raw uint16."""
    n = type_size(t)
    if n < 0:
        ln = 1 if t <= T_CHARSTR else 2
        need(b, o, ln)
        k = get_uint(b, o, ln)
        o += ln
        if k == (0xFF if ln == 1 else 0xFFFF):
            return None, o
        need(b, o, k)
        return bytes(b[o : o + k]), o + k
    if n == 0:
        return None, o
    need(b, o, n)
    if t == _T_BOOL:
        v = b[o]
        if v > 1 and v != 0xFF:
            raise ZclError("ZclValueError", "bool value 0x%02X" % v)
        return (None if v == 0xFF else v == 1), o + 1
    if t == _T_SINGLE or t == _T_DOUBLE:
        return struct.unpack_from("<f" if n == 4 else "<d", b, o)[0], o + n
    if t == _T_EUI64 or t == _T_KEY128:
        return bytes(b[o : o + n]), o + n
    v = get_uint(b, o, n)
    if 0x28 <= t <= 0x2F and v >> (8 * n - 1):
        v -= 1 << (8 * n)
    return v, o + n


def encode_value(out, t, v):
    """Append the encoding of value v of type t to bytearray out."""
    n = type_size(t)
    if n < 0:
        lim = 0xFE if t <= T_CHARSTR else 0xFFFE
        if v is None:
            k = lim + 1
            v = b""
        else:
            if isinstance(v, str):
                v = v.encode()
            k = len(v)
            if k > lim:
                raise ZclError("ZclValueError", "string of %d bytes is too long" % k)
        out.append(k & 0xFF)
        if lim > 0xFF:
            out.append(k >> 8)
        out.extend(v)
        return out
    if n == 0:
        return out
    if t == _T_BOOL:
        out.append(0xFF if v is None else (1 if v else 0))
        return out
    if t == _T_SINGLE or t == _T_DOUBLE:
        out.extend(struct.pack("<f" if n == 4 else "<d", v))
        return out
    if t == _T_EUI64 or t == _T_KEY128:
        if len(v) != n:
            raise ZclError("ZclValueError", "type 0x%02X needs %d bytes" % (t, n))
        out.extend(v)
        return out
    if not isinstance(v, int):
        raise ZclError("ZclValueError", "type 0x%02X needs an int" % t)
    if 0x28 <= t <= 0x2F:
        lo = -(1 << (8 * n - 1))
        if not lo <= v < -lo:
            raise ZclError("ZclValueError", "%d out of range for type 0x%02X" % (v, t))
        v &= (1 << (8 * n)) - 1
    elif not 0 <= v < (1 << (8 * n)):
        raise ZclError("ZclValueError", "%d out of range for type 0x%02X" % (v, t))
    for _ in range(n):
        out.append(v & 0xFF)
        v >>= 8
    return out


# --------------------------------------------------------------- header ----


class Header:
    """ZCL frame header.  direction: 0 client->server, 1 server->client."""

    def __init__(self, command_id, tsn=0, frame_type=FT_GLOBAL, direction=0,
                 disable_default_response=False, manufacturer=None):
        self.frame_type = frame_type
        self.direction = direction
        self.disable_default_response = disable_default_response
        self.manufacturer = manufacturer
        self.tsn = tsn
        self.command_id = command_id

    @property
    def frame_control(self):
        fc = self.frame_type & 3
        if self.manufacturer is not None:
            fc |= _FC_MANUF
        if self.direction:
            fc |= FC_SERVER_TO_CLIENT
        if self.disable_default_response:
            fc |= FC_DISABLE_DEFAULT_RSP
        return fc

    def encode(self, out=None):
        if out is None:
            out = bytearray()
        out.append(self.frame_control)
        if self.manufacturer is not None:
            m = self.manufacturer
            if not 0 <= m <= 0xFFFF:
                raise ZclError("ZclValueError", "manufacturer code %r" % m)
            out.append(m & 0xFF)
            out.append(m >> 8)
        if not 0 <= self.tsn <= 0xFF or not 0 <= self.command_id <= 0xFF:
            raise ZclError("ZclValueError", "tsn/command id out of range")
        out.append(self.tsn)
        out.append(self.command_id)
        return out


def parse_header(frame):
    """Return (Header, payload offset)."""
    n = len(frame)
    if n < 3:
        raise ZclError("ZclTruncated", "ZCL frame of %d bytes" % n)
    fc = frame[0]
    ft = fc & 3
    if ft > 1:
        raise ZclError("ZclValueError", "reserved frame type %d" % ft)
    if fc & 0xE0:
        raise ZclError("ZclValueError", "reserved frame control bits 0x%02X" % fc)
    o = 1
    manuf = None
    if fc & _FC_MANUF:
        if n < 5:
            raise ZclError("ZclTruncated", "ZCL frame of %d bytes with manufacturer code" % n)
        manuf = frame[1] | (frame[2] << 8)
        o = 3
    h = Header(frame[o + 1], frame[o], ft, 1 if fc & FC_SERVER_TO_CLIENT else 0,
               bool(fc & FC_DISABLE_DEFAULT_RSP), manuf)
    return h, o + 2


def build_frame(header, payload):
    out = header.encode()
    out.extend(payload)
    return bytes(out)


# ------------------------------------------------------ global commands ----


def encode_read_attributes(attr_ids, out):
    """Append the attribute ids to bytearray out."""
    for a in attr_ids:
        put_u16(out, a)
    return out


def decode_read_attributes(p):
    if len(p) & 1:
        raise ZclError("ZclTruncated", "odd-length attribute id list")
    return [get_u16(p, i) for i in range(0, len(p), 2)]


def encode_read_attributes_rsp(records):
    """records: (attr_id, status, type, value); type/value unused unless
    status is SUCCESS."""
    out = bytearray()
    for a, st, t, v in records:
        put_u16(out, a)
        out.append(st)
        if st == SUCCESS:
            out.append(t)
            encode_value(out, t, v)
    return out


def decode_read_attributes_rsp(p, o=0):
    recs = []
    n = len(p)
    while o < n:
        a = get_u16(p, o)
        need(p, o + 2, 1)
        st = p[o + 2]
        o += 3
        if st == SUCCESS:
            need(p, o, 1)
            t = p[o]
            v, o = decode_value(t, p, o + 1)
            recs.append((a, st, t, v))
        else:
            recs.append((a, st, None, None))
    return recs


def encode_attribute_records(records, out=None):
    """(attr_id, type, value) records: Write Attributes / Report Attributes."""
    out = bytearray() if out is None else out
    for a, t, v in records:
        put_u16(out, a)
        out.append(t)
        encode_value(out, t, v)
    return out


def decode_attribute_records(p):
    recs = []
    o = 0
    n = len(p)
    while o < n:
        a = get_u16(p, o)
        need(p, o + 2, 1)
        t = p[o + 2]
        v, o = decode_value(t, p, o + 3)
        recs.append((a, t, v))
    return recs


def encode_status_records(records, out, with_direction):
    """Write Attributes Response (status, attr_id) or Configure Reporting
    Response (status, direction, attr_id).  All-success -> the single
    status byte 0x00 (pass an empty list or only SUCCESS records)."""
    out = bytearray() if out is None else out
    fails = [r for r in records if r[0] != SUCCESS]
    if not fails:
        out.append(SUCCESS)
        return out
    for r in fails:
        out.append(r[0])
        if with_direction:
            out.append(r[1])
            put_u16(out, r[2])
        else:
            put_u16(out, r[1])
    return out


def encode_write_attributes_rsp(records):
    return encode_status_records(records, None, False)


def encode_default_rsp(command_id, status):
    out = bytearray()
    out.append(command_id)
    out.append(status)
    return out
