# The other end's half of the hub's HAN codecs: what only the NCP or a
# device sends or parses, written on the hub's own codec modules (han.ash,
# han.tunnel, han.zcl, han.zcl_clusters). The hub imports none of it: it
# serves the tests' cross-checks against bellows/zigpy, the fuzzers and the
# bench, and keeps these functions out of the hub's heap (a function object
# per def in each module the hub holds).
from han import ash
from han import ezsp_frames as F
from han import tunnel as T
from han import zcl as Z

# han.ash's and han.zcl's numbers the hub's code alone reads (private
# constants there: no global each in the hub's heap), for the other end
# ASH control bytes, frame types, reset and error codes (UG101)
CANCEL = 0x1A
RST = 0xC0
RSTACK = 0xC1
ERROR = 0xC2
T_DATA = 0
T_ACK = 1
T_NAK = 2
T_RST = 3
BUF_SIZE = 2 * (1 + 128 + 2) + 1
RESET_WATCHDOG = 0x03
RESET_SOFTWARE = 0x0B
ERROR_ACK_TIMEOUTS = 0x51
EV_FRAME = 1
# EZSP frame control: a response
FC_RESPONSE = 0x80
# ZCL statuses and attribute data types
INVALID_VALUE = 0x87
UNREPORTABLE_ATTRIBUTE = 0x8C
T_NODATA = 0x00
T_BOOL = 0x10
T_MAP16 = 0x19
T_UINT48 = 0x25
T_INT8 = 0x28
T_INT16 = 0x29
T_INT24 = 0x2A
T_ENUM16 = 0x31
T_SINGLE = 0x39
T_OCTSTR = 0x41
T_LONG_OCTSTR = 0x43
T_EUI64 = 0xF0


# ------------------------------------------------------------------ ASH ----


def data_control(frm, ack, retx):
    return ((frm & 7) << 4) | (8 if retx else 0) | (ack & 7)


def ack_control(ack, nrdy):
    return 0x80 | (8 if nrdy else 0) | (ack & 7)


def nak_control(ack, nrdy):
    return 0xA0 | (8 if nrdy else 0) | (ack & 7)


def stuff(data):
    """The byte-stuffed copy of data (no trailing flag)."""
    out = bytearray()
    for b in data:
        if ash.is_reserved(b):
            out.append(0x7D)
            out.append(b ^ 0x20)
        else:
            out.append(b)
    return bytes(out)


def unstuff(data):
    """Inverse of stuff(); AshError (kind AshEscapeError) on a bad escape sequence."""
    out = bytearray()
    esc = False
    for b in data:
        if esc:
            b ^= 0x20
            if not ash.is_reserved(b):
                raise ash.AshError("AshEscapeError", "escaped byte 0x%02X is not reserved" % b)
            out.append(b)
            esc = False
        elif b == 0x7D:
            esc = True
        elif ash.is_reserved(b):
            raise ash.AshError("AshEscapeError", "unescaped reserved byte 0x%02X" % b)
        else:
            out.append(b)
    if esc:
        raise ash.AshError("AshEscapeError", "dangling escape byte")
    return bytes(out)


def parse_control(c):
    """(type, frmNum or None, reTx/nRdy flag, ackNum or None)."""
    t = ash.frame_type(c)
    if t == T_DATA:
        return t, (c >> 4) & 7, bool(c & 8), c & 7
    if t == T_ACK or t == T_NAK:
        return t, None, bool(c & 8), c & 7
    return t, None, False, None


def build_frame(control, data=None, randomise_data=True):
    """The wire bytes of one frame (ash.encode_frame into a new buffer)."""
    buf = bytearray(BUF_SIZE)
    n = ash.encode_frame(buf, control, data, randomise_data)
    return bytes(buf[:n])


def decode_frame(frame):
    """Decode one unstuffed frame: (control, data bytes), DATA payloads
    derandomised. AshError."""
    t = ash.check_frame(frame, -1, 128)
    data = bytearray(frame[1 : len(frame) - 2])
    if t == T_DATA:
        ash.randomise(data, 0, -1)
    return frame[0], bytes(data)


def frames(dec, data):
    """Generator over a chunk fed to ash.Decoder dec: yields (control, data
    bytes) for each good frame and an AshError instance (not raised) for
    each bad one."""
    i = 0
    end = len(data)
    while i < end:
        i = dec.feed(data, i, end)
        ev = dec.event
        if ev == EV_FRAME:
            yield dec.control, bytes(dec.data())
        elif ev < 0:
            yield ash.AshError(ash._KINDS[-1 - ev], dec.error)


# ----------------------------------------------------- ZSE tunnelling ----


