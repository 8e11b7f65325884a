# The ZSE Tunneling cluster (0x0704) and the tunnel protocol over it: the
# cluster's command ids, statuses and payload codecs (RequestTunnel and its
# response, CloseTunnel, TransferDataError, Ack/ReadyData), TransferData
# frames in both directions, tunnel ids, reassembly into a preallocated
# buffer, and the GSME GET/PUT sub-protocol carried in TransferData
# (PROTOCOLS.md section 3). What only the device's side sends or parses
# (AckTransferData/ReadyData, a whole TransferData frame, splitting a message
# into TransferData frames, GSME GET/PUT) is in han.peer: the hub does not
# import it.
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
_TRANSFER_WRONG_DEVICE = const(0x01)
_TRANSFER_DATA_OVERFLOW = const(0x02)
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
    """status: the TransferDataError status to send back, if any
    (TRANSFER_DATA_OVERFLOW 2: the message does not fit; NO_SUCH_TUNNEL 0: a
    tunnel id not open, or data for another tunnel while a message is in
    progress; WRONG_DEVICE 1: another device's tunnel)."""

    def __init__(self, msg, status=None):
        super().__init__(msg)
        self.status = status


# a malformed GSME payload: the tunnel's error class (no class of its own at boot)
GsmeError = TunnelError


# ------------------------------------------- Tunneling cluster payloads ----


# (the decoders take the payload alone, from its first byte)


def encode_request_tunnel(protocol_id, manufacturer, flow_control, max_in, out):
    """Append RequestTunnel's payload to bytearray out."""
    out.append(protocol_id)
    zcl.put_u16(out, manufacturer)
    out.append(1 if flow_control else 0)
    zcl.put_u16(out, max_in)
    return out


def decode_request_tunnel(p):
    """(protocol_id, manufacturer_code, flow_control, max_incoming_size)."""
    if len(p) != 6:
        raise zcl.ZclError("ZclTruncated", "RequestTunnel of %d bytes" % len(p))
    return p[0], zcl.get_u16(p, 1), p[3] != 0, zcl.get_u16(p, 4)


def encode_request_tunnel_rsp(tunnel_id, status, max_in):
    out = bytearray()
    zcl.put_u16(out, tunnel_id)
    out.append(status)
    zcl.put_u16(out, max_in)
    return out


def decode_request_tunnel_rsp(p):
    """(tunnel_id, status, max_incoming_size or None for the SE 1.1 form)."""
    n = len(p)
    if n == 3:
        return zcl.get_u16(p, 0), p[2], None
    if n != 5:
        raise zcl.ZclError("ZclTruncated", "RequestTunnelResponse of %d bytes" % n)
    return zcl.get_u16(p, 0), p[2], zcl.get_u16(p, 3)


def decode_tunnel_id(p):
    if len(p) != 2:
        raise zcl.ZclError("ZclTruncated", "tunnel id payload of %d bytes" % len(p))
    return zcl.get_u16(p, 0)


def encode_transfer_data_error(tunnel_id, status):
    out = bytearray()
    zcl.put_u16(out, tunnel_id)
    out.append(status)
    return out


def decode_transfer_data_error(p):
    if len(p) != 3:
        raise zcl.ZclError("ZclTruncated", "TransferDataError of %d bytes" % len(p))
    return zcl.get_u16(p, 0), p[2]


# ------------------------------------------------------- TransferData ----


def encode_transfer_data(out, tsn, tunnel_id, data, server_to_client):
    """Append a complete ZCL TransferData frame (default response disabled)
    to bytearray out.  Server to client (the tunnel server = the hub side
    for meters that open tunnels) uses command 0x01, client to server 0x02."""
    fc = zcl.FT_CLUSTER | zcl.FC_DISABLE_DEFAULT_RSP
    if server_to_client:
        fc |= zcl.FC_SERVER_TO_CLIENT
    if not 0 <= tunnel_id <= 0xFFFF or not 0 <= tsn <= 0xFF:
        raise TunnelError("tunnel id/tsn out of range")
    out.append(fc)
    out.append(tsn)
    out.append(TUN_TRANSFER_DATA_S2C if server_to_client else TUN_TRANSFER_DATA_C2S)
    out.append(tunnel_id & 0xFF)
    out.append(tunnel_id >> 8)
    out.extend(data)
    return out


def decode_transfer_data_payload(p):
    """The TransferData payload p: (tunnel_id, memoryview data)."""
    if len(p) < 2:
        raise zcl.ZclError("ZclTruncated", "TransferData without tunnel id")
    return p[0] | (p[1] << 8), memoryview(p)[2:]


# --------------------------------------------------------- reassembly ----


class Reassembler:
    """Collects the pieces of one tunnelled message in a preallocated buffer.

    add_block(tunnel_id, index, count, chunk): indexed blocks (APS
    fragmentation style), in order; a repeated block is ignored; returns the
    message (memoryview) once block count-1 has arrived; take() then gives it
    as bytes. (han.peer.add appends the data of one TransferData frame.)
    Errors: TunnelError, its status DATA_OVERFLOW (the buffer is full) or
    NO_SUCH_TUNNEL (a chunk for another tunnel while a message is in
    progress)."""

    def __init__(self, size):
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
            raise TunnelError("data for tunnel %d while tunnel %d is in progress" % (tunnel_id, self.tunnel_id),
                              TRANSFER_NO_SUCH_TUNNEL)

    def _append(self, chunk):
        k = len(chunk)
        if self.n + k > len(self.buf):
            n = self.n + k
            self.reset()
            raise TunnelError("message of at least %d bytes exceeds %d" % (n, len(self.buf)), _TRANSFER_DATA_OVERFLOW)
        self.buf[self.n : self.n + k] = chunk
        self.n += k

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
            return memoryview(self.buf)[: self.n]
        return None

    def take(self):
        """The complete message as bytes; the reassembler is reset."""
        m = bytes(memoryview(self.buf)[: self.n])
        self.reset()
        return m


# ---------------------------------------------------------- tunnel ids ----


class TunnelIds:
    """Allocates tunnel ids (server side) and maps them to a peer key."""

    def __init__(self, max_tunnels):
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
            raise TunnelError("no tunnel %d" % tunnel_id, TRANSFER_NO_SUCH_TUNNEL)
        return p

    def check(self, tunnel_id, peer):
        if self.peer(tunnel_id) != peer:
            raise TunnelError("tunnel %d belongs to another device" % tunnel_id, _TRANSFER_WRONG_DEVICE)

    def close(self, tunnel_id):
        return self.peers.pop(tunnel_id, None) is not None


# ------------------------------------------------- GSME GET/PUT protocol ----


def encode_get_response(remaining, msg):
    """CH answer to GET: 02 || remaining-count || msg, or 02 00 when nothing
    is queued (msg None)."""
    out = bytearray()
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
