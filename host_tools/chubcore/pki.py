"""The laptop's and the rig's test PKI (docs/provisioning.md, docs/headend-link.md).

Two P-256 CAs in the state dir's `ca/` folder, each made at first use:

* `TestCA` (`ca.key`, `ca.pem`): issues the hub's device certificates, the
  GBCS ones (KA, DS) and the head-end link's TLS client certificate. The
  head-end accepts a hub whose link certificate chains to it.
* `LinkCA` (`link-ca.key`, `link-ca.pem`): issues the head-end's TLS server
  certificate (`headend.pem`: certificate and key). Its certificate is the
  link anchor provisioned on the hub: the hub accepts only a head-end whose
  certificate chains to it. A CA of its own, so no hub certificate (from
  TestCA) can pass for the head-end.

Test CAs, not GB SMKI ones. Creation is serialised with a lock file, so
parallel test processes sharing a state dir find one CA, not two halves.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .paths import state_dir
from .records import ProvisionError

# hardwareModuleName (RFC 4108) carries the EUI-64 in the subjectAltName, as
# GB SMKI device certificates do; hwType is an OID under the IANA example
# enterprise number (documentation only): this is a test CA.
HW_TYPE_OID = "1.3.6.1.4.1.32473.1.1"
ID_ON_HW_MODULE_NAME = "1.3.6.1.5.5.7.8.4"
HEADEND_NAME = "headend.chub.test"  # the firmware's default head-end host (KV "wan")


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def _pem_key(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class _CA:
    """A self-signed P-256 CA kept as `<stem>.key` / `<stem>.pem` in `folder`."""

    STEM = "ca"
    NAME = "chub local test CA"

    def __init__(self, folder: Path | None = None) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.folder = Path(folder) if folder else state_dir() / "ca"
        key_path, cert_path = self.folder / f"{self.STEM}.key", self.folder / f"{self.STEM}.pem"
        with _locked(self.folder):
            if key_path.exists() and cert_path.exists():
                self.key = serialization.load_pem_private_key(key_path.read_bytes(), None)
                self.cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
                return
            self.key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.NAME),
                              x509.NameAttribute(NameOID.ORGANIZATION_NAME, "chub (test only)")])
            now = datetime.datetime.now(datetime.UTC)
            ski = x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())
            self.cert = (
                x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                               critical=True)
                .add_extension(ski, critical=False)
                .sign(self.key, hashes.SHA256())
            )
            cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
            _write_private(key_path, _pem_key(self.key))

    @property
    def pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def der(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.cert.public_bytes(serialization.Encoding.DER)

    def _leaf(self, subject: Any, pub: Any, extensions: list[tuple[Any, bool]], days: int | None) -> Any:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        now = datetime.datetime.now(datetime.UTC)
        until = (now + datetime.timedelta(days=days) if days
                 else datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC))
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(self.cert.subject)
             .public_key(pub).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(until))
        for ext, critical in extensions:
            b = b.add_extension(ext, critical=critical)
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        return b.sign(self.key, hashes.SHA256())


def _key_usage(ds: bool = False, ka: bool = False) -> Any:
    from cryptography import x509

    return x509.KeyUsage(digital_signature=ds, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=ka, key_cert_sign=False,
                         crl_sign=False, encipher_only=False, decipher_only=False)


class TestCA(_CA):
    """Issues the hub's device certificates (GBCS KA/DS, the link's TLS client one)."""

    __test__ = False  # not a pytest class

    def _device(self, eui: bytes, public_point: bytes, extensions: list[tuple[Any, bool]]) -> bytes:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_point)
        san = x509.SubjectAlternativeName(
            [x509.OtherName(x509.ObjectIdentifier(ID_ON_HW_MODULE_NAME), _der_hw_module_name(eui))])
        cert = self._leaf(x509.Name([]), pub, [(san, True), *extensions], None)
        return cert.public_bytes(serialization.Encoding.DER)

    def issue(self, eui: bytes, public_point: bytes, usage: str) -> bytes:
        """A device certificate (DER): empty subject, the EUI-64 as a
        hardwareModuleName in a critical subjectAltName, key usage
        keyAgreement ("ka") or digitalSignature ("ds")."""
        return self._device(eui, public_point, [(_key_usage(ds=usage == "ds", ka=usage == "ka"), True)])

    def issue_link(self, eui: bytes, public_point: bytes) -> bytes:
        """The hub's head-end link certificate (DER): as a device certificate,
        key usage digitalSignature, extended key usage TLS client only."""
        from cryptography import x509
        from cryptography.x509.oid import ExtendedKeyUsageOID

        return self._device(eui, public_point, [(_key_usage(ds=True), True),
                                                (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)])


class LinkCA(_CA):
    """The head-end link CA: its certificate is the hub's link anchor; it
    issues the head-end's TLS server certificate."""

    STEM = "link-ca"
    NAME = "chub head-end link test CA"

    def headend(self) -> tuple[bytes, bytes]:
        """The head-end's server certificate and key (PEM), made once and kept
        as `headend.pem` (certificate then key)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        path = self.folder / "headend.pem"
        with _locked(self.folder):
            if path.exists():
                data = path.read_bytes()
                i = data.index(b"-----BEGIN PRIVATE KEY-----")
                return data[:i], data[i:]
            key = ec.generate_private_key(ec.SECP256R1())
            cert = self._leaf(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HEADEND_NAME)]), key.public_key(),
                [(x509.SubjectAlternativeName([x509.DNSName(HEADEND_NAME)]), False),
                 (_key_usage(ds=True), True),
                 (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)], 3650)
            pem_cert = cert.public_bytes(serialization.Encoding.PEM)
            _write_private(path, pem_cert + _pem_key(key))
            return pem_cert, _pem_key(key)


def _der_hw_module_name(eui: bytes) -> bytes:
    """HardwareModuleName ::= SEQUENCE { hwType OID, hwSerialNum OCTET STRING }."""
    parts = [int(x) for x in HW_TYPE_OID.split(".")]
    body = bytes([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        enc = [p & 0x7F]
        p >>= 7
        while p:
            enc.append(0x80 | (p & 0x7F))
            p >>= 7
        body += bytes(reversed(enc))
    oid = bytes([0x06, len(body)]) + body
    serial = bytes([0x04, len(eui)]) + eui
    inner = oid + serial
    return bytes([0x30, len(inner)]) + inner


def eui_from_certificate(der: bytes) -> bytes:
    """The EUI-64 in a device certificate's hardwareModuleName."""
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    for gn in san:
        if isinstance(gn, x509.OtherName) and gn.type_id.dotted_string == ID_ON_HW_MODULE_NAME:
            v = gn.value
            return v[-8:] if v[-10] == 0x04 and v[-9] == 8 else b""
    raise ProvisionError("no hardwareModuleName in the certificate")


def link_pop_message(nonce: bytes, eui: bytes, link_pub: bytes) -> bytes:
    """What the hub's link key signs at provisioning (firmware chf/prov_store.py)."""
    return b"chub-link-pop" + nonce + eui + link_pub


def headend_context(folder: Path | None = None) -> Any:
    """The head-end's TLS server context: its certificate from LinkCA, TLS
    1.2 or later, a client certificate required and verified against TestCA
    (the hubs' device CA; OpenSSL also checks it may be used by a TLS client)."""
    import ssl
    import tempfile

    link = LinkCA(folder)
    cert, key = link.headend()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "headend.pem"
        p.write_bytes(cert + key)
        ctx.load_cert_chain(str(p))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=TestCA(link.folder).pem.decode())
    return ctx
