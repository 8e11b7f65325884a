# ruff: noqa: UP031
# Exception classes cost RAM at import on a frozen build (~100 bytes each:
# a type object and its dict; docs/proof.md "The heap on the 32-bit frozen
# build"). The error families of the parsers, the crypto, the GBCS
# security and use cases, the modem and the AT channel are one class each,
# raised with a kind (log.KindError / KindException): callers catch the
# family, and the kind reads as the class it replaced wherever an error is
# shown (repr in the console and the WAN's last_error, log.kind_of in the
# transaction log and the fuzz outcomes, str in replies). This keeps both:
# one class per family, the same text.
import codes
import log
from chf import identity, logs, usecases
from gbcs import gcm, kdf, p256, security, usecase_base
from han import peer
from han import ash, ezsp, ezsp_frames, install_code, zcl
from wan import at, link, modem

HEAP = "512k"  # the modules compiled from source (the 64-bit port)

_FAMILIES = ((ash, ash.AshError), (link, link.LinkError), (ezsp_frames, ezsp_frames.EzspError), (ezsp, None),
             (security, security.SecurityError), (modem, modem.ModemError),
             (zcl, zcl.ZclError), (p256, p256.P256Error), (gcm, gcm.GcmError),
             (logs, None), (identity, None), (kdf, None),
             (usecase_base, usecase_base.UseCaseError), (usecases, None), (at, at.ATError),
             (install_code, install_code.InstallCodeError))


def _error_classes(mod):
    return [k for k, v in mod.__dict__.items()
            if isinstance(v, type) and issubclass(v, Exception) and getattr(v, "__module__", mod.__name__) == mod.__name__]


def test_one_error_class_per_family():
    for mod, base in _FAMILIES:
        # the ASH link's faults and the AT field-format error are caught by class
        own = [k for k in _error_classes(mod) if k not in ("LinkFailure", "NcpReset", "ATFormatError")]
        want = [] if base is None else [base.__name__]
        assert sorted(own) == want, "%s: %r" % (mod.__name__, own)


def _caught(fn, *a):
    try:
        fn(*a)
    except ValueError as e:
        return e
    raise AssertionError("no error")


def test_errors_read_as_their_kinds():
    e = _caught(ash.check_frame, bytes((0x00, 0x01, 0x02, 0x03, 0x00, 0x00)), -1, 128)
    assert isinstance(e, ash.AshError)
    assert repr(e) == "AshCrcError('bad CRC E5F1',)" and str(e) == "bad CRC E5F1", repr(e)
    e = _caught(ash.check_frame, b"\xc0\x00", -1, 128)
    assert repr(e) == "AshTooShort('frame of 2 bytes is too short',)", repr(e)
    e = _caught(peer.unstuff, b"\x7d")
    assert repr(e) == "AshEscapeError('dangling escape byte',)", repr(e)
    d = link.Decoder()
    d.feed(b"XX\x06\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00")
    e = _caught(d.next)
    assert isinstance(e, link.LinkError) and repr(e) == "BadMagic('bad magic 5858',)", repr(e)
    e = _caught(peer.ezsp_decode_frame, 13, b"\x00\x80")
    assert isinstance(e, ezsp_frames.EzspError) and repr(e).startswith("EzspTruncated('"), repr(e)
    assert "%s" % e == str(e) and not str(e).startswith("(")
    e = _caught(gcm.decrypt, bytes(16), bytes(12), bytes(20))
    assert isinstance(e, gcm.GcmError) and repr(e) == "AuthError('GCM tag mismatch',)", repr(e)
    e = _caught(p256.public_key, bytes(32))
    assert isinstance(e, p256.P256Error) and repr(e) == "ScalarError('private key out of range',)", repr(e)
    e = _caught(kdf.iv_for, b"1234")
    assert repr(e).startswith("KdfError('"), repr(e)
    e = _caught(install_code.link_key, bytes(7))
    assert repr(e) == "InstallCodeLengthError('install code+CRC of 7 bytes (8, 10, 14 or 18)',)", repr(e)
    e = _caught(zcl.parse_header, b"\x00\x01")
    assert isinstance(e, zcl.ZclError) and repr(e).startswith("ZclTruncated('"), repr(e)


def test_kind_of_names_the_kind_or_the_class():
    e = _caught(peer.ezsp_decode_frame, 13, bytes((0, 0x80, 1, 0xEE, 0x0E, 0)))
    assert log.kind_of(e) == "EzspUnknownFrame"
    assert log.kind_of(KeyError("x")) == "KeyError"
    e = security.SecurityError("BadMac", "bad MAC on command 5", codes.EV_BAD_MAC)
    assert (log.kind_of(e), str(e), e.event) == ("BadMac", "bad MAC on command 5", codes.EV_BAD_MAC)
    assert repr(e) == "BadMac('bad MAC on command 5',)", repr(e)


def test_a_modem_error_reads_as_before():
    e = modem.ModemError("NoSim")
    assert (repr(e), str(e), log.kind_of(e)) == ("NoSim()", "", "NoSim")
    assert not isinstance(e, ValueError)  # the session tells it from a ValueError
    e = modem.ModemError("SocketOpenFailed", "socket open failed: 15", 15)
    assert (repr(e), e.args[2]) == ("SocketOpenFailed('socket open failed: 15',)", 15)


def _at_result(cmd, prefix, wire):
    p = at.ATParser()
    p.begin(cmd, prefix, None, False)
    p.feed(wire)
    return p.result


def test_an_at_error_reads_as_before():
    e = _at_result(b"AT+CPIN?", b"+CPIN:", b"\r\n+CME ERROR: SIM not inserted\r\n")
    assert repr(e) == "CmeError(\"b'AT+CPIN?' -> b'+CME ERROR: SIM not inserted'\",)", repr(e)
    assert (e.code, e.text, e.lines, log.kind_of(e)) == (10, b"SIM not inserted", [], "CmeError")
    assert str(e) == "b'AT+CPIN?' -> b'+CME ERROR: SIM not inserted'" and not isinstance(e, ValueError)
    e = _at_result(b"AT+CIPSEND=0,5", b"+CIPSEND:", b"\r\n+CIPERROR: 4\r\n")
    assert (repr(e), e.code) == ("CipError(\"b'AT+CIPSEND=0,5' -> b'+CIPERROR: 4'\",)", 4), repr(e)
    e = _at_result(b"AT+NETOPEN", None, b"\r\n+IP ERROR: Network is already opened\r\n\r\nERROR\r\n")
    assert (log.kind_of(e), e.info) == ("IpError", b"Network is already opened"), repr(e)
    e = _at_result(b"AT+CMGS", None, b"\r\n+CMS ERROR: 500\r\n")
    assert (log.kind_of(e), e.code) == ("CmsError", 500), repr(e)
    e = _at_result(b"AT", None, b"\r\nERROR\r\n")
    assert repr(e) == "ATError(\"b'AT' -> b'ERROR'\",)", repr(e)
