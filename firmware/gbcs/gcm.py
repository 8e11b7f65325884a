# AES-128-GCM and GMAC for GBCS, built on cryptolib's AES-ECB (mode 1).
#
# GHASH works on Python ints in "big-endian block" form: the 16-byte block read
# as a big-endian integer, so bit 127 is the coefficient of x^0 (GCM's bit
# order). A carry-less product of two such ints is computed with a table of
# H * i for every 4-bit (short inputs) or 8-bit (long inputs) value i, then
# reduced modulo x^128 + x^7 + x^2 + x + 1 with a handful of shifts.
# The 8-bit table is faster on long inputs but large for a per-message key
# (docs/crypto.md has the figures), so it is built only for inputs of 1 KB
# or more.
from micropython import const
import cryptolib
import struct

from log import KindError

_M127 = (1 << 127) - 1
_WIDE_FROM = const(1024)  # bytes of GHASH input from which the 8-bit table is used
_CHUNK = const(256)  # CTR keystream chunk (bytes)


class GcmError(KindError):
    """Raised as GcmError(kind, message): kind GcmError (bad key, IV, tag
    length or input), AuthError (the tag did not match: the data or the key
    is wrong)."""


def _table(h, n):
    t = [0] * n
    for i in range(1, n):
        t[i] = (t[i >> 1] << 1) ^ (h if i & 1 else 0)
    return t


def _run4(t, y, mv):
    # GHASH over whole 16-byte blocks of mv with a 4-bit table; returns new y.
    fb = int.from_bytes
    m = _M127
    for off in range(0, len(mv), 16):
        z = 0
        for b in (fb(mv[off : off + 16], "big") ^ y).to_bytes(16, "big"):
            z = (((z << 4) ^ t[b >> 4]) << 4) ^ t[b & 15]
        lo = z & m
        w = (lo << 7) ^ (lo << 6) ^ (lo << 5) ^ lo
        o = w & 0x3F
        y = (z >> 127) ^ (w >> 6) ^ (o << 122) ^ (o << 121) ^ (o << 120) ^ (o << 115)
    return y


def _run8(t, y, mv):
    fb = int.from_bytes
    m = _M127
    for off in range(0, len(mv), 16):
        z = 0
        for b in (fb(mv[off : off + 16], "big") ^ y).to_bytes(16, "big"):
            z = (z << 8) ^ t[b]
        lo = z & m
        w = (lo << 7) ^ (lo << 6) ^ (lo << 5) ^ lo
        o = w & 0x3F
        y = (z >> 127) ^ (w >> 6) ^ (o << 122) ^ (o << 121) ^ (o << 120) ^ (o << 115)
    return y


def _pieces(data):
    if isinstance(data, (list, tuple)):
        return data
    return (data,)


def _total(pieces):
    n = 0
    for p in pieces:
        n += len(p)
    return n


class Ghash:
    """Incremental GHASH with subkey h (int). Feed byte strings with update();
    pad() closes a section (AAD or ciphertext) with zeros to a block boundary."""

    def __init__(self, h, size_hint=0):
        if size_hint >= _WIDE_FROM:
            self._t = _table(h, 256)
            self._run = _run8
        else:
            self._t = _table(h, 16)
            self._run = _run4
        self.y = 0
        self._buf = bytearray(16)
        self._n = 0

    def update(self, data):
        mv = memoryview(data)
        ln = len(mv)
        i = 0
        n = self._n
        if n:
            take = 16 - n
            if take > ln:
                take = ln
            self._buf[n : n + take] = mv[:take]
            n += take
            i = take
            if n < 16:
                self._n = n
                return
            self.y = self._run(self._t, self.y, self._buf)
            n = 0
        full = (ln - i) & ~15
        if full:
            self.y = self._run(self._t, self.y, mv[i : i + full])
        rest = ln - i - full
        if rest:
            self._buf[0:rest] = mv[i + full :]
            n = rest
        self._n = n

    def pad(self):
        n = self._n
        if n:
            buf = self._buf
            for j in range(n, 16):
                buf[j] = 0
            self.y = self._run(self._t, self.y, buf)
            self._n = 0

    def finish(self, aad_len, ct_len):
        self.pad()
        blk = ((aad_len * 8) << 64 | (ct_len * 8)).to_bytes(16, "big")
        self.y = self._run(self._t, self.y, blk)
        return self.y


