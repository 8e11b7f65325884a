# The ZSE Tunneling cluster (0x0704) and the tunnel protocol over it: the
# cluster's command ids, statuses and payload codecs (RequestTunnel and its
# response, CloseTunnel, TransferDataError, Ack/ReadyData), TransferData
# frames in both directions, tunnel ids, fragmenting an outgoing message to a
# maximum APS payload, reassembly into a preallocated buffer, and the GSME
# GET/PUT sub-protocol carried in TransferData (PROTOCOLS.md section 3).
from micropython import const

from han import zcl

CLUSTER_TUNNELING = const(0x0704)

# commands, client -> server
TUN_REQUEST_TUNNEL = const(0x00)
TUN_CLOSE_TUNNEL = const(0x01)
TUN_TRANSFER_DATA_C2S = const(0x02)
TUN_TRANSFER_DATA_ERROR_C2S = const(0x03)
_TUN_ACK_TRANSFER_DATA_C2S = const(0x04)
_TUN_READY_DATA_C2S = const(0x05)
_TUN_GET_SUPPORTED_PROTOCOLS = const(0x06)
# commands, server -> client
TUN_REQUEST_TUNNEL_RSP = const(0x00)
TUN_TRANSFER_DATA_S2C = const(0x01)
TUN_TRANSFER_DATA_ERROR_S2C = const(0x02)
_TUN_ACK_TRANSFER_DATA_S2C = const(0x03)
_TUN_READY_DATA_S2C = const(0x04)
_TUN_SUPPORTED_PROTOCOLS_RSP = const(0x05)
TUN_CLOSURE_NOTIFICATION = const(0x06)
_TUN_ATTR_CLOSE_TUNNEL_TIMEOUT = const(0x0000)
# tunnel status (RequestTunnelResponse)
TUNNEL_SUCCESS = const(0x00)
_TUNNEL_BUSY = const(0x01)
TUNNEL_NO_MORE_IDS = const(0x02)
TUNNEL_PROTOCOL_NOT_SUPPORTED = const(0x03)
TUNNEL_FLOW_CONTROL_NOT_SUPPORTED = const(0x04)
# transfer data status (TransferDataError)
TRANSFER_NO_SUCH_TUNNEL = const(0x00)
TRANSFER_WRONG_DEVICE = const(0x01)
TRANSFER_DATA_OVERFLOW = const(0x02)
# protocol ids
_PROTO_DLMS = const(0)
_PROTO_IEC61107 = const(1)
_PROTO_ANSI_C12 = const(2)
_PROTO_MBUS = const(3)
_PROTO_SML = const(4)
_PROTO_CLIMATETALK = const(5)
PROTO_GB_HRGP = const(6)

DEFAULT_MESSAGE_SIZE = const(1200)
_ZCL_HDR = const(3)  # frame control, TSN, command id (no manufacturer code)

# GSME <-> CH sub-protocol (first byte of the TransferData data)
GSME_GET = const(0x01)
GSME_RESPONSE = const(0x02)
GSME_PUT = const(0x03)


class TunnelError(ValueError):
    """status: the TransferDataError status to send back, if any."""

    def __init__(self, msg, status=None):
        super().__init__(msg)
        self.status = status


class TunnelOverflow(TunnelError):
    def __init__(self, msg):
        super().__init__(msg, TRANSFER_DATA_OVERFLOW)


class NoSuchTunnel(TunnelError):
    def __init__(self, msg):
        super().__init__(msg, TRANSFER_NO_SUCH_TUNNEL)


class GsmeError(ValueError):
    pass


# ------------------------------------------- Tunneling cluster payloads ----


def encode_request_tunnel(protocol_id, manufacturer, flow_control, max_in, out=None):
    out = bytearray() if out is None else out
    out.append(protocol_id)
    zcl.put_u16(out, manufacturer)
    out.append(1 if flow_control else 0)
    zcl.put_u16(out, max_in)
    return out


def decode_request_tunnel(p, o=0):
    """(protocol_id, manufacturer_code, flow_control, max_incoming_size)."""
    if len(p) - o != 6:
        raise zcl.ZclError("ZclTruncated", "RequestTunnel of %d bytes" % (len(p) - o))
    return p[o], zcl.get_u16(p, o + 1), p[o + 3] != 0, zcl.get_u16(p, o + 4)


def encode_request_tunnel_rsp(tunnel_id, status, max_in, out=None):
    out = bytearray() if out is None else out
    zcl.put_u16(out, tunnel_id)
    out.append(status)
    zcl.put_u16(out, max_in)
    return out


