# Pieces every GBCS device function of the hub needs (the CHF and the GPF):
# take one command in (parse, authenticate, log a refusal; the response is
# RemoteParties.protect_response), DLMS date-time values, GBZ
# component encryption and the KA public key of a certificate carried in the
# other-information (an unknown remote party).
from micropython import const

from codes import EV_MALFORMED, EV_PAYLOAD_MISMATCH, EV_UNSUPPORTED  # noqa: F401 (used by chf and gpf through here)

from gbcs import gcm, kdf
from gbcs import frame as gframe
from gbcs.dlms import civil, date_time  # noqa: F401 - date_time used by the GPF through here
from gbcs.security import SecurityError
from log import KindError


# DLMS clock-status byte (last byte of a date-time)
CLOCK_OK = const(0x00)
CLOCK_DOUBTFUL = const(0x02)
CLOCK_OTHER_BASE = const(0x04)

ENC_SECURITY_HEADER = b"\x31\x00\x00\x00\x00"


class UseCaseError(KindError):
    """A refused use case, raised as UseCaseError(kind, message); the kinds
    (the classes of before): UnsupportedUseCase, PayloadMismatch, and the
    CHF's NoAuthority."""


def log_event(log, code, data, utc2000):
    """Append one entry to an event/security log (None: nothing)."""
    if log is None:
        return
    t = utc2000() if utc2000 else 0
    if t < 0:
        t = 0
    log.append(code, bytes(data[:255]), t)


class _NoSupp:
    # the frame as authenticate() sees it when the supplementary remote party
    # is an unknown one that brought its own certificate
    def __init__(self, f):
        self._f = f
        self.supp_party = None

    def __getattr__(self, name):
        return getattr(self._f, name)


def accept(parties, data, security_log=None, utc2000=None, allow_urp=False, signed=None):
    """Parse (unless `data` is a parsed Frame already) and authenticate one
    command for the device of `parties`.
    Refusals are written to the security log and re-raised (FrameError or a
    SecurityError, its kind naming why). allow_urp: a supplementary remote
    party that is not a trust anchor is accepted when the other-information
    carries its certificate (the originator, the ACB, still MACs the
    command).
    signed(f) -> bool, called for a command without a MAC: True when it
    authenticated the command by its signature alone (e.g. CS02a), False to
    refuse it as unprotected."""
    try:
        f = gframe.frame_of(data)
    except gframe.FrameError:
        log_event(security_log, EV_MALFORMED, b"", utc2000)
        raise
    try:
        if f.mac is None and signed is not None and signed(f):
            pass
        elif allow_urp and f.supp_cert is not None and f.supp_party is not None and parties.role_of(f.supp_party) is None:
            parties.authenticate(_NoSupp(f))
        else:
            parties.authenticate(f)
    except SecurityError as e:
        log_event(security_log, e.event, bytes(f.originator) + f.counter.to_bytes(8, "big"), utc2000)
        raise
    return f


def generalized_time(t2000):
    """'YYYYMMDDhhmmssZ' bytes (ASN.1 GeneralizedTime) for UTC seconds since 2000."""
    if t2000 is None or t2000 < 0:
        t2000 = 0
    days, rem = divmod(int(t2000), 86400)
    y, m, d = civil(days)
    h, rem = divmod(rem, 3600)
    return ("%04d%02d%02d%02d%02d%02dZ" % (y, m, d, h, rem // 60, rem % 60)).encode()


# --- encrypted GBZ components ---------------------------------------------------


def cert_ka_public(cert):
    """The uncompressed P-256 point of a DER X.509 certificate's subject public
    key (65 bytes). Raises der.DerError on anything else."""
    from gbcs import der  # the GPF's URP path only: not in the CHF's heap

    c = der.decode(cert)
    if c[0] != der.SEQUENCE or not c[1] or c[1][0][0] != der.SEQUENCE:
        raise der.DerError("not a certificate")
    for item in c[1][0][1]:
        if item[0] == der.SEQUENCE and len(item[1]) == 2 and item[1][1][0] == der.BIT_STRING:
            bits = item[1][1][1]
            if len(bits) == 66 and bits[0] == 0 and bits[1] == 0x04:
                return bytes(bits[1:])
    raise der.DerError("certificate has no uncompressed P-256 public key")


def encryption_key(z, originator, counter, party):
    """AES key of an encrypted GBZ component: KDF with CRA byte 04 (docs/crypto.md)."""
    return kdf.derive_key(z, originator, kdf.CRA_ENCRYPT, counter, party)


def seal(key, originator, plaintext):
    """(ciphertext, 12-byte AE MAC) of one component's ZCL payload: IV =
    originator || 00000000, AAD = the security header control byte 31."""
    out = gcm.encrypt(key, kdf.iv_for(originator), plaintext, kdf.ENC_AAD)
    return out[:-12], out[-12:]
