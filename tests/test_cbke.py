"""CBKE crypto of the emulated NCP (hil.ncp.cbke) against what is
independent of it: a published Certicom suite-1 test certificate (ECQV
public key reconstruction, point decompression, AES-MMO, the 48-byte
certificate layout) and OpenSSL's sect163k1/sect283k1 (curve parameters,
scalar multiplication, ECDH, ECDSA both ways). `cryptography` 50 no longer
has binary curves, so the OpenSSL command line is the reference here.
ECMQV, the KDF, the HMAC and the SMACs have no independent reference:
both sides agreeing is all these tests show (docs/cbke.md)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hil.ncp import emulator
from hil.ncp.cbke import (
    SECT163K1,
    SECT283K1,
    SUITE1,
    SUITE2,
    Ca,
    Curve,
    Party,
    ecdsa_sign,
    ecdsa_verify,
    reconstruct,
)

# Certicom test data for suite 1 (issuer "TESTSECA"), as published with the
# zsmartsystems ZigBee library's key establishment tests
CA_PUB = "0200fde8a7f3d1084224962a4e7c54e69ac3f04da6b8"
CERT = "0200caa15b4beede65c3139a5c3bc40c9ad153854a270022a300001731f354455354534543410109108301234567890a"
PRIVATE = "019fcc486fc46980ab4a612725b36f005edff075fe"
PUBLIC = "020366d312a0abf55654ead3e1624c31faed89c3bb20"

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")


def test_certicom_suite1_certificate() -> None:
    c = SECT163K1
    ca = c.decode(bytes.fromhex(CA_PUB))
    pub = c.decode(bytes.fromhex(PUBLIC))
    assert c.on_curve(ca) and c.on_curve(pub)
    assert c.smul(int(PRIVATE, 16), c.G) == pub
    cert = bytes.fromhex(CERT)
    assert reconstruct(SUITE1, cert, ca) == pub
    assert SUITE1.cert_fields(cert)[1:] == (bytes.fromhex("0022A300001731F3"), b"TESTSECA")
    assert c.encode(pub).hex() == PUBLIC


def _openssl(*args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True, timeout=30).stdout


def _key(tmp: Path, curve: Curve, name: str) -> tuple[Path, int, tuple[int, int]]:
    pem = tmp / f"{name}.pem"
    pem.write_bytes(_openssl("ecparam", "-name", curve.name, "-genkey", "-noout"))
    text = _openssl("ec", "-in", str(pem), "-text", "-noout").decode()
    priv = int(re.sub(r"[\s:]", "", text.split("priv:")[1].split("pub:")[0]), 16)
    pub = bytes.fromhex(re.sub(r"[\s:]", "", text.split("pub:")[1].split("ASN1")[0]))
    n = curve.flen
    if pub[0] == 4:
        return pem, priv, (int.from_bytes(pub[1:1 + n], "big"), int.from_bytes(pub[1 + n:], "big"))
    return pem, priv, curve.decode(pub)


@needs_openssl
@pytest.mark.parametrize("curve", [SECT163K1, SECT283K1], ids=lambda c: c.name)
def test_curve_against_openssl(tmp_path: Path, curve: Curve) -> None:
    # the explicit parameters OpenSSL holds for the curve
    der = _openssl("ecparam", "-name", curve.name, "-param_enc", "explicit", "-outform", "DER")
    g = bytes((4,)) + curve.gx.to_bytes(curve.flen, "big") + curve.gy.to_bytes(curve.flen, "big")
    assert g in der and curve.n.to_bytes((curve.n.bit_length() + 7) // 8, "big") in der
    assert curve.on_curve(curve.G) and curve.smul(curve.n, curve.G) is None
    a_pem, a, qa = _key(tmp_path, curve, "a")
    b_pem, b, qb = _key(tmp_path, curve, "b")
    # scalar multiplication and point compression
    assert curve.smul(a, curve.G) == qa and curve.decode(curve.encode(qa)) == qa
    # ECDH: OpenSSL's derived secret is our x(a * Qb)
    b_pub = tmp_path / "b.pub"
    b_pub.write_bytes(_openssl("ec", "-in", str(b_pem), "-pubout"))
    z = _openssl("pkeyutl", "-derive", "-inkey", str(a_pem), "-peerkey", str(b_pub))
    p = curve.smul(a, qb)
    assert p is not None and z == curve.fe2os(p[0])
    # ECDSA (SHA-256): OpenSSL's signature verifies with ours, ours with OpenSSL
    msg = b"chub cbke building block"
    sig = _openssl("dgst", "-sha256", "-sign", str(a_pem), data=msg)
    r, s = _der_sig(sig)
    assert ecdsa_verify(curve, qa, msg, (r, s)) and not ecdsa_verify(curve, qa, msg + b"!", (r, s))
    r, s = ecdsa_sign(curve, a, msg)
    (tmp_path / "sig").write_bytes(_der_sig_encode(r, s))
    a_pub = tmp_path / "a.pub"
    a_pub.write_bytes(_openssl("ec", "-in", str(a_pem), "-pubout"))
    out = _openssl("dgst", "-sha256", "-verify", str(a_pub), "-signature", str(tmp_path / "sig"), data=msg)
    assert b"Verified OK" in out


def _der_sig(der: bytes) -> tuple[int, int]:
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    vals = []
    for _ in range(2):
        assert der[i] == 2
        n = der[i + 1]
        vals.append(int.from_bytes(der[i + 2:i + 2 + n], "big"))
        i += 2 + n
    return vals[0], vals[1]


def _der_sig_encode(r: int, s: int) -> bytes:
    def one(v: int) -> bytes:
        b = v.to_bytes((v.bit_length() + 8) // 8, "big")
        return bytes((2, len(b))) + b
    body = one(r) + one(s)
    return bytes((0x30, len(body))) + body if len(body) < 0x80 else bytes((0x30, 0x81, len(body))) + body


@pytest.mark.parametrize("suite", [SUITE1, SUITE2], ids=["suite1", "suite2"])
def test_issue_and_agree(suite) -> None:  # type: ignore[no-untyped-def]
    ca = Ca(suite)
    hub, dev = ca.issue(bytes.fromhex("00DB1234567890A2")), ca.issue(bytes.fromhex("00DB1234567890A4"))
    c = suite.curve
    for cr in (hub, dev):  # ECQV: the issued private key matches the reconstructed public key
        assert c.smul(cr.private, c.G) == reconstruct(suite, cr.cert, ca.public)
        assert len(cr.cert) == suite.cert_len
    u, v = Party(dev), Party(hub)
    eu, ev = u.generate(), v.generate()
    assert len(eu) == suite.pub_len
    assert u.calculate(True, hub.cert, ev) == v.calculate(False, dev.cert, eu)
    ku, kv = u.clear(True), v.clear(True)
    assert ku is not None and kv is not None and ku[1] == kv[1] and ku[0] == hub.eui and kv[0] == dev.eui
    # a certificate of another CA: refused (unknown issuer)
    other = Ca(suite, issuer=b"OTHERCA!").issue(dev.eui)
    v.generate()
    with pytest.raises(ValueError, match="issuer"):
        v.calculate(False, other.cert, eu)


def test_cbke_frame_ids_match_bellows() -> None:
    from bellows.ezsp.v4.commands import COMMANDS as V4
    from bellows.ezsp.v14.commands import COMMANDS as V14
    names = [n for n in emulator.ID if "Cbke" in n or "Smacs" in n or "TemporaryData" in n or "Certificate" in n]
    assert len(names) == 12
    for n in names:
        assert emulator.ID[n] == V4[n][0] == V14[n][0], n


def test_firmware_frame_ids_match_bellows() -> None:
    # the hub's EZSP table (firmware/han/ezsp_frames.py, MicroPython) read as text
    from bellows.ezsp.v4.commands import COMMANDS as V4
    from bellows.ezsp.v8.commands import COMMANDS as V8
    from bellows.ezsp.v13.commands import COMMANDS as V13
    from bellows.ezsp.v14.commands import COMMANDS as V14

    src = (Path(__file__).parent.parent / "firmware" / "han" / "ezsp_frames.py").read_text()
    ids = {m[0]: int(m[1], 16) for m in re.findall(r'"(\w+)", \((0x[0-9A-Fa-f]+),', src)}
    cbke = [n for n in ids if "Cbke" in n or "Smacs" in n or "TemporaryData" in n or "Certificate" in n]
    assert len(cbke) == 12
    for n in cbke:
        assert ids[n] == V4[n][0] == V14[n][0], n
    assert ids["importLinkKey"] == V13["importLinkKey"][0] == V14["importLinkKey"][0] == emulator.ID["importLinkKey"]
    assert ids["addOrUpdateKeyTableEntry"] == V8["addOrUpdateKeyTableEntry"][0] == emulator.ID["addOrUpdateKeyTableEntry"]