def encode_tunnel_u16(tunnel_id, value=None):
    """CloseTunnel / TunnelClosureNotification (tunnel id only) and
    AckTransferData / ReadyData (tunnel id + uint16 octets left)."""
    out = bytearray()
    Z.put_u16(out, tunnel_id)
    if value is not None:
        Z.put_u16(out, value)
    return out


def decode_tunnel_u16(p):
    """AckTransferData / ReadyData -> (tunnel_id, octets_left)."""
    if len(p) != 4:
        raise Z.ZclError("ZclTruncated", "tunnel payload of %d bytes" % len(p))
    return Z.get_u16(p, 0), Z.get_u16(p, 2)


def decode_transfer_data(frame):
    """Parse a ZCL TransferData frame: (Header, tunnel_id, memoryview data)."""
    h, o = Z.parse_header(frame)
    if h.frame_type != Z.FT_CLUSTER or h.manufacturer is not None:
        raise T.TunnelError("not a Tunneling cluster command")
    want = T.TUN_TRANSFER_DATA_S2C if h.direction else T.TUN_TRANSFER_DATA_C2S
    if h.command_id != want:
        raise T.TunnelError("command 0x%02X is not TransferData" % h.command_id)
    tid, data = T.decode_transfer_data_payload(memoryview(frame)[o:])
    return h, tid, data


def max_chunk(max_aps_payload):
    """Bytes of message data one TransferData frame can carry."""
    n = max_aps_payload - 5  # ZCL header (3) and tunnel id
    if n < 1:
        raise T.TunnelError("APS payload of %d bytes cannot carry TransferData" % max_aps_payload)
    return n


