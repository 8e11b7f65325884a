"""Cross-check the firmware crypto (gbcs.gcm / gbcs.kdf / gbcs.p256, run under
MicroPython) against `cryptography`, and recompute the MACs of real RTDS
frames with the firmware code."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mpy import run_mp

ACB = "90B3D51F30000002"
CHF = "00DB1234567890A2"
GPF = "00DB1234567890A3"
P256_P = 2**256 - 2**224 + 2**192 + 2**96 - 1
P256_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B


def mp_json(code: str, data: object, heap: str = "4m") -> object:
    """Run `code` under micropython with `data` (JSON) on stdin; it prints one JSON line."""
    prelude = "import sys, json\nfrom binascii import unhexlify as u, hexlify as hx\nD = json.loads(sys.stdin.read())\n"
    r = run_mp(code=prelude + code, stdin=json.dumps(data).encode(), heap=heap)
    out = r.stdout.decode()
    assert r.returncode == 0, f"micropython failed:\n{out[-3000:]}\n{r.stderr.decode()[-2000:]}"
    return json.loads(out.strip().splitlines()[-1])


def pub_bytes(key: ec.EllipticCurvePublicKey, compressed: bool = False) -> bytes:
    fmt = (
        serialization.PublicFormat.CompressedPoint
        if compressed
        else serialization.PublicFormat.UncompressedPoint
    )
    return key.public_bytes(serialization.Encoding.X962, fmt)


def priv_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_numbers().private_value.to_bytes(32, "big")


# --- AES-GCM / GMAC ----------------------------------------------------------

GCM_CODE = """
from gbcs import gcm
res = []
for k, iv, a, p, ext in D:
    k, iv, a, p, ext = u(k), u(iv), u(a), u(p), u(ext)
    ct = gcm.encrypt(k, iv, p, a)
    pt = gcm.decrypt(k, iv, ct, a)
    # decrypt what cryptography produced (16-byte tag cut to 12)
    pt2 = gcm.decrypt(k, iv, ext, a)
    bad = bytearray(ext)
    bad[len(bad) // 2] ^= 0x01
    try:
        gcm.decrypt(k, iv, bad, a)
        rej = False
    except gcm.GcmError as e:
        rej = e.args[0] == "AuthError"
    # GMAC over the AAD given in three pieces == over the concatenation
    cut1, cut2 = len(a) // 3, 2 * len(a) // 3 + 1
    tag = gcm.gmac(k, iv, a + p)
    tag3 = gcm.gmac(k, iv, (a[:cut1], memoryview(a)[cut1:cut2], a[cut2:] + p))
    res.append([hx(ct).decode(), pt == p, pt2 == p, rej, hx(tag).decode(), tag3 == tag,
                gcm.gmac_verify(k, iv, a + p, tag), gcm.gmac_verify(k, iv, a + p + b"x", tag)])
print(json.dumps(res))
"""


def test_gcm_and_gmac_match_cryptography() -> None:
    rng = random.Random(20240601)
    cases = []
    for plen in (0, 1, 15, 16, 17, 100, 255, 320, 1000, 2049):
        for alen in (0, 6, 16, 45, 500):
            k, iv, a, p = rng.randbytes(16), rng.randbytes(12), rng.randbytes(alen), rng.randbytes(plen)
            ext = AESGCM(k).encrypt(iv, p, a)
            ext = ext[:-16] + ext[-16:-4]
            cases.append([x.hex() for x in (k, iv, a, p, ext)])
    res = mp_json(GCM_CODE, cases)
    assert len(res) == len(cases)
    for (k, iv, a, p, ext), (ct, ok, ok2, rej, tag, same3, vgood, vbad) in zip(cases, res, strict=True):
        assert ct == ext, (len(p) // 2, len(a) // 2)
        assert ok and ok2 and rej and same3 and vgood and not vbad
        ref = AESGCM(bytes.fromhex(k)).encrypt(bytes.fromhex(iv), b"", bytes.fromhex(a + p))[:12]
        assert tag == ref.hex()


def test_gcm_rejects_bad_parameters() -> None:
    code = """
from gbcs import gcm
out = []
for k, iv, tl in ((bytes(15), bytes(12), 12), (bytes(16), bytes(8), 12), (bytes(16), bytes(12), 8)):
    try:
        gcm.gmac(k, iv, b"abc", tl)
        out.append("accepted")
    except gcm.GcmError as e:
        out.append(str(e))
try:
    gcm.decrypt(bytes(16), bytes(12), bytes(5))
    out.append("accepted")
except gcm.GcmError as e:
    out.append(str(e))
print(json.dumps(out))
"""
    out = mp_json(code, [])
    assert "accepted" not in out, out
    assert "16 bytes" in out[0] and "12 bytes" in out[1] and "12..16" in out[2] and "shorter" in out[3]


# --- P-256 ECDH ----------------------------------------------------------------

ECDH_CODE = """
from gbcs import p256
res = {"fw_keys": [], "z": []}
for _ in range(3):
    d, q = p256.generate()
    res["fw_keys"].append([hx(d).decode(), hx(q).decode()])
for d, peer, comp in D["pairs"]:
    z = p256.ecdh(u(d), u(peer))
    zc = p256.ecdh(int(d, 16), u(comp))
    res["z"].append([hx(z).decode(), z == zc])
res["pub"] = [hx(p256.encode_point(p256.public_key(u(d)))).decode() for d in D["privs"]]
res["pubc"] = [hx(p256.encode_point(p256.public_key(u(d)), True)).decode() for d in D["privs"]]
print(json.dumps(res))
"""


def test_ecdh_both_directions() -> None:
    crypto_keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)]
    # first run: firmware generates its keys (and derives public keys of ours)
    first = mp_json(ECDH_CODE, {"pairs": [], "privs": [priv_bytes(k).hex() for k in crypto_keys]})
    for k, pub, pubc in zip(crypto_keys, first["pub"], first["pubc"], strict=True):
        assert pub == pub_bytes(k.public_key()).hex()
        assert pubc == pub_bytes(k.public_key(), compressed=True).hex()
    fw_keys = first["fw_keys"]
    pairs, expect = [], []
    for (fd, fq), ck in zip(fw_keys, crypto_keys, strict=True):
        fw_priv = ec.derive_private_key(int(fd, 16), ec.SECP256R1())
        assert pub_bytes(fw_priv.public_key()).hex() == fq  # firmware key pair is consistent
        fw_pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes.fromhex(fq))
        z = ck.exchange(ec.ECDH(), fw_pub)
        # firmware private x cryptography public, and cryptography private x firmware public
        pairs.append([fd, pub_bytes(ck.public_key()).hex(), pub_bytes(ck.public_key(), True).hex()])
        pairs.append([priv_bytes(ck).hex(), fq, pub_bytes(fw_pub, True).hex()])
        expect += [z, z]
    second = mp_json(ECDH_CODE, {"pairs": pairs, "privs": []})
    for (z, same), ref in zip(second["z"], expect, strict=True):
        assert z == ref.hex() and same


def test_invalid_points_and_keys_rejected() -> None:
    k = ec.generate_private_key(ec.SECP256R1())
    good = pub_bytes(k.public_key())
    x = int.from_bytes(good[1:33], "big")
    y = int.from_bytes(good[33:], "big")

    def rhs(c: int) -> int:
        return (c**3 - 3 * c + P256_B) % P256_P

    def is_square(v: int) -> bool:
        return pow(v, (P256_P - 1) // 2, P256_P) == 1

    # an x with no point on the curve, and a small x with one (so that x + p,
    # which still fits in 32 bytes, names the same point modulo p)
    x_bad = next(c for c in range(1, 100) if not is_square(rhs(c)))
    x_small = next(c for c in range(1, 100) if is_square(rhs(c)))
    y_small = pow(rhs(x_small), (P256_P + 1) // 4, P256_P)
    bad = {
        "off_curve": b"\x04" + x.to_bytes(32, "big") + ((y + 1) % P256_P).to_bytes(32, "big"),
        "x_plus_p": b"\x04" + (x_small + P256_P).to_bytes(32, "big") + y_small.to_bytes(32, "big"),
        "compressed_x_plus_p": b"\x02" + (x_small + P256_P).to_bytes(32, "big"),
        "zero": b"\x04" + bytes(64),
        "infinity": b"\x00",
        "prefix": b"\x05" + good[1:],
        "short": good[:-1],
        "compressed_no_root": b"\x02" + x_bad.to_bytes(32, "big"),
    }
    code = """
from gbcs import p256
out = {}
d = u(D["d"])
for name, enc in D["bad"].items():
    try:
        p256.ecdh(d, u(enc))
        out[name] = "accepted"
    except p256.P256Error as e:
        out[name] = "%s: %s" % (e.args[0], e)
    try:
        p256.verify(u(enc), b"msg", bytes(64))
        out[name + "/verify"] = "accepted"
    except p256.P256Error as e:
        out[name + "/verify"] = "rejected" if e.args[0] == "PointError" else repr(e)
for name, dd in (("zero", bytes(32)), ("order", u(D["n"])), ("short", bytes(31))):
    try:
        p256.ecdh(dd, u(D["good"]))
        out["d_" + name] = "accepted"
    except p256.P256Error as e:
        out["d_" + name] = "rejected" if e.args[0] == "ScalarError" else repr(e)
out["good"] = len(p256.ecdh(d, u(D["good"])))
print(json.dumps(out))
"""
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    data = {
        "d": priv_bytes(k).hex(),
        "good": good.hex(),
        "n": n.to_bytes(32, "big").hex(),
        "bad": {name: v.hex() for name, v in bad.items()},
    }
    out = mp_json(code, data)
    assert out.pop("good") == 32
    for name, verdict in out.items():
        assert verdict.startswith("PointError") or verdict == "rejected", (name, verdict)
    # and cryptography agrees those encodings are not points
    for v in bad.values():
        with pytest.raises(ValueError):
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), v)


# --- ECDSA ---------------------------------------------------------------------

ECDSA_CODE = """
from gbcs import p256
res = {"sigs": [], "ver": []}
for d, msg in D["sign"]:
    res["sigs"].append(hx(p256.sign(u(d), u(msg))).decode())
for q, msg, sig in D["verify"]:
    res["ver"].append(p256.verify(u(q), u(msg), u(sig)))
print(json.dumps(res))
"""


def _rs(sig: bytes) -> bytes:
    r, s = decode_dss_signature(sig)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def test_ecdsa_against_cryptography() -> None:
    rng = random.Random(77)
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(4)]
    msgs = [rng.randbytes(n) for n in (0, 1, 63, 300)]
    sign = [[priv_bytes(k).hex(), m.hex()] for k, m in zip(keys, msgs, strict=True)]
    verify, expect = [], []
    for k, m in zip(keys, msgs, strict=True):
        q = pub_bytes(k.public_key(), compressed=bool(len(m) & 1)).hex()
        sig = _rs(k.sign(m, ec.ECDSA(hashes.SHA256())))  # random k (OpenSSL)
        verify.append([q, m.hex(), sig.hex()])
        expect.append(True)
        bad = bytearray(sig)
        bad[5] ^= 0x40
        verify.append([q, m.hex(), bytes(bad).hex()])
        expect.append(False)
        verify.append([q, (m + b"!").hex(), sig.hex()])  # other message
        expect.append(False)
        verify.append([q, m.hex(), sig[:32].hex() + bytes(32).hex()])  # s = 0
        expect.append(False)
    res = mp_json(ECDSA_CODE, {"sign": sign, "verify": verify})
    assert res["ver"] == expect
    for k, m, sig in zip(keys, msgs, res["sigs"], strict=True):
        raw = bytes.fromhex(sig)
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        k.public_key().verify(der, m, ec.ECDSA(hashes.SHA256()))
        with pytest.raises(InvalidSignature):
            k.public_key().verify(der, m + b"x", ec.ECDSA(hashes.SHA256()))
        # RFC 6979 nonces: the firmware signature equals OpenSSL's deterministic one
        try:
            algo = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
        except TypeError:  # older cryptography
            continue
        assert _rs(k.sign(m, algo)) == raw


# --- RTDS: recompute real GBCS MACs with the firmware ----------------------------

RTDS_CODE = """
from gbcs import p256, kdf, gcm
zs = {}
tags = []
for frame, g, dev, cra, ctr, orig, rec, party in D["frames"]:
    if (dev, party) not in zs:
        zs[(dev, party)] = p256.ecdh(u(D["party_d"][party]), u(D["pubs"][dev]))
    f = u(frame)
    key = kdf.derive_key(zs[(dev, party)], u(orig), cra, u(ctr), u(rec))
    aad = (kdf.AAD_PREFIX, memoryview(f)[g:len(f) - 12])
    tags.append(hx(gcm.gmac(key, kdf.iv_for(u(orig)), aad)).decode())
print(json.dumps(tags))
"""


def _hexbytes(item: dict) -> bytes:
    return bytes.fromhex(item["hex"])


def _section_len(sec: dict) -> int:
    return sum(len(_hexbytes(v)) for v in sec.values())


def rtds_frames(vectors: Path) -> list[tuple[str, list]]:
    """Every MAC'd RTDS frame with the remote party whose KA key pairs with the
    device's for Z: commands -> the ACB (whoever the originator: the ACB
    applies the MAC); device responses/alerts -> their header recipient (the
    ACB, or the supplier for the 33 responses to direct supplier commands)."""
    gb = vectors / "gbcs"
    out = []
    for hexf in sorted(gb.glob("rtds/*/*.HEX")):
        dec = json.loads(hexf.with_suffix(".json").read_text())
        if "MAC" not in dec:
            continue
        raw = bytes.fromhex(hexf.read_text())
        gh = dec["Grouping Header"]
        orig = _hexbytes(gh["Originator System Title"])[1:]
        rec = _hexbytes(gh["Recipient System Title"])[1:]
        cra = _hexbytes(gh["CRA Flag"])[0]
        dev = orig if orig.hex().upper().startswith("00DB") else rec
        other = rec if dev == orig else orig
        party = ACB.lower() if cra == 1 else other.hex()
        g = _section_len(dec["MAC Header"])
        assert raw[g] == 0xDF and raw[-12:] == _hexbytes(dec["MAC"]["MAC"])
        ctr = _hexbytes(gh["Originator Counter"])
        out.append((hexf.name, [raw.hex(), g, dev.hex(), cra, ctr.hex(), orig.hex(), rec.hex(), party]))
    return out


def test_rtds_macs_recomputed_by_firmware(vectors: Path) -> None:
    ks = vectors / "gbcs" / "keystore"
    frames = rtds_frames(vectors)
    party_d = {}
    for party in {f[7] for _, f in frames}:
        k = serialization.load_pem_private_key((ks / f"{party}-ka.key").read_bytes(), None)
        assert isinstance(k, ec.EllipticCurvePrivateKey)
        party_d[party] = priv_bytes(k).hex()
    pubs = {}
    for _, (_, _, dev, *_rest) in frames:
        cert = x509.load_pem_x509_certificate((ks / f"{dev}-ka.pem").read_bytes())
        pubs[dev] = pub_bytes(cert.public_key()).hex()  # type: ignore[arg-type]
    # a negative control: the same frame with one grouping-header bit flipped
    name0, f0 = frames[0]
    tampered = bytearray(bytes.fromhex(f0[0]))
    tampered[f0[1] + 20] ^= 0x01
    items = [f for _, f in frames] + [[tampered.hex(), *f0[1:]]]
    tags = mp_json(RTDS_CODE, {"party_d": party_d, "pubs": pubs, "frames": items})
    wrong = [name for (name, f), t in zip(frames, tags[:-1], strict=True) if t != f[0][-24:]]
    assert not wrong, wrong
    assert tags[-1] != f0[0][-24:]
    chf_gpf = [n for n, f in frames if f[2].upper() in (CHF, GPF)]
    chf_gpf_cmds = [n for n, f in frames if f[2].upper() in (CHF, GPF) and f[3] == 1]
    print(
        f"RTDS MACs verified by the firmware: {len(frames)} ({len(chf_gpf)} CHF/GPF, of which {len(chf_gpf_cmds)} commands)"
    )
    to_supplier = [n for n, f in frames if f[3] != 1 and f[7] != ACB.lower()]
    print(f"of which device responses MAC'd with Z(supplier, device): {len(to_supplier)}")
    assert len(to_supplier) == 33
    assert len(chf_gpf_cmds) >= 40 and len(chf_gpf) >= 85 and len(frames) == 180


# --- RTDS: decrypt the encrypted GBZ components of device responses ------------

DECRYPT_CODE = """
from gbcs import p256, kdf, gcm
out = []
for d, q, orig, ctr, rec, ct in D:
    z = p256.ecdh(u(d), u(q))
    key = kdf.derive_key(z, u(orig), kdf.CRA_ENCRYPT, u(ctr), u(rec))
    try:
        out.append(hx(gcm.decrypt(key, kdf.iv_for(u(orig)), u(ct), kdf.ENC_AAD)).decode())
    except gcm.GcmError as e:
        out.append("tag mismatch" if e.args[0] == "AuthError" else repr(e))
