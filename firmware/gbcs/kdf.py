# GBCS key derivation (NIST SP 800-56A single-step KDF with SHA-256, one
# round) and the GBCS MAC / encryption IV and AAD conventions, as verified
# against the DCC RTDS (see docs/crypto.md).
import hashlib
from micropython import const

from log import KindError

# the CRA byte of the KDF: a frame's CRA flag (gbcs.frame.CRA_COMMAND 1,
# CRA_RESPONSE 2, CRA_ALERT 3) for its MAC key, CRA_ENCRYPT for payload keys
CRA_ENCRYPT = const(4)

_ALG_ID = const(b"\x60\x85\x74\x06\x08\x03\x00")
AAD_PREFIX = b"\x11\x00\x00\x00\x00\x00"  # MAC AAD: prefix || grouping header .. signature
ENC_AAD = b"\x31"  # AAD of an encrypted GBZ/DLMS component



def _eui(v, what):
    if len(v) != 8:
        raise KindError("KdfError", "%s must be an 8-byte EUI-64, got %d bytes" % (what, len(v)))
    return v


def other_info(originator, cra, counter, recipient):
    """OtherInfo = 60 85 74 06 08 03 00 || orig EUI || 09 || CRA || counter || recip EUI."""
    if not 0 <= cra <= 255:
        raise KindError("KdfError", "CRA byte out of range")
    if isinstance(counter, int):
        if counter < 0 or counter >> 64:
            raise KindError("KdfError", "originator counter out of range")
        counter = counter.to_bytes(8, "big")
    elif len(counter) != 8:
        raise KindError("KdfError", "originator counter must be 8 bytes, got %d" % len(counter))
    return b"".join(
        (
            _ALG_ID,
            bytes(_eui(originator, "originator")),
            bytes((9, cra)),
            bytes(counter),
            bytes(_eui(recipient, "recipient")),
        )
    )


def derive_key(z, originator, cra, counter, recipient):
    """16-byte AES key = SHA-256(00 00 00 01 || Z || OtherInfo)[:16].

    z: 32-byte ECDH shared secret (X coordinate); originator / recipient: the
    grouping header's EUI-64s; cra: 1/2/3 for a frame's MAC (its CRA flag),
    CRA_ENCRYPT (4) for payload encryption; counter: int or 8 bytes."""
    if len(z) != 32:
        raise KindError("KdfError", "shared secret must be 32 bytes, got %d" % len(z))
    h = hashlib.sha256(b"\x00\x00\x00\x01")
    h.update(z)
    h.update(other_info(originator, cra, counter, recipient))
    return h.digest()[:16]


def iv_for(originator):
    """GCM IV for MAC and encryption: originator EUI-64 || 00 00 00 00."""
    return bytes(_eui(originator, "originator")) + b"\x00\x00\x00\x00"
