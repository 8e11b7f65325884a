"""Head-end side of the GPF conformance: verify the hub's GPF responses and
compare them with the RTDS ones, GBZ components decrypted on both sides.

Builds on hil.headend.gbcs (frames, MAC key, rebuild of RTDS commands). The
RTDS GPF responses are decrypted with the supplier's KA private key and the
RTDS GPF certificate, the hub's with the same supplier key and the hub's GPF
KA public key: the plaintexts must match.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from hil.headend.gbcs import (
    AAD_PREFIX,
    RTDS_GPF,
    Frame,
    HeadEnd,
    HeadEndError,
    gmac12,
    kdf,
    parse_frame,
)

_ALG_ID = bytes.fromhex("60857406080300")


def verify_response(he: HeadEnd, raw: bytes, cmd: Frame, cra: int = 2) -> Frame:
    """MAC (or, for a signed-only frame, signature), counter and EUIs of a GPF frame. The MAC key pairs the GPF's KA
    key with the header recipient's (the ACB, or the supplier for a response
    to a direct supplier command: docs/crypto.md). Unlike HeadEnd.verify the
    other-information may differ from the command's (a response drops the
    certificate, may add a counter)."""
    f = parse_frame(raw)
    if f.cra != cra:
        raise HeadEndError(f"CRA {f.cra}, want {cra}")
    if f.mac is None:
        # only signed responses (CS02b) go without a MAC: checked with the
        # hub's GPF DS key (he.ds_pubs)
        if f.signature is None:
            raise HeadEndError("frame from the hub has neither MAC nor signature")
        he.check_signature(f)
    else:
        key = kdf(he.z(f.originator, f.recipient), f.originator, f.cra, f.counter, f.recipient)
        if gmac12(key, f.originator + bytes(4), AAD_PREFIX + f.aad_body) != f.mac:
            raise HeadEndError("bad MAC on the hub's frame")
    if cra == 2:
        if f.counter != cmd.counter:
            raise HeadEndError(f"response counter {f.counter} is not the command's {cmd.counter}")
        if f.originator != cmd.recipient or f.recipient != cmd.originator:
            raise HeadEndError("response EUIs do not mirror the command's")
        if f.other_info[:2] != cmd.other_info[:2]:
            raise HeadEndError("response message code differs from the command's")
    return f


def _pub(path: Path) -> ec.EllipticCurvePublicKey:
    k = x509.load_pem_x509_certificate(path.read_bytes()).public_key()
    assert isinstance(k, ec.EllipticCurvePublicKey)
    return k


def _priv(path: Path) -> ec.EllipticCurvePrivateKey:
    k = serialization.load_pem_private_key(path.read_bytes(), None)
    assert isinstance(k, ec.EllipticCurvePrivateKey)
    return k


def _enc_key(z: bytes, orig: bytes, counter: int, party: bytes) -> bytes:
    oi = _ALG_ID + orig + bytes([9, 4]) + counter.to_bytes(8, "big") + party
    return hashlib.sha256(b"\x00\x00\x00\x01" + z + oi).digest()[:16]


def gbz_components(payload: bytes, cra: int = 2) -> list[dict[str, Any]]:
    """GBZ components as dicts (control, cluster, fc, seq, cmd, body or the
    encrypted parts)."""
    if payload[:2] != b"\x01\x09":
        raise HeadEndError("not a GBZ payload")
    n = payload[2]
    o = 3 + (6 if cra == 3 else 0)
    out = []
    for _ in range(n):
        ctrl, cluster, ln = payload[o], int.from_bytes(payload[o + 1 : o + 3], "big"), int.from_bytes(payload[o + 3 : o + 5], "big")
        body = payload[o + 5 : o + 5 + ln]
        o += 5 + ln
        c: dict[str, Any] = {"control": ctrl, "cluster": cluster}
        p = 0
        if ctrl & 0x10:
            c["from"] = body[:4]
            p = 4
        if ctrl & 0x02:
            c["ahc"], c["ahfc"] = body[p], body[p + 1]
            p += 2
        c["fc"], c["seq"], c["cmd"] = body[p], body[p + 1], body[p + 2]
        p += 3
        if ctrl & 0x02:
            k = int.from_bytes(body[p : p + 2], "big")
            c["sec"] = body[p + 2 : p + 7]
            c["ct_tag"] = body[p + 7 : p + 2 + k]
        else:
            c["body"] = body[p:]
        out.append(c)
    if o != len(payload):
        raise HeadEndError("trailing bytes after the GBZ components")
    return out


def gbz_alert(payload: bytes) -> tuple[int, int, list[dict[str, Any]]]:
    """(alert code, timestamp, use-case-specific components) of a GBZ alert
    payload: 01 09, the component count (0 for an alert that is only the
    header, e.g. 0x819D / 0x819E), alert code, timestamp (UTC seconds since
    2000), the components."""
    if len(payload) < 9:
        raise HeadEndError("GBZ alert shorter than its header")
    code, t = int.from_bytes(payload[3:5], "big"), int.from_bytes(payload[5:9], "big")
    return code, t, gbz_components(payload, cra=3)


class GpfKeys:
    """The remote parties' KA private keys and the RTDS GPF certificate."""

    def __init__(self, keystore: Path, hub_gpf_eui: bytes, hub_gpf_ka_pub: str) -> None:
        ks = Path(keystore)
        self.priv = {
            bytes.fromhex(e): _priv(ks / f"{e}-ka.key") for e in ("90b3d51f30010000", "90b3d51f30030000", "90b3d51f30000002")
        }
        self.rtds_gpf = _pub(ks / "00db1234567890a3-ka.pem")
        self.hub_eui = hub_gpf_eui
        self.hub_gpf = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes.fromhex(hub_gpf_ka_pub))

    def decrypt(self, f: Frame, comp: dict[str, Any], hub: bool) -> bytes:
        oi = f.other_info
        party = oi[2:10] if len(oi) >= 18 else f.recipient
        counter = int.from_bytes(oi[18:26], "big") if len(oi) == 26 else f.counter
        z = self.priv[party].exchange(ec.ECDH(), self.hub_gpf if hub else self.rtds_gpf)
        key = _enc_key(z, f.originator, counter, party)
        ct, tag = comp["ct_tag"][:-12], comp["ct_tag"][-12:]
        d = Cipher(algorithms.AES(key), modes.GCM(f.originator + bytes(4), tag, min_tag_length=12)).decryptor()
        d.authenticate_additional_data(b"\x31")
        return d.update(ct) + d.finalize()


