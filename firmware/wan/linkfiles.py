# The head-end link's credential files (docs/headend-link.md), the parts of
# wan.linkcred used on request: the link key (made on first use), a new
# certificate and anchor checked and installed (link_cert), their
# fingerprint and info (link_info), and the three PEM files the modem's TLS
# stack takes (the SIM7600 driver's tls_prepare, once per fingerprint and
# modem boot). Loaded for the call and dropped after (firmware/lazy.py): the
# hub holds only wan.linkcred.LinkCredentials. Each function takes that
# object. Certificate files follow chf.prov_store.cert_path
# ("<root>/cert_<name>.der", ".stg" while staged).
from micropython import const
import binascii
import hashlib
import os

from ids import hex_bytes, hex_text

_CERT = const("chf_link")
_ANCHOR = const("link_anchor")
MAX_CERT = const(1200)  # DER bytes
_EC_KEY_HEAD = const(b"\x30\x77\x02\x01\x01\x04\x20")  # SEC1 ECPrivateKey, P-256
_EC_KEY_MID = const(b"\xa0\x0a\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07\xa1\x44\x03\x42\x00")


def path(store, name, staged=False):
    """The certificate file `name` ("chf_link", "link_anchor") in the store's root."""
    return "%s/cert_%s.%s" % (store.root, name, "stg" if staged else "der")


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


def _pem(label, der):
    out = [b"-----BEGIN ", label, b"-----\n"]
    b64 = binascii.b2a_base64(der).strip()
    for i in range(0, len(b64), 64):
        out.append(b64[i:i + 64])
        out.append(b"\n")
    out += [b"-----END ", label, b"-----\n"]
    return b"".join(out)


def key(cred):
    """(d, q) of the link key; made (and kept) on first use."""
    rec = cred.kv.get("key")
    if rec is None:
        import lazy

        b = lazy.borrow("gbcs.p256")  # P-256 goes after unless something held it before
        try:
            d, q = lazy.load("gbcs.p256").generate(cred.rand)
        finally:
            lazy.give_back(b)
        rec = {"d": hex_text(d), "q": hex_text(q)}
        cred.kv.set("key", rec)
    return hex_bytes(rec["d"]), hex_bytes(rec["q"])


def _read(cred, name):
    try:
        with open(path(cred.store, name), "rb") as f:
            return f.read()
    except OSError:
        return None


def install(cred, cert, anchor):
    """A new certificate for the current link key and a new anchor (the
    local-port command link_cert): checked, then written (staged and
    renamed: a power cut leaves the old pair or the new one's parts)."""
    check_anchor(anchor)
    check_cert(cert, key(cred)[1], cred.identity.chf["eui"])
    for name, der in ((_ANCHOR, anchor), (_CERT, cert)):
        with open(path(cred.store, name, True), "wb") as f:
            f.write(der)
    for name in (_ANCHOR, _CERT):
        os.rename(path(cred.store, name, True), path(cred.store, name))
    cred.notify()


def fingerprint(cred):
    """8 hex digits over certificate, anchor and public key (None: not ready)."""
    cert, anchor = _read(cred, _CERT), _read(cred, _ANCHOR)
    if cert is None or anchor is None:
        return None
    h = hashlib.sha256(cert)
    h.update(anchor)
    h.update(key(cred)[1])
    return hex_text(h.digest()[:4])


def files(cred):
    """-> (fingerprint, ((name, kind), ...)) of the anchor ("ca"), the
    certificate ("cert") and the key ("key") as the modem stores them;
    render(cred, kind) makes one file's PEM when it is downloaded."""
    fp = fingerprint(cred)
    if fp is None:
        raise ValueError("no link certificate")
    return fp, (("chub%sca.pem" % fp, "ca"), ("chub%scrt.pem" % fp, "cert"), ("chub%skey.pem" % fp, "key"))


def render(cred, kind):
    if kind == "ca":
        return _pem(b"CERTIFICATE", _read(cred, _ANCHOR))
    if kind == "cert":
        return _pem(b"CERTIFICATE", _read(cred, _CERT))
    d, q = key(cred)
    return _pem(b"EC PRIVATE KEY", _EC_KEY_HEAD + d + _EC_KEY_MID + q)


def info(cred):
    return {"pub": hex_text(key(cred)[1]), "cert": _read(cred, _CERT) is not None,
            "anchor": _read(cred, _ANCHOR) is not None, "fingerprint": fingerprint(cred)}
