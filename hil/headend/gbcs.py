"""GBCS head-end emulator: the DCC side (ACB + supplier) for the hub under test.

Independent of the firmware: frames, A-XDR and crypto are done here in CPython
with `cryptography`. It takes an RTDS COMMAND (or PRECOMMAND) file, rebuilds it
for the hub (recipient = the hub's CHF/GPF EUI, a fresh strictly increasing
counter, DLMS invoke-id = 0x20 + the counter's low 3 bytes, signature re-made
with the supplier's DS key when the RTDS command was signed, MAC from
ECDH(ACB KA private, hub KA public)), verifies the MAC of what comes back and
compares the response with the RTDS RESPONSE for the use case.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chubcore.dcc import ACB, SUPPLIER, TEST_DCC, anchor_cells

RTDS_CHF = bytes.fromhex("00DB1234567890A2")
RTDS_GPF = bytes.fromhex("00DB1234567890A3")
AAD_PREFIX = bytes.fromhex("110000000000")
_ALG_ID = bytes.fromhex("60857406080300")


class HeadEndError(Exception):
    pass


# --- frames -------------------------------------------------------------------


def _rdlen(b: bytes, o: int) -> tuple[int, int]:
    x = b[o]
    if x < 0x80:
        return x, o + 1
    if x == 0x81:
        return b[o + 1], o + 2
    if x == 0x82:
        return int.from_bytes(b[o + 1 : o + 3], "big"), o + 3
    raise HeadEndError(f"bad length byte {x:#x} at {o}")


def _enclen(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    if n < 0x100:
        return bytes([0x81, n])
    return bytes([0x82]) + n.to_bytes(2, "big")


@dataclass
class Frame:
    cra: int
    counter: int
    originator: bytes
    recipient: bytes
    date_time: bytes | None
    other_info: bytes
    payload: bytes
    signature: bytes | None
    sig_field: bool = True
    mac: bytes | None = None
    raw: bytes = b""
    aad_body: bytes = b""  # DF .. end of the signature field

    @property
    def message_code(self) -> int:
        return int.from_bytes(self.other_info[:2], "big")

    def header_and_payload(self) -> bytes:
        dt = b"\x00" if self.date_time is None else b"\x0c" + self.date_time
        return (
            b"\xdf\x09"
            + bytes([self.cra])
            + self.counter.to_bytes(8, "big")
            + b"\x08"
            + self.originator
            + b"\x08"
            + self.recipient
            + dt
            + _enclen(len(self.other_info))
            + self.other_info
            + _enclen(len(self.payload))
            + self.payload
        )


def parse_frame(b: bytes) -> Frame:
    mac = None
    o = 0
    end = len(b)
    if b[0] == 0xDD:
        if b[:7] != b"\xdd" + bytes(6):
            raise HeadEndError("bad general-ciphering header")
        clen, o = _rdlen(b, 7)
        if o + clen != len(b) or b[o] != 0x11:
            raise HeadEndError("bad MAC header")
        o += 5
        end = len(b) - 12
        mac = b[end:]
    start = o
    if b[o : o + 2] != b"\xdf\x09":
        raise HeadEndError("no general-signing tag")
    cra = b[o + 2]
    counter = int.from_bytes(b[o + 3 : o + 11], "big")
    orig, recip = b[o + 12 : o + 20], b[o + 21 : o + 29]
    o += 29
    dt = None
    if b[o] == 0x0C:
        dt = b[o + 1 : o + 13]
        o += 13
    else:
        o += 1
    olen, o = _rdlen(b, o)
    other = b[o : o + olen]
    o += olen
    plen, o = _rdlen(b, o)
    payload = b[o : o + plen]
    o += plen
    sig = None
    sig_field = True
    if o == end and mac is None:
        sig_field = False
    else:
        slen, o = _rdlen(b, o)
        if slen:
            sig = b[o : o + slen]
            o += slen
    if o != end:
        raise HeadEndError("trailing bytes in frame")
    return Frame(cra, counter, orig, recip, dt, other, payload, sig, sig_field, mac, b, b[start:o])


# --- A-XDR (the subset in the CHF responses) ------------------------------------

_INT_SIZES = {0x05: 4, 0x06: 4, 0x0D: 1, 0x0F: 1, 0x10: 2, 0x11: 1, 0x12: 2, 0x14: 8, 0x15: 8, 0x16: 1}
_SIGNED = {0x05, 0x0D, 0x0F, 0x10, 0x14}
_FIXED = {0x03: 1, 0x17: 4, 0x18: 8, 0x19: 12, 0x1A: 5, 0x1B: 4}


def _simple(b: bytes, o: int, tag: int) -> tuple[Any, int]:
    if tag in _INT_SIZES:
        n = _INT_SIZES[tag]
        return (tag, int.from_bytes(b[o : o + n], "big", signed=tag in _SIGNED)), o + n
    if tag in (0x09, 0x0A, 0x0C):
        n, o = _rdlen(b, o)
        return (tag, b[o : o + n]), o + n
    if tag == 0x04:
        n, o = _rdlen(b, o)
        k = (n + 7) // 8
        return (tag, (n, b[o : o + k])), o + k
    if tag in _FIXED:
        n = _FIXED[tag]
        return (tag, b[o : o + n]), o + n
    if tag == 0:
        return (0, None), o
    raise HeadEndError(f"A-XDR tag {tag:#x} not handled")


def _td(b: bytes, o: int) -> tuple[Any, int]:
    t = b[o]
    if t == 0x02:
        n = b[o + 1]
        o += 2
        subs = []
        for _ in range(n):
            s, o = _td(b, o)
            subs.append(s)
        return (2, subs), o
    if t == 0x01:
        cnt = int.from_bytes(b[o + 1 : o + 3], "big")
        s, o = _td(b, o + 3)
        return (1, cnt, s), o
    return t, o + 1


def _untagged(b: bytes, o: int, td: Any) -> tuple[Any, int]:
    if isinstance(td, int):
        return _simple(b, o, td)
    if td[0] == 2:
        items = []
        for s in td[1]:
            v, o = _untagged(b, o, s)
            items.append(v)
        return (2, items), o
    items = []
    for _ in range(td[1]):
        v, o = _untagged(b, o, td[2])
        items.append(v)
    return (1, items), o


def decode_data(b: bytes, o: int) -> tuple[Any, int]:
    tag = b[o]
    o += 1
    if tag in (1, 2):
        n, o = _rdlen(b, o)
        items = []
        for _ in range(n):
            v, o = decode_data(b, o)
            items.append(v)
        return (tag, items), o
    if tag == 0x13:
        td, o = _td(b, o)
        n, o = _rdlen(b, o)
        end = o + n
        items = []
        while o < end:
            v, o = _untagged(b, o, td)
            items.append(v)
        return (tag, (td, items)), o
    return _simple(b, o, tag)


@dataclass
class AccessResponse:
    invoke_id: int
    date_time: bytes
    data: list[Any]
    results: list[tuple[int, int]]


def decode_access_response(p: bytes) -> AccessResponse:
    if p[0] != 0xDA:
        raise HeadEndError(f"payload tag {p[0]:#x} is not an access-response")
    iid = int.from_bytes(p[1:5], "big")
    n, o = _rdlen(p, 5)
    dt = p[o : o + n]
    o += n
    if p[o] != 0:
        raise HeadEndError("access-response with specifications not expected")
    n, o = _rdlen(p, o + 1)
    data = []
    for _ in range(n):
        v, o = decode_data(p, o)
        data.append(v)
    n, o = _rdlen(p, o)
    res = [(p[o + 2 * i], p[o + 2 * i + 1]) for i in range(n)]
    o += 2 * n
    if o != len(p):
        raise HeadEndError("trailing bytes after the access-response")
    return AccessResponse(iid, dt, data, res)


# --- keys and crypto ----------------------------------------------------------


def _load_priv(path: Path) -> ec.EllipticCurvePrivateKey:
    k = serialization.load_pem_private_key(path.read_bytes(), None)
    assert isinstance(k, ec.EllipticCurvePrivateKey)
    return k


def kdf(z: bytes, originator: bytes, cra: int, counter: int, recipient: bytes) -> bytes:
    oi = _ALG_ID + originator + bytes([9, cra]) + counter.to_bytes(8, "big") + recipient
    return hashlib.sha256(b"\x00\x00\x00\x01" + z + oi).digest()[:16]


def gmac12(key: bytes, iv: bytes, aad: bytes) -> bytes:
    return AESGCM(key).encrypt(iv, b"", aad)[:12]


def public_point(pub_hex: str) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes.fromhex(pub_hex))


def protect(f: Frame, z: bytes) -> bytes:
    """MAC'd frame bytes for f (its signature field as given)."""
    body = f.header_and_payload()
    body += b"\x00" if f.signature is None else _enclen(len(f.signature)) + f.signature
    key = kdf(z, f.originator, f.cra, f.counter, f.recipient)
    mac = gmac12(key, f.originator + bytes(4), AAD_PREFIX + body)
    inner = b"\x11\x00\x00\x00\x00" + body + mac
    return b"\xdd" + bytes(6) + _enclen(len(inner)) + inner


