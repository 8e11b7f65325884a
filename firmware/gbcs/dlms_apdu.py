# DLMS/COSEM A-XDR decoding and APDUs for GBCS (gbcs.dlms has the value
# encoder, the types and the data-notification). An APDU (GBCS
# access-request/-response, data-notification and the xDLMS get/set/action
# normal forms) parses into an Apdu object; encode_apdu() turns it back into
# the exact bytes. Loaded with the CHF's use cases (chf.usecase_exec) and
# dropped after them (firmware/lazy.py): not in the hub's heap between
# commands. The type tags are gbcs.dlms's (const: compiled in).
from micropython import const

from gbcs.dlms import _STRINGS, DlmsError, _fixed, encode_data
from gbcs.frame import put_len as _put_len
from gbcs.frame import read_len as _read_len

_MAX_DEPTH = const(8)
_INT = const(0x80)
_SIGNED = const(0x40)
_SIZE = const(0x3F)

# the type tags used here, gbcs.dlms's (const: compiled in)
_NUL = const(0x00)
_ARR = const(0x01)
_STRUCT = const(0x02)
_BOOL = const(0x03)
_BITS = const(0x04)
_CARRAY = const(0x13)

# APDU tags (gbcs.dlms has ACCESS_REQUEST and the data-notification's)
_ACCESS_REQ = const(0xD9)
_ACCESS_RESPONSE = const(0xDA)
_NOTIFICATION = const(0x0F)
_GET_REQUEST = const(0xC0)
_SET_REQUEST = const(0xC1)
_ACTION_REQUEST = const(0xC3)
_GET_RESPONSE = const(0xC4)
_SET_RESPONSE = const(0xC5)
_ACTION_RESPONSE = const(0xC7)

# access-request-specification choices
_SPEC_GET = const(1)
_SPEC_SET = const(2)
_SPEC_ACTION = const(3)
_SPEC_GET_WITH_SELECTION = const(4)
_SPEC_SET_WITH_SELECTION = const(5)


def _need(off, n, end, what):
    if n < 0 or off + n > end:
        raise DlmsError("truncated %s: need %d bytes at offset %d" % (what, n, off))


def read_len(mv, off, end, what="length"):
    """A-XDR length: xx, 81 xx, 82 xx xx (minimal). Returns (n, next_off)."""
    return _read_len(mv, off, end, what, DlmsError)


def _get_int(mv, off, size, signed):
    v = 0
    for i in range(off, off + size):
        v = (v << 8) | mv[i]
    if signed and v >= 1 << (size * 8 - 1):
        v -= 1 << (size * 8)
    return v


def _check_seq_count(n, off, end, depth):
    # every element needs at least one byte
    if n > end - off:
        raise DlmsError("element count %d larger than the %d bytes left at offset %d" % (n, end - off, off))


def decode_data(mv, off, end, depth=0):
    """Decode one tagged Data value at mv[off]. Returns (value, next_off)."""
    if depth > _MAX_DEPTH:
        raise DlmsError("nesting too deep at offset %d" % off)
    _need(off, 1, end, "data tag")
    tag = mv[off]
    off += 1
    if tag == _NUL:
        return (_NUL, None), off
    if tag == _ARR or tag == _STRUCT:
        n, off = read_len(mv, off, end, "element count")
        _check_seq_count(n, off, end, depth)
        items = []
        for _ in range(n):
            v, off = decode_data(mv, off, end, depth + 1)
            items.append(v)
        return (tag, items), off
    if tag == _CARRAY:
        td, off = _decode_td(mv, off, end, depth + 1)
        clen, off = read_len(mv, off, end, "compact-array contents length")
        _need(off, clen, end, "compact-array contents")
        cend = off + clen
        items = []
        while off < cend:
            start = off
            v, off = _decode_untagged(mv, off, cend, td, depth + 1)
            if off == start:
                raise DlmsError("compact-array element of zero size at offset %d" % off)
            items.append(v)
        return (tag, (td, items)), off
    return _decode_simple(mv, off, end, tag)


def _decode_simple(mv, off, end, tag):
    k = _fixed(tag)
    if k & _INT:
        n = k & _SIZE
        _need(off, n, end, "integer")
        return (tag, _get_int(mv, off, n, (k & _SIGNED) != 0)), off + n
    if tag in _STRINGS:
        n, off = read_len(mv, off, end, "string length")
        _need(off, n, end, "string")
        return (tag, mv[off : off + n]), off + n
    if tag == _BITS:
        nbits, off = read_len(mv, off, end, "bit-string length")
        nb = (nbits + 7) >> 3
        _need(off, nb, end, "bit-string")
        return (tag, (nbits, mv[off : off + nb])), off + nb
    if k:
        n = k & _SIZE
        _need(off, n, end, "fixed-size value")
        if tag == _BOOL:
            return (tag, mv[off]), off + 1
        return (tag, mv[off : off + n]), off + n
    raise DlmsError("unknown DLMS data type tag 0x%02x at offset %d" % (tag, off - 1))


