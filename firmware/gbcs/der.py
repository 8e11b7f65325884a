# ASN.1 DER subset used by GBCS alerts and the join/credential use cases:
# SEQUENCE, INTEGER, OCTET STRING, BIT STRING, _ENUMERATED, BOOLEAN,
# GeneralizedTime/UTCTime and context tags (single-byte tags, definite
# minimal lengths up to 3 length bytes).
#
# decode() gives a tree of (tag, value) tuples: constructed tags (bit 0x20)
# hold a list of children, primitive tags a memoryview of their contents; a
# third item (the length-field size) appears only for a non-minimal length.
# encode() turns such a tree back into the exact DER bytes.
from micropython import const

_MAX_DEPTH = const(10)

BOOLEAN = const(0x01)
INTEGER = const(0x02)
BIT_STRING = const(0x03)
OCTET_STRING = const(0x04)
NULL = const(0x05)
OID = const(0x06)
_ENUMERATED = const(0x0A)
_UTF8_STRING = const(0x0C)
_PRINTABLE_STRING = const(0x13)
_UTC_TIME = const(0x17)
_GENERALIZED_TIME = const(0x18)
SEQUENCE = const(0x30)
_SET = const(0x31)


class DerError(ValueError):
    pass


def read_tlv(mv, off, end):
    """Read the header of the TLV at mv[off]; returns (tag, content_start, content_end).
    Long-form lengths that are not minimal (82 00 83, sent by RTDS devices) are
    accepted; decode() records them so encode() reproduces the bytes."""
    if off >= end:
        raise DerError("truncated DER: need a tag at offset %d" % off)
    tag = mv[off]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte DER tag 0x%02x at offset %d not supported" % (tag, off))
    off += 1
    if off >= end:
        raise DerError("truncated DER: need a length at offset %d" % off)
    b = mv[off]
    off += 1
    if b < 0x80:
        n = b
    else:
        k = b & 0x7F
        if k == 0:
            raise DerError("indefinite DER length at offset %d" % (off - 1))
        if k > 3:
            raise DerError("DER length of %d bytes at offset %d too large" % (k, off - 1))
        if off + k > end:
            raise DerError("truncated DER length at offset %d" % (off - 1))
        n = 0
        for i in range(off, off + k):
            n = (n << 8) | mv[i]
        off += k
    if off + n > end:
        raise DerError("truncated DER value: length %d, %d bytes left at offset %d" % (n, end - off, off))
    return tag, off, off + n


def _decode(mv, off, end, depth):
    if depth > _MAX_DEPTH:
        raise DerError("DER nesting too deep at offset %d" % off)
    tag, s, e = read_tlv(mv, off, end)
    hl = s - off - 1  # length-field size
    odd = hl != _len_size(e - s)
    if tag & 0x20:
        items = []
        p = s
        while p < e:
            v, p = _decode(mv, p, e, depth + 1)
            items.append(v)
        return ((tag, items, hl) if odd else (tag, items)), e
    if tag == BOOLEAN and e - s != 1:
        raise DerError("BOOLEAN of %d bytes at offset %d" % (e - s, off))
    if (tag == INTEGER or tag == _ENUMERATED) and e == s:
        raise DerError("empty INTEGER at offset %d" % off)
    if tag == BIT_STRING and (e == s or mv[s] > 7):
        raise DerError("bad BIT STRING at offset %d" % off)
    return ((tag, mv[s:e], hl) if odd else (tag, mv[s:e])), e


def _len_size(n):
    if n < 0x80:
        return 1
    if n < 0x100:
        return 2
    if n < 0x10000:
        return 3
    return 4


def decode(data, depth=0):
    """Decode exactly one DER element filling data. Raises DerError."""
    mv = data if isinstance(data, memoryview) else memoryview(data)
    v, off = _decode(mv, 0, len(mv), depth)
    if off != len(mv):
        raise DerError("trailing bytes: %d after the DER element" % (len(mv) - off))
    return v


