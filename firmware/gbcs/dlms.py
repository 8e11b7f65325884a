# DLMS/COSEM A-XDR subset for GBCS (CHF and GPF use cases).
#
# Data values are (tag, value) tuples, cheap under MicroPython:
#   null (0, None); array/structure (1|2, [values]); boolean (3, raw byte);
#   bit-string (4, (nbits, memoryview)); integers (tag, int);
#   octet/visible/utf8-string (tag, memoryview); float32/64, date-time, date,
#   time (tag, memoryview of the fixed-size bytes);
#   compact-array (0x13, (type_description, [values])) where a type
#   description is a tag int, (1, count, td) for an array or (2, [td...]) for a
#   structure, and the values follow the same (tag, value) shape.
# This module encodes values and builds the data-notification (the CHF's
# alerts). Decoding and the APDUs (GBCS access-request/-response and the
# xDLMS get/set/action normal forms, parsed into an Apdu object that
# encode_apdu() turns back into the exact bytes) are gbcs.dlms_apdu, loaded
# with the CHF's use cases (chf.usecase_exec) and dropped after them.
from micropython import const

from gbcs.frame import put_len as _put_len

_MAX_DEPTH = const(8)

NULL = const(0x00)
ARRAY = const(0x01)
STRUCTURE = const(0x02)
BOOLEAN = const(0x03)
BIT_STRING = const(0x04)
_DOUBLE_LONG = const(0x05)
DOUBLE_LONG_UNSIGNED = const(0x06)
OCTET_STRING = const(0x09)
_VISIBLE_STRING = const(0x0A)
_UTF8_STRING = const(0x0C)
_BCD = const(0x0D)
INTEGER = const(0x0F)
_LONG = const(0x10)
UNSIGNED = const(0x11)
LONG_UNSIGNED = const(0x12)
COMPACT_ARRAY = const(0x13)
_LONG64 = const(0x14)
_LONG64_UNSIGNED = const(0x15)
_ENUM = const(0x16)
_FLOAT32 = const(0x17)
_FLOAT64 = const(0x18)
_DATE_TIME = const(0x19)
_DATE = const(0x1A)
_TIME = const(0x1B)

ACCESS_REQUEST = const(0xD9)  # the APDU tags: gbcs.dlms_apdu
_DATA_NOTIFICATION = const(0x0F)

_CLOCK_NOT_SPECIFIED = const(0xFF)  # DLMS clock-status byte (gbcs.usecase_base has the others)

# The fixed-size types by tag (0x00..0x1B), a bytes table (in flash when
# frozen): 0x80 | size an unsigned integer, 0xC0 | size a signed one,
# 0x40 | size a fixed-size raw value, 0 neither.
_FIXED = b"\x00\x00\x00\x41\x00\xc4\x84\x00\x00\x00\x00\x00\x00\xc1\x00\xc1\xc2\x81\x82\x00\xc8\x88\x81\x44\x48\x4c\x45\x44"
_INT = const(0x80)
_SIGNED = const(0x40)
_SIZE = const(0x3F)
_STRINGS = (0x09, 0x0A, 0x0C)


class DlmsError(ValueError):
    pass


def _put_int(out, v, size, signed):
    lo = -(1 << (size * 8 - 1)) if signed else 0
    hi = (1 << (size * 8 - 1)) - 1 if signed else (1 << (size * 8)) - 1
    if not isinstance(v, int) or v < lo or v > hi:
        raise DlmsError("integer %r out of range for %d bytes" % (v, size))
    if v < 0:
        v += 1 << (size * 8)
    for i in range(size - 1, -1, -1):
        out.append((v >> (8 * i)) & 0xFF)


def _fixed(tag):
    return _FIXED[tag] if tag < len(_FIXED) else 0


