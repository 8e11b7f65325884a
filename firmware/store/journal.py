# Append-only record journal on LittleFS, for queues (outbox, command buffer)
# and bounded logs (event/security logs).
#
# File NAME.jnl is a sequence of records, each a 12-byte header and a payload:
#   u8 magic 0xC5 | u8 type | u16 payload length | u32 seq | u32 crc32
# (little-endian; crc32 over the first 8 header bytes then the payload).
# Types: BASE (seq = next sequence number when the file was written; first
# record of every file), DATA (seq = the record's number, payload = data),
# ACK (seq acked, no payload), ACK_UPTO (every seq <= it acked, no payload).
# Every change is appended and flushed (littlefs commits on flush), so it is
# durable when the call returns; littlefs never shows a half-synced file.
# Compaction writes BASE + live DATA records to NAME.new, closes it and
# renames it over NAME.jnl (one atomic metadata commit). At open a leftover
# NAME.new is an unfinished compaction and is removed; a record that fails
# its checks ends the scan: it and what follows are discarded (counted) and
# the file is rewritten without them before anything new is appended.
# Opening (that recovery and the scan) and compaction are store.jfix,
# loaded for them and dropped after: the journal at rest holds the index
# and the hot path (append, ack, read) only.
import binascii
import struct
from array import array
from micropython import const

import lazy
from log import KindError

_MAGIC = const(0xC5)
_T_DATA = const(2)
_T_ACK = const(3)
_T_ACK_UPTO = const(4)
_HDR = const(12)
_MAX_PAYLOAD = const(0xFFFF)
_SEQ_MASK = const(0xFFFFFFFF)
_FIX = const("store.jfix")

# Every journal's header scratch: journal calls never await, so one serves
# them all (the hub keeps half a dozen journals).
_H = bytearray(_HDR)


def put(f, t, seq, payload):
    """Write one record (header + payload) at f's position. -> its size."""
    h = _H
    n = len(payload) if payload else 0
    struct.pack_into("<BBHI", h, 0, _MAGIC, t, n, seq)
    crc = binascii.crc32(memoryview(h)[:8])
    if n:
        crc = binascii.crc32(payload, crc)
    struct.pack_into("<I", h, 8, crc & _SEQ_MASK)
    f.write(h)
    if n:
        f.write(payload)
    return _HDR + n


def push(j, seq, off):
    # journal j's record seq at file offset off: its index's newest. An
    # empty index counts from it; a value over 2 bytes (an "H" item keeps
    # its low 16 bits) makes it an index of 4-byte items
    r = j._recs
    if not r:
        j._b = seq
    s = seq - j._b
    r.append(s)
    r.append(off)
    if r[-2] != s or r[-1] != off:
        r = j._recs = array("I", r[:-2])
        r.append(s)
        r.append(off)


def _fix(j, what):
    # store.jfix's `what` for journal j, the module dropped after: its heap
    # comes back at the next collection (none forced: compactions are
    # frequent, and a collection right after a flash failure finalises the
    # file object an interrupted open left behind)
    m = lazy.load(_FIX)
    try:
        return getattr(m, what)(j)
    finally:
        m = None
        lazy.drop(_FIX, False)


