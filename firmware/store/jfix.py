# A journal's rarely run parts (store.journal's _fix loads this module for
# one of them and drops it after): opening with its recovery (an unfinished
# compaction's NAME.new, the scan that rebuilds the index, a torn tail
# rewritten away) and compaction (BASE + live records to NAME.new, renamed
# over NAME.jnl). The file format is store.journal's.
import binascii
import os
import struct
from array import array
from micropython import const

from log import KindError
from store.journal import _H, push, put
from store.kv import _exists

_MAGIC = const(0xC5)
_T_BASE = const(1)
_T_DATA = const(2)
_T_ACK = const(3)
_T_ACK_UPTO = const(4)
_HDR = const(12)
_SEQ_MASK = const(0xFFFFFFFF)
_CHUNK = const(128)

# the copy buffer of a scan or a compaction (held while this module is)
_B = bytearray(_CHUNK)


def _clear(j):
    # journal j with no live records: an index of 2-byte items
    j._recs = array("H")
    j._b = j._live = 0


def _path(j):
    return j._s[0] + "/" + j._name + ".jnl"


def load(j):
    """Open journal j's file (made when missing), rebuild its index."""
    st = j._s[1]
    for k in ("journal_appends", "journal_acks", "compactions", "torn_records_discarded",
              "journal_dropped", "journal_bytes", "compaction_errors"):
        st.setdefault(k, 0)
    path = _path(j)
    new = path + ".new"
    if _exists(new):
        if _exists(path):
            os.remove(new)  # unfinished compaction: the old file is whole
        else:
            os.rename(new, path)
    if not _exists(path):
        j.next_seq = 1
        _clear(j)
        _rewrite(j)
        return
    j._f = open(path, "r+b")
    torn = _scan(j)
    if torn:
        st["torn_records_discarded"] += torn
    if torn or not j._end:
        # drop the bad tail (or give an empty file its BASE record) before
        # anything is appended behind it
        _rewrite(j)


def _read_header(f, off):
    # -> (type, length, seq) or None when no valid header is at off
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


def _drop(j, lens, i, n):
    # the scan's drop of records i .. i+n-1 (their lengths in lens, the
    # scan's own: the journal at rest keeps none)
    for k in range(i, i + n):
        j._live -= _HDR + lens[k]
    lens[i:i + n] = lens[:0]
    j._recs[2 * i:2 * (i + n)] = j._recs[:0]


def _scan(j):
    # Rebuild the index; returns how many torn/corrupt records were met.
    _clear(j)
    lens = array("H")
    f = j._f
    size = f.seek(0, 2)
    off = 0
    nxt = 1
    first = True
    while off < size:
        h = _read_header(f, off)
        if h is None or (first and h[0] != _T_BASE):
            j._end = off
            j.next_seq = nxt
            # one torn record at least; a run of garbage counts once
            return 1
        t, n, seq = h
        first = False
        if t == _T_BASE:
            if seq > nxt:
                nxt = seq
        elif t == _T_DATA:
            push(j, seq, off)
            lens.append(n)
            j._live += _HDR + n
            if seq >= nxt:
                nxt = seq + 1
            over = len(lens) - j.capacity
            if j.capacity and over > 0:
                _drop(j, lens, 0, over)
        elif t == _T_ACK:
            i = j._index(seq)
            if i >= 0:
                _drop(j, lens, i, 1)
        else:
            r = j._recs
            s = seq - j._b
            k = 0
            while 2 * k < len(r) and r[2 * k] <= s:
                k += 1
            _drop(j, lens, 0, k)
        off += _HDR + n
    j._end = off
    j.next_seq = nxt
    return 0


def _rewrite(j):
    # Write BASE + live records to NAME.new, then rename it over NAME.jnl.
    path = _path(j)
    new = path + ".new"
    r = j._recs
    old = j._fh() if r else j._f
    offs = array("I")
    with open(new, "wb") as g:
        pos = put(g, _T_BASE, j.next_seq, None)
        mv = memoryview(_B)
        for i in range(len(r) >> 1):
            offs.append(pos)
            n = _HDR + j._len_at(r[2 * i + 1])
            old.seek(r[2 * i + 1])
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
        j._f = None
    os.rename(new, path)
    # the index again, counting from its first record (of 2-byte items when
    # they fit)
    b = j._b
    live = j._live
    _clear(j)
    j._live = live
    for i in range(len(offs)):
        push(j, r[2 * i] + b, offs[i])
    j._end = pos
    j._f = open(path, "r+b")


def reload(j):
    """Start again from flash (a file handle in an unknown state)."""
    try:
        j._f.close()
    except Exception:
        pass
    j._f = None
    load(j)


def auto_compact(j):
    try:
        _rewrite(j)
    except OSError:
        # e.g. no space for the copy: the old file is still whole.
        # If the flash is gone the reload raises, and so do we.
        j._s[1]["compaction_errors"] += 1
        reload(j)
        return
    j._s[1]["compactions"] += 1


def compact(j):
    try:
        _rewrite(j)
    except Exception:
        # the handle may be closed or half-used: start again from flash
        reload(j)
        raise
    j._s[1]["compactions"] += 1
