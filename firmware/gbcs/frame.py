# GBCS remote-party frame codec (PROTOCOLS.md section 1).
#
#   [DD 00*6, L, 11 IC(4)]            MAC header (only when MAC'd)
#   DF 09 CRA counter(8) 08 EUI 08 EUI date-time other-info content-len payload
#   signature-len [signature(64)]
#   [MAC(12)]                         when MAC'd
#
# parse() works on a memoryview and never copies the payload; Frame holds
# memoryview slices into the caller's buffer plus the offsets needed for the
# MAC AAD and the signature input.  build() writes a whole frame into a
# caller-supplied buffer (or a new bytearray) and asks a caller-supplied
# mac_fn for the 12-byte tag: the crypto lives elsewhere (gbcs.gcm).
from micropython import const

_DD = const(0xDD)
_DF = const(0xDF)
_SIG_LEN = const(64)
_MAC_LEN = const(12)
_SEC_LEN = const(5)

CRA_COMMAND = const(1)
CRA_RESPONSE = const(2)
CRA_ALERT = const(3)

_GENERAL_CIPHERING = const(b"\xdd\x00\x00\x00\x00\x00\x00")
_SECURITY_HEADER = const(b"\x11\x00\x00\x00\x00")
# AAD = 11 00 00 00 00 00 || grouping header ... signature (PROTOCOLS.md 1)
AAD_PREFIX = b"\x11\x00\x00\x00\x00\x00"


class FrameError(ValueError):
    pass


def read_len(mv, off, end, what="length", err=None):
    """DER-style length at mv[off]: xx, 81 xx, 82 xx xx (minimal forms only).
    Returns (n, next_off). The frame and the A-XDR codec share it; `err` is
    the caller's error class (FrameError by default)."""
    err = err or FrameError
    if off >= end:
        raise err("truncated %s: need 1 byte at offset %d" % (what, off))
    b = mv[off]
    if b < 0x80:
        return b, off + 1
    if b == 0x81:
        if off + 2 > end:
            raise err("truncated %s: need 2 bytes at offset %d" % (what, off))
        n = mv[off + 1]
        if n < 0x80:
            raise err("non-minimal %s 81 %02x at offset %d" % (what, n, off))
        return n, off + 2
    if b == 0x82:
        if off + 3 > end:
            raise err("truncated %s: need 3 bytes at offset %d" % (what, off))
        n = (mv[off + 1] << 8) | mv[off + 2]
        if n < 0x100:
            raise err("non-minimal %s 82 %04x at offset %d" % (what, n, off))
        return n, off + 3
    raise err("bad %s byte 0x%02x at offset %d" % (what, b, off))


def put_len(out, n, err=None):
    """Append a minimal DER-style length to the bytearray out."""
    if n < 0x80:
        out.append(n)
    elif n < 0x100:
        out.append(0x81)
        out.append(n)
    elif n < 0x10000:
        out.append(0x82)
        out.append(n >> 8)
        out.append(n & 0xFF)
    else:
        raise (err or FrameError)("length %d too large" % n)


def len_size(n):
    if n < 0x80:
        return 1
    if n < 0x100:
        return 2
    if n < 0x10000:
        return 3
    raise FrameError("length %d too large" % n)


def write_len(buf, off, n):
    """Write a DER-style length into buf at off; returns the next offset."""
    if n < 0x80:
        buf[off] = n
        return off + 1
    if n < 0x100:
        buf[off] = 0x81
        buf[off + 1] = n
        return off + 2
    if n < 0x10000:
        buf[off] = 0x82
        buf[off + 1] = n >> 8
        buf[off + 2] = n & 0xFF
        return off + 3
    raise FrameError("length %d too large" % n)


def be_int(mv, off, n):
    return int.from_bytes(mv[off : off + n], "big")


def _need(off, n, end, what):
    if off + n > end:
        raise FrameError("truncated %s: need %d bytes at offset %d" % (what, n, off))