def decode_all(data):
    """Decode a concatenation of DER elements (e.g. a bare INTEGER payload)."""
    mv = data if isinstance(data, memoryview) else memoryview(data)
    out = []
    off = 0
    while off < len(mv):
        v, off = _decode(mv, off, len(mv), 0)
        out.append(v)
    return out


def _put_len(out, n, size=0, wide=False):
    # minimal form unless a non-minimal long form (0x80|k then k bytes) was
    # recorded at decode time (size = its byte count), so re-encoding is exact;
    # wide: every length from 0x80 as 82 hi lo (what RTDS devices send)
    if wide and size == 0 and 0x80 <= n < 0x10000:
        size = 3
    if size <= 1 and n < 0x80:
        out.append(n)
        return
    if size > 1:
        k = size - 1
        if n >> (8 * k):
            raise DerError("DER length %d does not fit %d bytes" % (n, k))
    else:
        if n >> 24:
            raise DerError("DER length %d too large" % n)
        k = 1 if n < 0x100 else (2 if n < 0x10000 else 3)
    out.append(0x80 | k)
    for i in range(k - 1, -1, -1):
        out.append((n >> (8 * i)) & 0xFF)


def encode_into(v, out, depth, wide):
    if depth > _MAX_DEPTH:
        raise DerError("DER nesting too deep")
    tag = v[0]
    val = v[1]
    size = v[2] if len(v) > 2 else 0
    out.append(tag)
    if tag & 0x20:
        body = bytearray()
        for it in val:
            encode_into(it, body, depth + 1, wide)
        _put_len(out, len(body), size, wide)
        out.extend(body)
    else:
        _put_len(out, len(val), size, wide)
        out.extend(val)


def encode(v, wide=False):
    """DER bytes of a node. wide=True writes every length from 128 to 65535
    in the 3-byte form 82 hi lo, as the RTDS devices' CS02b responses do
    (30 82 00 CA); otherwise minimal DER (or a form recorded at decode)."""
    out = bytearray()
    encode_into(v, out, 0, wide)
    return bytes(out)


# ---- value helpers ------------------------------------------------------------


def to_int(mv):
    """Two's-complement big-endian contents of an INTEGER/_ENUMERATED."""
    v = 0
    for b in mv:
        v = (v << 8) | b
    if len(mv) and mv[0] & 0x80:
        v -= 1 << (8 * len(mv))
    return v


def int_bytes(n):
    """Minimal two's-complement contents for an INTEGER."""
    k = 1
    while not (-(1 << (8 * k - 1)) <= n < (1 << (8 * k - 1))):
        k += 1
    if n < 0:
        n += 1 << (8 * k)
    b = bytearray(k)
    for i in range(k - 1, -1, -1):
        b[i] = n & 0xFF
        n >>= 8
    return bytes(b)


def integer(n, tag=INTEGER):
    return (tag, int_bytes(n))


def enumerated(n):
    return (_ENUMERATED, int_bytes(n))


def octets(b, tag=OCTET_STRING):
    return (tag, b)


def boolean(x):
    return (BOOLEAN, b"\xff" if x else b"\x00")


def bit_string(bits, unused=0):
    return (BIT_STRING, bytes((unused,)) + bytes(bits))


def generalized_time(s):
    """s: 'YYYYMMDDHHMMSSZ' (str or bytes)."""
    return (_GENERALIZED_TIME, s.encode() if isinstance(s, str) else s)


def sequence(*items):
    return (SEQUENCE, list(items))


def context(n, value, constructed=True):
    """Context-specific tag [n] wrapping children (constructed) or bytes."""
    return ((0xA0 if constructed else 0x80) | n, value)


def find(node, tag):
    """First child of a constructed node with the given tag, or None."""
    for c in node[1]:
        if c[0] == tag:
            return c
    return None