def _decode_td(mv, off, end, depth):
    if depth > _MAX_DEPTH:
        raise DlmsError("type description nesting too deep at offset %d" % off)
    _need(off, 1, end, "type description")
    tag = mv[off]
    off += 1
    if tag == _ARR:
        _need(off, 2, end, "type description array count")
        count = (mv[off] << 8) | mv[off + 1]
        td, off = _decode_td(mv, off + 2, end, depth + 1)
        return (_ARR, count, td), off
    if tag == _STRUCT:
        n, off = read_len(mv, off, end, "type description element count")
        if n == 0:
            raise DlmsError("empty structure in type description at offset %d" % off)
        _check_seq_count(n, off, end, depth)
        tds = []
        for _ in range(n):
            td, off = _decode_td(mv, off, end, depth + 1)
            tds.append(td)
        return (_STRUCT, tds), off
    if (
        tag == _NUL
        or tag == _CARRAY
        or not (_fixed(tag) or tag in _STRINGS or tag == _BITS)
    ):
        raise DlmsError("bad type in compact-array type description 0x%02x at offset %d" % (tag, off - 1))
    return tag, off


def _decode_untagged(mv, off, end, td, depth):
    if depth > _MAX_DEPTH:
        raise DlmsError("nesting too deep at offset %d" % off)
    if isinstance(td, int):
        return _decode_simple(mv, off, end, td)
    if td[0] == _STRUCT:
        items = []
        for sub in td[1]:
            v, off = _decode_untagged(mv, off, end, sub, depth + 1)
            items.append(v)
        return (_STRUCT, items), off
    _check_seq_count(td[1], off, end, depth)
    items = []
    for _ in range(td[1]):
        v, off = _decode_untagged(mv, off, end, td[2], depth + 1)
        items.append(v)
    return (_ARR, items), off


class Apdu:
    """A parsed DLMS APDU. Fields used depend on tag:
    access-request (0xD9): invoke_id, date_time, specs [(kind, class_id, instance, id, selector, params)], data
    access-response (0xDA): invoke_id, date_time, specs (None or list), data, results [(kind, code)]
    data-notification (0x0F): invoke_id, date_time, value
    get/set/action request/response (normal): invoke_id (1 byte), desc (class_id, instance, id),
      selector/params, value, result, ret."""

    def __init__(self, tag):
        self.tag = tag
        self.invoke_id = 0
        self.date_time = None
        self.specs = None
        self.data = None
        self.results = None
        self.desc = None
        self.selector = None
        self.params = None
        self.value = None
        self.result = None
        self.ret = None


def _read_u(mv, off, end, n, what):
    _need(off, n, end, what)
    v = 0
    for i in range(off, off + n):
        v = (v << 8) | mv[i]
    return v, off + n


def _read_octets(mv, off, end, what):
    n, off = read_len(mv, off, end, what + " length")
    _need(off, n, end, what)
    return mv[off : off + n], off + n


def _read_desc(mv, off, end):
    _need(off, 9, end, "COSEM descriptor")
    cls = (mv[off] << 8) | mv[off + 1]
    return (cls, mv[off + 2 : off + 8], mv[off + 8]), off + 9


def _put_desc(out, desc):
    cls, inst, i = desc
    if len(inst) != 6:
        raise DlmsError("instance id must be 6 bytes")
    out.append(cls >> 8)
    out.append(cls & 0xFF)
    out.extend(inst)
    out.append(i)


def _read_spec(mv, off, end):
    _need(off, 1, end, "access-request specification")
    kind = mv[off]
    if kind < _SPEC_GET or kind > _SPEC_SET_WITH_SELECTION:
        raise DlmsError("bad access-request specification choice %d at offset %d" % (kind, off))
    desc, off = _read_desc(mv, off + 1, end)
    sel = None
    params = None
    if kind == _SPEC_GET_WITH_SELECTION or kind == _SPEC_SET_WITH_SELECTION:
        _need(off, 1, end, "access selector")
        sel = mv[off]
        params, off = decode_data(mv, off + 1, end, 1)
    return (kind, desc[0], desc[1], desc[2], sel, params), off


def _read_list(mv, off, end, what):
    n, off = read_len(mv, off, end, what + " count")
    _check_seq_count(n, off, end, 0)
    items = []
    for _ in range(n):
        v, off = decode_data(mv, off, end, 1)
        items.append(v)
    return items, off


