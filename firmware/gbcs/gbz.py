# GBZ: the ZCL-carrying GBCS payload (gas/ESME commands).
#
#   profile id 01 09, component count (1),
#   [alert code (2), timestamp (4)]                       alerts (CRA 3)
#   (an alert with no use-case-specific components -- e.g. 0x819D GSME
#   command not retrieved, 0x819E tap-off failure, both message code 0x1001
#   generic non-critical -- has count 0 and ends after the timestamp; commands
#   and responses carry at least one component)
#   component*: extended header control (1), cluster id (2), length (2),
#     [from-date-time (4)]                                control bit 0x10
#     [additional header control (1), frame counter (1)]  control bit 0x02 (encrypted)
#     ZCL header: frame control, [manufacturer code (2)], sequence, command id
#     plain: ZCL payload | encrypted: ciphered length (2), security header (5),
#     ciphertext, AE MAC (12)
# The future-dated alert (message code 0x00CD) carries instead of components
# a length byte and {message code, originator counter, cluster, frame control,
# command id}.
from micropython import const

_PROFILE = const(0x0109)
CTRL_LAST = const(0x01)
CTRL_ENCRYPTED = const(0x02)
_CTRL_FROM_DT = const(0x10)
_CTRL_KNOWN = const(0x13)
_SEC_LEN = const(5)
_MAC_LEN = const(12)
MC_FUTURE_DATED = const(0x00CD)


class GbzError(ValueError):
    pass


def _need(off, n, end, what):
    if off + n > end:
        raise GbzError("truncated %s: need %d bytes at offset %d" % (what, n, off))


def _u(mv, off, n):
    v = 0
    for i in range(off, off + n):
        v = (v << 8) | mv[i]
    return v


class Component:
    def __init__(self):
        self.control = 0
        self.cluster = 0
        self.from_dt = None  # int (4 bytes) or None
        self.ahc = None  # additional header control (encrypted only)
        self.ahfc = None  # additional header frame counter (encrypted only)
        self.zcl_fc = 0
        self.mfr = None
        self.seq = 0
        self.cmd = 0
        self.body = None  # plain: ZCL payload (memoryview)
        self.sec_header = None  # encrypted: memoryview(5)
        self.ciphertext = None  # encrypted: memoryview
        self.ae_mac = None  # encrypted: memoryview(12)

    def encrypted(self):
        return bool(self.control & CTRL_ENCRYPTED)


class Gbz:
    def __init__(self):
        self.count = 0
        self.alert_code = None
        self.timestamp = None
        self.components = []
        # future-dated alert body (message code 0x00CD): list of memoryviews
        self.fd_entries = None


def parse(data, cra=1, message_code=0):
    """Parse a GBZ payload. cra=3 means an alert (alert code and timestamp)."""
    mv = data if isinstance(data, memoryview) else memoryview(data)
    end = len(mv)
    _need(0, 3, end, "GBZ header")
    if mv[0] != 0x01 or mv[1] != 0x09:
        raise GbzError("bad GBZ profile id %02x %02x (want 01 09)" % (mv[0], mv[1]))
    g = Gbz()
    g.count = mv[2]
    off = 3
    if g.count == 0 and (cra != 3 or message_code == MC_FUTURE_DATED):
        raise GbzError("GBZ component count 0 (only an alert may have no components)")
    if cra == 3:
        _need(off, 6, end, "GBZ alert header")
        g.alert_code = _u(mv, off, 2)
        g.timestamp = _u(mv, off + 2, 4)
        off += 6
    if message_code == MC_FUTURE_DATED:
        g.fd_entries = []
        for _ in range(g.count):
            _need(off, 1, end, "future-dated alert entry length")
            n = mv[off]
            if n != 14:
                raise GbzError("bad future-dated alert entry length %d (want 14)" % n)
            _need(off + 1, n, end, "future-dated alert entry")
            g.fd_entries.append(mv[off + 1 : off + 1 + n])
            off += 1 + n
    else:
        for _ in range(g.count):
            c, off = _parse_component(mv, off, end)
            g.components.append(c)
    if off != end:
        raise GbzError("trailing bytes: %d after the last GBZ component" % (end - off))
    return g


