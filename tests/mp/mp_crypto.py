# gbcs.gcm / gbcs.kdf / gbcs.p256 under MicroPython: known-answer tests from
# the standards (GCM spec test cases, RFC 6979 A.2.5, NIST CAVS ECC CDH),
# round trips, rejection of bad input, and one real RTDS frame MAC.
import os
from binascii import a2b_base64
from binascii import unhexlify as u

from gbcs import gcm, kdf, p256

HEAP = "256k"


def _raises(kind, fn, *args):
    """True when fn raises an error of that kind (gcm's and p256's errors
    are one class each, raised with a kind)."""
    try:
        fn(*args)
    except ValueError as e:
        assert e.args[0] == kind, repr(e)
        return True
    return False


# --- GCM: McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 1-4
K0 = bytes(16)
K3 = u("feffe9928665731c6d6a8f9467308308")
IV3 = u("cafebabefacedbaddecaf888")
P3 = u(
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255"
)
C3 = u(
    "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
    "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985"
)
A4 = u("feedfacedeadbeeffeedfacedeadbeefabaddad2")


def test_gcm_spec_vectors():
    assert gcm.encrypt(K0, bytes(12), b"", tag_len=16) == u("58e2fccefa7e3061367f1d57a4e7455a")
    assert gcm.gmac(K0, bytes(12), b"", 16) == u("58e2fccefa7e3061367f1d57a4e7455a")
    out = gcm.encrypt(K0, bytes(12), bytes(16), tag_len=16)
    assert out == u("0388dace60b6a392f328c2b971b2fe78ab6e47d42cec13bdf53a67b21257bddf")
    out = gcm.encrypt(K3, IV3, P3, tag_len=16)
    assert out == C3 + u("4d5c2af327cd64a62cf35abd2ba6fab4")
    out = gcm.encrypt(K3, IV3, P3[:60], A4, tag_len=16)
    assert out == C3[:60] + u("5bc94fbc3221a5db94fae95ae7121a47")
    # 12-byte tags are the truncation; decrypt checks them
    out12 = gcm.encrypt(K3, IV3, P3[:60], A4)
    assert out12 == C3[:60] + u("5bc94fbc3221a5db94fae95a")
    assert gcm.decrypt(K3, IV3, out12, A4) == P3[:60]
    assert gcm.decrypt(K3, IV3, out, A4, 16) == P3[:60]


