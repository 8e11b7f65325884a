# NIST P-256 (secp256r1) with Python ints: point encode/decode and validation,
# ECDH, key generation and ECDSA (SHA-256, RFC 6979 deterministic nonces).
#
# Points are Jacobian tuples (X, Y, Z) with x = X/Z^2, y = Y/Z^3; Z == 0 is
# the point at infinity. Scalar multiplication uses a fixed 4-bit window and
# always does 4 doublings + 1 addition per window (a dummy addition for zero
# digits), so the sequence of operations does not depend on the scalar. The
# bignum arithmetic underneath is NOT constant-time; this protects against
# nothing more than coarse timing of the operation sequence.
from micropython import const
import hashlib
import os

from log import KindError

P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
_GX = const(0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296)
_GY = const(0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5)

_INF = const((1, 1, 0))  # the point at infinity


class P256Error(KindError):
    """Raised as P256Error(kind, message): kind PointError (an encoded point
    is malformed or not on the curve), ScalarError (a private key or scalar
    is out of range) or P256Error."""


# --- group law -------------------------------------------------------------


def _dbl(pt):
    x, y, z = pt
    p = P
    delta = z * z % p
    gamma = y * y % p
    beta = x * gamma % p
    alpha = 3 * (x - delta) * (x + delta) % p
    x3 = (alpha * alpha - 8 * beta) % p
    z3 = ((y + z) * (y + z) - gamma - delta) % p
    y3 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % p
    return (x3, y3, z3)


def _add(p1, p2):
    x1, y1, z1 = p1
    x2, y2, z2 = p2
    if z1 == 0:
        return p2
    if z2 == 0:
        return p1
    p = P
    z1z1 = z1 * z1 % p
    z2z2 = z2 * z2 % p
    u1 = x1 * z2z2 % p
    u2 = x2 * z1z1 % p
    s1 = y1 * z2 * z2z2 % p
    s2 = y2 * z1 * z1z1 % p
    h = (u2 - u1) % p
    r = 2 * (s2 - s1) % p
    if h == 0:
        if r == 0:
            return _dbl(p1)
        return _INF
    i = 4 * h * h % p
    j = h * i % p
    v = u1 * i % p
    x3 = (r * r - j - 2 * v) % p
    y3 = (r * (v - x3) - 2 * s1 * j) % p
    z3 = ((z1 + z2) * (z1 + z2) - z1z1 - z2z2) * h % p
    return (x3, y3, z3)


def _affine(pt):
    x, y, z = pt
    if z == 0:
        return None
    zi = pow(z, P - 2, P)
    zi2 = zi * zi % P
    return (x * zi2 % P, y * zi2 * zi % P)


def _window(pt):
    t = [_INF, pt]
    for i in range(2, 16):
        t.append(_dbl(t[i >> 1]) if i & 1 == 0 else _add(t[i - 1], pt))
    return t


def _gtable():
    # rebuilt per operation (14 point operations, a small part of a
    # multiplication) rather than cached: no table of ints held between uses
    return _window((_GX, _GY, 1))


def _mul(k, table):
    q = _INF
    for sh in range(252, -4, -4):
        q = _dbl(_dbl(_dbl(_dbl(q))))
        d = (k >> sh) & 15
        r = _add(q, table[d or 1])
        if d:
            q = r
    return q


def _mul2(k1, t1, k2, t2):
    # k1*A + k2*B (Shamir/Straus, shared doublings); used only on public data
    q = _INF
    for sh in range(252, -4, -4):
        q = _dbl(_dbl(_dbl(_dbl(q))))
        d = (k1 >> sh) & 15
        if d:
            q = _add(q, t1[d])
        d = (k2 >> sh) & 15
        if d:
            q = _add(q, t2[d])
    return q


# --- encoding --------------------------------------------------------------


def on_curve(x, y):
    return 0 <= x < P and 0 <= y < P and (y * y - (x * x * x - 3 * x + B)) % P == 0


