# The hub <-> head-end link protocol over the modem's TCP socket
# (docs/headend-link.md). Pure codec: bytes in, frames out; no board access.
#
# Frame: magic "CH" | type u8 | id u32 BE | length u16 BE | payload | CRC-32 BE
# (binascii.crc32 over everything before it).
from micropython import const
import binascii
import struct

from log import KindError

_MAGIC = const(b"CH")
_HDR = const(9)
_TRAILER = const(4)
MAX_PAYLOAD = const(4096)

HELLO = const(1)  # hub -> HE: eui(8) signal i8 (127 = unknown) version (utf-8)
HELLO_ACK = const(2)  # HE -> hub: utc u32
GBCS = const(3)  # both ways: id = sender's frame id; payload = one GBCS frame
ACK = const(4)  # both ways: id = acked frame id; payload = status u8
TIME = const(5)  # HE -> hub: utc u32
PING = const(6)  # both ways; answered by PONG with the same id
PONG = const(7)
MGMT = const(8)  # HE -> hub: id = the head-end's request id; payload = a JSON request (wan.mgmt)
MGMT_REPLY = const(9)  # hub -> HE: the same id; payload = the JSON reply
REPORT = const(10)  # hub -> HE: id = outbox seq (ACKed like GBCS); payload = a JSON report (wan.report)
_LAST = const(10)

ACK_DONE = const(0)  # executed / accepted
ACK_DUPLICATE = const(1)  # already seen: not executed again
ACK_REJECTED = const(2)  # received intact, refused by the GBCS layer

_NO_SIGNAL = const(127)


class LinkError(KindError):
    """A malformed link frame, raised as LinkError(kind, message); the kinds
    (the classes of before): BadMagic, BadType, TooLong, BadCrc, BadPayload."""


def encode(ftype, fid, payload=b""):
    n = len(payload)
    if n > MAX_PAYLOAD:
        raise LinkError("TooLong", "payload %d > %d" % (n, MAX_PAYLOAD))
    if not 1 <= ftype <= _LAST:
        raise LinkError("BadType", "type %d" % ftype)
    head = _MAGIC + struct.pack(">BIH", ftype, fid & 0xFFFFFFFF, n)
    crc = binascii.crc32(payload, binascii.crc32(head))
    return head + payload + struct.pack(">I", crc)


def hello(eui, version, signal_dbm):
    if len(eui) != 8:
        raise LinkError("BadPayload", "EUI-64 must be 8 bytes")
    s = _NO_SIGNAL if signal_dbm is None else max(-128, min(126, int(signal_dbm)))
    return encode(HELLO, 0, bytes(eui) + struct.pack(">b", s) + version.encode())


def u32_payload(p, what):
    if len(p) != 4:
        raise LinkError("BadPayload", "%s wants 4 bytes, got %d" % (what, len(p)))
    return struct.unpack(">I", bytes(p))[0]


def ack(fid, status=ACK_DONE):
    return encode(ACK, fid, bytes((status,)))


def parse_ack(p):
    if len(p) != 1 or p[0] > ACK_REJECTED:
        raise LinkError("BadPayload", "bad ACK status")
    return p[0]


class Decoder:
    """Feed bytes, take whole frames. next() -> (type, id, payload memoryview)
    or None; the payload view is valid until the next feed()/next() call.
    A malformed frame raises a LinkError (its kind says what is wrong); the
    stream cannot be trusted after that and the connection should be dropped.

    It holds no buffer between frames: fed while empty, it reads the frames
    from the caller's chunk itself (which must stay unchanged until they are
    taken). Only a frame the chunk ends inside of is copied, into a buffer of
    that frame's length (a header's 9 bytes while the length is not yet
    in; at most MAX_PAYLOAD + 13), which is dropped once the frame is taken."""

    def __init__(self):
        self.buf = None  # the chunk read from, or the partial frame's own buffer
        self.n = 0  # bytes held
        self.pos = 0  # start of the next frame
        self.own = False  # buf is the decoder's (else the caller's chunk)

    def feed(self, data, off=0):
        """Take data[off:] -> len(data) (all of it is taken). Fed while
        empty, it reads the frames from data itself, which must stay
        unchanged until they are taken (next() until None)."""
        rest = self.n - self.pos
        if not rest:
            # empty: read the frames from the chunk itself
            self.buf = data
            self.n = len(data)
            self.pos = off
            self.own = False
            return self.n
        k = len(data) - off
        if not self.own or self.pos or rest + k > len(self.buf):
            # a partial frame left in the caller's last chunk, behind a frame
            # taken, or short of room: copied to a buffer of its own
            self._keep(rest + k)
        if k > 0:
            # the common case, a whole chunk, copies without a view object
            src = data if off == 0 else memoryview(data)[off:]
            self.buf[self.n:self.n + k] = src
            self.n += k
        return len(data)

    def _keep(self, size):
        # the partial frame at pos into a buffer of its own of `size` bytes,
        # at least the frame's length once its header is in (else the
        # header's)
        p = self.pos
        avail = self.n - p
        if avail >= _HDR:
            size = max(size, _HDR + _TRAILER + struct.unpack_from(">H", self.buf, p + 7)[0])
        big = bytearray(max(size, _HDR))
        big[:avail] = memoryview(self.buf)[p:self.n]
        self.buf = big
        self.n = avail
        self.pos = 0
        self.own = True

    def next(self):
        avail = self.n - self.pos
        if avail < 2:
            if avail == 1 and self.buf[self.pos] != 0x43:
                raise LinkError("BadMagic", "bad magic")
            if not avail:
                self.buf = None  # every frame taken: nothing held
            return None
        p = self.pos
        b = self.buf
        if b[p] != 0x43 or b[p + 1] != 0x48:
            raise LinkError("BadMagic", "bad magic %02x%02x" % (b[p], b[p + 1]))
        if avail < _HDR:
            return None
        ftype, fid, ln = struct.unpack_from(">BIH", b, p + 2)
        if not 1 <= ftype <= _LAST:
            raise LinkError("BadType", "unknown frame type %d" % ftype)
        if ln > MAX_PAYLOAD:
            raise LinkError("TooLong", "frame length %d" % ln)
        total = _HDR + ln + _TRAILER
        if avail < total:
            if self.own and p + total > len(b):
                self._keep(total)  # the header's buffer: now one of the frame's length
            return None
        mv = memoryview(b)
        crc = struct.unpack_from(">I", b, p + _HDR + ln)[0]
        if binascii.crc32(mv[p:p + _HDR + ln]) != crc:
            raise LinkError("BadCrc", "frame CRC mismatch")
        self.pos = p + total
        return ftype, fid, mv[p + _HDR:p + _HDR + ln]


def seen_add(ids, fid, size):
    """Add frame id `fid` to `ids`, a list of the recent frame ids received
    from the peer (to drop duplicates), keeping the newest `size` (the
    oldest goes before the new one comes: the list never has more room than
    `size` needs). -> False when it was there already. The session persists
    the list as it is."""
    if fid in ids:
        return False
    if len(ids) >= size:
        ids.pop(0)
    ids.append(fid)
    return True
