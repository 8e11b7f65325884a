# The command buffer for sleepy devices (the GSME): persistent per-device
# FIFO queues of whole GBCS frames, bounded per device (count and size), each
# message with an expiry time. See docs/routing.md.
#
# Flash layout, chosen for wear (littlefs on 4096-byte blocks). A message is
# split into chunks of at most 120 bytes (header included), small enough for
# littlefs to keep each chunk file inline in its directory's metadata log:
# writing one appends a commit to an already-erased metadata block, where a
# file with a data block of its own (or a journal record) costs a block erase
# per write. The chunk files form a pool that is reused, never deleted:
# overwriting an existing file is one metadata commit, creating one is two
# and deleting one is another. Files are spread over 8 slot folders so no
# directory's live metadata grows large (it is copied at each compaction).
#
#   ROOT/<n % 8>/<n>     pool file n (created when the pool is short)
#   chunk 0: u32 seq | u8 0 | u8 chunk count | EUI-64 (8) | u32 expiry (UTC s)
#            | u16 message length | u32 crc32 (the 20 header bytes before it,
#            then the whole message) | the first 96 message bytes
#   chunk k: u32 seq | u8 k | the next 115 message bytes
#   free:    an empty file (a taken chunk 0), or any chunk of no whole message
#
# One file handle stays open: the chunk 0 file last written or emptied
# (_fh on pool file _fn, "w+b"). Opening a file walks every directory of its
# path, and littlefs reads each directory's whole metadata log to do it
# (about as many instructions as the log has bytes, times 30-60): the walk,
# not the write, was most of a put's cost. Through the handle a put of a
# one-chunk message into that file (empty: free) and the offer that reads
# it back open nothing; the confirm empties the file by opening it again
# ("w+b" truncates: the on-flash form is the same as with a fresh open each
# time). Every write through it is followed by a flush, one commit.
#
# Power cuts: littlefs commits a file at close or flush, so a file holds its
# old or its new content. A put writes chunks 1.. into free files first and chunk 0
# last: the message exists once its chunk 0 is complete and every chunk with
# its seq is there and the crc holds. Removing a message (confirm, drop,
# expiry) empties its chunk 0 (one commit): it is gone, its other chunks are
# free. At open the pool is scanned and anything not part of a whole message
# is free. So a message is wholly there or gone. Delivery is at least once:
# offer() hands the oldest message out and leaves it on flash, marked "in
# hand" in RAM; confirm() removes it once the device has shown it got it
# (the router calls it at the GSME's next GET or PUT, and only once the NCP
# has reported the GET answer delivered: unhand() puts a message whose
# answer the radio lost back in the queue's head, so the next GET offers it
# again instead of confirming it). A power cut between
# the hand-out and the confirm leaves it queued: it is offered again after
# the restart, and the GSME recognises it by its GBCS originator counter.
# Sequence numbers only grow: at open they continue above the highest one.
import binascii
import struct

from micropython import const

import lazy
from log import KindError

_SLOTS = const(8)
_OPEN = const("route.buffer_open")  # the pool's scan at open, loaded for it and dropped after
CHUNK = const(120)
_H0 = const(24)  # chunk 0 header
_HK = const(5)  # chunk k header
_FIRST = const(96)  # CHUNK - _H0
_NEXT = const(115)  # CHUNK - _HK

_DEFAULT_CAPACITY = const(32)
_DEFAULT_MAX_BYTES = const(1200)
_DEFAULT_EXPIRY_S = const(86400)


# A device's queue in RAM: one bytearray of records, oldest first, each
# u32 seq | u32 expiry | u8 chunk count | u16 pool file of each chunk in
# order: 11 bytes for a one-chunk message, no object per message (a bytes
# record each was 36-52 bytes on a 32-bit port; a u16 length in place of
# the count 12). The message's length is read from chunk 0's header with
# the message. A record is found by walking from the queue's start; one
# removed from the middle is cut out in place (slice assignment: no new
# bytearray).
_REC = const(9)
_LEN_AT = const(18)  # chunk 0 header: the message length's offset
_POOL_MAX = const(0xFFFF)  # pool file numbers fit the u16 of a record


def _rec(seq, expiry, fl):
    r = bytearray(_REC + 2 * len(fl))
    struct.pack_into("<IIB", r, 0, seq, expiry, len(fl))
    for i, n in enumerate(fl):
        struct.pack_into("<H", r, _REC + 2 * i, n)
    return r


def _end(q, o):
    # offset just past the record at offset o of queue q
    return o + _REC + 2 * q[o + 8]