class Frame:
    """A parsed frame: memoryviews into the original buffer plus offsets
    (the grouping header is buf[gh_start:gh_end], the signature field
    buf[payload_end:sig_end])."""

    def __init__(self):
        self.buf = None  # memoryview of the whole frame
        self.mac_header = None  # memoryview of DD..security header or None
        self.sec_header = None  # memoryview (5) or None
        self.cra = 0
        self.counter = 0
        self.originator = None  # memoryview(8)
        self.recipient = None  # memoryview(8)
        self.date_time = None  # memoryview(12) or None
        self.message_code = 0
        self.other_info = None  # memoryview of the whole other-information
        self.supp_party = None  # memoryview(8) or None
        self.supp_counter = None  # int or None
        self.supp_orig_counter = None  # int or None (26-byte form)
        self.supp_cert = None  # memoryview (DER certificate) or None
        self.payload = None  # memoryview
        self.signature = None  # memoryview(64) or None
        self.mac = None  # memoryview(12) or None
        self.gh_start = 0  # offset of DF 09
        self.gh_end = 0  # offset of the first payload byte
        self.payload_end = 0
        self.sig_end = 0  # offset after the signature field
        self.sig_field = True  # False for a PRECOMMAND without a signature field

    def signed_data(self):
        """Signature input: grouping header without the leading DF, plus payload."""
        return self.buf[self.gh_start + 1 : self.payload_end]



def parse(data):
    """Parse one whole frame. Raises FrameError on anything malformed."""
    mv = data if isinstance(data, memoryview) else memoryview(data)
    n = len(mv)
    f = Frame()
    f.buf = mv
    if n == 0:
        raise FrameError("empty frame")
    off = 0
    end = n
    if mv[0] == _DD:
        _need(0, 7, n, "MAC header")
        if bytes(mv[0:7]) != _GENERAL_CIPHERING:
            raise FrameError("bad general-ciphering header (want DD 00 00 00 00 00 00)")
        clen, off = read_len(mv, 7, n, "ciphered service length")
        if off + clen > n:
            raise FrameError(
                "truncated frame: ciphered service length %d, only %d bytes left" % (clen, n - off)
            )
        if off + clen < n:
            raise FrameError("trailing bytes: %d after the MAC" % (n - off - clen))
        if clen < _SEC_LEN + _MAC_LEN:
            raise FrameError("ciphered service length %d too short" % clen)
        if mv[off] != 0x11:
            raise FrameError("bad security header control 0x%02x at offset %d (want 0x11)" % (mv[off], off))
        f.sec_header = mv[off : off + _SEC_LEN]
        off += _SEC_LEN
        f.mac_header = mv[0:off]
        end = n - _MAC_LEN
        f.mac = mv[end:n]
    elif mv[0] != _DF:
        raise FrameError("bad frame tag 0x%02x (want DD or DF)" % mv[0])
    _parse_gh(f, mv, off, end)
    return f


def frame_of(x):
    """x as a parsed Frame: a Frame as it is, bytes parsed (FrameError on
    anything malformed). The parts a frame passes through take either, so a
    frame parsed where it entered is not parsed again."""
    return x if isinstance(x, Frame) else parse(x)


def _parse_gh(f, mv, off, end):
    f.gh_start = off
    _need(off, 2, end, "grouping header")
    if mv[off] != _DF or mv[off + 1] != 0x09:
        raise FrameError(
            "bad general-signing tag %02x %02x at offset %d (want DF 09)" % (mv[off], mv[off + 1], off)
        )
    off += 2
    _need(off, 1, end, "grouping header: CRA flag")
    cra = mv[off]
    if cra < 1 or cra > 3:
        raise FrameError("bad CRA flag 0x%02x at offset %d" % (cra, off))
    f.cra = cra
    off += 1
    _need(off, 8, end, "grouping header: 8 counter bytes")
    f.counter = be_int(mv, off, 8)
    off += 8
    f.originator = _eui(mv, off, end, "originator")
    off += 9
    f.recipient = _eui(mv, off, end, "recipient")
    off += 9
    _need(off, 1, end, "grouping header: date-time")
    dl = mv[off]
    if dl == 0x0C:
        _need(off + 1, 12, end, "grouping header: date-time")
        f.date_time = mv[off + 1 : off + 13]
        off += 13
    elif dl == 0:
        off += 1
    else:
        raise FrameError("bad date-time length 0x%02x at offset %d (want 00 or 0C)" % (dl, off))
    olen, off = read_len(mv, off, end, "other-information length")
    _need(off, olen, end, "other-information")
    _parse_other(f, mv, off, olen)
    off += olen
    clen, off = read_len(mv, off, end, "content length")
    _need(off, clen, end, "payload")
    f.gh_end = off
    f.payload = mv[off : off + clen]
    off += clen
    f.payload_end = off
    if off == end and f.mac is None:
        # a PRECOMMAND (not yet signed): no signature field at all
        f.sig_field = False
        f.sig_end = off
        return
    slen, off = read_len(mv, off, end, "signature length")
    if slen:
        if slen != _SIG_LEN:
            raise FrameError("bad signature length %d (want 0 or 64)" % slen)
        _need(off, slen, end, "signature")
        f.signature = mv[off : off + slen]
        off += slen
    f.sig_end = off
    if off != end:
        raise FrameError("trailing bytes: %d after the signature" % (end - off))


