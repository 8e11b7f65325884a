# The CHF Device Log's on-flash form (chf.device_log): its records read into
# the log's table at start and written from it at each change. Loaded for
# that and dropped after (firmware/lazy.py): not in the boot import set.
#
# KV "devlog": {"d": {EUIHEX: [type, link key hex, key hash hex, key state,
# node id, join state, window start, window end, historic link key hex]},
# "h": [[EUIHEX, key hash hex, link key hex, type, removed]...], "x": ext PAN
# id hex}; KV "devstats": {EUIHEX: [rssi min, sum, max, lqi min, sum, max, n,
# last, tx ok, tx fail]}. Both cold; written whole (KV.replace), streamed.
from binascii import hexlify, unhexlify
from struct import pack_into, unpack_from

import ids
from chf.device_log import TYPE_NAMES, _IC, _fill
import lazy
from log import log

from micropython import const

# the slot and historic record layouts of chf.device_log (the same numbers)
_S = const(48)
_W = const(8)
_NO_TYPE = const(7)
_HDR = const("<BBH")
_O_HASH = const(4)
_O_ST = const(20)
_JS_WINDOW = const(1)
_ST = const("<bbBBiiIIII")
_F_KEY = const(1)
_F_HASH = const(2)
_F_NODE = const(4)
_F_STATS = const(8)
_F_HKEY = const(32)
_F_LK = const(64)
_U32 = const(0xFFFFFFFF)
_HS = const(45)


def _b16(s):
    # 32 hex digits from the store -> 16 bytes (ValueError otherwise)
    if not isinstance(s, str) or len(s) != 32:
        raise ValueError("not 16 bytes of hex")
    return unhexlify(s)


def _int(v, hi):
    # an int 0..hi from the store (ValueError otherwise)
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= hi:
        raise ValueError("bad number")
    return v


def load(dl, capacity):
    """Read the log's records into dl (its _t, _w, _e, _h, _k, ext_pan_id,
    statistics). What is malformed on flash is left out and logged."""
    rec = dict(dl._store.kv("devlog", False).items())  # one parse, dropped when read
    d = rec.get("d")
    d = d if isinstance(d, dict) else {}
    dl._t = bytearray(_S * (capacity if capacity > len(d) else len(d)))
    back = lazy.borrow(_IC)
    try:
        ic = lazy.load(_IC)
        for eh, v in d.items():
            try:
                _entry(dl, eh, v, ic)
            except Exception as ex:  # a bad entry on flash: refused, said
                log("device_log", "entry %r not loaded: %r" % (eh, ex))
    finally:
        ic = None
        lazy.give_back(back)
    d = None
    h = bytearray()
    hist = rec.get("h")
    for v in hist if isinstance(hist, list) else ():
        try:
            h.extend(hrec(v[0], _b16(v[1]) if v[1] else None, _b16(v[2]) if v[2] else None, v[3],
                          _int(v[4], _U32)))
        except Exception as ex:
            log("device_log", "historic entry not loaded: %r" % (ex,))
    dl._h = bytes(h)
    try:
        x = rec.get("x")
        if x is not None:
            x = unhexlify(x)
            if len(x) != 8:
                raise ValueError("not 8 bytes")
        dl.ext_pan_id = x
    except Exception as ex:
        log("device_log", "extended PAN id not loaded: %r" % (ex,))
    rec = hist = h = None
    saved = dict(dl._store.kv("devstats", False).items())
    for i in range(len(dl._e)):
        v = saved.get(dl._e[i])
        if v is not None:
            try:
                _stats(dl._t, i, v)
            except Exception as ex:
                log("device_log", "statistics of %s not loaded: %r" % (dl._e[i], ex))


