# CS05b / CS05c over the WAN (docs/ota-han.md): the meters' images from the
# head-end into the OTA server's image store (han.ota), loaded on the first
# one. The CHF hands over each MAC'd command of the ACB (chf.usecases,
# project-local message codes 0x7F06 / 0x7F07, Image transfer objects
# 0-0:44.0.1.255 CS05b / 0-0:44.0.2.255 CS05c): method 2, data
# {offset u32, bytes, the target devices' EUIs (8 octets each, 1..8)}.
# The targets name the slot: all of one Device Log type, ESME or GSME for
# CS05b, PPMID for CS05c. The piece at offset 0 begins the image (its size
# from the OTA header), unless the slot already holds this image (same
# targets and size, same first bytes on flash): then the hub says where it
# is, so a head-end that starts again resumes. The answer is always the
# offset the hub takes next; the last byte runs the image check.
from binascii import hexlify

from gbcs import dlms
from han.ota import OtaError, parse_header
from log import log
from micropython import const

_OK = const(0)
_TYPE_UNMATCHED = const(12)
_OTHER = const(250)
_SAME = const(64)  # first bytes compared to tell a resent image from a new one


def _slot(dl, kind, targets):
    n = len(targets)
    if not n or n % 8 or n > 64:
        raise OtaError("targets: 1..8 EUIs of 8 octets")
    euis = [hexlify(targets[i:i + 8]).decode().upper() for i in range(0, n, 8)]
    t = dl.type_of(euis[0])
    if any(dl.type_of(e) != t for e in euis):
        raise OtaError("targets of more than one device type")
    slot = {1: "esme", 0: "gsme"}.get(t) if kind == 1 else ("ppmid" if t == 5 else None)
    if slot is None:
        raise OtaError("%s is not a device of CS05%s" % (euis[0], "b" if kind == 1 else "c"))
    return slot, euis


def _same_start(ota, slot, data):
    k = min(_SAME, len(data), ota._size(slot))
    if k <= 0:
        return False
    with open(ota._path(slot), "rb") as f:
        return f.read(k) == bytes(data[:k])


def next_offset(ota, slot):
    """The offset ota.put() takes next: the durable part and the RAM stage
    (the size when the image is ready, 0 when the slot loads nothing)."""
    m = ota.meta(slot)
    if m is None or m["st"] not in ("loading", "ready"):
        return 0
    if m["st"] == "ready":
        return m["size"]
    st = ota._stage
    return ota._size(slot) + (len(st[1]) if st is not None and st[0] == slot else 0)


def piece(ota, dl, kind, off, data, targets):
    """Take one piece; -> the offset the hub takes next."""
    slot, euis = _slot(dl, kind, targets)
    if off == 0:
        size = parse_header(data)[4]
        m = ota.meta(slot)
        if not (m and m["st"] in ("loading", "ready") and m["eui"] == euis and m["size"] == size
                and _same_start(ota, slot, data)):
            ota.begin(slot, euis, size)
    m = ota.meta(slot)
    nxt = next_offset(ota, slot)
    if m is None or m["eui"] != euis or m["st"] != "loading" or off != nxt:
        return nxt
    ota.put(slot, off, data)
    return next_offset(ota, slot)


def action(ota, dl, kind, method, v):
    """(result, value) of the Image transfer method with DLMS data v."""
    if method != 2:
        return 11, None  # object unavailable: no such method
    try:
        p = v[1]
        if (v[0] != dlms.STRUCTURE or len(p) != 3 or p[0][0] != dlms.DOUBLE_LONG_UNSIGNED
                or p[1][0] != dlms.OCTET_STRING or p[2][0] != dlms.OCTET_STRING):
            raise TypeError
        off, data, targets = p[0][1], p[1][1], bytes(p[2][1])
    except (TypeError, IndexError, AttributeError):
        return _TYPE_UNMATCHED, None
    try:
        return _OK, (dlms.DOUBLE_LONG_UNSIGNED, piece(ota, dl, kind, off, data, targets))
    except (OtaError, OSError) as e:
        log("ota", "CS05%s at %d refused: %s" % ("b" if kind == 1 else "c", off, e))
        return _OTHER, None