def decode_request_tunnel_rsp(p, o=0):
    """(tunnel_id, status, max_incoming_size or None for the SE 1.1 form)."""
    n = len(p) - o
    if n == 3:
        return zcl.get_u16(p, o), p[o + 2], None
    if n != 5:
        raise zcl.ZclError("ZclTruncated", "RequestTunnelResponse of %d bytes" % n)
    return zcl.get_u16(p, o), p[o + 2], zcl.get_u16(p, o + 3)


def encode_tunnel_u16(tunnel_id, value=None, out=None):
    """CloseTunnel / TunnelClosureNotification (tunnel id only) and
    AckTransferData / ReadyData (tunnel id + uint16 octets left)."""
    out = bytearray() if out is None else out
    zcl.put_u16(out, tunnel_id)
    if value is not None:
        zcl.put_u16(out, value)
    return out


def decode_tunnel_id(p, o=0):
    if len(p) - o != 2:
        raise zcl.ZclError("ZclTruncated", "tunnel id payload of %d bytes" % (len(p) - o))
    return zcl.get_u16(p, o)


def decode_tunnel_u16(p, o=0):
    """AckTransferData / ReadyData -> (tunnel_id, octets_left)."""
    if len(p) - o != 4:
        raise zcl.ZclError("ZclTruncated", "tunnel payload of %d bytes" % (len(p) - o))
    return zcl.get_u16(p, o), zcl.get_u16(p, o + 2)


def encode_transfer_data_error(tunnel_id, status, out=None):
    out = bytearray() if out is None else out
    zcl.put_u16(out, tunnel_id)
    out.append(status)
    return out


def decode_transfer_data_error(p, o=0):
    if len(p) - o != 3:
        raise zcl.ZclError("ZclTruncated", "TransferDataError of %d bytes" % (len(p) - o))
    return zcl.get_u16(p, o), p[o + 2]


# ------------------------------------------------------- TransferData ----


def encode_transfer_data(out, tsn, tunnel_id, data, server_to_client, disable_default_response=True):
    """Append a complete ZCL TransferData frame to bytearray out.  Server to
    client (the tunnel server = the hub side for meters that open tunnels)
    uses command 0x01, client to server 0x02."""
    fc = zcl.FT_CLUSTER
    if server_to_client:
        fc |= zcl.FC_SERVER_TO_CLIENT
    if disable_default_response:
        fc |= zcl.FC_DISABLE_DEFAULT_RSP
    if not 0 <= tunnel_id <= 0xFFFF or not 0 <= tsn <= 0xFF:
        raise TunnelError("tunnel id/tsn out of range")
    out.append(fc)
    out.append(tsn)
    out.append(TUN_TRANSFER_DATA_S2C if server_to_client else TUN_TRANSFER_DATA_C2S)
    out.append(tunnel_id & 0xFF)
    out.append(tunnel_id >> 8)
    out.extend(data)
    return out


def decode_transfer_data(frame):
    """Parse a ZCL TransferData frame: (Header, tunnel_id, memoryview data)."""
    h, o = zcl.parse_header(frame)
    if h.frame_type != zcl.FT_CLUSTER or h.manufacturer is not None:
        raise TunnelError("not a Tunneling cluster command")
    want = TUN_TRANSFER_DATA_S2C if h.direction else TUN_TRANSFER_DATA_C2S
    if h.command_id != want:
        raise TunnelError("command 0x%02X is not TransferData" % h.command_id)
    tid, data = decode_transfer_data_payload(frame, o)
    return h, tid, data


def decode_transfer_data_payload(p, o=0):
    """The TransferData payload at p[o:]: (tunnel_id, memoryview data)."""
    if len(p) - o < 2:
        raise zcl.ZclError("ZclTruncated", "TransferData without tunnel id")
    return p[o] | (p[o + 1] << 8), memoryview(p)[o + 2 :]


def max_chunk(max_aps_payload):
    """Bytes of message data one TransferData frame can carry."""
    n = max_aps_payload - _ZCL_HDR - 2
    if n < 1:
        raise TunnelError("APS payload of %d bytes cannot carry TransferData" % max_aps_payload)
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


# --------------------------------------------------------- reassembly ----