def fragment_count(length, max_aps_payload):
    c = max_chunk(max_aps_payload)
    return max(1, (length + c - 1) // c)


def fragments(msg, max_aps_payload):
    """Yield memoryview slices of msg, each fitting one TransferData frame."""
    c = max_chunk(max_aps_payload)
    mv = memoryview(msg)
    n = len(mv)
    if n == 0:
        yield mv
        return
    for i in range(0, n, c):
        yield mv[i : i + c]


def add(r, tunnel_id, chunk):
    """Append the data of one TransferData frame to tunnel.Reassembler r (the
    caller decides when the message is complete: r.take()); -> bytes held.
    TunnelError (status DATA_OVERFLOW, NO_SUCH_TUNNEL) as r.add_block."""
    r._bind(tunnel_id)
    r._append(chunk)
    return r.n


def add_frame(r, frame):
    """Append the data of a TransferData ZCL frame to r; -> its tunnel id."""
    _, tid, data = decode_transfer_data(frame)
    add(r, tid, data)
    return tid


def encode_get():
    return bytearray((T.GSME_GET,))


def encode_put(msg):
    out = bytearray((T.GSME_PUT,))
    out.extend(msg)
    return out


# ----------------------------------------------- ZCL general commands ----
# (the hub decodes a Read Attributes Response with zcl.parse_header and
# zcl.decode_read_attributes_rsp, and answers with zcl's encoders)


def is_analog(t):
    """Analog types carry a reportable-change field in Configure Reporting."""
    return 0x20 <= t <= 0x2F or 0x38 <= t <= 0x3A or 0xE0 <= t <= 0xE2


def decode_status_records(p, o=0, with_direction=False):
    """Inverse of Z.encode_status_records; all-success gives []."""
    n = len(p)
    if n - o == 1:
        if p[o] != Z.SUCCESS:
            raise Z.ZclError("ZclValueError", "lone non-success status 0x%02X" % p[o])
        return []
    if n == o:
        raise Z.ZclError("ZclTruncated", "empty status record list")
    k = 4 if with_direction else 3
    if (n - o) % k:
        raise Z.ZclError("ZclTruncated", "status records of %d bytes" % (n - o))
    recs = []
    for i in range(o, n, k):
        if with_direction:
            recs.append((p[i], p[i + 1], Z.get_u16(p, i + 2)))
        else:
            recs.append((p[i], Z.get_u16(p, i + 1)))
    return recs


def decode_write_attributes_rsp(p, o=0):
    return decode_status_records(p, o, with_direction=False)


def encode_configure_reporting_rsp(records, out=None):
    return Z.encode_status_records(records, out, with_direction=True)


def decode_configure_reporting_rsp(p, o=0):
    return decode_status_records(p, o, with_direction=True)


def encode_configure_reporting(records, out=None):
    """records: (0, attr_id, type, min_interval, max_interval, change) with
    change ignored for discrete types, or (1, attr_id, timeout)."""
    out = bytearray() if out is None else out
    for r in records:
        d = r[0]
        out.append(d)
        Z.put_u16(out, r[1])
        if d == 0:
            out.append(r[2])
            Z.put_u16(out, r[3])
            Z.put_u16(out, r[4])
            if is_analog(r[2]):
                Z.encode_value(out, r[2], r[5])
        elif d == 1:
            Z.put_u16(out, r[2])
        else:
            raise Z.ZclError("ZclValueError", "reporting direction %d" % d)
    return out


def decode_configure_reporting(p, o=0):
    recs = []
    n = len(p)
    while o < n:
        d = p[o]
        a = Z.get_u16(p, o + 1)
        o += 3
        if d == 0:
            Z.need(p, o, 5)
            t = p[o]
            mn = Z.get_u16(p, o + 1)
            mx = Z.get_u16(p, o + 3)
            o += 5
            ch = None
            if is_analog(t):
                ch, o = Z.decode_value(t, p, o)
            else:
                Z.type_size(t)  # reject unknown types
            recs.append((0, a, t, mn, mx, ch))
        elif d == 1:
            recs.append((1, a, Z.get_u16(p, o)))
            o += 2
        else:
            raise Z.ZclError("ZclValueError", "reporting direction %d" % d)
    return recs


def decode_default_rsp(p, o=0):
    if len(p) - o != 2:
        raise Z.ZclError("ZclTruncated", "default response of %d bytes" % (len(p) - o))
    return p[o], p[o + 1]


def _global_decoder(c):
    # the decoder of a global command this codec knows (a chain, not a dict
    # built at import)
    if c == Z.READ_ATTRIBUTES:
        return Z.decode_read_attributes
    if c == Z.READ_ATTRIBUTES_RSP:
        return Z.decode_read_attributes_rsp
    if c == Z.WRITE_ATTRIBUTES or c == Z.WRITE_ATTRIBUTES_UNDIVIDED or c == Z.WRITE_ATTRIBUTES_NO_RSP \
            or c == Z.REPORT_ATTRIBUTES:
        return Z.decode_attribute_records
    if c == Z.WRITE_ATTRIBUTES_RSP:
        return decode_write_attributes_rsp
    if c == 0x06:
        return decode_configure_reporting
    if c == Z.CONFIGURE_REPORTING_RSP:
        return decode_configure_reporting_rsp
    if c == Z.DEFAULT_RSP:
        return decode_default_rsp
    return None


def zcl_decode(frame):
    """Parse a whole ZCL frame: (zcl.Header, decoded payload).  Global commands
    this codec knows are decoded; anything else gives the raw payload bytes."""
    h, o = Z.parse_header(frame)
    if h.frame_type == Z.FT_GLOBAL and h.manufacturer is None:
        f = _global_decoder(h.command_id)
        if f is not None:
            return h, f(frame[o:])
    return h, bytes(frame[o:])


# ------------------------------------------- Metering: the meter's side ----


def decode_request_mirror_rsp(p, o=0):
    """RequestMirrorResponse / MirrorRemoved at p[o:] -> the endpoint id."""
    if len(p) - o != 2:
        raise Z.ZclError("ZclTruncated", "RequestMirrorResponse of %d bytes" % (len(p) - o))
    return Z.get_u16(p, o)


decode_mirror_removed = decode_request_mirror_rsp


def encode_configure_mirror(issuer_event_id, reporting_interval, notify, scheme):
    out = bytearray()
    Z.encode_value(out, Z.T_UINT32, issuer_event_id)
    Z.encode_value(out, Z.T_UINT24, reporting_interval)
    out.append(1 if notify else 0)
    out.append(scheme)
    return out


def decode_mirror_report_attribute_rsp(p, o=0):
    Z.need(p, o, 1)
    if (len(p) - o - 1) % 4:
        raise Z.ZclError("ZclTruncated", "notification flags not a multiple of 4 bytes")
    return p[o], [Z.get_uint(p, i, 4) for i in range(o + 1, len(p), 4)]


# ----------------------------------------------------------------- EZSP ----


def ezsp_decode_frame(ver, buf, strict=True):
    """(seq, fc, name, values). Commands (fc bit 7 clear) decode with the
    command schema, responses and callbacks with the response schema."""
    seq, fc, fid, pos = F.decode_header(ver, buf)
    name = F.name_of(ver, fid)
    if ver == F.LEGACY and name != "version":
        raise F.EzspError("EzspVersionError", "only version may use the legacy header")
    sch = F.lookup(ver, name)[2 if fc & FC_RESPONSE else 1]
    return seq, fc, name, F.decode_params(ver, sch, buf, pos, strict)