def _eui(mv, off, end, name):
    # the error text is made only for a bad frame
    if off + 9 > end:
        _need(off, 9, end, "grouping header: %s EUI" % name)
    if mv[off] != 0x08:
        raise FrameError("bad %s EUI tag 0x%02x at offset %d (want 08)" % (name, mv[off], off))
    return mv[off + 1 : off + 9]


def _parse_other(f, mv, off, olen):
    f.other_info = mv[off : off + olen]
    if olen < 2:
        raise FrameError("other-information too short (%d bytes)" % olen)
    f.message_code = (mv[off] << 8) | mv[off + 1]
    if olen == 2:
        return
    if olen < 18:
        raise FrameError("bad other-information length %d (want 2, 18, 26 or 18 + certificate)" % olen)
    f.supp_party = mv[off + 2 : off + 10]
    f.supp_counter = be_int(mv, off + 10, 8)
    if olen == 18:
        return
    if olen == 26:
        f.supp_orig_counter = be_int(mv, off + 18, 8)
        return
    # 18 + a DER certificate (SEQUENCE) filling the rest exactly
    c = off + 18
    e = off + olen
    if mv[c] != 0x30:
        raise FrameError("bad supplementary certificate tag 0x%02x at offset %d" % (mv[c], c))
    try:
        cl, c2 = read_len(mv, c + 1, e, "certificate length")
    except FrameError as ex:
        raise FrameError("bad supplementary certificate: %s" % ex.args[0])
    if c2 + cl != e:
        raise FrameError("supplementary certificate length %d does not fill other-information" % cl)
    f.supp_cert = mv[c:e]


def other_info_len(supp_party, supp_orig_counter, supp_cert):
    if supp_party is None:
        return 2
    if supp_orig_counter is not None:
        return 26
    if supp_cert is not None:
        return 18 + len(supp_cert)
    return 18


def frame_size(payload_len, date_time, supp_party, supp_orig_counter, supp_cert, signature, maced, sig_field):
    olen = other_info_len(supp_party, supp_orig_counter, supp_cert)
    gh = 2 + 1 + 8 + 9 + 9 + (13 if date_time is not None else 1) + len_size(olen) + olen
    gh += len_size(payload_len) + payload_len
    if sig_field:
        gh += 1 + (_SIG_LEN if signature is not None else 0)
    if not maced:
        return gh
    clen = _SEC_LEN + gh + _MAC_LEN
    return 7 + len_size(clen) + clen


def _put(buf, off, b):
    n = len(b)
    buf[off : off + n] = b
    return off + n


def _put_int(buf, off, v, n):
    for i in range(n - 1, -1, -1):
        buf[off + i] = v & 0xFF
        v >>= 8
    return off + n