def decode_point(data):
    """Uncompressed 04||X||Y or compressed 02/03||X -> affine (x, y); raises
    P256Error (kind PointError) for anything that is not a finite point on P-256."""
    n = len(data)
    if n == 65 and data[0] == 4:
        x = int.from_bytes(data[1:33], "big")
        y = int.from_bytes(data[33:65], "big")
        if not on_curve(x, y):
            raise P256Error("PointError", "point is not on P-256")
        return (x, y)
    if n == 33 and data[0] in (2, 3):
        x = int.from_bytes(data[1:33], "big")
        if x >= P:
            raise P256Error("PointError", "x coordinate out of range")
        rhs = (x * x * x - 3 * x + B) % P
        y = pow(rhs, (P + 1) // 4, P)  # P = 3 mod 4
        if y * y % P != rhs:
            raise P256Error("PointError", "x has no point on P-256")
        if (y & 1) != (data[0] & 1):
            y = P - y
        return (x, y)
    raise P256Error("PointError", "bad point encoding (length %d)" % n)


def encode_point(pt, compressed=False):
    x, y = pt
    if compressed:
        return bytes((2 | (y & 1),)) + x.to_bytes(32, "big")
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


def _scalar(d):
    if not isinstance(d, int):
        if len(d) != 32:
            raise P256Error("ScalarError", "private key must be 32 bytes, got %d" % len(d))
        d = int.from_bytes(d, "big")
    if not 0 < d < N:
        raise P256Error("ScalarError", "private key out of range")
    return d


# --- public API ------------------------------------------------------------


def public_key(d):
    """Affine public point of private key d (int or 32 bytes)."""
    return _affine(_mul(_scalar(d), _gtable()))


def generate(rand=os.urandom):
    """New key pair: (32-byte private key, 65-byte uncompressed public key).
    The scalar is drawn by rejection sampling into [1, N-1]."""
    while True:
        d = int.from_bytes(rand(32), "big")
        if 0 < d < N:
            break
    return d.to_bytes(32, "big"), encode_point(public_key(d))


def ecdh(d, peer):
    """Shared secret Z (32-byte X coordinate of d * peer). peer: encoded point
    (bytes) or an affine tuple; it is checked to be on the curve."""
    if isinstance(peer, tuple):
        if not on_curve(peer[0], peer[1]):
            raise P256Error("PointError", "point is not on P-256")
        pt = peer
    else:
        pt = decode_point(peer)
    r = _affine(_mul(_scalar(d), _window((pt[0], pt[1], 1))))
    if r is None:  # impossible for a valid point of the prime-order group
        raise P256Error("PointError", "ECDH result is the point at infinity")
    return r[0].to_bytes(32, "big")


def hmac_sha256(key, *parts):
    """HMAC-SHA256 (RFC 2104) on hashlib over the concatenated parts (RFC 6979
    here, the local port's installer authentication too)."""
    k = bytearray(64)
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    k[: len(key)] = key
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in k))
    for p in parts:
        inner.update(p)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in k))
    outer.update(inner.digest())
    return outer.digest()


def _bits2int(h):
    return int.from_bytes(h, "big")  # qlen == hlen == 256: no shift


def _nonces(d, h):
    # RFC 6979 section 3.2 for P-256 / HMAC-SHA256; yields candidate k values
    x = d.to_bytes(32, "big")
    h1 = (_bits2int(h) % N).to_bytes(32, "big")
    v = b"\x01" * 32
    k = b"\x00" * 32
    k = hmac_sha256(k, v, b"\x00", x, h1)
    v = hmac_sha256(k, v)
    k = hmac_sha256(k, v, b"\x01", x, h1)
    v = hmac_sha256(k, v)
    while True:
        v = hmac_sha256(k, v)
        c = _bits2int(v)
        if 0 < c < N:
            yield c
        k = hmac_sha256(k, v, b"\x00")
        v = hmac_sha256(k, v)


def sign_digest(d, h):
    """ECDSA signature r||s (64 bytes) of a 32-byte SHA-256 digest, with the
    deterministic nonce of RFC 6979."""
    d = _scalar(d)
    if len(h) != 32:
        raise P256Error("P256Error", "digest must be 32 bytes")
    e = _bits2int(h) % N
    for k in _nonces(d, h):
        r = _affine(_mul(k, _gtable()))[0] % N
        if r == 0:
            continue
        s = pow(k, N - 2, N) * (e + r * d) % N
        if s == 0:
            continue
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def sign(d, msg):
    return sign_digest(d, hashlib.sha256(msg).digest())


def verify_digest(pub, h, sig):
    """True when sig (r||s, 64 bytes) is a valid signature of digest h under
    pub (encoded point or affine tuple). Raises P256Error (kind PointError) for an invalid key;
    a malformed or wrong signature returns False."""
    pt = pub if isinstance(pub, tuple) else decode_point(pub)
    if isinstance(pub, tuple) and not on_curve(pt[0], pt[1]):
        raise P256Error("PointError", "point is not on P-256")
    if len(sig) != 64 or len(h) != 32:
        return False
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    if not (0 < r < N and 0 < s < N):
        return False
    w = pow(s, N - 2, N)
    e = _bits2int(h) % N
    q = _mul2(e * w % N, _gtable(), r * w % N, _window((pt[0], pt[1], 1)))
    a = _affine(q)
    return a is not None and a[0] % N == r


def verify(pub, msg, sig):
    return verify_digest(pub, hashlib.sha256(msg).digest(), sig)