def _parse_component(mv, off, end):
    _need(off, 5, end, "GBZ extended header")
    c = Component()
    ctrl = mv[off]
    if ctrl & ~_CTRL_KNOWN & 0xFF:
        raise GbzError("bad GBZ extended header control 0x%02x at offset %d" % (ctrl, off))
    c.control = ctrl
    c.cluster = _u(mv, off + 1, 2)
    n = _u(mv, off + 3, 2)
    off += 5
    _need(off, n, end, "GBZ component")
    cend = off + n
    if ctrl & _CTRL_FROM_DT:
        _need(off, 4, cend, "GBZ from-date-time")
        c.from_dt = _u(mv, off, 4)
        off += 4
    if ctrl & CTRL_ENCRYPTED:
        _need(off, 2, cend, "GBZ additional header")
        c.ahc = mv[off]
        c.ahfc = mv[off + 1]
        off += 2
    _need(off, 3, cend, "ZCL header")
    c.zcl_fc = mv[off]
    off += 1
    if c.zcl_fc & 0x04:
        _need(off, 4, cend, "ZCL header with manufacturer code")
        c.mfr = mv[off] | (mv[off + 1] << 8)
        off += 2
    c.seq = mv[off]
    c.cmd = mv[off + 1]
    off += 2
    if ctrl & CTRL_ENCRYPTED:
        _need(off, 2, cend, "GBZ ciphered information length")
        k = _u(mv, off, 2)
        off += 2
        if off + k != cend:
            raise GbzError("GBZ ciphered information length %d does not match the component" % k)
        if k < _SEC_LEN + _MAC_LEN:
            raise GbzError("GBZ ciphered information too short (%d)" % k)
        c.sec_header = mv[off : off + _SEC_LEN]
        c.ciphertext = mv[off + _SEC_LEN : cend - _MAC_LEN]
        c.ae_mac = mv[cend - _MAC_LEN : cend]
    else:
        c.body = mv[off:cend]
    return c, cend


def _u16(out, v):
    out.append((v >> 8) & 0xFF)
    out.append(v & 0xFF)


def encode_component(c, out):
    body = bytearray()
    if c.control & _CTRL_FROM_DT:
        v = c.from_dt
        body.extend(bytes(((v >> 24) & 0xFF, (v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF)))
    if c.control & CTRL_ENCRYPTED:
        body.append(c.ahc)
        body.append(c.ahfc)
    body.append(c.zcl_fc)
    if c.zcl_fc & 0x04:
        body.append(c.mfr & 0xFF)
        body.append(c.mfr >> 8)
    body.append(c.seq)
    body.append(c.cmd)
    if c.control & CTRL_ENCRYPTED:
        if len(c.sec_header) != _SEC_LEN or len(c.ae_mac) != _MAC_LEN:
            raise GbzError("encrypted component needs a 5-byte security header and 12-byte MAC")
        _u16(body, _SEC_LEN + len(c.ciphertext) + _MAC_LEN)
        body.extend(c.sec_header)
        body.extend(c.ciphertext)
        body.extend(c.ae_mac)
    else:
        body.extend(c.body)
    if len(body) > 0xFFFF:
        raise GbzError("GBZ component too long")
    out.append(c.control)
    _u16(out, c.cluster)
    _u16(out, len(body))
    out.extend(body)


def encode(g):
    out = bytearray(b"\x01\x09")
    out.append(g.count)
    if g.alert_code is not None:
        _u16(out, g.alert_code)
        t = g.timestamp
        out.extend(bytes(((t >> 24) & 0xFF, (t >> 16) & 0xFF, (t >> 8) & 0xFF, t & 0xFF)))
    if g.fd_entries is not None:
        for e in g.fd_entries:
            out.append(len(e))
            out.extend(e)
    else:
        for c in g.components:
            encode_component(c, out)
    return bytes(out)


def component(cluster, zcl_fc, seq, cmd, body, last=False, from_dt=None, mfr=None):
    """A plain (unencrypted) component for building a GBZ payload."""
    c = Component()
    c.control = (CTRL_LAST if last else 0) | (_CTRL_FROM_DT if from_dt is not None else 0)
    c.cluster = cluster
    c.from_dt = from_dt
    c.zcl_fc = zcl_fc | (0x04 if mfr is not None else 0)
    c.mfr = mfr
    c.seq = seq
    c.cmd = cmd
    c.body = body
    return c


def alert(alert_code, timestamp, components=()):
    """GBZ alert payload: alert code, timestamp (UTC seconds since 2000, 32
    bits) and the use-case-specific components (none for 0x819D/0x819E:
    count 0, nothing after the timestamp)."""
    return build(list(components), alert_code=alert_code, timestamp=max(0, int(timestamp)) & 0xFFFFFFFF)


def build(components, alert_code=None, timestamp=0):
    g = Gbz()
    g.count = len(components)
    g.components = components
    g.alert_code = alert_code
    g.timestamp = timestamp
    return encode(g)
