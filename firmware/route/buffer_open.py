# The command buffer's scan of its pool at open (route.buffer's header has
# the flash layout and the power-cut rules): every pool file read, whole
# messages (all chunks there, the CRC right) queued in seq order, anything
# else free. Run once when the buffer opens: loaded for it and dropped after
# (firmware/lazy.py). The functions take the CommandBuffer (`self`).
import binascii
import os
import struct

from micropython import const

from route.buffer import _rec, chunk_count

_SLOTS = const(8)
_H0 = const(24)  # chunk 0 header
_HK = const(5)  # chunk k header
_POOL_MAX = const(0xFFFF)  # route.buffer's: a larger file number is not one of ours


def scan(self):
    # CommandBuffer._open: the pool scanned, whole messages queued, the rest free
    _mkdir(self.root)
    heads = {}  # seq -> (file, n, eui, expiry, length, crc)
    parts = {}  # (seq, k) -> file
    files = []
    top = 0
    hdr = bytearray(_H0)
    for s in range(_SLOTS):
        d = "%s/%d" % (self.root, s)
        _mkdir(d)
        for ent in list(os.ilistdir(d)):
            name = ent[0]
            try:
                n = int(name)
            except ValueError:
                n = -1
            if n < 0 or n > _POOL_MAX or n % _SLOTS != s or ent[1] != 0x8000:
                _rm(d + "/" + name)  # not ours (e.g. an older layout)
                continue
            files.append(n)
            with open(d + "/" + name, "rb") as f:
                got = f.readinto(hdr)
            if got < _HK:
                continue
            seq = struct.unpack_from("<I", hdr, 0)[0]
            if seq > top:
                top = seq
            k = hdr[4]
            if k == 0:
                if got == _H0:
                    heads[seq] = (n,) + struct.unpack_from("<B8sIHI", hdr, 5)
            else:
                parts[(seq, k)] = n
    self._pool = max(files) + 1 if files else 0
    used = set()
    for seq in sorted(heads):
        n0, cnt, eui, expiry, length, crc = heads[seq]
        fl = [n0] + [parts.get((seq, k)) for k in range(1, cnt)]
        if cnt != chunk_count(length) or None in fl or not _crc_ok(self, fl, length, crc):
            self.stats["discarded_at_open"] += 1
            continue
        eh = binascii.hexlify(eui).decode().upper()
        self._q.setdefault(eh, bytearray()).extend(_rec(seq, expiry, fl))
        used.update(fl)
    self._free = [n for n in range(self._pool) if n not in used]
    self.next_seq = top + 1

def _crc_ok(self, fl, length, want):
    try:
        with open(self._path(fl[0]), "rb") as f:
            c0 = f.read()
        crc = binascii.crc32(memoryview(c0)[:20])
        crc = binascii.crc32(memoryview(c0)[_H0:], crc)
        got = len(c0) - _H0
        for n in fl[1:]:
            with open(self._path(n), "rb") as f:
                b = f.read()
            crc = binascii.crc32(memoryview(b)[_HK:], crc)
            got += len(b) - _HK
    except OSError:
        return False
    return got == length and crc & 0xFFFFFFFF == want


def _mkdir(path):
    try:
        os.mkdir(path)
    except OSError:
        pass


def _rm(path):
    try:
        os.remove(path)
    except OSError:
        # a folder: empty it first
        for ent in list(os.ilistdir(path)):
            _rm(path + "/" + ent[0])
        os.rmdir(path)
