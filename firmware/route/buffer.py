# The command buffer for sleepy devices (the GSME): persistent per-device
# FIFO queues of whole GBCS frames, bounded per device (count and size), each
# message with an expiry time. See docs/routing.md.
#
# Flash layout, chosen for wear (littlefs on 4096-byte blocks): a message is
# split into chunk files of at most 112 bytes, small enough for littlefs to
# keep inline in its directory metadata log, so storing and deleting a message
# appends to a metadata block instead of copying a data block (about 1/20 of
# the erases of one file or journal record per message). Chunks are spread
# over 8 slot folders so no directory's live metadata grows large (a large one
# is compacted, i.e. copied, more often).
#
#   ROOT/<slot>/<seq>.<k>   slot = (seq + k) % 8, k = chunk number
#   chunk 0 = header (22 bytes) + the first 90 message bytes:
#     "GB" | u8 version | u8 chunk count | EUI-64 (8) | u32 expiry (UTC s) |
#     u16 message length | u32 crc32 (header bytes 0..17, then the message)
#   chunk k > 0 = the next 112 message bytes
#
# Power cuts: chunks 1.. are written first and chunk 0 last; a message exists
# once its chunk 0 is complete and the crc over all chunks holds. Removal
# deletes chunk 0 first. At open, anything without a valid chunk 0 (a
# message cut while being written, the rest of one cut while being removed)
# is deleted. So a message is either wholly there or gone, and one taken for
# delivery is gone from flash before it is handed out (never delivered twice).
import binascii
import os
import struct

from micropython import const

_SLOTS = const(8)
CHUNK = const(112)
_HDR = const(22)
_FIRST = const(90)  # CHUNK - _HDR
_VERSION = const(1)
_ENOENT = const(2)

DEFAULT_CAPACITY = const(32)
DEFAULT_MAX_BYTES = const(1200)
DEFAULT_EXPIRY_S = const(86400)


class BufferError(ValueError):
    pass


class BufferFull(BufferError):
    pass


class MessageTooLong(BufferError):
    pass


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _mkdir(path):
    try:
        os.mkdir(path)
    except OSError:
        pass


def chunk_count(n):
    if n <= _FIRST:
        return 1
    return 1 + (n - _FIRST + CHUNK - 1) // CHUNK