print(json.dumps(out))
"""


def _flat_hex(item: dict) -> str:
    s = item.get("hex", "").replace(" ", "")
    for child in item.get("children", {}).values():
        s += _flat_hex(child)
    return s


def test_rtds_encrypted_payloads_decrypted_by_firmware(vectors: Path) -> None:
    """KDF with CRA 04, IV = originator || 0000, AAD = 31: the firmware recovers
    the plaintext gbcs-parser decoded, and the 12-byte AE MAC checks."""
    gb = vectors / "gbcs"
    ks = gb / "keystore"
    cases, expect, names = [], [], []
    for jf in sorted(gb.glob("rtds/*/*.json")):
        dec = json.loads(jf.read_text())
        plains = [dec[k] for k in sorted(dec) if k.startswith("Decrypted Payload")]
        if not plains:
            continue
        comps = [
            dec[k] for k in sorted(dec) if k.startswith("GBZ Component") and "Encrypted ZCL Payload" in dec[k]
        ]
        assert len(comps) == len(plains), jf.name
        gh = dec["Grouping Header"]
        orig = _hexbytes(gh["Originator System Title"])[1:]
        rec = _hexbytes(gh["Recipient System Title"])[1:]
        other = gh["Other Information Length"].get("children", {})
        supp = other.get("Supplementary Remote Party ID")
        party = _hexbytes(supp) if supp else rec  # the key belongs to the remote party named
        # with a 26-byte other-information the Supplementary Originator Counter is the KDF counter
        ctr_item = other.get("Supplementary Originator Counter", gh["Originator Counter"])
        priv = serialization.load_pem_private_key((ks / f"{party.hex()}-ka.key").read_bytes(), None)
        cert = x509.load_pem_x509_certificate((ks / f"{orig.hex()}-ka.pem").read_bytes())
        ctr = _hexbytes(ctr_item).hex()
        for comp, plain in zip(comps, plains, strict=True):
            ct = _hexbytes(comp["Encrypted ZCL Payload"]) + _hexbytes(comp["AE MAC"])
            assert _hexbytes(comp["Security Header"])[0] == 0x31
            q = pub_bytes(cert.public_key()).hex()  # type: ignore[arg-type]
            cases.append([priv_bytes(priv).hex(), q, orig.hex(), ctr, party.hex(), ct.hex()])  # type: ignore[arg-type]
            expect.append(_flat_hex({"children": plain}).lower())
            names.append(jf.name)
    assert len(cases) >= 19
    got = mp_json(DECRYPT_CODE, cases)
    wrong = [(n, g, e) for n, g, e in zip(names, got, expect, strict=True) if g != e]
    assert not wrong, wrong