# --- the emulator -------------------------------------------------------------


@dataclass
class Exchange:
    command: bytes
    response: bytes | None
    alerts: list[bytes] = field(default_factory=list)
    error: str | None = None


class HeadEnd:
    """HeadEnd(keystore, chf_eui, chf_ka_pub_hex, gpf_eui=None, gpf_ka_pub_hex=None)."""

    def __init__(
        self,
        keystore: Path,
        chf_eui: bytes,
        chf_ka_pub: str,
        gpf_eui: bytes | None = None,
        gpf_ka_pub: str | None = None,
        chf_ds_pub: str | None = None,
        gpf_ds_pub: str | None = None,
    ) -> None:
        self.keystore = Path(keystore)
        self.ds_pubs = {chf_eui: public_point(chf_ds_pub)} if chf_ds_pub else {}
        if gpf_eui is not None and gpf_ds_pub:
            self.ds_pubs[gpf_eui] = public_point(gpf_ds_pub)
        self.acb_ka = _load_priv(self.keystore / "90b3d51f30000002-ka.key")
        self.supplier_ds = _load_priv(self.keystore / "90b3d51f30010000-ds.key")
        self.devices = {RTDS_CHF: (chf_eui, public_point(chf_ka_pub))}
        if gpf_eui is not None and gpf_ka_pub is not None:
            self.devices[RTDS_GPF] = (gpf_eui, public_point(gpf_ka_pub))
        self._last = 0

    @classmethod
    def for_hub(cls, keystore: Path, identity: dict[str, Any]) -> HeadEnd:
        """From the hub's `identity` reply."""
        c, g = identity["chf"], identity.get("gpf")
        return cls(
            keystore,
            bytes.fromhex(c["eui"]),
            c["ka_pub"],
            bytes.fromhex(g["eui"]) if g else None,
            g["ka_pub"] if g else None,
            c.get("ds_pub"),
            g.get("ds_pub") if g else None,
        )

    def test_dcc_anchors(
        self, roles: tuple[str, ...] = ("acb", "supplier"), holder: dict[str, bytes] | None = None
    ) -> list[dict[str, str]]:
        """The trust anchors (KA key, and each cell's public key and subject
        key identifier) of the given roles from the keystore certificates;
        the default emulated system is provisioned with the ACB and supplier.
        holder: role -> the EUI whose keystore certificates fill that role's
        cells instead of its own (the RTDS GPF holds the ACB's certificates in
        its supplier and network operator cells before CS02b); a holder's
        "pp-ka" certificate, or its KA one, fills a supplier's prepayment
        top-up cell (pp_ka_pub / pp_ka_ski)."""
        out = []
        for role in roles:
            eui, usages = TEST_DCC[role]
            if holder and role in holder:
                eui = holder[role]
                usages = ("ds", "ka", "pp-ka") if role == "supplier" else ("ds", "ka")
            a: dict[str, str] = {"eui": eui.hex(), "role": role}
            for u in usages:
                path = self.keystore / f"{eui.hex()}-{u}.pem"
                if u == "pp-ka" and not path.exists():
                    path = self.keystore / f"{eui.hex()}-ka.pem"
                a.update(anchor_cells(path, u.replace("-", "_")))
            out.append(a)
        return out

    def next_counter(self) -> int:
        c = max(self._last + 1, time.time_ns() // 1000)
        self._last = c
        return c

    def z(self, device_eui: bytes, party: bytes = ACB) -> bytes:
        """ECDH(party's KA private key from the keystore, device KA public):
        the ACB for commands; a device's own frames pair with their header
        recipient (docs/crypto.md)."""
        key = self.acb_ka if party == ACB else _load_priv(self.keystore / f"{party.hex()}-ka.key")
        for eui, pub in self.devices.values():
            if eui == device_eui:
                return key.exchange(ec.ECDH(), pub)
        raise HeadEndError(f"no key for device {device_eui.hex()}")

    def signer(self, originator: bytes) -> ec.EllipticCurvePrivateKey:
        """The DS private key that signs for originator (the supplier's
        unless the keystore holds the originator's own)."""
        path = self.keystore / f"{originator.hex()}-ds.key"
        return _load_priv(path) if path.exists() else self.supplier_ds

    def rebuild(
        self, rtds_command: bytes, counter: int | None = None, recipient: bytes | None = None
    ) -> tuple[bytes, Frame]:
        """RTDS COMMAND/PRECOMMAND bytes -> (protected command for the hub, its
        Frame). recipient: the RTDS device to stand in for (default: the
        command's recipient). A command the RTDS sends signed but not MAC'd
        stays signed only."""
        f = parse_frame(rtds_command)
        if f.cra != 1:
            raise HeadEndError("not a command")
        if recipient is not None:
            f.recipient = recipient
        target = self.devices.get(f.recipient)
        if target is None:
            raise HeadEndError(f"recipient {f.recipient.hex()} is not a hub device")
        f.recipient = target[0]
        f.counter = self.next_counter() if counter is None else counter
        if f.payload[:1] == b"\xd9":  # DLMS access-request: invoke-id follows the counter
            iid = 0x20000000 | (f.counter & 0xFFFFFF)
            f.payload = f.payload[:1] + iid.to_bytes(4, "big") + f.payload[5:]
        signed_only = f.mac is None and f.signature is not None
        if f.signature is not None or not f.sig_field and f.originator == SUPPLIER:
            der = self.signer(f.originator).sign(f.header_and_payload()[1:], ec.ECDSA(hashes.SHA256()))
            r, s = decode_dss_signature(der)
            f.signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        f.sig_field = True
        if signed_only:
            assert f.signature is not None
            raw = f.header_and_payload() + _enclen(64) + f.signature
        else:
            raw = protect(f, self.z(f.recipient))
        return raw, parse_frame(raw)

    def check_signature(self, f: Frame) -> None:
        """ECDSA check of a hub frame's signature with the hub's DS key."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        pub = self.ds_pubs.get(f.originator)
        if pub is None or f.signature is None or len(f.signature) != 64:
            raise HeadEndError("no signature or no DS key for the hub's frame")
        der = encode_dss_signature(int.from_bytes(f.signature[:32], "big"), int.from_bytes(f.signature[32:], "big"))
        try:
            pub.verify(der, f.header_and_payload()[1:], ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise HeadEndError("bad signature on the hub's frame") from None

    def verify(self, raw: bytes, cmd: Frame | None = None, cra: int = 2) -> Frame:
        """Parse a frame from the hub and check its MAC (and, for a response,
        that it answers cmd). Raises HeadEndError."""
        f = parse_frame(raw)
        if f.mac is None and f.signature is None:
            raise HeadEndError("frame from the hub has neither MAC nor signature")
        if f.cra != cra:
            raise HeadEndError(f"CRA {f.cra}, want {cra}")
        if f.signature is not None:
            self.check_signature(f)
        if f.mac is not None:
            key = kdf(self.z(f.originator, f.recipient), f.originator, f.cra, f.counter, f.recipient)
            if gmac12(key, f.originator + bytes(4), AAD_PREFIX + f.aad_body) != f.mac:
                raise HeadEndError("bad MAC on the hub's frame")
        if cmd is not None:
            if f.counter != cmd.counter:
                raise HeadEndError(f"response counter {f.counter} is not the command's {cmd.counter}")
            if f.originator != cmd.recipient or f.recipient != cmd.originator:
                raise HeadEndError("response EUIs do not mirror the command's")
            if f.other_info != cmd.other_info:
                raise HeadEndError("response other-information differs from the command's")
        return f

    def exchange(self, send: Callable[[bytes], tuple[bytes, list[bytes]]], rtds_command: bytes) -> Exchange:
        raw, _ = self.rebuild(rtds_command)
        resp, alerts = send(raw)
        return Exchange(raw, resp, alerts)


# --- comparison with the RTDS response ------------------------------------------


def compare_response(
    expected_rtds: bytes,
    actual: Frame,
    hub_euis: dict[bytes, bytes],
    hub_values: set[tuple[int, ...]] = frozenset(),
) -> list[str]:
    """Differences between the hub's response and the RTDS RESPONSE (empty =
    equal). Counters, MACs and the invoke-id (checked against the counter)
    aside; an RTDS device EUI must be the hub's matching EUI; paths in
    hub_values (data index, then element indices) are the hub's own values
    and only their type is compared."""
    exp = parse_frame(expected_rtds)
    diffs: list[str] = []
    if exp.cra != actual.cra:
        diffs.append(f"CRA {actual.cra} != {exp.cra}")
    if exp.message_code != actual.message_code:
        diffs.append(f"message code {actual.message_code:#06x} != {exp.message_code:#06x}")
    if exp.other_info[2:10] != actual.other_info[2:10]:
        diffs.append("supplementary remote party differs")
    if (exp.date_time is None) != (actual.date_time is None):
        diffs.append("date-time presence differs")
    if (exp.signature is None) != (actual.signature is None):
        diffs.append("signature presence differs")
    if exp.payload[:1] != actual.payload[:1]:
        return [*diffs, f"payload kind {actual.payload[:1].hex()} != {exp.payload[:1].hex()}"]
    if exp.payload[:1] == b"\x0f":  # data-notification (alerts)
        eo, ao = _rdlen(exp.payload, 5), _rdlen(actual.payload, 5)
        if int.from_bytes(actual.payload[1:5], "big") != 0x20000000 | (actual.counter & 0xFFFFFF):
            diffs.append("invoke-id does not follow the counter")
        ev, _ = decode_data(exp.payload, eo[1] + eo[0])
        av, _ = decode_data(actual.payload, ao[1] + ao[0])
        _cmp(ev, av, (), hub_euis, hub_values, diffs)
        return diffs
    if exp.payload[:1] != b"\xda":
        if exp.payload[:1] == b"\x30":  # ASN.1: time stamps are the hub's clock
            ep, ap = _der_mask_times(exp.payload), _der_mask_times(actual.payload)
        else:
            ep, ap = exp.payload, actual.payload
        if ep != ap:
            diffs.append("payload bytes differ")
        return diffs
    e, a = decode_access_response(exp.payload), decode_access_response(actual.payload)
    if a.invoke_id != 0x20000000 | (actual.counter & 0xFFFFFF):
        diffs.append(f"invoke-id {a.invoke_id:#x} does not follow the counter")
    if e.date_time != a.date_time:
        diffs.append("DLMS date-time differs")
    if e.results != a.results:
        diffs.append(f"results {a.results} != {e.results}")
    if len(e.data) != len(a.data):
        diffs.append(f"{len(a.data)} data items != {len(e.data)}")
        return diffs
    for i, (ev, av) in enumerate(zip(e.data, a.data, strict=True)):
        _cmp(ev, av, (i,), hub_euis, hub_values, diffs)
    return diffs


def _der_mask_times(b: bytes) -> bytes:
    """DER bytes with each GeneralizedTime's contents zeroed (after checking
    they read YYYYMMDDHHMMSSZ)."""
    out = bytearray(b)

    def walk(o: int, end: int) -> None:
        while o < end:
            tag = b[o]
            n, s = _rdlen(b, o + 1)
            if tag & 0x20:
                walk(s, s + n)
            elif tag == 0x18:
                t = b[s : s + n]
                if n != 15 or not t[:14].isdigit() or t[14:] != b"Z":
                    raise HeadEndError(f"bad GeneralizedTime {t!r}")
                out[s : s + n] = bytes(n)
            o = s + n

    walk(0, len(b))
    return bytes(out)


def _cmp(e: Any, a: Any, path: tuple[int, ...], euis: dict[bytes, bytes], own: Any, diffs: list[str]) -> None:
    if e[0] != a[0]:
        diffs.append(f"{path}: type {a[0]:#x} != {e[0]:#x}")
        return
    if path in own:
        return
    if e[0] in (1, 2):
        if len(e[1]) != len(a[1]):
            diffs.append(f"{path}: {len(a[1])} elements != {len(e[1])}")
            return
        for j, (x, y) in enumerate(zip(e[1], a[1], strict=True)):
            _cmp(x, y, (*path, j), euis, own, diffs)
        return
    if e[0] == 0x13:
        if e[1][0] != a[1][0]:
            diffs.append(f"{path}: compact-array type {a[1][0]} != {e[1][0]}")
            return
        _cmp((1, e[1][1]), (1, a[1][1]), path, euis, own, diffs)
        return
    want = euis.get(e[1], e[1]) if e[0] == 0x09 else e[1]
    if want != a[1]:
        diffs.append(f"{path}: value {a[1]!r} != {want!r}")