def _read_specs(mv, off, end):
    n, off = read_len(mv, off, end, "access-request specification count")
    _check_seq_count(n, off, end, 0)
    specs = []
    for _ in range(n):
        s, off = _read_spec(mv, off, end)
        specs.append(s)
    return specs, off


def _read_results(mv, off, end):
    n, off = read_len(mv, off, end, "access-response specification count")
    _check_seq_count(n, off, end, 0)
    results = []
    for _ in range(n):
        _need(off, 2, end, "access-response specification")
        kind = mv[off]
        if kind < _SPEC_GET or kind > _SPEC_ACTION:
            raise DlmsError("bad access-response specification choice %d at offset %d" % (kind, off))
        results.append((kind, mv[off + 1]))
        off += 2
    return results, off


def _read_gbcs_body(a, mv, off, end):
    """access-request, access-response, data-notification after the tag."""
    tag = a.tag
    a.invoke_id, off = _read_u(mv, off, end, 4, "long-invoke-id")
    a.date_time, off = _read_octets(mv, off, end, "date-time")
    if tag == _NOTIFICATION:
        a.value, off = decode_data(mv, off, end, 0)
        return off
    if tag == _ACCESS_REQ:
        a.specs, off = _read_specs(mv, off, end)
        a.data, off = _read_list(mv, off, end, "list of data")
        return off
    flag, off = _read_flag(mv, off, end, "access-request specification flag")
    if flag:
        a.specs, off = _read_specs(mv, off, end)
    a.data, off = _read_list(mv, off, end, "list of access-response data")
    a.results, off = _read_results(mv, off, end)
    return off


def _read_xdlms_body(a, mv, off, end):
    """xDLMS get/set/action request/response (normal) after the tag."""
    tag = a.tag
    _need(off, 2, end, "xDLMS header")
    if mv[off] != 1:
        raise DlmsError("unsupported xDLMS choice %d for 0x%02x (only normal)" % (mv[off], tag))
    a.invoke_id = mv[off + 1]
    off += 2
    if tag == _GET_REQUEST or tag == _SET_REQUEST:
        a.desc, off = _read_desc(mv, off, end)
        off = _read_selection(a, mv, off, end)
        if tag == _SET_REQUEST:
            a.value, off = decode_data(mv, off, end, 0)
    elif tag == _ACTION_REQUEST:
        a.desc, off = _read_desc(mv, off, end)
        flag, off = _read_flag(mv, off, end)
        if flag:
            a.value, off = decode_data(mv, off, end, 0)
    elif tag == _GET_RESPONSE:
        a.result, a.value, off = _read_get_result(mv, off, end)
    elif tag == _SET_RESPONSE:
        _need(off, 1, end, "data-access-result")
        a.result = mv[off]
        off += 1
    else:
        _need(off, 1, end, "action-result")
        a.result = mv[off]
        flag, off = _read_flag(mv, off + 1, end)
        if flag:
            r, v, off = _read_get_result(mv, off, end)
            a.ret = (r, v)
    return off


def parse_apdu(data):
    """Parse one DLMS APDU (the whole buffer). Raises DlmsError."""
    mv = data if isinstance(data, memoryview) else memoryview(data)
    end = len(mv)
    _need(0, 1, end, "APDU tag")
    tag = mv[0]
    a = Apdu(tag)
    if tag == _ACCESS_REQ or tag == _ACCESS_RESPONSE or tag == _NOTIFICATION:
        off = _read_gbcs_body(a, mv, 1, end)
    elif tag in (_GET_REQUEST, _SET_REQUEST, _ACTION_REQUEST, _GET_RESPONSE, _SET_RESPONSE, _ACTION_RESPONSE):
        off = _read_xdlms_body(a, mv, 1, end)
    else:
        raise DlmsError("unknown APDU tag 0x%02x" % tag)
    if off != end:
        raise DlmsError("trailing bytes: %d after the APDU" % (end - off))
    return a


def _read_flag(mv, off, end, what="optional flag"):
    _need(off, 1, end, what)
    f = mv[off]
    if f > 1:
        raise DlmsError("bad optional flag 0x%02x at offset %d" % (f, off))
    return f, off + 1


def _read_selection(a, mv, off, end):
    flag, off = _read_flag(mv, off, end)
    if flag:
        _need(off, 1, end, "access selector")
        a.selector = mv[off]
        a.params, off = decode_data(mv, off + 1, end, 0)
    return off


def _read_get_result(mv, off, end):
    _need(off, 1, end, "get-data-result")
    c = mv[off]
    if c == 0:
        v, off = decode_data(mv, off + 1, end, 0)
        return 0, v, off
    if c == 1:
        _need(off, 2, end, "data-access-result")
        return 1, mv[off + 1], off + 2
    raise DlmsError("bad get-data-result choice %d at offset %d" % (c, off))


