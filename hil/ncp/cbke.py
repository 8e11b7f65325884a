"""The emulated NCP's CBKE crypto (ZigBee Smart Energy 1.2 Annex C): the
Koblitz binary curves of crypto suite 1 (sect163k1) and suite 2
(sect283k1), ECQV implicit certificates (SEC 4), ECMQV key agreement with
cofactor (SEC 1 section 3.4), the AES-MMO KDF and HMAC, the SMACs, and ECDSA
(only to check the curve code against OpenSSL).

Written from the SEC 1 v2 / SEC 4 descriptions and the SE 1.2 key
establishment text, in plain Python ints (GF(2^m) polynomials as bit
patterns; affine coordinates). docs/cbke.md says which parts have an
independent reference and which do not. Not constant-time: rig code only.
"""

from __future__ import annotations

import hashlib
import hmac as _hmac
import secrets
import struct
from dataclasses import dataclass

from hil.ncp.emulator import aes_mmo

Point = tuple[int, int] | None  # None: the point at infinity


@dataclass(frozen=True)
class Curve:
    name: str
    m: int
    ks: tuple[int, ...]  # reduction polynomial x^m + sum(x^k for k in ks) + 1
    a: int
    b: int
    gx: int
    gy: int
    n: int
    h: int

    @property
    def flen(self) -> int:
        return (self.m + 7) // 8

    # -- GF(2^m) --------------------------------------------------------------
    def red(self, r: int) -> int:
        m = self.m
        mask = (1 << m) - 1
        while r >> m:
            hi = r >> m
            r &= mask
            r ^= hi
            for k in self.ks:
                r ^= hi << k
        return r

    def mul(self, a: int, b: int) -> int:
        # 4-bit windowed carry-less product, then one reduction
        t = [0] * 16
        for i in range(1, 16):
            t[i] = t[i >> 1] << 1 if not i & 1 else t[i - 1] ^ a
        r = 0
        for s in range(((b.bit_length() + 3) // 4 - 1) * 4, -1, -4):
            r = (r << 4) ^ t[(b >> s) & 15]
        return self.red(r)

    def sq(self, a: int) -> int:
        return self.mul(a, a)

    def inv(self, a: int) -> int:
        if a == 0:
            raise ZeroDivisionError("inverse of 0 in GF(2^m)")
        f = (1 << self.m) | 1
        for k in self.ks:
            f |= 1 << k
        u, v, g1, g2 = a, f, 1, 0
        while u != 1:
            j = u.bit_length() - v.bit_length()
            if j < 0:
                u, v, g1, g2, j = v, u, g2, g1, -j
            u ^= v << j
            g1 ^= g2 << j
        return g1

    def half_trace(self, c: int) -> int:
        h = c
        for _ in range((self.m - 1) // 2):
            c = self.sq(self.sq(c))
            h ^= c
        return h

    # -- points ---------------------------------------------------------------
    @property
    def G(self) -> Point:
        return (self.gx, self.gy)

    def on_curve(self, p: Point) -> bool:
        if p is None:
            return True
        x, y = p
        return self.sq(y) ^ self.mul(x, y) == self.mul(self.sq(x), x) ^ self.mul(self.a, self.sq(x)) ^ self.b

    def neg(self, p: Point) -> Point:
        return None if p is None else (p[0], p[0] ^ p[1])

    def add(self, p: Point, q: Point) -> Point:
        if p is None:
            return q
        if q is None:
            return p
        x1, y1 = p
        x2, y2 = q
        if x1 == x2:
            if y1 == y2:
                return self.dbl(p)
            return None  # q = -p
        lam = self.mul(y1 ^ y2, self.inv(x1 ^ x2))
        x3 = self.sq(lam) ^ lam ^ x1 ^ x2 ^ self.a
        y3 = self.mul(lam, x1 ^ x3) ^ x3 ^ y1
        return (x3, y3)

    def dbl(self, p: Point) -> Point:
        if p is None or p[0] == 0:
            return None
        x1, y1 = p
        lam = x1 ^ self.mul(y1, self.inv(x1))
        x3 = self.sq(lam) ^ lam ^ self.a
        y3 = self.sq(x1) ^ self.mul(lam ^ 1, x3)
        return (x3, y3)

    def smul(self, k: int, p: Point) -> Point:
        r: Point = None
        for i in range(k.bit_length() - 1, -1, -1):
            r = self.dbl(r)
            if (k >> i) & 1:
                r = self.add(r, p)
        return r

    # -- octet strings (SEC 1 section 2.3) ---------------------------------------
    def fe2os(self, x: int) -> bytes:
        return x.to_bytes(self.flen, "big")

    def encode(self, p: Point) -> bytes:
        """Compressed point: 02/03 || x."""
        if p is None:
            raise ValueError("the point at infinity has no compressed form")
        x, y = p
        ybit = 0 if x == 0 else self.mul(y, self.inv(x)) & 1
        return bytes((2 | ybit,)) + self.fe2os(x)

    def decode(self, b: bytes) -> tuple[int, int]:
        if len(b) != 1 + self.flen or b[0] not in (2, 3):
            raise ValueError(f"{self.name}: not a compressed point of {1 + self.flen} bytes")
        x = int.from_bytes(b[1:], "big")
        if x >> self.m:
            raise ValueError(f"{self.name}: x outside the field")
        if x == 0:
            y = self.b
            for _ in range(self.m - 1):
                y = self.sq(y)
            return (0, y)
        beta = x ^ self.a ^ self.mul(self.b, self.inv(self.sq(x)))
        z = self.half_trace(beta)
        if self.sq(z) ^ z != beta:
            raise ValueError(f"{self.name}: no point with this x")
        if z & 1 != b[0] & 1:
            z ^= 1
        return (x, self.mul(x, z))


SECT163K1 = Curve("sect163k1", 163, (7, 6, 3), 1, 1,
                  0x02FE13C0537BBC11ACAA07D793DE4E6D5E5C94EEE8, 0x0289070FB05D38FF58321F2E800536D538CCDAA3D9,
                  0x04000000000000000000020108A2E0CC0D99F8A5EF, 2)
SECT283K1 = Curve("sect283k1", 283, (12, 7, 5), 0, 1,
                  0x0503213F78CA44883F1A3B8162F188E553CD265F23C1567A16876913B0C2AC2458492836,
                  0x01CCDA380F1C9E318D90F95D07E5426FE87E45C0E8184698E45962364E34116177DD2259,
                  0x01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFE9AE2ED07577265DFF7F94451E061E163C61, 4)


# -- crypto suites and their implicit certificates ------------------------------
@dataclass(frozen=True)
class Suite:
    number: int  # Key Establishment suite bit: 1 (0x0001) or 2 (0x0002)
    curve: Curve
    cert_len: int
    pub_len: int

    def cert_fields(self, cert: bytes) -> tuple[bytes, bytes, bytes]:
        """(public reconstruction point, subject EUI-64, issuer) of a certificate."""
        if len(cert) != self.cert_len:
            raise ValueError(f"suite {self.number}: certificate is {len(cert)} bytes, not {self.cert_len}")
        if self.number == 1:
            return cert[0:22], cert[22:30], cert[30:38]
        return cert[37:74], cert[28:36], cert[11:19]

    def make_cert(self, recon: bytes, subject: bytes, issuer: bytes, serial: int = 1) -> bytes:
        if self.number == 1:
            # SE 1.x: reconstruction point, subject, issuer, 10 bytes of profile attribute data
            return recon + subject + issuer + bytes.fromhex("01091083000000000000")
        # SE 1.2 suite 2: type 0, serial, curve 0x0D (sect283k1), hash 0x08
        # (AES-MMO), issuer, valid from (40-bit UTC s), valid to (32-bit),
        # subject, key usage 0x88 (key agreement, signature), reconstruction point
        return (b"\x00" + struct.pack(">Q", serial) + b"\x0d\x08" + issuer + bytes(5) + b"\xff\xff\xff\xff"
                + subject + b"\x88" + recon)


SUITE1 = Suite(1, SECT163K1, 48, 22)
SUITE2 = Suite(2, SECT283K1, 74, 37)
SUITES = {1: SUITE1, 2: SUITE2}


def hash_int(suite: Suite, data: bytes) -> int:
    """SEC 4 Hn: the AES-MMO hash as an integer (128 bits: shorter than n)."""
    return int.from_bytes(aes_mmo(data), "big")


def reconstruct(suite: Suite, cert: bytes, ca_pub: Point) -> Point:
    """ECQV public key extraction (SEC 4 section 3.5): Q = e * P + Q_CA."""
    c = suite.curve
    recon, _subject, _issuer = suite.cert_fields(cert)
    p = c.decode(recon)
    return c.add(c.smul(hash_int(suite, cert) % c.n, p), ca_pub)


@dataclass
class Credentials:
    """What an NCP (or a device) holds for CBKE: its certificate, its
    private key and the CA's public key."""

    suite: Suite
    cert: bytes
    private: int
    ca_pub: Point

    @property
    def public(self) -> Point:
        return self.suite.curve.smul(self.private, self.suite.curve.G)

    @property
    def eui(self) -> bytes:
        return self.suite.cert_fields(self.cert)[1]

    @property
    def issuer(self) -> bytes:
        return self.suite.cert_fields(self.cert)[2]


class Ca:
    """The rig's certificate authority (SEC 4 section 2: the CA side of ECQV
    certificate issuance)."""

    def __init__(self, suite: Suite, issuer: bytes = b"CHUBRGCA", private: int | None = None) -> None:
        if len(issuer) != 8:
            raise ValueError("issuer is 8 bytes")
        self.suite = suite
        self.issuer = issuer
        c = suite.curve
        self.private = private if private is not None else secrets.randbelow(c.n - 1) + 1
        self.public = c.smul(self.private, c.G)

    def issue(self, subject: bytes) -> Credentials:
        c = self.suite.curve
        ku = secrets.randbelow(c.n - 1) + 1  # the requester's key pair
        ru = c.smul(ku, c.G)
        while True:
            k = secrets.randbelow(c.n - 1) + 1
            pu = c.add(ru, c.smul(k, c.G))
            if pu is None:
                continue
            cert = self.suite.make_cert(c.encode(pu), subject, self.issuer)
            e = hash_int(self.suite, cert) % c.n
            r = (e * k + self.private) % c.n
            d = (e * ku + r) % c.n  # the requester's private key
            if d:
                return Credentials(self.suite, cert, d, self.public)


# -- key agreement ------------------------------------------------------------------
def keypair(curve: Curve) -> tuple[int, Point]:
    d = secrets.randbelow(curve.n - 1) + 1
    return d, curve.smul(d, curve.G)


def _avf(curve: Curve, q: Point) -> int:
    """SEC 1 section 3.4 associate value function."""
    assert q is not None
    half = (curve.n.bit_length() + 1) // 2
    return (q[0] % (1 << half)) + (1 << half)


def ecmqv(curve: Curve, d1: int, d2: int, q2: Point, peer_q1: Point, peer_q2: Point) -> bytes:
    """ECMQV with cofactor: own static d1, own ephemeral (d2, q2), the
    peer's static and ephemeral public keys -> the shared field element."""
    s = (d2 + _avf(curve, q2) * d1) % curve.n
    p = curve.smul(curve.h * s, curve.add(peer_q2, curve.smul(_avf(curve, peer_q2), peer_q1)))
    if p is None:
        raise ValueError("ECMQV: the shared point is the point at infinity")
    return curve.fe2os(p[0])


def kdf(z: bytes) -> tuple[bytes, bytes]:
    """ANSI X9.63 KDF with AES-MMO, 32 bytes -> (MacKey, KeyData)."""
    k = aes_mmo(z + b"\x00\x00\x00\x01") + aes_mmo(z + b"\x00\x00\x00\x02")
    return k[:16], k[16:]


def mmo_hmac(key: bytes, msg: bytes) -> bytes:
    """HMAC (FIPS 198) over the AES-MMO hash (16-byte block)."""
    if len(key) > 16:
        key = aes_mmo(key)
    key = key.ljust(16, b"\x00")
    return aes_mmo(bytes(b ^ 0x5C for b in key) + aes_mmo(bytes(b ^ 0x36 for b in key) + msg))


def smacs(mac_key: bytes, id_u: bytes, id_v: bytes, e_u: bytes, e_v: bytes) -> tuple[bytes, bytes]:
    """(MACU, MACV): U the initiator, V the responder; E the ephemeral
    public keys as sent (compressed)."""
    macu = mmo_hmac(mac_key, b"\x02" + id_u + id_v + e_u + e_v)
    macv = mmo_hmac(mac_key, b"\x03" + id_v + id_u + e_v + e_u)
    return macu, macv


class Party:
    """One side of a CBKE: the NCP's engine behind generateCbkeKeys /
    calculateSmacs / clearTemporaryDataMaybeStoreLinkKey, and the emulated
    devices' own (initiator) side."""

    def __init__(self, creds: Credentials) -> None:
        self.creds = creds
        self.eph: tuple[int, Point] | None = None
        self.key_data: bytes | None = None  # the unconfirmed link key
        self.partner: bytes | None = None

    @property
    def curve(self) -> Curve:
        return self.creds.suite.curve

    def generate(self) -> bytes:
        self.eph = keypair(self.curve)
        return self.curve.encode(self.eph[1])

    def calculate(self, initiator: bool, partner_cert: bytes, partner_eph: bytes) -> tuple[bytes, bytes]:
        """(initiator SMAC, responder SMAC); keeps the link key until clear()."""
        if self.eph is None:
            raise ValueError("no ephemeral key generated")
        suite, c = self.creds.suite, self.curve
        _r, subject, issuer = suite.cert_fields(partner_cert)
        if issuer != self.creds.issuer:
            raise ValueError("unknown issuer")
        peer_static = reconstruct(suite, partner_cert, self.creds.ca_pub)
        peer_eph = c.decode(partner_eph)
        z = ecmqv(c, self.creds.private, self.eph[0], self.eph[1], peer_static, peer_eph)
        mac_key, self.key_data = kdf(z)
        own_eph = c.encode(self.eph[1])
        if initiator:
            macs = smacs(mac_key, self.creds.eui, subject, own_eph, partner_eph)
        else:
            macs = smacs(mac_key, subject, self.creds.eui, partner_eph, own_eph)
        self.partner = subject
        return macs

    def clear(self, store: bool) -> tuple[bytes, bytes] | None:
        """Drop the temporary data; (partner EUI-64, link key) if store."""
        out = (self.partner, self.key_data) if store and self.partner and self.key_data else None
        self.eph = self.key_data = self.partner = None
        return out  # type: ignore[return-value]


# -- ECDSA (the building block checked against OpenSSL) -----------------------------
def _bits2int(curve: Curve, digest: bytes) -> int:
    e = int.from_bytes(digest, "big")
    extra = len(digest) * 8 - curve.n.bit_length()
    return e >> extra if extra > 0 else e


def ecdsa_sign(curve: Curve, d: int, msg: bytes) -> tuple[int, int]:
    e = _bits2int(curve, hashlib.sha256(msg).digest())
    while True:
        k = secrets.randbelow(curve.n - 1) + 1
        p = curve.smul(k, curve.G)
        assert p is not None
        r = p[0] % curve.n
        if r == 0:
            continue
        s = pow(k, -1, curve.n) * (e + r * d) % curve.n
        if s:
            return r, s


def ecdsa_verify(curve: Curve, q: Point, msg: bytes, sig: tuple[int, int]) -> bool:
    r, s = sig
    if not (0 < r < curve.n and 0 < s < curve.n):
        return False
    e = _bits2int(curve, hashlib.sha256(msg).digest())
    w = pow(s, -1, curve.n)
    p = curve.add(curve.smul(e * w % curve.n, curve.G), curve.smul(r * w % curve.n, q))
    return p is not None and p[0] % curve.n == r


def ct_equal(a: bytes, b: bytes) -> bool:
    return _hmac.compare_digest(a, b)


# -- the NCP's CBKE EZSP commands ---------------------------------------------------
# (their frame ids are in hil.ncp.emulator.ID, checked against bellows' tables)
_ERR = 0x01  # EMBER_ERR_FATAL / SL_STATUS_FAIL
_INVALID_CALL = 0x70


class CbkeNcp:
    """The CBKE commands of an emulated NCP holding credentials for suite 1
    and/or suite 2. The crypto runs on the NCP (as on an EFR32); the results
    come back in the *Handler callbacks a little later. A stored link key
    goes to the emulator's key table (the TC link key of the partner)."""

    def __init__(self, emu, creds: dict[int, Credentials]) -> None:  # type: ignore[no-untyped-def]
        self.emu = emu
        self.creds = creds
        self.parties = {n: Party(c) for n, c in creds.items()}
        self.stored: list[tuple[int, bytes]] = []  # (suite, partner EUI) of every key stored
        self.busy_s: list[float] = []  # NCP compute time of each generate/calculate

    def _party(self, suite: int) -> Party | None:
        return self.parties.get(suite)

    def _later(self, name: str, params: bytes) -> None:
        self.emu._spawn(self.emu._later(0.001, lambda: self.emu.callback(name, params)))

    def _timed(self, fn, *a):  # type: ignore[no-untyped-def]
        import time
        t = time.perf_counter()
        try:
            return fn(*a)
        finally:
            self.busy_s.append(time.perf_counter() - t)

    def _generate(self, suite: int, handler: str) -> bytes:
        p = self._party(suite)
        if p is None:
            return self.emu._st(_ERR)
        eph = self._timed(p.generate)
        self._later(handler, self.emu._st(0) + eph)
        return self.emu._st(0)

    def _calculate(self, suite: int, handler: str, prm: bytes) -> bytes:
        p = self._party(suite)
        s = SUITES[suite]
        if p is None or p.eph is None:
            return self.emu._st(_INVALID_CALL if p is not None else _ERR)
        if len(prm) < 1 + s.cert_len + s.pub_len:
            raise ValueError("short")
        cert, eph = prm[1:1 + s.cert_len], prm[1 + s.cert_len:1 + s.cert_len + s.pub_len]
        try:
            macu, macv = self._timed(p.calculate, bool(prm[0]), cert, eph)
        except ValueError:
            self._later(handler, self.emu._st(_ERR) + bytes(32))
            return self.emu._st(0)
        self._later(handler, self.emu._st(0) + macu + macv)
        return self.emu._st(0)

    def _clear(self, suite: int, prm: bytes) -> bytes:
        p = self._party(suite)
        if p is None:
            return self.emu._st(_ERR)
        got = p.clear(bool(prm[0]))
        if got is not None:
            eui, key = got
            self.emu.han.key_table[eui] = key
            self.emu.han.save()
            self.stored.append((suite, eui))
        return self.emu._st(0)

    def _cert(self, suite: int) -> bytes:
        c = self.creds.get(suite)
        if c is None:
            return self.emu._st(_ERR) + bytes(SUITES[suite].cert_len)
        return self.emu._st(0) + c.cert

    def _c_generateCbkeKeys(self, prm: bytes) -> bytes:
        return self._generate(1, "generateCbkeKeysHandler")

    def _c_generateCbkeKeys283k1(self, prm: bytes) -> bytes:
        return self._generate(2, "generateCbkeKeysHandler283k1")

    def _c_calculateSmacs(self, prm: bytes) -> bytes:
        return self._calculate(1, "calculateSmacsHandler", prm)

    def _c_calculateSmacs283k1(self, prm: bytes) -> bytes:
        return self._calculate(2, "calculateSmacsHandler283k1", prm)

    def _c_clearTemporaryDataMaybeStoreLinkKey(self, prm: bytes) -> bytes:
        return self._clear(1, prm)

    def _c_clearTemporaryDataMaybeStoreLinkKey283k1(self, prm: bytes) -> bytes:
        return self._clear(2, prm)

    def _c_getCertificate(self, prm: bytes) -> bytes:
        return self._cert(1)

    def _c_getCertificate283k1(self, prm: bytes) -> bytes:
        return self._cert(2)