def _entry(dl, eh, v, ic):
    # entry v of EUI eh from the store into the next slot (ValueError,
    # TypeError, IndexError for a malformed one: nothing kept). A link key
    # that is its install code's (the 16 octets: ic, han.install_code) is
    # not kept, another is (dl._k); a window only while open (dl._w)
    if not isinstance(eh, str) or ids.eui_hex(eh) != eh or eh in dl._e:
        raise ValueError("bad EUI")
    typ = v[0]
    if typ is not None:
        _int(typ, len(TYPE_NAMES) - 1)
    key = _b16(v[1]) if v[1] is not None else None
    hsh = _b16(v[2]) if v[2] else None
    node = _int(v[4], 0xFFFF) if v[4] is not None else None
    hkey = _b16(v[8]) if len(v) > 8 and v[8] is not None else None
    if key is not None and hsh and ic.link_key(ic.add_crc(hsh)) == key:
        key = True
    ks, js, ws, we = _int(v[3], 3), _int(v[5], 4), _int(v[6], _U32), _int(v[7], _U32)
    i = len(dl._e)
    s = memoryview(dl._t)[i * _S:(i + 1) * _S]
    _fill(s, typ, key, hsh, ks, node, js)
    if hkey is not None:
        s[1] |= _F_HKEY
    k = (key if s[1] & _F_LK else b"") + (hkey or b"")
    if k:
        if dl._k is None:
            dl._k = {}
        dl._k[eh] = k
    if js == _JS_WINDOW:
        if dl._w is None:
            dl._w = bytearray(len(dl._t) // _S * _W)
        pack_into("<II", dl._w, i * _W, ws, we)
    dl._e.append(eh)


def _stats(t, i, v):
    # a devstats list into slot i of table t
    if len(v) != 10:
        raise ValueError("not 10 numbers")
    o = i * _S
    w = (v[0], v[2], v[3], v[5], v[1], v[4], v[6], v[7], v[8], v[9])
    pack_into(_ST, t, o + _O_ST, *w)
    if unpack_from(_ST, t, o + _O_ST) != w:
        raise ValueError("out of range")
    t[o + 1] |= _F_STATS


def hrec(eh, hsh, key, typ, t):
    """A historic record (bytes): EUI text, key hash and link key (16 bytes
    or None), type (None or 0..6), removal time."""
    r = bytearray(_HS)
    b = unhexlify(eh)
    if len(b) != 8:
        raise ValueError("bad EUI")
    r[0:8] = b
    f = _NO_TYPE if typ is None else _int(typ, len(TYPE_NAMES) - 1)
    if hsh:
        r[8:24] = hsh
        f |= 16
    if key:
        r[24:40] = key
        f |= 8
    r[40] = f
    pack_into("<I", r, 41, t)
    return r


def _lkey(ic, s, o, k):
    # the link key (bytes) of the slot at s[o], None when it has none: its
    # own (the first 16 bytes of k, its keys in _k), or its install code's
    # (the slot's 16 octets) through ic (han.install_code)
    f = s[o + 1]
    if not f & _F_KEY:
        return None
    if f & _F_LK:
        return k[:16]
    return ic.link_key(ic.add_crc(bytes(s[o + _O_HASH:o + _O_HASH + 16])))


def _hexout(out, buf, o, have):
    # a 16-byte field of buf at o as JSON: "hex" or null
    if have:
        out.put(b'"')
        out.put(hexlify(memoryview(buf)[o:o + 16]))
        out.put(b'"')
    else:
        out.put(b"null")


def emit(out, e, t, w, n, pend, add, drop, h, x, k, ic):
    """The "devlog" record's JSON through out (a jsonout.JsonOut): entries
    0..n-1 of (EUI texts e, table t, windows w) with `pend` {index: copy}
    in place of theirs, `add` (eui, copy, its keys) after them, entry
    `drop` left out (a copy: the slot, then its window's start and end);
    historic blob h, extended PAN id x (bytes or None), the entries' keys
    beside the table k (dict or None: own link key, historic link key); ic
    (han.install_code) derives the install codes' link keys. A window's
    start and end are 0 when its join state is not "join window open"."""
    out.put(b'{"d": {')
    sep = b""
    for j in range(n + (1 if add else 0)):
        if j == drop:
            continue
        if j < n:
            eh = e[j]
            s, o = (pend[j], 0) if pend and j in pend else (t, j * _S)
            ks = k.get(eh) if k else None
        else:
            eh, s, ks = add
            o = 0
        b, f, node = unpack_from(_HDR, s, o)
        ws = we = 0
        if b >> 5 == _JS_WINDOW:
            ws, we = unpack_from("<II", w, j * _W) if s is t else unpack_from("<II", s, _S)
        typ = b & 7
        out.put(sep)
        sep = b", "
        out.string(eh)
        out.put(b": [")
        out.value(None if typ == _NO_TYPE else typ, 0)
        out.put(b", ")
        key = _lkey(ic, s, o, ks)
        _hexout(out, key, 0, key)
        out.put(b", ")
        if f & _F_HASH:
            _hexout(out, s, o + _O_HASH, 1)
        else:
            out.put(b'""')
        out.put(b", ")
        out.value((b >> 3) & 3, 0)
        out.put(b", ")
        out.value(node if f & _F_NODE else None, 0)
        out.put(b", ")
        out.value(b >> 5, 0)
        out.put(b", ")
        out.value(ws, 0)
        out.put(b", ")
        out.value(we, 0)
        out.put(b", ")
        hk = ks if f & _F_HKEY else None  # its last 16 bytes
        _hexout(out, hk, len(hk) - 16 if hk else 0, hk)
        out.put(b"]")
    out.put(b'}, "h": [')
    for i in range(0, len(h), _HS):
        typ = h[i + 40] & 7
        out.put(b'["' if i == 0 else b', ["')
        out.put(hexlify(memoryview(h)[i:i + 8]).upper())
        out.put(b'", ')
        if h[i + 40] & 16:
            _hexout(out, h, i + 8, 1)
        else:
            out.put(b'""')
        out.put(b", ")
        _hexout(out, h, i + 24, h[i + 40] & 8)
        out.put(b", ")
        out.value(None if typ == _NO_TYPE else typ, 0)
        out.put(b", ")
        out.value(unpack_from("<I", h, i + 41)[0], 0)
        out.put(b"]")
    out.put(b"]")
    if x is not None:
        out.put(b', "x": ')
        _hexout(out, x, 0, 1)  # 8 bytes: the slice stops at its end
    out.put(b"}")


def emit_stats(out, e, t):
    """The "devstats" record's JSON: the entries with statistics."""
    out.put(b"{")
    sep = b""
    for i in range(len(e)):
        o = i * _S
        if not t[o + 1] & _F_STATS:
            continue
        out.put(sep)
        sep = b", "
        out.string(e[i])
        rmin, rmax, lmin, lmax, rsum, lsum, n, last, ok, fail = unpack_from(_ST, t, o + _O_ST)
        out.put(b": ")
        out.value((rmin, rsum, rmax, lmin, lsum, lmax, n, last, ok, fail), 0)
    out.put(b"}")