def _put_spec(out, s):
    kind, cls, inst, i, sel, params = s
    out.append(kind)
    _put_desc(out, (cls, inst, i))
    if kind == _SPEC_GET_WITH_SELECTION or kind == _SPEC_SET_WITH_SELECTION:
        out.append(sel)
        encode_data(params, out)


def encode_apdu(a):
    """Encode an Apdu back to bytes."""
    out = bytearray()
    tag = a.tag
    out.append(tag)
    if tag == _ACCESS_REQ or tag == _ACCESS_RESPONSE or tag == _NOTIFICATION:
        iid = a.invoke_id
        out.extend(bytes(((iid >> 24) & 0xFF, (iid >> 16) & 0xFF, (iid >> 8) & 0xFF, iid & 0xFF)))
        dt = a.date_time if a.date_time is not None else b""
        _put_len(out, len(dt), DlmsError)
        out.extend(dt)
        if tag == _NOTIFICATION:
            encode_data(a.value, out)
            return bytes(out)
        if tag == _ACCESS_RESPONSE:
            if a.specs is None:
                out.append(0)
            else:
                out.append(1)
        if tag == _ACCESS_REQ or a.specs is not None:
            _put_len(out, len(a.specs), DlmsError)
            for s in a.specs:
                _put_spec(out, s)
        _put_len(out, len(a.data), DlmsError)
        for v in a.data:
            encode_data(v, out)
        if tag == _ACCESS_RESPONSE:
            _put_len(out, len(a.results), DlmsError)
            for kind, code in a.results:
                out.append(kind)
                out.append(code)
        return bytes(out)
    out.append(1)
    out.append(a.invoke_id & 0xFF)
    if tag == _GET_REQUEST or tag == _SET_REQUEST:
        _put_desc(out, a.desc)
        if a.selector is None:
            out.append(0)
        else:
            out.append(1)
            out.append(a.selector)
            encode_data(a.params, out)
        if tag == _SET_REQUEST:
            encode_data(a.value, out)
    elif tag == _ACTION_REQUEST:
        _put_desc(out, a.desc)
        if a.value is None:
            out.append(0)
        else:
            out.append(1)
            encode_data(a.value, out)
    elif tag == _GET_RESPONSE:
        _put_get_result(out, a.result, a.value)
    elif tag == _SET_RESPONSE:
        out.append(a.result)
    elif tag == _ACTION_RESPONSE:
        out.append(a.result)
        if a.ret is None:
            out.append(0)
        else:
            out.append(1)
            _put_get_result(out, a.ret[0], a.ret[1])
    else:
        raise DlmsError("cannot encode APDU tag 0x%02x" % tag)
    return bytes(out)


def _put_get_result(out, choice, v):
    out.append(choice)
    if choice == 0:
        encode_data(v, out)
    else:
        out.append(v)


def get_request(invoke_id, class_id, instance, attr, selector=None, params=None):
    a = Apdu(_GET_REQUEST)
    a.invoke_id = invoke_id
    a.desc = (class_id, instance, attr)
    a.selector = selector
    a.params = params
    return encode_apdu(a)


def get_response(invoke_id, value=None, dar=None):
    a = Apdu(_GET_RESPONSE)
    a.invoke_id = invoke_id
    if dar is None:
        a.result, a.value = 0, value
    else:
        a.result, a.value = 1, dar
    return encode_apdu(a)


def set_request(invoke_id, class_id, instance, attr, value, selector=None, params=None):
    a = Apdu(_SET_REQUEST)
    a.invoke_id = invoke_id
    a.desc = (class_id, instance, attr)
    a.selector = selector
    a.params = params
    a.value = value
    return encode_apdu(a)


def set_response(invoke_id, result):
    a = Apdu(_SET_RESPONSE)
    a.invoke_id = invoke_id
    a.result = result
    return encode_apdu(a)


def action_request(invoke_id, class_id, instance, method, params=None):
    a = Apdu(_ACTION_REQUEST)
    a.invoke_id = invoke_id
    a.desc = (class_id, instance, method)
    a.value = params
    return encode_apdu(a)


def action_response(invoke_id, result, ret=None):
    """ret: None, (0, value) return data or (1, data-access-result)."""
    a = Apdu(_ACTION_RESPONSE)
    a.invoke_id = invoke_id
    a.result = result
    a.ret = ret
    return encode_apdu(a)


def access_response(invoke_id, data, results, date_time=b""):
    a = Apdu(_ACCESS_RESPONSE)
    a.invoke_id = invoke_id
    a.date_time = date_time
    a.data = data
    a.results = results
    return encode_apdu(a)
