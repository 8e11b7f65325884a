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
# the decoder's standing receive buffer: nine in ten of the RTDS commands
# fit it (their median is ~120 bytes); a larger frame gets a buffer of its own
_SMALL = const(512)

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

    The standing buffer is `size` bytes, room for the frames the head-end
    usually sends. A frame's header announcing more makes the decoder take a
    buffer of exactly that frame's length (at most MAX_PAYLOAD + 13) and go
    back to the standing one once the frame is taken (`grown` counts them)."""

    def __init__(self, size=_SMALL):
        self._small = bytearray(size)
        self._use(self._small)
        self.n = 0  # bytes held
        self.pos = 0  # start of the next frame
        self.grown = 0

    def _use(self, buf):
        self.buf = buf
        self.mv = memoryview(buf)

    def reset(self):
        self.n = 0
        self.pos = 0
        self._use(self._small)

    def feed(self, data, off=0):
        """Take data[off:], as much as the buffer has room for -> the offset
        of what is left. With frames behind each other take them (next())
        before feeding the rest."""
        if self.pos:
            rest = self.n - self.pos
            small = self._small
            if self.buf is not small and rest <= len(small):
                small[:rest] = self.mv[self.pos:self.n]  # the large frame is taken
                self._use(small)
            else:
                self.mv[:rest] = self.mv[self.pos:self.n]
            self.n = rest
            self.pos = 0
        k = min(len(data) - off, len(self.buf) - self.n)
        if k > 0:
            # the common case, a whole chunk, copies without a view object
            src = data if off == 0 and k == len(data) else memoryview(data)[off:off + k]
            self.mv[self.n:self.n + k] = src
            self.n += k
            off += k
        return off

    def next(self):
        avail = self.n - self.pos
        if avail < 2:
            if avail == 1 and self.buf[self.pos] != 0x43:
                raise LinkError("BadMagic", "bad magic")
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
            if total > len(b):
                # larger than the standing buffer: one of its own length
                big = bytearray(total)
                big[:avail] = self.mv[p:self.n]
                self._use(big)
                self.n = avail
                self.pos = 0
                self.grown += 1
            return None
        crc = struct.unpack_from(">I", b, p + _HDR + ln)[0]
        if binascii.crc32(self.mv[p:p + _HDR + ln]) != crc:
            raise LinkError("BadCrc", "frame CRC mismatch")
        self.pos = p + total
        return ftype, fid, self.mv[p + _HDR:p + _HDR + ln]


def seen_add(ids, fid, size):
    """Add frame id `fid` to `ids`, a list of the recent frame ids received
    from the peer (to drop duplicates), keeping the newest `size`. -> False
    when it was there already. The session persists the list as it is."""
    if fid in ids:
        return False
    ids.append(fid)
    if len(ids) > size:
        ids.pop(0)
    return True
