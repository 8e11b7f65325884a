# The head-end link's credentials on the hub (docs/headend-link.md): the link
# key pair (P-256, made on the hub; KV "link"), the TLS client certificate
# issued for it at provisioning (cert_chf_link.der) and the link anchor, the
# head-end link CA's certificate (cert_link_anchor.der): the hub accepts only
# a head-end whose certificate chains to it. TLS runs in the modem
# (AT+CCHxxx): files() names and renders the three PEM files the driver
# downloads to the modem's file system. Certificate files follow
# chf.prov_store.cert_path ("<root>/cert_<name>.der", ".stg" while staged).
from micropython import const
import binascii
import hashlib
import os

from flag import Flag
from ids import hex_bytes, hex_text

_CERT = const("chf_link")
_ANCHOR = const("link_anchor")
MAX_CERT = 1200  # DER bytes
_EC_KEY_HEAD = b"\x30\x77\x02\x01\x01\x04\x20"  # SEC1 ECPrivateKey, P-256
_EC_KEY_MID = b"\xa0\x0a\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07\xa1\x44\x03\x42\x00"


def check_cert(der, q, eui):
    """A DER certificate carrying the link public key q and the CHF EUI-64;
    ValueError otherwise."""
    if not isinstance(der, (bytes, bytearray)) or not 64 < len(der) <= MAX_CERT or der[0] != 0x30:
        raise ValueError("link certificate is not a DER certificate of at most %d bytes" % MAX_CERT)
    if bytes(q) not in der or bytes(eui) not in der:
        raise ValueError("link certificate is not for this hub's link key and CHF EUI-64")


def check_anchor(der):
    if not isinstance(der, (bytes, bytearray)) or not 64 < len(der) <= MAX_CERT or der[0] != 0x30:
        raise ValueError("link anchor is not a DER certificate of at most %d bytes" % MAX_CERT)


def _path(store, name, staged=False):
    return "%s/cert_%s.%s" % (store.root, name, "stg" if staged else "der")


def _pem(label, der):
    out = [b"-----BEGIN ", label, b"-----\n"]
    b64 = binascii.b2a_base64(der).strip()
    for i in range(0, len(b64), 64):
        out.append(b64[i:i + 64])
        out.append(b"\n")
    out += [b"-----END ", label, b"-----\n"]
    return b"".join(out)


class LinkCredentials:
    """LinkCredentials(store, identity): the CHF EUI-64 is identity.chf["eui"] (read at use:
    a provisioning may change it). `gen` counts the
    credentials installed since boot (a session made with older ones ends);
    `changed` (a Flag) is set when they change."""

    def __init__(self, store, identity, rand=os.urandom):
        self._store = store
        self._identity = identity
        self._rand = rand
        self._kv = store.kv("link", keep=False)
        self.gen = 0
        self.changed = Flag()

    def key(self):
        """(d, q) of the link key; made (and kept) on first use."""
        rec = self._kv.get("key")
        if rec is None:
            from gbcs import p256

            d, q = p256.generate(self._rand)
            rec = {"d": hex_text(d), "q": hex_text(q)}
            self._kv.set("key", rec)
        return hex_bytes(rec["d"]), hex_bytes(rec["q"])

    def _read(self, name):
        try:
            with open(_path(self._store, name), "rb") as f:
                return f.read()
        except OSError:
            return None

    def ready(self):
        """A key, a certificate and an anchor are in place."""
        for n in (_CERT, _ANCHOR):
            try:
                os.stat(_path(self._store, n))
            except OSError:
                return False
        return self._kv.get("key") is not None

    def install(self, cert, anchor):
        """A new certificate for the current link key and a new anchor (the
        local-port command link_cert): checked, then written (staged and
        renamed: a power cut leaves the old pair or the new one's parts)."""
        check_anchor(anchor)
        check_cert(cert, self.key()[1], self._identity.chf["eui"])
        for name, der in ((_ANCHOR, anchor), (_CERT, cert)):
            with open(_path(self._store, name, True), "wb") as f:
                f.write(der)
        for name in (_ANCHOR, _CERT):
            os.rename(_path(self._store, name, True), _path(self._store, name))
        self.notify()

    def notify(self):
        """The credentials changed (installed, or applied by a provisioning)."""
        self.gen += 1
        self.changed.set()

    def fingerprint(self):
        """8 hex digits over certificate, anchor and public key (None: not ready)."""
        cert, anchor = self._read(_CERT), self._read(_ANCHOR)
        if cert is None or anchor is None:
            return None
        h = hashlib.sha256(cert)
        h.update(anchor)
        h.update(self.key()[1])
        return hex_text(h.digest()[:4])

    def files(self):
        """-> (fingerprint, ((name, kind), ...)) of the anchor ("ca"), the
        certificate ("cert") and the key ("key") as the modem stores them;
        render(kind) makes one file's PEM when it is downloaded."""
        fp = self.fingerprint()
        if fp is None:
            raise ValueError("no link certificate")
        return fp, (("chub%sca.pem" % fp, "ca"), ("chub%scrt.pem" % fp, "cert"), ("chub%skey.pem" % fp, "key"))

    def render(self, kind):
        if kind == "ca":
            return _pem(b"CERTIFICATE", self._read(_ANCHOR))
        if kind == "cert":
            return _pem(b"CERTIFICATE", self._read(_CERT))
        d, q = self.key()
        return _pem(b"EC PRIVATE KEY", _EC_KEY_HEAD + d + _EC_KEY_MID + q)

    def info(self):
        return {"pub": hex_text(self.key()[1]), "cert": self._read(_CERT) is not None,
                "anchor": self._read(_ANCHOR) is not None, "fingerprint": self.fingerprint()}