def ct_equal(a, b):
    """Constant-time comparison of two byte strings (time depends on length only)."""
    if len(a) != len(b):
        return False
    d = 0
    for i in range(len(a)):
        d |= a[i] ^ b[i]
    return d == 0


class _Ctx:
    # per (key, iv): the AES object, H, E(J0) and the counter block template
    def __init__(self, key, iv, tag_len):
        if len(key) != 16:
            raise GcmError("GcmError", "AES-128 key must be 16 bytes, got %d" % len(key))
        if len(iv) != 12:
            raise GcmError("GcmError", "GCM IV must be 12 bytes, got %d" % len(iv))
        if tag_len < 12 or tag_len > 16:
            raise GcmError("GcmError", "tag length must be 12..16, got %d" % tag_len)
        self.aes = cryptolib.aes(bytes(key), 1)
        blk = bytearray(32)
        blk[16:28] = iv
        blk[31] = 1
        self.aes.encrypt(blk, blk)  # H = E(0^128), E(J0) with J0 = iv || 00000001
        self.h = int.from_bytes(blk[0:16], "big")
        self.ej0 = int.from_bytes(blk[16:32], "big")
        self.iv = iv

    def tag(self, s, tag_len):
        return (s ^ self.ej0).to_bytes(16, "big")[:tag_len]

    def ctr(self, data, out):
        # CTR mode from counter 2 (inc32(J0)): out[i] = data[i] ^ E(iv || ctr)
        mv = memoryview(data)
        ln = len(mv)
        ks = bytearray(_CHUNK)
        for o in range(0, _CHUNK, 16):
            ks[o : o + 12] = self.iv
        ctr = 2
        pos = 0
        fb = int.from_bytes
        while pos < ln:
            n = ln - pos
            if n > _CHUNK:
                n = _CHUNK
            nb = (n + 15) >> 4
            for j in range(nb):
                struct.pack_into(">I", ks, j * 16 + 12, ctr & 0xFFFFFFFF)
                ctr += 1
            enc = memoryview(ks)[: nb * 16]
            stream = bytearray(nb * 16)
            self.aes.encrypt(enc, stream)
            x = fb(mv[pos : pos + n], "big") ^ fb(memoryview(stream)[:n], "big")
            out[pos : pos + n] = x.to_bytes(n, "big")
            pos += n


def gmac(key, iv, aad, tag_len=12):
    """GMAC tag over aad (bytes-like, or a list/tuple of pieces, hashed as
    their concatenation without copying them)."""
    c = _Ctx(key, iv, tag_len)
    pieces = _pieces(aad)
    total = _total(pieces)
    g = Ghash(c.h, total)
    for p in pieces:
        g.update(p)
    return c.tag(g.finish(total, 0), tag_len)


def gmac_verify(key, iv, aad, tag):
    """True when tag (12..16 bytes) is the GMAC of aad; constant-time compare."""
    return ct_equal(gmac(key, iv, aad, len(tag)), tag)


def encrypt(key, iv, plaintext, aad=b"", tag_len=12):
    """AES-GCM: returns ciphertext || tag (bytes), like cryptography's AESGCM."""
    c = _Ctx(key, iv, tag_len)
    ln = len(plaintext)
    out = bytearray(ln + tag_len)
    c.ctr(plaintext, out)
    pieces = _pieces(aad)
    alen = _total(pieces)
    g = Ghash(c.h, alen + ln)
    for p in pieces:
        g.update(p)
    g.pad()
    g.update(memoryview(out)[:ln])
    out[ln:] = c.tag(g.finish(alen, ln), tag_len)
    return bytes(out)


def decrypt(key, iv, data, aad=b"", tag_len=12):
    """AES-GCM: data = ciphertext || tag; returns the plaintext (bytes) or
    raises GcmError of kind AuthError. The tag is checked before any plaintext is produced."""
    c = _Ctx(key, iv, tag_len)
    if len(data) < tag_len:
        raise GcmError("GcmError", "ciphertext shorter than the %d-byte tag" % tag_len)
    mv = memoryview(data)
    ln = len(mv) - tag_len
    pieces = _pieces(aad)
    alen = _total(pieces)
    g = Ghash(c.h, alen + ln)
    for p in pieces:
        g.update(p)
    g.pad()
    g.update(mv[:ln])
    if not ct_equal(c.tag(g.finish(alen, ln), tag_len), mv[ln:]):
        raise GcmError("AuthError", "GCM tag mismatch")
    out = bytearray(ln)
    c.ctr(mv[:ln], out)
    return bytes(out)