def encode_data(v, out, depth=0):
    """Append the A-XDR encoding of value v to bytearray out."""
    if depth > _MAX_DEPTH:
        raise DlmsError("nesting too deep")
    tag = v[0]
    if tag == COMPACT_ARRAY:
        out.append(tag)
        td, items = v[1]
        _encode_td(td, out)
        body = bytearray()
        for it in items:
            _encode_untagged(it, td, body, depth + 1)
        _put_len(out, len(body), DlmsError)
        out.extend(body)
        return
    out.append(tag)
    if tag == ARRAY or tag == STRUCTURE:
        _put_len(out, len(v[1]), DlmsError)
        for it in v[1]:
            encode_data(it, out, depth + 1)
        return
    if tag == NULL:
        return
    _encode_simple(v, out)


def _encode_simple(v, out):
    tag, val = v
    k = _fixed(tag)
    if k & _INT:
        _put_int(out, val, k & _SIZE, (k & _SIGNED) != 0)
    elif tag in _STRINGS:
        _put_len(out, len(val), DlmsError)
        out.extend(val)
    elif tag == BIT_STRING:
        nbits, bits = val
        if len(bits) != (nbits + 7) >> 3:
            raise DlmsError("bit-string of %d bits needs %d bytes" % (nbits, (nbits + 7) >> 3))
        _put_len(out, nbits, DlmsError)
        out.extend(bits)
    elif tag == BOOLEAN:
        out.append(val & 0xFF)
    elif k:
        if len(val) != k & _SIZE:
            raise DlmsError("type 0x%02x needs %d bytes" % (tag, k & _SIZE))
        out.extend(val)
    else:
        raise DlmsError("cannot encode DLMS data type tag 0x%02x" % tag)


def _encode_td(td, out):
    if isinstance(td, int):
        out.append(td)
    elif td[0] == STRUCTURE:
        out.append(STRUCTURE)
        _put_len(out, len(td[1]), DlmsError)
        for sub in td[1]:
            _encode_td(sub, out)
    else:
        out.append(ARRAY)
        out.append(td[1] >> 8)
        out.append(td[1] & 0xFF)
        _encode_td(td[2], out)


def _encode_untagged(v, td, out, depth):
    if depth > _MAX_DEPTH:
        raise DlmsError("nesting too deep")
    if isinstance(td, int):
        if v[0] != td:
            raise DlmsError("compact-array value type 0x%02x does not match 0x%02x" % (v[0], td))
        _encode_simple(v, out)
        return
    subs = td[1] if td[0] == STRUCTURE else [td[2]] * td[1]
    if len(v[1]) != len(subs):
        raise DlmsError("compact-array element has %d items, type wants %d" % (len(v[1]), len(subs)))
    for it, sub in zip(v[1], subs):
        _encode_untagged(it, sub, out, depth + 1)



def data_notification(invoke_id, value, date_time=b""):
    """A data-notification APDU (0x0F): long-invoke-id, date-time, value."""
    out = bytearray((_DATA_NOTIFICATION,))
    out.extend(bytes(((invoke_id >> 24) & 0xFF, (invoke_id >> 16) & 0xFF, (invoke_id >> 8) & 0xFF, invoke_id & 0xFF)))
    _put_len(out, len(date_time), DlmsError)
    out.extend(date_time)
    encode_data(value, out)
    return bytes(out)


# ---- date-time ---------------------------------------------------------------


def date_time(t2000, status=_CLOCK_NOT_SPECIFIED, weekday=True):
    """DLMS date-time (12 bytes) for UTC seconds since 2000-01-01: deviation
    not specified (0x8000), the given clock status; weekday=False writes the
    day of week as not specified (0xFF), as the RTDS GPF responses do."""
    if t2000 is None or t2000 < 0:
        t2000 = 0
    days, rem = divmod(int(t2000), 86400)
    y, m, d = civil(days)
    dow = (days + 5) % 7 + 1 if weekday else 0xFF  # 2000-01-01 was a Saturday
    h, rem = divmod(rem, 3600)
    return bytes((y >> 8, y & 0xFF, m, d, dow, h, rem // 60, rem % 60, 0, 0x80, 0, status & 0xFF))


def civil(days):
    """(year, month, day) of a day number counted from 2000-01-01."""
    z = days + 730425  # days since 0000-03-01
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    if m <= 2:
        y += 1
    return y, m, d