def compare_gbz(keys: GpfKeys, exp_raw: bytes, act: Frame, ignore_dt: bool = False) -> list[str]:
    """Differences between the hub's GBZ response and the RTDS one (counters,
    MACs, supplementary originator counter values aside)."""
    exp = parse_frame(exp_raw)
    d: list[str] = []
    if exp.cra != act.cra:
        d.append(f"CRA {act.cra} != {exp.cra}")
    if exp.other_info[:10] != act.other_info[:10] or len(exp.other_info) != len(act.other_info):
        d.append(f"other-information {act.other_info.hex()} != {exp.other_info.hex()} (counters aside)")
    if not ignore_dt and exp.date_time != act.date_time:
        d.append(f"date-time {act.date_time and act.date_time.hex()} != {exp.date_time and exp.date_time.hex()}")
    if (exp.signature is None) != (act.signature is None):
        d.append("signature presence differs")
    try:
        ec_, ac = gbz_components(exp.payload, exp.cra), gbz_components(act.payload, act.cra)
    except (HeadEndError, IndexError) as e:
        return [*d, f"GBZ: {e}"]
    if len(ec_) != len(ac):
        return [*d, f"{len(ac)} components != {len(ec_)}"]
    for i, (e, a) in enumerate(zip(ec_, ac, strict=True)):
        for k in ("control", "cluster", "fc", "seq", "cmd", "ahc", "ahfc", "sec"):
            if e.get(k) != a.get(k):
                d.append(f"component {i}: {k} {a.get(k)!r} != {e.get(k)!r}")
        try:
            eb = keys.decrypt(exp, e, hub=False) if "ct_tag" in e else e["body"]
            ab = keys.decrypt(act, a, hub=True) if "ct_tag" in a else a["body"]
        except Exception as ex:  # noqa: BLE001 - reported as a difference
            d.append(f"component {i}: decryption failed: {type(ex).__name__}")
            continue
        if eb != ab:
            d.append(f"component {i}: ZCL payload {ab.hex()} != {eb.hex()}")
    return d


def compare_der(exp_raw: bytes, act: Frame, skip_time: bool = False) -> list[str]:
    """DER payloads byte for byte; skip_time blanks GeneralizedTime values."""
    exp = parse_frame(exp_raw)
    d = []
    if exp.cra != act.cra or exp.message_code != act.message_code:
        d.append("CRA / message code differ")
    ep, ap = exp.payload, act.payload
    if skip_time:
        ep, ap = _blank_time(ep), _blank_time(ap)
    if ep != ap:
        d.append(f"DER payload {act.payload.hex()} != {exp.payload.hex()}")
    return d


def _blank_time(b: bytes) -> bytes:
    i = b.find(b"\x18\x0f")
    return b if i < 0 else b[: i + 2] + b"\x00" * 15 + b[i + 17 :]


__all__ = ["RTDS_GPF", "GpfKeys", "compare_der", "compare_gbz", "gbz_alert", "gbz_components", "verify_response"]