def _count(q):
    n = o = 0
    while o < len(q):
        o = _end(q, o)
        n += 1
    return n


def _seq(q, o):
    return struct.unpack_from("<I", q, o)[0]


def _files(q, o):
    return [struct.unpack_from("<H", q, p)[0] for p in range(o + _REC, _end(q, o), 2)]


class BufferError(KindError):
    """Raised as BufferError(kind, message): kind BufferFull (the device's
    queue is at capacity), MessageTooLong or BufferError."""


def chunk_count(n):
    if n <= _FIRST:
        return 1
    return 1 + (n - _FIRST + _NEXT - 1) // _NEXT


class CommandBuffer:
    """CommandBuffer(root, capacity=32, max_bytes=1200, expiry_s=86400).

    put(eui_hex, msg, now) -> seq (durable when it returns); offer(eui_hex)
    -> (msg bytearray, queued behind it) or (None, 0), left on flash and "in
    hand" until confirm(eui_hex) removes it; take(eui_hex) = offer + confirm;
    expire(now) -> [(eui_hex, msg)] removed; drop(eui_hex) -> how many;
    pending(eui_hex) -> messages queued (the one in hand included). EUIs are
    16 hex digits, any case. capacity, max_bytes and expiry_s: the class's
    defaults unless set on the instance (an attribute fewer each)."""

    capacity = _DEFAULT_CAPACITY
    max_bytes = _DEFAULT_MAX_BYTES
    expiry_s = _DEFAULT_EXPIRY_S

    def __init__(self, root, capacity=_DEFAULT_CAPACITY, max_bytes=_DEFAULT_MAX_BYTES, expiry_s=_DEFAULT_EXPIRY_S,
                 stats=None):
        self.root = root.rstrip("/")
        if capacity != _DEFAULT_CAPACITY:
            self.capacity = capacity
        if max_bytes != _DEFAULT_MAX_BYTES:
            self.max_bytes = max_bytes
        if expiry_s != _DEFAULT_EXPIRY_S:
            self.expiry_s = expiry_s
        self.stats = stats if stats is not None else {}
        for k in ("buffered", "offered", "delivered", "expired", "dropped", "refused_full", "discarded_at_open"):
            self.stats.setdefault(k, 0)
        # EUI hex -> bytearray of records (_rec: seq, expiry, chunk count, pool
        # files in chunk order), oldest first
        self._q = {}
        self._hand = {}  # EUI hex -> seq of the message handed out, not confirmed yet
        self._free = []  # pool file numbers holding nothing live
        self._pool = 0  # files in the pool: 0 .. _pool-1
        self._listeners = []
        self._fh = None  # open handle ("w+b") on pool file _fn (see the header)
        self._fn = -1
        self._fempty = False  # _fn holds nothing (emptied through the handle)
        self.next_seq = 1
        try:
            lazy.load(_OPEN).scan(self)
        finally:
            lazy.drop(_OPEN)

    # -- files ------------------------------------------------------------------

    def _path(self, n):
        return "%s/%d/%d" % (self.root, n % _SLOTS, n)

    def _drop_handle(self):
        f = self._fh
        self._fh = None
        self._fn = -1
        if f is not None:
            try:
                f.close()  # flushed already: no write
            except OSError:
                pass

    def _hold(self, n, head=None, data=None):
        # open pool file n as the handle ("w+b": emptied), write head + data
        # when given, commit (one commit either way)
        self._drop_handle()
        f = open(self._path(n), "w+b")
        try:
            _commit(f, head, data)
        except OSError:
            f.close()
            raise
        self._fh = f
        self._fn = n
        self._fempty = head is None

    def _alloc(self, k):
        out = []
        if self._fempty and self._fn in self._free:
            self._free.remove(self._fn)  # chunk 0 into the handle's file
            out.append(self._fn)
        while len(out) < k:
            if self._free:
                out.append(self._free.pop())
            elif self._pool > _POOL_MAX:
                self._free.extend(out)
                raise BufferError("BufferFull", "command buffer pool full (%d files)" % self._pool)
            else:
                out.append(self._pool)
                self._pool += 1
        return out

    # -- opening and recovery: route.buffer_open (run once, at open) ----------

    # -- listeners ----------------------------------------------------------------

    def on_change(self, fn):
        """fn(eui_hex, pending_count) after every change of a device's queue
        (the GPF mirror's "tunnel message pending" flag follows it)."""
        self._listeners.append(fn)

    def _fire(self, eh):
        n = self.waiting(eh)
        for fn in self._listeners:
            try:
                fn(eh, n)
            except Exception:  # noqa: BLE001 - a listener never breaks the buffer
                pass

    # -- public API ------------------------------------------------------------

    def pending(self, eui_hex):
        return _count(self._q.get(eui_hex.upper(), b""))

    def waiting(self, eui_hex):
        """Messages queued and not handed out yet (the mirror's "tunnel
        message pending" flag follows this)."""
        eh = eui_hex.upper()
        q = self._q.get(eh)
        if not q:
            return 0
        return _count(q) - (1 if self._hand.get(eh) == _seq(q, 0) else 0)

    def devices(self):
        return dict((eh, _count(q)) for eh, q in self._q.items() if q)

    def __len__(self):
        return sum(_count(q) for q in self._q.values())

    def put(self, eui_hex, msg, now, expiry_s=None):
        eh = eui_hex.upper()
        length = len(msg)
        if length > self.max_bytes:
            raise BufferError("MessageTooLong", "message of %d bytes > %d" % (length, self.max_bytes))
        if length == 0:
            raise BufferError("BufferError", "empty message")
        q = self._q.get(eh)
        n = _count(q) if q is not None else 0
        if n >= self.capacity:
            self.stats["refused_full"] += 1
            raise BufferError("BufferFull", "queue for %s is full (%d messages)" % (eh, n))
        eui = binascii.unhexlify(eh)
        expiry = (int(now) + (self.expiry_s if expiry_s is None else expiry_s)) & 0xFFFFFFFF
        cnt = chunk_count(length)
        seq = self.next_seq
        self.next_seq = seq + 1  # never reused, even if this put fails
        mv = memoryview(msg)
        h = bytearray(_H0)  # chunk 0's header
        struct.pack_into("<IBB8sIH", h, 0, seq, 0, cnt, eui, expiry, length)
        crc = binascii.crc32(mv, binascii.crc32(memoryview(h)[:20])) & 0xFFFFFFFF
        struct.pack_into("<I", h, 20, crc)
        fl = self._alloc(cnt)
        hk = bytearray(_HK)
        try:
            off = _FIRST
            for k in range(1, cnt):
                struct.pack_into("<IB", hk, 0, seq, k)
                with open(self._path(fl[k]), "wb") as f:  # chunk k, its header first
                    f.write(hk)
                    f.write(mv[off : off + _NEXT])
                off += _NEXT
            # chunk 0: through the handle when fl[0] is its (empty) file,
            # else fl[0] becomes the handle's file
            if fl[0] != self._fn or not self._fempty:
                self._hold(fl[0], h, mv[:_FIRST])
            else:
                try:
                    self._fh.seek(0)
                    _commit(self._fh, h, mv[:_FIRST])
                except OSError:
                    self._drop_handle()
                    raise
                self._fempty = False
        except OSError:
            # what was written belongs to no whole message: free again
            self._free.extend(fl)
            raise
        if q is None:
            # keyed by the caller's text when it is upper case already (the
            # router's is the Device Log's own: shared, no copy)
            q = self._q[eui_hex if eui_hex == eh else eh] = bytearray()
        q.extend(_rec(seq, expiry, fl))
        self.stats["buffered"] += 1
        self._fire(eh)
        return seq

    def _read(self, q, o, head=0):
        # the message of the record at offset o of queue q, after head free
        # bytes; its length from chunk 0's header, read in the same open
        out = mv = None
        off = head
        for i, n in enumerate(_files(q, o)):
            own = n != self._fn  # else chunk 0 in the handle's file: no walk
            f = open(self._path(n), "rb") if own else self._fh
            try:
                if mv is None:
                    h = bytearray(_H0)
                    f.seek(0)
                    if f.readinto(h) != _H0:
                        raise BufferError("BufferError", "buffered message %d has no header" % _seq(q, o))
                    out = bytearray(head + struct.unpack_from("<H", h, _LEN_AT)[0])
                    mv = memoryview(out)
                f.seek(_H0 if i == 0 else _HK)
                off += f.readinto(mv[off:])
            except OSError:
                if not own:
                    self._drop_handle()  # the next write opens the file again
                raise
            finally:
                if own:
                    f.close()
        if off != len(out):
            raise BufferError("BufferError", "buffered message %d is short" % _seq(q, o))
        return out

    def read(self, eui_hex, i=0):
        """The i-th queued message of a device (not removed), or None."""
        q = self._q.get(eui_hex.upper(), b"")
        o = 0
        while o < len(q) and i:  # the record's offset: i records walked over
            o = _end(q, o)
            i -= 1
        if o >= len(q):
            return None
        return bytes(self._read(q, o))

    def _pop(self, eh, o):
        # the message of the record at offset o of the device's queue removed
        q = self._q[eh]
        fl = _files(q, o)
        # one commit: the message is gone, the file stays in the pool, empty;
        # it becomes the handle's file (the next put of one chunk writes it unopened)
        self._hold(fl[0])
        q[o : _end(q, o)] = b""
        if not q:
            del self._q[eh]
        self._free.extend(fl)

    def offer(self, eui_hex):
        """Oldest message for the device, left on flash and marked in hand
        until confirm(): (msg bytearray, messages queued behind it) or
        (None, 0). No flash write."""
        eh = eui_hex.upper()
        q = self._q.get(eh)
        if not q:
            self._hand.pop(eh, None)
            return None, 0
        msg = self._read(q, 0)
        seq = _seq(q, 0)
        fresh = self._hand.get(eh) != seq
        self._hand[eh] = seq
        self.stats["offered"] += 1
        if fresh:
            self._fire(eh)
        return msg, _count(q) - 1

    def confirm(self, eui_hex):
        """The message in hand reached the device: remove it from flash (one
        commit). -> True when one was removed."""
        eh = eui_hex.upper()
        s = self._hand.pop(eh, None)
        q = self._q.get(eh)
        if s is None or not q or _seq(q, 0) != s:
            return False
        self._pop(eh, 0)
        self.stats["delivered"] += 1
        self._fire(eh)
        return True

    def head(self, eui_hex):
        """seq of the device's oldest message, or None."""
        q = self._q.get(eui_hex.upper())
        return _seq(q, 0) if q else None

    def unhand(self, eui_hex, seq):
        """The answer that carried message seq did not reach the device: it
        is no longer in hand (the next GET gets it again, not a confirm).
        -> True when it was in hand."""
        eh = eui_hex.upper()
        if seq is None or self._hand.get(eh) != seq:
            return False
        del self._hand[eh]
        self._fire(eh)
        return True

    def hand_over(self, eui_hex, seq):
        """The answer that carried message seq reached the device: in hand
        again if an earlier lost copy's report took it out. -> True if now in hand."""
        eh = eui_hex.upper()
        if seq is None or self.head(eh) != seq:
            return False
        if self._hand.get(eh) != seq:
            self._hand[eh] = seq
            self._fire(eh)
        return True

    def take(self, eui_hex):
        """Oldest message for the device, removed from flash before it is
        returned (at most once): (msg bytearray, still queued) or (None, 0)."""
        msg, left = self.offer(eui_hex)
        if msg is not None:
            self.confirm(eui_hex)
        return msg, left

    def expire(self, now):
        """Remove every message whose expiry is <= now: [(eui_hex, msg)]."""
        out = []
        for eh in list(self._q):
            q = self._q.get(eh)
            o = 0  # offset of the record looked at (one removed: the next is there)
            changed = False
            while q and o < len(q):
                if o == 0 and self._hand.get(eh) == _seq(q, 0):
                    # handed out: the device has it (delivered, not "not
                    # retrieved"); it only waits for its confirmation
                    if struct.unpack_from("<I", q, 4)[0] <= now:  # its expiry
                        self._hand.pop(eh)
                        self._pop(eh, 0)
                        self.stats["delivered"] += 1
                        changed = True
                        q = self._q.get(eh)
                    else:
                        o = _end(q, 0)
                elif struct.unpack_from("<I", q, o + 4)[0] <= now:  # expired
                    try:
                        msg = bytes(self._read(q, o))
                    except (OSError, BufferError):
                        msg = None
                    self._pop(eh, o)
                    self.stats["expired"] += 1
                    out.append((eh, msg))
                    changed = True
                    q = self._q.get(eh)
                else:
                    o = _end(q, o)
            if changed:
                self._fire(eh)
        return out

    def next_expiry(self):
        t = None
        for q in self._q.values():
            o = 0
            while o < len(q):
                e = struct.unpack_from("<I", q, o + 4)[0]
                if t is None or e < t:
                    t = e
                o = _end(q, o)
        return t

    def drop(self, eui_hex):
        """Delete a device's whole queue (it left the Device Log). -> count."""
        eh = eui_hex.upper()
        q = self._q.get(eh)
        if not q:
            return 0
        self._hand.pop(eh, None)
        n = 0
        while eh in self._q:
            self._pop(eh, 0)
            n += 1
        self.stats["dropped"] += n
        self._fire(eh)
        return n


def _commit(f, head, data):
    # head + data (when given) into open file f, then one littlefs commit
    if head is not None:
        f.write(head)
        f.write(data)
    f.flush()