class Reassembler:
    """Collects the pieces of one tunnelled message in a preallocated buffer.

    * add(tunnel_id, chunk): append the data of one TransferData frame; the
      caller decides when the message is complete (take()), e.g. from its own
      length or from the APS layer;
    * add_block(tunnel_id, index, count, chunk): indexed blocks (APS
      fragmentation style), in order; a repeated block is ignored; returns the
      message (memoryview) once block count-1 has arrived.
    Errors: TunnelOverflow (status DATA_OVERFLOW), NoSuchTunnel (a chunk for
    another tunnel while a message is in progress), TunnelError."""

    def __init__(self, size=DEFAULT_MESSAGE_SIZE):
        self.buf = bytearray(size)
        self.n = 0
        self.tunnel_id = -1
        self.next_block = 0
        self.count = 0
        self.duplicates = 0

    def reset(self):
        self.n = 0
        self.tunnel_id = -1
        self.next_block = 0
        self.count = 0

    def _bind(self, tunnel_id):
        if self.tunnel_id < 0:
            self.tunnel_id = tunnel_id
        elif tunnel_id != self.tunnel_id:
            raise NoSuchTunnel("data for tunnel %d while tunnel %d is in progress" % (tunnel_id, self.tunnel_id))

    def _append(self, chunk):
        k = len(chunk)
        if self.n + k > len(self.buf):
            n = self.n + k
            self.reset()
            raise TunnelOverflow("message of at least %d bytes exceeds %d" % (n, len(self.buf)))
        self.buf[self.n : self.n + k] = chunk
        self.n += k

    def add(self, tunnel_id, chunk):
        self._bind(tunnel_id)
        self._append(chunk)
        return self.n

    def add_block(self, tunnel_id, index, count, chunk):
        self._bind(tunnel_id)
        if count < 1 or index >= count:
            self.reset()
            raise TunnelError("block %d of %d" % (index, count))
        if self.count and count != self.count:
            self.reset()
            raise TunnelError("block count changed from %d to %d" % (self.count, count))
        if index < self.next_block:
            self.duplicates += 1
            return None
        if index > self.next_block:
            exp = self.next_block
            self.reset()
            raise TunnelError("block %d out of order (expected %d)" % (index, exp))
        self.count = count
        self._append(chunk)
        self.next_block = index + 1
        if self.next_block == count:
            return self.message()
        return None

    def add_frame(self, frame):
        """Append the data of a TransferData ZCL frame; return its tunnel id."""
        _, tid, data = decode_transfer_data(frame)
        self.add(tid, data)
        return tid

    def message(self):
        return memoryview(self.buf)[: self.n]

    def take(self):
        """The complete message as bytes; the reassembler is reset."""
        m = bytes(self.message())
        self.reset()
        return m


# ---------------------------------------------------------- tunnel ids ----


class TunnelIds:
    """Allocates tunnel ids (server side) and maps them to a peer key."""

    def __init__(self, max_tunnels=8):
        self.max = max_tunnels
        self.peers = {}
        self._next = 0

    def open(self, peer):
        """Return the tunnel id for peer, allocating one; None if full."""
        for tid, p in self.peers.items():
            if p == peer:
                return tid
        if len(self.peers) >= self.max:
            return None
        while self._next in self.peers:
            self._next = (self._next + 1) & 0xFFFF
        tid = self._next
        self._next = (tid + 1) & 0xFFFF
        self.peers[tid] = peer
        return tid

    def peer(self, tunnel_id):
        p = self.peers.get(tunnel_id)
        if p is None:
            raise NoSuchTunnel("no tunnel %d" % tunnel_id)
        return p

    def check(self, tunnel_id, peer):
        if self.peer(tunnel_id) != peer:
            raise TunnelError("tunnel %d belongs to another device" % tunnel_id, TRANSFER_WRONG_DEVICE)

    def close(self, tunnel_id):
        return self.peers.pop(tunnel_id, None) is not None


# ------------------------------------------------- GSME GET/PUT protocol ----


def encode_get(out=None):
    out = bytearray() if out is None else out
    out.append(GSME_GET)
    return out


def encode_put(msg, out=None):
    out = bytearray() if out is None else out
    out.append(GSME_PUT)
    out.extend(msg)
    return out


def encode_get_response(remaining, msg=None, out=None):
    """CH answer to GET: 02 || remaining-count || msg, or 02 00 when nothing
    is queued (msg None)."""
    out = bytearray() if out is None else out
    if msg is None:
        remaining = 0
    if not 0 <= remaining <= 0xFF:
        raise GsmeError("remaining count %r" % remaining)
    out.append(GSME_RESPONSE)
    out.append(remaining)
    if msg is not None:
        out.extend(msg)
    return out


def decode_gsme(data):
    """Decode a GSME sub-protocol payload: (kind, remaining, msg).
    GET -> (1, None, None); PUT -> (3, None, msg); response -> (2, count,
    msg or None).  msg is a memoryview into data."""
    n = len(data)
    if n == 0:
        raise GsmeError("empty GSME tunnel payload")
    k = data[0]
    mv = memoryview(data)
    if k == GSME_GET:
        if n != 1:
            raise GsmeError("GET with %d extra bytes" % (n - 1))
        return k, None, None
    if k == GSME_PUT:
        if n < 2:
            raise GsmeError("PUT without a message")
        return k, None, mv[1:]
    if k == GSME_RESPONSE:
        if n < 2:
            raise GsmeError("response without a count")
        if n == 2:
            return k, data[1], None
        return k, data[1], mv[2:]
    raise GsmeError("unknown GSME tunnel command 0x%02X" % k)
