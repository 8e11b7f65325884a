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

_M127 = const(0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF)  # (1 << 127) - 1
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


def _ghash(h, aad, ct):
    # GHASH of aad (bytes-like, or a list/tuple of pieces hashed as their
    # concatenation without copying them), zero-padded to a block, then of
    # the ciphertext ct, padded, then of the two lengths
    pieces = aad if isinstance(aad, (list, tuple)) else (aad,)
    alen = 0
    for p in pieces:
        alen += len(p)
    ln = len(ct)
    if alen + ln >= _WIDE_FROM:
        t = _table(h, 256)
        run = _run8
    else:
        t = _table(h, 16)
        run = _run4
    buf = bytearray(16)
    y = 0
    for sec in (pieces, (ct,)):
        n = 0  # bytes waiting in buf
        for p in sec:
            mv = memoryview(p)
            m = len(mv)
            i = 0
            if n:
                i = 16 - n
                if i > m:
                    i = m
                buf[n : n + i] = mv[:i]
                n += i
                if n < 16:
                    continue
                y = run(t, y, buf)
                n = 0
            full = (m - i) & ~15
            if full:
                y = run(t, y, mv[i : i + full])
            n = m - i - full
            if n:
                buf[0:n] = mv[i + full :]
        if n:
            for j in range(n, 16):
                buf[j] = 0
            y = run(t, y, buf)
    return run(t, y, ((alen * 8) << 64 | (ln * 8)).to_bytes(16, "big"))


def ct_equal(a, b):
    """Constant-time comparison of two byte strings (time depends on length only)."""
    if len(a) != len(b):
        return False
    d = 0
    for i in range(len(a)):
        d |= a[i] ^ b[i]
    return d == 0


def _ctx(key, iv, tag_len):
    # per (key, iv): the AES object, H and E(J0)
    if len(key) != 16:
        raise GcmError("GcmError", "AES-128 key must be 16 bytes, got %d" % len(key))
    if len(iv) != 12:
        raise GcmError("GcmError", "GCM IV must be 12 bytes, got %d" % len(iv))
    if tag_len < 12 or tag_len > 16:
        raise GcmError("GcmError", "tag length must be 12..16, got %d" % tag_len)
    aes = cryptolib.aes(bytes(key), 1)
    blk = bytearray(32)
    blk[16:28] = iv
    blk[31] = 1
    aes.encrypt(blk, blk)  # H = E(0^128), E(J0) with J0 = iv || 00000001
    return aes, int.from_bytes(blk[0:16], "big"), int.from_bytes(blk[16:32], "big")


def _ctr(aes, iv, data, out):
    # CTR mode from counter 2 (inc32(J0)): out[i] = data[i] ^ E(iv || ctr)
    mv = memoryview(data)
    ln = len(mv)
    ks = bytearray(_CHUNK)
    for o in range(0, _CHUNK, 16):
        ks[o : o + 12] = iv
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
        aes.encrypt(enc, stream)
        x = fb(mv[pos : pos + n], "big") ^ fb(memoryview(stream)[:n], "big")
        out[pos : pos + n] = x.to_bytes(n, "big")
        pos += n


def gmac(key, iv, aad, tag_len=12):
    """GMAC tag over aad (bytes-like, or a list/tuple of pieces, hashed as
    their concatenation without copying them)."""
    _aes, h, ej0 = _ctx(key, iv, tag_len)
    return (_ghash(h, aad, b"") ^ ej0).to_bytes(16, "big")[:tag_len]


def gmac_verify(key, iv, aad, tag):
    """True when tag (12..16 bytes) is the GMAC of aad; constant-time compare."""
    return ct_equal(gmac(key, iv, aad, len(tag)), tag)


def encrypt(key, iv, plaintext, aad=b"", tag_len=12):
    """AES-GCM: returns ciphertext || tag (bytes), like cryptography's AESGCM."""
    aes, h, ej0 = _ctx(key, iv, tag_len)
    ln = len(plaintext)
    out = bytearray(ln + tag_len)
    _ctr(aes, iv, plaintext, out)
    out[ln:] = (_ghash(h, aad, memoryview(out)[:ln]) ^ ej0).to_bytes(16, "big")[:tag_len]
    return bytes(out)


def decrypt(key, iv, data, aad=b"", tag_len=12):
    """AES-GCM: data = ciphertext || tag; returns the plaintext (bytes) or
    raises GcmError of kind AuthError. The tag is checked before any plaintext is produced."""
    aes, h, ej0 = _ctx(key, iv, tag_len)
    if len(data) < tag_len:
        raise GcmError("GcmError", "ciphertext shorter than the %d-byte tag" % tag_len)
    mv = memoryview(data)
    ln = len(mv) - tag_len
    if not ct_equal((_ghash(h, aad, mv[:ln]) ^ ej0).to_bytes(16, "big")[:tag_len], mv[ln:]):
        raise GcmError("AuthError", "GCM tag mismatch")
    out = bytearray(ln)
    _ctr(aes, iv, mv[:ln], out)
    return bytes(out)
