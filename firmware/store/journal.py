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
import binascii
import os
import struct
from array import array
from micropython import const

from log import KindError
from store.kv import _exists

_MAGIC = const(0xC5)
_T_BASE = const(1)
_T_DATA = const(2)
_T_ACK = const(3)
_T_ACK_UPTO = const(4)
_HDR = const(12)
_MAX_PAYLOAD = const(0xFFFF)
_SEQ_MASK = const(0xFFFFFFFF)
_CHUNK = const(128)

# Every journal's scratch space: journal calls never await, so one header and
# one copy buffer serve them all (the hub keeps half a dozen journals open).
_H = bytearray(_HDR)
_B = bytearray(_CHUNK)
# The index of live records is kept in arrays (4 bytes an entry; a list takes
# a word per entry, 8 bytes on the 64-bit unix port): seq, file offset, length.
_NO32 = array("I")
_NO16 = array("H")


class Journal:
    """Records with increasing sequence numbers; unacked ones come back in
    order until acked. capacity=N keeps only the newest N unacked records
    (the oldest is dropped on overflow, with no extra flash write): a
    bounded FIFO-overwriting log (the event and security logs, the
    transaction log: Store.ringlog). keep_open=False: the file is opened
    for each operation instead of held open (a log appended to now and
    then). Errors are log.KindError of kind JournalError."""

    keep_open = True

    def __init__(self, root, name, capacity=0, compact_at=256, stats=None, keep_open=True):
        # the path is made when needed: a store is held for the hub's life,
        # its path string only for a moment (most stores sit idle)
        self._dir = root.rstrip("/")
        self._name = name
        self.capacity = capacity
        self.compact_at = compact_at
        self.stats = stats if stats is not None else {}
        for k in ("journal_appends", "journal_acks", "compactions", "torn_records_discarded",
                  "journal_dropped", "journal_bytes", "compaction_errors"):
            self.stats.setdefault(k, 0)
        # live (unacked) records, oldest first: seqs, file offsets, payload lengths
        self._seqs, self._offs, self._lens = array("I"), array("I"), array("H")
        self._live = 0  # bytes of live records (headers included)
        self._end = 0
        self._f = None
        if not keep_open:
            self.keep_open = False
        self._open()
        self._rest()

    def _fh(self):
        f = self._f
        if f is None:
            f = self._f = open(self.path, "r+b")
        return f

    def _rest(self):
        # a cold log gives its file handle (and littlefs cache) back
        if not self.keep_open and self._f is not None:
            self._f.close()
            self._f = None

    @property
    def path(self):
        return self._dir + "/" + self._name + ".jnl"

    # -- opening and recovery --------------------------------------------

    def _open(self):
        new = self.path + ".new"
        if _exists(new):
            if _exists(self.path):
                os.remove(new)  # unfinished compaction: the old file is whole
            else:
                os.rename(new, self.path)
        if not _exists(self.path):
            self.next_seq = 1
            self._seqs, self._offs, self._lens = array("I"), array("I"), array("H")
            self._live = 0
            self._rewrite()
            return
        self._f = open(self.path, "r+b")
        torn = self._scan()
        if torn:
            self.stats["torn_records_discarded"] += torn
        if torn or not self._end:
            # drop the bad tail (or give an empty file its BASE record) before
            # anything is appended behind it
            self._rewrite()

    def _read_header(self, off):
        # -> (type, length, seq) or None when no valid header is at off
        f = self._f
        f.seek(off)
        h = _H
        if f.readinto(h) != _HDR or h[0] != _MAGIC:
            return None
        t = h[1]
        n = h[2] | (h[3] << 8)
        seq = struct.unpack_from("<I", h, 4)[0]
        want = struct.unpack_from("<I", h, 8)[0]
        crc = binascii.crc32(memoryview(h)[:8])
        mv = memoryview(_B)
        left = n
        while left:
            k = f.readinto(mv[: min(left, _CHUNK)])
            if not k:
                return None
            crc = binascii.crc32(mv[:k], crc)
            left -= k
        if crc & _SEQ_MASK != want or t < _T_BASE or t > _T_ACK_UPTO:
            return None
        if t != _T_DATA and n:
            return None
        return t, n, seq

    def _scan(self):
        # Rebuild the index; returns how many torn/corrupt records were met.
        seqs, offs, lens = array("I"), array("I"), array("H")
        self._seqs, self._offs, self._lens = seqs, offs, lens
        self._live = 0
        size = self._f.seek(0, 2)
        off = 0
        nxt = 1
        first = True
        while off < size:
            r = self._read_header(off)
            if r is None or (first and r[0] != _T_BASE):
                self._end = off
                self.next_seq = nxt
                # one torn record at least; a run of garbage counts once
                return 1
            t, n, seq = r
            first = False
            if t == _T_BASE:
                if seq > nxt:
                    nxt = seq
            elif t == _T_DATA:
                seqs.append(seq)
                offs.append(off)
                lens.append(n)
                self._live += _HDR + n
                if seq >= nxt:
                    nxt = seq + 1
                self._trim()
            elif t == _T_ACK:
                self._forget(seq)
            else:
                self._forget_upto(seq)
            off += _HDR + n
        self._end = off
        self.next_seq = nxt
        return 0

    # -- index -------------------------------------------------------------

    def _index(self, seq):
        seqs = self._seqs
        # live seqs are increasing: binary search
        lo, hi = 0, len(seqs)
        while lo < hi:
            mid = (lo + hi) >> 1
            if seqs[mid] < seq:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(seqs) and seqs[lo] == seq:
            return lo
        return -1

    def _drop(self, i, n):
        # records i .. i+n-1 (arrays have no pop: a shrinking slice assignment)
        j = i + n
        for k in range(i, j):
            self._live -= _HDR + self._lens[k]
        self._seqs[i:j] = _NO32
        self._offs[i:j] = _NO32
        self._lens[i:j] = _NO16

    def _forget(self, seq):
        i = self._index(seq)
        if i >= 0:
            self._drop(i, 1)
            return True
        return False

    def _forget_upto(self, seq):
        seqs = self._seqs
        n = 0
        while n < len(seqs) and seqs[n] <= seq:
            n += 1
        if n:
            self._drop(0, n)
        return n

    def _trim(self):
        n = 0
        if self.capacity:
            n = len(self._seqs) - self.capacity
            if n > 0:
                self._drop(0, n)
            else:
                n = 0
        return n

    # -- writing -------------------------------------------------------------

    def _put(self, f, t, seq, payload):
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

    def _append(self, t, seq, payload):
        f = self._fh()
        try:
            f.seek(self._end)
            n = self._put(f, t, seq, payload)
            f.flush()
        except Exception:
            # the file handle's state is unknown: start again from flash
            self._reload()
            raise
        off = self._end
        self._end += n
        self.stats["journal_bytes"] += n
        return off

    def _reload(self):
        try:
            self._f.close()
        except Exception:
            pass
        self._f = None
        self._open()

    def _rewrite(self):
        # Write BASE + live records to NAME.new, then rename it over NAME.jnl.
        new = self.path + ".new"
        old = self._fh() if self._seqs else self._f
        offs = array("I")
        with open(new, "wb") as g:
            pos = self._put(g, _T_BASE, self.next_seq, None)
            mv = memoryview(_B)
            for i in range(len(self._seqs)):
                offs.append(pos)
                n = _HDR + self._lens[i]
                old.seek(self._offs[i])
                left = n
                while left:
                    k = old.readinto(mv[: min(left, _CHUNK)])
                    if not k:
                        raise KindError("JournalError", "journal: short read while compacting")
                    g.write(mv[:k])
                    left -= k
                pos += n
        if old is not None:
            old.close()
            self._f = None
        os.rename(new, self.path)
        self._offs = offs
        self._end = pos
        self._f = open(self.path, "r+b")

    def _maybe_compact(self):
        dead = self._end - self._live - _HDR
        if dead >= self.compact_at and dead >= self._live:
            try:
                self._rewrite()
            except OSError:
                # e.g. no space for the copy: the old file is still whole.
                # If the flash is gone the reload raises, and so do we.
                self.stats["compaction_errors"] += 1
                self._reload()
                return
            self.stats["compactions"] += 1

    def compact(self):
        """Rewrite the live records into a new file and rename it over."""
        try:
            self._rewrite()
        except Exception:
            # the handle may be closed or half-used: start again from flash
            self._reload()
            raise
        self.stats["compactions"] += 1
        self._rest()

    # -- public API ------------------------------------------------------------

    def append(self, payload):
        """Store payload (bytes); durable when this returns. -> its seq."""
        if len(payload) > _MAX_PAYLOAD:
            raise KindError("JournalError", "journal: payload too long")
        seq = self.next_seq
        off = self._append(_T_DATA, seq, payload)
        self.next_seq = seq + 1
        self._seqs.append(seq)
        self._offs.append(off)
        self._lens.append(len(payload))
        self._live += _HDR + len(payload)
        self.stats["journal_appends"] += 1
        dropped = self._trim()
        if dropped:
            self.stats["journal_dropped"] += dropped
        self._maybe_compact()
        self._rest()
        return seq

    def ack(self, seq):
        """Mark record seq done; durable when this returns. False if it was
        not pending (already acked, dropped or never written)."""
        if self._index(seq) < 0:
            return False
        self._append(_T_ACK, seq, None)
        self._forget(seq)
        self.stats["journal_acks"] += 1
        self._maybe_compact()
        self._rest()
        return True

    def ack_upto(self, seq):
        """Ack every pending record with a seq <= seq. -> how many."""
        if not self._seqs or self._seqs[0] > seq:
            return 0
        self._append(_T_ACK_UPTO, seq, None)
        n = self._forget_upto(seq)
        self.stats["journal_acks"] += n
        self._maybe_compact()
        self._rest()
        return n

    def read(self, seq):
        """The payload of pending record seq, or None."""
        i = self._index(seq)
        if i < 0:
            return None
        return self._payload(i)

    def _payload(self, i):
        f = self._fh()
        f.seek(self._offs[i] + _HDR)
        data = f.read(self._lens[i])
        self._rest()
        if len(data) != self._lens[i]:
            raise KindError("JournalError", "journal: short read")
        return data

    def pending(self):
        """Pending records, oldest first, as (seq, payload). Acks made while
        iterating are fine; the snapshot of seqs is taken at the start."""
        for seq in list(self._seqs):
            i = self._index(seq)
            if i >= 0:
                yield seq, self._payload(i)

    def __iter__(self):
        return self.pending()

    def __len__(self):
        return len(self._seqs)

    def seqs(self):
        return list(self._seqs)

    def info(self):
        return {"pending": len(self._seqs), "next_seq": self.next_seq, "file_bytes": self._end,
                "live_bytes": self._live}

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None