def test_gcm_tamper_and_round_trip():
    key = os.urandom(16)
    iv = os.urandom(12)
    for n in (0, 1, 16, 33, 300, 700):
        pt = os.urandom(n)
        aad = os.urandom(n % 37)
        ct = gcm.encrypt(key, iv, pt, aad)
        assert len(ct) == n + 12
        assert gcm.decrypt(key, iv, ct, aad) == pt
        for pos in (0, len(ct) // 2, len(ct) - 1):
            bad = bytearray(ct)
            bad[pos] ^= 0x80
            assert _raises("AuthError", gcm.decrypt, key, iv, bytes(bad), aad)
        assert _raises("AuthError", gcm.decrypt, key, iv, ct, aad + b"!")
    assert gcm.ct_equal(b"abc", b"abc") and not gcm.ct_equal(b"abc", b"abd")
    assert not gcm.ct_equal(b"abc", b"ab")


# --- P-256: RFC 6979 A.2.5 (P-256, SHA-256) key and deterministic signatures
D6979 = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
UX = 0x60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6
UY = 0x7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299


def test_rfc6979_p256_sha256():
    assert p256.public_key(D6979) == (UX, UY)
    sig = p256.sign(D6979, b"sample")
    assert sig == u(
        "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716"
        "F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8"
    )
    sig2 = p256.sign(D6979.to_bytes(32, "big"), b"test")
    assert sig2 == u(
        "F1ABB023518351CD71D881567B1EA663ED3EFCF6C5132B354F28D3B0B7D38367"
        "019F4113742A2B14BD25926B49C649155F267E60D3814B4C0CC84250E46F0083"
    )
    pub = p256.encode_point((UX, UY))
    assert p256.verify(pub, b"sample", sig)
    assert p256.verify(p256.encode_point((UX, UY), True), b"test", sig2)
    assert not p256.verify(pub, b"sample", sig2)
    assert not p256.verify(pub, b"sample", sig[:63])


# --- P-256 ECDH: NIST CAVS ECC CDH primitive test vector (P-256, COUNT = 0)
def test_ecdh_cavs_vector():
    peer = u(
        "04700c48f77f56584c5cc632ca65640db91b6bacce3a4df6b42ce7cc838833d287"
        "db71e509e3fd9b060ddb20ba5c51dcc5948d46fbf640dfe0441782cab85fa4ac"
    )
    d = u("7d7dc5f71eb29ddaf80d6214632eeae03d9058af1fb6d22ed80badb62bc1a534")
    assert p256.public_key(d) == (
        0xEAD218590119E8876B29146FF89CA61770C4EDBBF97D38CE385ED281D8A6B230,
        0x28AF61281FD35E2FA7002523ACC85A429CB06EE6648325389F59EDFCE1405141,
    )
    assert p256.ecdh(d, peer) == u("46fc62106420ff012e54a434fbdd2d25ccc5852060561e68040dd7778997bd7b")


def test_keys_round_trip_and_bad_points():
    d1, q1 = p256.generate()
    d2, q2 = p256.generate()
    assert len(d1) == 32 and len(q1) == 65 and q1[0] == 4
    z = p256.ecdh(d1, q2)
    assert z == p256.ecdh(d2, q1)
    pt = p256.decode_point(q1)
    assert p256.decode_point(p256.encode_point(pt, True)) == pt
    assert p256.ecdh(d2, p256.encode_point(pt, True)) == z
    bad = bytearray(q1)
    bad[64] ^= 1
    assert _raises("PointError", p256.ecdh, d2, bytes(bad))
    assert _raises("PointError", p256.ecdh, d2, b"\x00")
    assert _raises("PointError", p256.ecdh, d2, (pt[0], pt[1] + 1))
    assert _raises("ScalarError", p256.ecdh, bytes(32), q1)
    assert _raises("ScalarError", p256.ecdh, p256.N, q1)
    msg = b"GBCS alert body"
    sig = p256.sign(d1, msg)
    assert p256.verify(q1, msg, sig) and not p256.verify(q2, msg, sig)
    # rejection sampling: an all-FF draw (>= n) is skipped
    draws = [b"\xff" * 32, bytes(32), (5).to_bytes(32, "big")]
    d, q = p256.generate(lambda n: draws.pop(0))
    assert d == (5).to_bytes(32, "big") and not draws


def test_kdf_input_checks():
    z = bytes(32)
    e1 = b"\x90\xb3\xd5\x1f\x30\x00\x00\x02"
    e2 = b"\x00\xdb\x12\x34\x56\x78\x90\xa2"
    k = kdf.derive_key(z, e1, 1, 1302, e2)
    assert len(k) == 16
    assert k == kdf.derive_key(z, e1, 1, (1302).to_bytes(8, "big"), e2)
    assert k != kdf.derive_key(z, e1, kdf.CRA_ENCRYPT, 1302, e2)
    assert kdf.other_info(e1, 1, 1302, e2) == (
        u("60857406080300") + e1 + b"\x09\x01" + (1302).to_bytes(8, "big") + e2
    )
    assert kdf.iv_for(e1) == e1 + bytes(4)
    assert _raises("KdfError", kdf.derive_key, z[:31], e1, 1, 0, e2)
    assert _raises("KdfError", kdf.derive_key, z, e1[:7], 1, 0, e2)
    assert _raises("KdfError", kdf.derive_key, z, e1, 1, 1 << 64, e2)
    assert _raises("KdfError", kdf.derive_key, z, e1, 256, 0, e2)


# --- one real frame: RTDS CCS01 command ACB -> CHF, MAC recomputed end to end
def _pem_der(path):
    lines = open(path).read().split("\n")
    return a2b_base64("".join(x for x in lines if x and not x.startswith("-----")))


def test_rtds_ccs01_command_mac():
    vec = os.getenv("CHUB_VECTORS")
    base = vec + "/gbcs/"
    key_der = _pem_der(base + "keystore/90b3d51f30000002-ka.key")
    i = key_der.find(b"\x02\x01\x01\x04\x20")  # ECPrivateKey: version 1, 32-byte key
    acb_d = key_der[i + 5 : i + 37]
    cert = _pem_der(base + "keystore/00db1234567890a2-ka.pem")
    j = cert.find(b"\x03\x42\x00\x04")  # subjectPublicKey BIT STRING, uncompressed point
    chf_q = cert[j + 3 : j + 68]
    frame = u(open(base + "rtds/8.11_CCS01/CCS01_8.11_SUCCESS_COMMAND_GBCS.HEX").read())
    g = 14  # DD 00*6, 81 91, 11 00 00 00 00
    assert frame[g : g + 2] == b"\xdf\x09" and frame[g + 2] == 1
    ctr = frame[g + 3 : g + 11]
    orig = frame[g + 12 : g + 20]
    rec = frame[g + 21 : g + 29]
    key = kdf.derive_key(p256.ecdh(acb_d, chf_q), orig, 1, ctr, rec)
    aad = (kdf.AAD_PREFIX, memoryview(frame)[g : len(frame) - 12])
    tag = gcm.gmac(key, kdf.iv_for(orig), aad)
    assert tag == frame[-12:]
    assert gcm.gmac_verify(key, kdf.iv_for(orig), aad, frame[-12:])
    assert not gcm.gmac_verify(key, kdf.iv_for(rec), aad, frame[-12:])