class CommandBuffer:
    """CommandBuffer(root, capacity=32, max_bytes=1200, expiry_s=86400).

    put(eui_hex, msg, now) -> seq (durable when it returns); take(eui_hex) ->
    (msg, remaining) or (None, 0), removed from flash before it returns;
    expire(now) -> [(eui_hex, msg)] removed; drop(eui_hex) -> how many;
    pending(eui_hex) -> messages queued. EUIs are 16 hex digits, any case."""

    def __init__(self, root, capacity=DEFAULT_CAPACITY, max_bytes=DEFAULT_MAX_BYTES, expiry_s=DEFAULT_EXPIRY_S,
                 stats=None):
        self.root = root.rstrip("/")
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.expiry_s = expiry_s
        self.stats = stats if stats is not None else {}
        for k in ("buffered", "delivered", "expired", "dropped", "refused_full", "discarded_at_open"):
            self.stats.setdefault(k, 0)
        self._q = {}  # EUI hex -> [[seq, chunks, expiry, length], ...] oldest first
        self._listeners = []
        self._hdr = bytearray(_HDR)
        self.next_seq = 1
        self._open()

    # -- paths ------------------------------------------------------------------

    def _path(self, seq, k):
        return "%s/%d/%d.%d" % (self.root, (seq + k) % _SLOTS, seq, k)

    def _remove(self, seq, n):
        # chunk 0 first: from then on the message no longer exists
        for k in range(n):
            try:
                os.remove(self._path(seq, k))
            except OSError as e:
                if e.args[0] != _ENOENT:  # gone already is fine; a flash fault is not
                    raise

    # -- opening and recovery ------------------------------------------------

    def _open(self):
        _mkdir(self.root)
        found = {}  # seq -> set of chunk numbers
        junk = []
        for s in range(_SLOTS):
            d = "%s/%d" % (self.root, s)
            _mkdir(d)
            for ent in os.ilistdir(d):
                name = ent[0]
                try:
                    a, b = name.split(".")
                    seq, k = int(a), int(b)
                except ValueError:
                    junk.append(d + "/" + name)
                    continue
                if (seq + k) % _SLOTS != s:
                    junk.append(d + "/" + name)
                    continue
                ks = found.get(seq)
                if ks is None:
                    ks = found[seq] = set()
                ks.add(k)
        for p in junk:
            os.remove(p)
        top = 0
        for seq in sorted(found):
            ks = found[seq]
            if seq > top:
                top = seq
            rec = self._check(seq, ks) if 0 in ks else None
            if rec is None:
                # an unfinished put or the remains of a removal
                if 0 in ks:
                    self.stats["discarded_at_open"] += 1
                for k in sorted(ks):
                    os.remove(self._path(seq, k))
                continue
            eh, n, expiry, length = rec
            for k in ks:
                if k >= n:
                    os.remove(self._path(seq, k))
            self._q.setdefault(eh, []).append([seq, n, expiry, length])
        self.next_seq = top + 1

    def _check(self, seq, ks):
        # -> (eui hex, chunks, expiry, length) when the message is whole
        try:
            with open(self._path(seq, 0), "rb") as f:
                c0 = f.read()
        except OSError:
            return None
        if len(c0) < _HDR or c0[0:2] != b"GB" or c0[2] != _VERSION:
            return None
        n = c0[3]
        expiry, length, want = struct.unpack_from("<IHI", c0, 12)
        if n != chunk_count(length) or n == 0:
            return None
        for k in range(1, n):
            if k not in ks:
                return None
        crc = binascii.crc32(memoryview(c0)[:18])
        crc = binascii.crc32(memoryview(c0)[_HDR:], crc)
        got = len(c0) - _HDR
        for k in range(1, n):
            try:
                with open(self._path(seq, k), "rb") as f:
                    b = f.read()
            except OSError:
                return None
            crc = binascii.crc32(b, crc)
            got += len(b)
        if got != length or crc & 0xFFFFFFFF != want:
            return None
        return binascii.hexlify(c0[4:12]).decode().upper(), n, expiry, length

    # -- listeners ----------------------------------------------------------------

    def on_change(self, fn):
        """fn(eui_hex, pending_count) after every change of a device's queue
        (the GPF mirror's "tunnel message pending" flag follows it)."""
        self._listeners.append(fn)

    def _fire(self, eh):
        n = len(self._q.get(eh, ()))
        for fn in self._listeners:
            try:
                fn(eh, n)
            except Exception:  # noqa: BLE001 - a listener never breaks the buffer
                pass

    # -- public API ------------------------------------------------------------

    def pending(self, eui_hex):
        return len(self._q.get(eui_hex.upper(), ()))

    def devices(self):
        return dict((eh, len(q)) for eh, q in self._q.items() if q)

    def __len__(self):
        return sum(len(q) for q in self._q.values())

    def queue(self, eui_hex):
        """[(seq, expiry, length)] of a device's queue, oldest first."""
        return [(r[0], r[2], r[3]) for r in self._q.get(eui_hex.upper(), ())]

    def put(self, eui_hex, msg, now, expiry_s=None):
        eh = eui_hex.upper()
        length = len(msg)
        if length > self.max_bytes:
            raise MessageTooLong("message of %d bytes > %d" % (length, self.max_bytes))
        if length == 0:
            raise BufferError("empty message")
        q = self._q.get(eh)
        if q is not None and len(q) >= self.capacity:
            self.stats["refused_full"] += 1
            raise BufferFull("queue for %s is full (%d messages)" % (eh, len(q)))
        eui = binascii.unhexlify(eh)
        expiry = int(now) + (self.expiry_s if expiry_s is None else expiry_s)
        n = chunk_count(length)
        seq = self.next_seq
        self.next_seq = seq + 1  # never reused, even if this put fails
        mv = memoryview(msg)
        h = self._hdr
        h[0:2] = b"GB"
        h[2] = _VERSION
        h[3] = n
        h[4:12] = eui
        struct.pack_into("<IH", h, 12, expiry & 0xFFFFFFFF, length)
        crc = binascii.crc32(mv, binascii.crc32(memoryview(h)[:18])) & 0xFFFFFFFF
        struct.pack_into("<I", h, 18, crc)
        try:
            off = _FIRST
            for k in range(1, n):
                with open(self._path(seq, k), "wb") as f:
                    f.write(mv[off : off + CHUNK])
                off += CHUNK
            with open(self._path(seq, 0), "wb") as f:
                f.write(h)
                f.write(mv[:_FIRST])
        except OSError:
            try:
                self._remove(seq, n)
            except OSError:
                pass  # what is left is cleaned up at the next open
            raise
        if q is None:
            q = self._q[eh] = []
        q.append([seq, n, expiry, length])
        self.stats["buffered"] += 1
        self._fire(eh)
        return seq

    def _read(self, rec):
        seq, n, _e, length = rec
        out = bytearray(length)
        off = 0
        for k in range(n):
            with open(self._path(seq, k), "rb") as f:
                if k == 0:
                    f.seek(_HDR)
                b = f.read()
            out[off : off + len(b)] = b
            off += len(b)
        if off != length:
            raise BufferError("buffered message %d is short" % seq)
        return out

    def read(self, eui_hex, i=0):
        """The i-th queued message of a device (not removed), or None."""
        q = self._q.get(eui_hex.upper())
        if not q or i >= len(q):
            return None
        return bytes(self._read(q[i]))

    def _pop(self, eh, i):
        q = self._q[eh]
        rec = q[i]
        self._remove(rec[0], rec[1])
        q.pop(i)
        if not q:
            del self._q[eh]

    def take(self, eui_hex):
        """Oldest message for the device, removed from flash before it is
        returned: (msg bytearray, messages still queued) or (None, 0)."""
        eh = eui_hex.upper()
        q = self._q.get(eh)
        if not q:
            return None, 0
        msg = self._read(q[0])
        self._pop(eh, 0)
        self.stats["delivered"] += 1
        self._fire(eh)
        return msg, len(self._q.get(eh, ()))

    def expire(self, now):
        """Remove every message whose expiry is <= now: [(eui_hex, msg)]."""
        out = []
        for eh in list(self._q):
            q = self._q.get(eh)
            i = 0
            changed = False
            while q and i < len(q):
                if q[i][2] <= now:
                    try:
                        msg = bytes(self._read(q[i]))
                    except (OSError, BufferError):
                        msg = None
                    self._pop(eh, i)
                    self.stats["expired"] += 1
                    out.append((eh, msg))
                    changed = True
                    q = self._q.get(eh)
                else:
                    i += 1
            if changed:
                self._fire(eh)
        return out

    def next_expiry(self):
        t = None
        for q in self._q.values():
            for r in q:
                if t is None or r[2] < t:
                    t = r[2]
        return t

    def drop(self, eui_hex):
        """Delete a device's whole queue (it left the Device Log). -> count."""
        eh = eui_hex.upper()
        q = self._q.get(eh)
        if not q:
            return 0
        n = 0
        while eh in self._q:
            self._pop(eh, 0)
            n += 1
        self.stats["dropped"] += n
        self._fire(eh)
        return n

    def keep_only(self, euis):
        """Drop the queues of every device not in euis (after a restore)."""
        keep = set(e.upper() for e in euis)
        return sum(self.drop(eh) for eh in list(self._q) if eh not in keep)