def build(
    cra,
    counter,
    originator,
    recipient,
    message_code,
    payload,
    date_time=None,
    supp_party=None,
    supp_counter=0,
    supp_orig_counter=None,
    supp_cert=None,
    signature=None,
    mac_fn=None,
    mac=None,
    sec_header=_SECURITY_HEADER,
    buf=None,
    sig_field=True,
):
    """Build a frame. MAC'd when mac_fn (called as mac_fn(AAD_PREFIX, aad_body,
    iv) -> 12 bytes) or a ready mac is given. sig_field=False omits the
    signature field (a PRECOMMAND, never MAC'd). Writes into buf when it is big
    enough; returns a memoryview of the frame."""
    if cra < 1 or cra > 3:
        raise FrameError("bad CRA flag %r" % cra)
    if len(originator) != 8 or len(recipient) != 8:
        raise FrameError("EUI-64s must be 8 bytes")
    if date_time is not None and len(date_time) != 12:
        raise FrameError("date-time must be 12 bytes")
    if signature is not None and len(signature) != _SIG_LEN:
        raise FrameError("signature must be 64 bytes")
    if supp_party is not None and len(supp_party) != 8:
        raise FrameError("supplementary remote party must be 8 bytes")
    if mac is not None and len(mac) != _MAC_LEN:
        raise FrameError("MAC must be 12 bytes")
    if len(sec_header) != _SEC_LEN:
        raise FrameError("security header must be 5 bytes")
    maced = mac_fn is not None or mac is not None
    if not sig_field and (maced or signature is not None):
        raise FrameError("a frame without a signature field can be neither signed nor MAC'd")
    total = frame_size(
        len(payload), date_time, supp_party, supp_orig_counter, supp_cert, signature, maced, sig_field
    )
    if buf is None or len(buf) < total:
        buf = bytearray(total)
    out = memoryview(buf)[:total]
    off = 0
    if maced:
        off = _put(out, 0, _GENERAL_CIPHERING)
        for k in (1, 2, 3):  # total = 7 + len_size(clen) + clen
            clen = total - 7 - k
            if len_size(clen) == k:
                break
        else:
            raise FrameError("frame too large")
        off = write_len(out, off, clen)
        off = _put(out, off, sec_header)
    gh_start = off
    out[off] = _DF
    out[off + 1] = 0x09
    out[off + 2] = cra
    off = _put_int(out, off + 3, counter, 8)
    out[off] = 0x08
    off = _put(out, off + 1, originator)
    out[off] = 0x08
    off = _put(out, off + 1, recipient)
    if date_time is None:
        out[off] = 0
        off += 1
    else:
        out[off] = 0x0C
        off = _put(out, off + 1, date_time)
    olen = other_info_len(supp_party, supp_orig_counter, supp_cert)
    off = write_len(out, off, olen)
    off = _put_int(out, off, message_code, 2)
    if supp_party is not None:
        off = _put(out, off, supp_party)
        off = _put_int(out, off, supp_counter, 8)
        if supp_orig_counter is not None:
            off = _put_int(out, off, supp_orig_counter, 8)
        elif supp_cert is not None:
            off = _put(out, off, supp_cert)
    off = write_len(out, off, len(payload))
    off = _put(out, off, payload)
    if not sig_field:
        pass
    elif signature is None:
        out[off] = 0
        off += 1
    else:
        out[off] = _SIG_LEN
        off = _put(out, off + 1, signature)
    if maced:
        if mac is None:
            mac = mac_fn(AAD_PREFIX, out[gh_start:off], bytes(originator) + b"\x00\x00\x00\x00")
            if len(mac) != _MAC_LEN:
                raise FrameError("mac_fn returned %d bytes (want 12)" % len(mac))
        off = _put(out, off, mac)
    if off != total:
        raise FrameError("internal size mismatch %d != %d" % (off, total))
    return out


def encode(f, buf=None):
    """Re-encode a parsed Frame (keeps its MAC and security header)."""
    sig = f.signature
    return build(
        f.cra,
        f.counter,
        f.originator,
        f.recipient,
        f.message_code,
        f.payload,
        date_time=f.date_time,
        supp_party=f.supp_party,
        supp_counter=f.supp_counter or 0,
        supp_orig_counter=f.supp_orig_counter,
        supp_cert=f.supp_cert,
        signature=sig,
        mac=f.mac,
        sec_header=f.sec_header if f.sec_header is not None else _SECURITY_HEADER,
        buf=buf,
        sig_field=f.sig_field,
    )


_KIND_GBZ = const("gbz")
KIND_DLMS = "dlms"
KIND_DER = "der"


def payload_kind(f):
    """Which codec the payload needs: 'gbz' (01 09 ...), 'dlms' (access-request
    D9, access-response DA, data-notification 0F) or 'der' (ASN.1)."""
    p = f.payload
    if len(p) >= 2 and p[0] == 0x01 and p[1] == 0x09:
        return _KIND_GBZ
    if len(p) and p[0] in (0xD9, 0xDA, 0x0F):
        return KIND_DLMS
    return KIND_DER
