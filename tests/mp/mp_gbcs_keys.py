# Helpers (no tests) for the GBCS micropython tests: the RTDS keystore's PEM
# files (vectors/gbcs/keystore) as DER bytes and P-256 private keys.
import os
from binascii import a2b_base64

from log import kind_of

KEYSTORE = os.getenv("CHUB_VECTORS", "") + "/gbcs/keystore/"


def pem(name):
    """DER bytes of keystore/<name> (a .pem or .key file)."""
    lines = [ln.strip() for ln in open(KEYSTORE + name)]
    return a2b_base64("".join(ln for ln in lines if ln and not ln.startswith("-----")))


def private(name):
    """The 32-byte P-256 private key of keystore/<name>.key (PKCS#8: the key
    follows "04 20" inside the ECPrivateKey)."""
    d = pem(name + ".key")
    i = d.find(b"\x04\x20")
    return d[i + 2 : i + 34]


def refused(chf, data, exc):
    """Hand data to chf.handle: it must raise exc (a class, or the kind of a
    log.KindError such as "BadMac"), run nothing and write one security-log
    entry (returned)."""
    before = chf.executed
    n_sec = sum(r[3] for r in chf.security_log.rows())  # a repeat collapses into its entry's count
    try:
        chf.handle(data)
    except Exception as e:  # noqa: BLE001 - checked below
        if isinstance(exc, str):
            assert kind_of(e) == exc, repr(e)
        elif not isinstance(e, exc):
            raise
    else:
        raise AssertionError("not refused: " + repr(exc))
    assert chf.executed == before, "executed"
    assert sum(r[3] for r in chf.security_log.rows()) == n_sec + 1, "not logged"
    return chf.security_log.entries()[-1]