class Journal:
    """Records with increasing sequence numbers; unacked ones come back in
    order until acked. capacity=N keeps only the newest N unacked records
    (the oldest is dropped on overflow, with no extra flash write): a
    bounded FIFO-overwriting log (the event and security logs, the
    transaction log: Store.ringlog). keep_open=False: the file is opened
    for each operation instead of held open (a log appended to now and
    then). at: the Store's shared part (kv.home). Errors
    are log.KindError of kind JournalError."""

    # what most journals have: an instance sets its own only where it differs
    keep_open = True
    capacity = 0
    compact_at = 256

    def __init__(self, root, name, capacity=0, compact_at=256, stats=None, keep_open=True, at=None):
        # _s (folder, counters): the Store's shared part (kv.home) or this
        # journal's own; the path is made when needed (a store is held for
        # the hub's life, its path string only for a moment)
        self._s = at if at is not None else (root.rstrip("/"), stats if stats is not None else {})
        self._name = name
        if capacity:
            self.capacity = capacity
        if compact_at != 256:
            self.compact_at = compact_at
        if not keep_open:
            self.keep_open = False
        # the live (unacked) records, oldest first: _recs (seq - _b, file
        # offset) pairs, of 2 bytes each while both fit ("H"), else 4 ("I");
        # a record's length is read from its header when needed; _live
        # their bytes with headers; _end the file's length; next_seq; _f the
        # file while open
        self._f = None
        _fix(self, "load")
        self._rest()

    def _fh(self):
        f = self._f
        if f is None:
            f = self._f = open(self._s[0] + "/" + self._name + ".jnl", "r+b")
        return f

    def _rest(self):
        # a cold log gives its file handle (and littlefs cache) back
        if not self.keep_open and self._f is not None:
            self._f.close()
            self._f = None

    # -- index -------------------------------------------------------------

    def _index(self, seq):
        # the record number of seq, or -1 (live seqs increase: binary search)
        r = self._recs
        s = seq - self._b
        lo, hi = 0, len(r) >> 1
        while lo < hi:
            mid = (lo + hi) >> 1
            if r[2 * mid] < s:
                lo = mid + 1
            else:
                hi = mid
        if 2 * lo < len(r) and r[2 * lo] == s:
            return lo
        return -1

    def _len_at(self, off):
        # the payload length in the record header at file offset off; the
        # file is left at the payload. Not a record header there: refused
        f = self._fh()
        f.seek(off)
        h = _H
        if f.readinto(h) != _HDR or h[0] != _MAGIC:
            raise KindError("JournalError", "journal: no record header at %d" % off)
        return h[2] | (h[3] << 8)

    def _drop(self, i, n):
        # records i .. i+n-1 (their lengths read from their headers)
        r = self._recs
        j = i + n
        live = self._live
        try:
            for k in range(i, j):
                live -= _HDR + self._len_at(r[2 * k + 1])
        except Exception:
            # not read (an ack may be on flash already): the index again from flash
            _fix(self, "reload")
            raise
        self._live = live
        # arrays have no del; a slice takes an array of its own item size
        r[2 * i:2 * j] = r[:0]

    # -- writing -------------------------------------------------------------

    def _append(self, t, seq, payload):
        f = self._fh()
        try:
            f.seek(self._end)
            n = put(f, t, seq, payload)
            f.flush()
        except Exception:
            # the file handle's state is unknown: start again from flash
            _fix(self, "reload")
            raise
        off = self._end
        self._end += n
        self._s[1]["journal_bytes"] += n
        return off

    def _maybe_compact(self):
        dead = self._end - self._live - _HDR
        if dead >= self.compact_at and dead >= self._live:
            _fix(self, "auto_compact")

    def compact(self):
        """Rewrite the live records into a new file and rename it over."""
        _fix(self, "compact")
        self._rest()

    # -- public API ------------------------------------------------------------

    def append(self, payload):
        """Store payload (bytes); durable when this returns. -> its seq."""
        n = len(payload)
        if n > _MAX_PAYLOAD:
            raise KindError("JournalError", "journal: payload too long")
        seq = self.next_seq
        off = self._append(_T_DATA, seq, payload)
        self.next_seq = seq + 1
        push(self, seq, off)
        self._live += _HDR + n
        st = self._s[1]
        st["journal_appends"] += 1
        n = (len(self._recs) >> 1) - self.capacity
        if self.capacity and n > 0:
            self._drop(0, n)
            st["journal_dropped"] += n
        self._maybe_compact()
        self._rest()
        return seq

    def ack(self, seq):
        """Mark record seq done; durable when this returns. False if it was
        not pending (already acked, dropped or never written)."""
        i = self._index(seq)
        if i < 0:
            return False
        self._append(_T_ACK, seq, None)
        self._drop(i, 1)
        self._s[1]["journal_acks"] += 1
        self._maybe_compact()
        self._rest()
        return True

    def ack_upto(self, seq):
        """Ack every pending record with a seq <= seq. -> how many."""
        r = self._recs
        s = seq - self._b
        if not r or r[0] > s:
            return 0
        self._append(_T_ACK_UPTO, seq, None)
        n = 0
        while 2 * n < len(r) and r[2 * n] <= s:
            n += 1
        self._drop(0, n)
        self._s[1]["journal_acks"] += n
        self._maybe_compact()
        self._rest()
        return n

    def read(self, seq):
        """The payload of pending record seq, or None."""
        i = self._index(seq)
        if i < 0:
            return None
        n = self._len_at(self._recs[2 * i + 1])
        data = self._f.read(n)
        self._rest()
        if len(data) != n:
            raise KindError("JournalError", "journal: short read")
        return data

    def pending(self):
        """Pending records, oldest first, as (seq, payload). Acks made while
        iterating are fine; the snapshot of seqs is taken at the start."""
        for seq in self.seqs():
            data = self.read(seq)
            if data is not None:
                yield seq, data

    __iter__ = pending

    def __len__(self):
        return len(self._recs) >> 1

    def seqs(self):
        r = self._recs
        b = self._b
        return [r[k] + b for k in range(0, len(r), 2)]

    def info(self):
        return {"pending": len(self._recs) >> 1, "next_seq": self.next_seq, "file_bytes": self._end,
                "live_bytes": self._live}

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None
