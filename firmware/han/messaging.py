# ZCL and ZSE-tunnel messaging over the EZSP host: the Coordinator's API for
# the meters work (docs/han.md, "Messaging API").
#
# * zcl_send(eui, dst_ep, cluster, frame): one ZCL frame (SE profile) from
#   endpoint 1; frames over FRAG_SIZE bytes go as APS fragments (EmberZNet
#   host-side fragmentation: APS option FRAGMENT, groupId = count << 8 |
#   index, window 1: each fragment waits for its messageSentHandler).
# * incoming messages: fragments are reassembled per sender, then the ZCL
#   frame goes to zcl_servers[cluster] (run as a task; a returned frame, or
#   each frame of a returned list in turn, is sent back to the sender's
#   endpoint on the same cluster). A cluster with
#   no server gets Default Response UNSUPPORTED_CLUSTER.
# * Tunneling 0x0704: devices open tunnels to the hub (hub = server) and the
#   hub opens tunnels to devices (hub = client) when it must send first;
#   tunnel_exchange() sends one message and returns the device's next
#   TransferData on that tunnel (or in parts: tunnel_ask sends, the answer
#   sets the caller's Flag, tunnel_answer ends it; at most _SENDERS tunnel
#   messages are being sent at once); device-initiated TransferData goes to
#   on_tunnel_message(eui, data, True) whose answer goes back on the same
#   tunnel; the True promises that on_tunnel_reply(eui, delivered) follows
#   once the NCP has reported that answer delivered or not (a GSME whose GET
#   answer the radio lost must be offered the same command again).
import asyncio
import time

from micropython import const

from ids import eui_hex
from flag import Flag, acquire, release
from han import tunnel as T
from han import zcl as Z
from han import zcl_clusters as ZC
from han.ezsp import APS_OPTION_FRAGMENT, APS_OPTIONS, SE_PROFILE
from han.zcl_servers import default_rsp, reply
from log import log

_HUB_EP = const(1)
FRAG_SIZE = 64  # ZCL bytes per APS fragment (and the largest unfragmented frame)
MAX_MESSAGE = T.DEFAULT_MESSAGE_SIZE  # the largest tunnel message accepted (advertised)
_REASSEMBLY = MAX_MESSAGE + 16  # + the TransferData header
_MAX_ACKS = const(64)  # fragment acks waiting for the NCP
_RX_SLOTS = const(2)  # concurrent incoming fragmented messages
_MAX_BUSY = const(8)  # concurrent server tasks
_SENDERS = const(2)  # tunnel messages (RequestTunnel, TransferData) being sent at once
_SEND_TIMEOUT_MS = const(10000)  # a sleepy device is served when it polls
_EXCHANGE_TIMEOUT_MS = const(30000)
_VERSIONS_DELAY_S = const(1)  # after a join, before reading the device's Basic versions
_NO_MANUF = const(0xFFFF)


class DeliveryError(OSError):
    """reason: "no_route" (not in the log / not joined / HAN down / the NCP
    could not deliver), "tunnel" (no tunnel: refused, TransferDataError, too
    long) or "timeout" (no answer in time)."""

    def __init__(self, reason, detail=None):
        super().__init__(detail or reason)
        self.reason = reason


# the messaging layer's counters (in its coordinator's `counters`)
COUNTERS = ("rx_unknown", "zcl_rx", "zcl_bad", "frag_rx", "frag_drop", "frag_tx", "busy_drop", "zcl_errors",
            "reply_fail", "tunnel_rx", "tunnel_unclaimed", "exchanges", "pushes", "frag_ack", "frag_ack_fail")


def _left(deadline):
    return time.ticks_diff(deadline, time.ticks_ms())


class Messaging:
    """Mixed into the Coordinator (which provides device_log, ezsp, state, counters)."""

    # made while used, then deleted (the instance's attribute table stays
    # small): (node id, aps) of fragments to acknowledge, oldest first, while
    # the task that sends them runs; the versions reader's list (see
    # _read_versions) while it runs; reassembly slots [sender, Reassembler,
    # count] of messages in progress; a Flag for each send waiting for a
    # slot, oldest first
    _acks = None
    _reading = None
    _rx = ()
    _send_q = ()

    def _init_messaging(self):
        self.zcl_servers = {}
        self.on_tunnel_message = None
        self.on_tunnel_reply = None
        self.tunnels = T.TunnelIds(8)  # tunnels devices opened to us: id -> eui hex
        self._tinfo = {}  # server tunnel id -> device ep | device max incoming << 8 (a small int)
        # eui hex -> a tunnel the hub opened: tunnel id | device max incoming
        # << 16 (a small int) when the device's endpoint is 1 and its max
        # incoming under 16384, else (tunnel id | device ep << 16, max
        # incoming)
        self._client = {}
        # eui hex -> the exchange holding the device's exchange lock
        # (tunnel_ask's w) while it awaits its answer, or (w[2] False) the
        # RequestTunnelResponse of the tunnel the hub opens for it
        self._exchange = {}
        self._locks = {}  # eui hex -> True or a flag lock list (one exchange at a time), while used
        self._tx_locks = {}  # eui hex -> True or a flag lock list (fragments of one frame together), while used
        # message tag -> [event, status]; (eui hex, cluster, tsn) -> [event,
        # answer frame] of a request (zcl_request)
        self._sent = {}
        self._tsn = 0
        self._busy = 0
        self._senders = 0  # tunnel sends running (at most _SENDERS)
        # eui hex -> what is kept of a device, packed in one small int (no
        # object, one table entry a device): bits 0-7 the endpoint it last
        # sent from, bit 8 set once it sent; bit 9 set once its Basic
        # versions were read (after it joined), bits 10-27 those versions
        # (see _read_versions)
        self.dev = {}
        for k in COUNTERS:
            self.counters[k] = 0

    # -- helpers ----------------------------------------------------------------

    def next_tsn(self):
        self._tsn = (self._tsn + 1) & 0xFF
        return self._tsn

    def _eh(self, eui):
        # the Device Log's own EUI text when it has the device: the tables
        # keyed by device (_client, _locks ...) share it, no new string each
        try:
            eh = eui_hex(eui)
        except ValueError:
            raise DeliveryError("no_route", "bad EUI-64 %r" % (eui,))
        return self.device_log.key(eh) or eh

    def _node(self, eh):
        if self.state != "up" or self.ezsp is None:
            raise DeliveryError("no_route", "HAN is %s" % self.state)
        e = self.device_log.get(eh)
        # joined in the log, heard since start or not: a send is how a
        # device not heard yet is reached (its acknowledgement marks it heard)
        if e is None or e["node_id"] is None or not self.device_log.is_joined(eh):
            raise DeliveryError("no_route", "%s is not joined" % eh)
        return e["node_id"]

    async def _acquire(self, table, eh):
        # a device's lock exists while someone holds or waits for it: two
        # idle Locks per joined device were ~300 bytes each for the hub's
        # life. table[eh] is True while one user holds it and none waits
        # (no object: an exchange in flight alone, an ESME delivery awaiting
        # its answer, holds nothing), else flag's lock list [held, waiters'
        # Flags...], made held when a second user comes
        u = table.get(eh)
        if u is None:
            table[eh] = True
            return
        if u is True:
            u = table[eh] = [True]
        try:
            await acquire(u)
        except BaseException:  # cancelled while waiting
            if not u[0] and table.get(eh) is u:  # handed over, then released to no one
                del table[eh]
            raise

    def _release(self, table, eh):
        u = table.get(eh)
        if u is True or u is not None and len(u) < 2:
            del table[eh]
        elif u is not None:
            release(u)  # hands the lock straight to the oldest waiter

    # -- sending ------------------------------------------------------------------

    def _sent_cb(self, tag, status):
        w = self._sent.get(tag)
        if w is not None:
            w[1] = status
            w[0].set()

    def _sender_done(self):
        q = self._send_q
        if q:
            q.pop(0).set()  # the slot goes straight to the oldest waiter
            if not q:
                del self._send_q  # the class's () again
        else:
            self._senders -= 1

    async def zcl_send(self, eui, dst_ep, cluster_id, frame, timeout_ms=_SEND_TIMEOUT_MS):
        """Send one ZCL frame to a joined device; returns once the NCP reports
        it delivered (a sleepy device: once it polled). DeliveryError."""
        eh = self._eh(eui)
        node = self._node(eh)
        n = len(frame)
        # each piece: sendUnicast, then its messageSentHandler awaited on a
        # Flag in _sent, in this one frame (no coroutine per piece: two sends
        # at once held two more frames down to the NCP)
        count = (n + FRAG_SIZE - 1) // FRAG_SIZE if n > FRAG_SIZE else 0  # 0: one unfragmented frame
        if count > 255:
            raise DeliveryError("tunnel", "frame of %d bytes is too long" % n)
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        await self._acquire(self._tx_locks, eh)
        try:
            if count:
                frame = memoryview(frame)
            i = 0
            while True:
                ez = self.ezsp
                tag = ez.next_tag()
                w = [Flag(), None]
                self._sent[tag] = w
                try:
                    try:
                        if count:
                            await ez.send_unicast(node, SE_PROFILE, cluster_id, _HUB_EP, dst_ep,
                                                  frame[i * FRAG_SIZE:(i + 1) * FRAG_SIZE],
                                                  APS_OPTIONS | APS_OPTION_FRAGMENT, (count << 8) | i)
                        else:
                            await ez.send_unicast(node, SE_PROFILE, cluster_id, _HUB_EP, dst_ep, frame, APS_OPTIONS, 0)
                    except Exception as e:  # status error, link down, EZSP timeout
                        raise DeliveryError("no_route", "sendUnicast: %r" % (e,))
                    if not await w[0].wait_ms(_left(deadline)):
                        raise DeliveryError("no_route", "no delivery report")
                finally:
                    self._sent.pop(tag, None)
                if w[1] != 0:
                    raise DeliveryError("no_route", "not delivered: status 0x%X" % w[1])
                if not count:
                    return
                self.counters["frag_tx"] += 1
                i += 1
                if i >= count:
                    return
        finally:
            self._release(self._tx_locks, eh)

    async def zcl_request(self, eui, dst_ep, cluster_id, frame, timeout_ms=_SEND_TIMEOUT_MS):
        """Send a client -> server ZCL frame (its TSN from next_tsn()) and
        return the device's answer with the same TSN (the whole ZCL frame).
        DeliveryError ("timeout" when no answer)."""
        eh = self._eh(eui)
        h, _o = Z.parse_header(frame)
        key = (eh, cluster_id, h.tsn)
        h = None  # the header object is not kept while the answer is awaited
        w = [Flag(), None]
        self._sent[key] = w
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        try:
            await self.zcl_send(eh, dst_ep, cluster_id, frame, timeout_ms)
            if not await w[0].wait_ms(_left(deadline)):
                raise DeliveryError("timeout", "no answer from %s" % eh)
        finally:
            self._sent.pop(key, None)
        return w[1]

    # -- receiving ----------------------------------------------------------------

    def _reassemble(self, sender, group, chunk):
        """One APS fragment; the whole ZCL frame (bytes) once complete."""
        self.counters["frag_rx"] += 1
        idx = group & 0xFF
        slot = None
        rx = self._rx
        for s in rx:
            if s[0] == sender:
                slot = s
                break
        if slot is None:
            if idx != 0:
                self.counters["frag_drop"] += 1  # the start was lost
                return None
            if not rx:
                rx = self._rx = []
            if len(rx) < _RX_SLOTS:
                slot = [None, T.Reassembler(_REASSEMBLY), 0]
            else:  # all busy: give up the oldest partial message
                slot = rx.pop(0)
                self.counters["frag_drop"] += 1
            rx.append(slot)
        r = slot[1]
        if idx == 0:
            r.reset()
            slot[0] = sender
            slot[2] = group >> 8
        try:
            m = r.add_block(0, idx, slot[2], chunk)  # one slot per sender
        except T.TunnelError:
            self.counters["frag_drop"] += 1
            m = False
        if m is None:
            return None
        # the slot and its buffer go once the message is out (or dropped): none stands idle
        rx.remove(slot)
        if not rx:
            del self._rx  # the class's () again
        return None if m is False else r.take()

    async def _ack_fragments(self):
        # the host's APS acks of incoming fragments (EmberZNet host
        # fragmentation: sendReply with the endpoints swapped and groupId
        # 0xFF00 | index), in arrival order. One task sends them all: a task
        # per fragment held its frame and an EZSP wait (~0.6 KB each) while
        # they queued for the NCP, which takes one command at a time anyway
        q = self._acks
        try:
            while q:
                node, aps = q.pop(0)
                try:
                    await self.ezsp.command("sendReply", node, (aps[0], aps[1], aps[3], aps[2], aps[4],
                                                                 0xFF00 | (aps[5] & 0xFF), aps[6]), b"")
                    self.counters["frag_ack"] += 1
                except Exception:
                    self.counters["frag_ack_fail"] += 1
        finally:
            del self._acks  # the class's None again: no task runs

    def _incoming(self, eh, aps, payload, node):
        """Called by the coordinator for every message from a known device."""
        profile, cluster, src_ep, _dst, options, group = aps[0], aps[1], aps[2], aps[3], aps[4], aps[5]
        if profile != SE_PROFILE:
            self.counters["zcl_bad"] += 1
            self._abnormal(eh, "profile")
            return
        if options & APS_OPTION_FRAGMENT:
            if node is not None:
                q = self._acks
                if q is None:  # no task sends them: one starts
                    q = self._acks = []
                    asyncio.create_task(self._ack_fragments())
                elif len(q) >= _MAX_ACKS:  # the NCP is not keeping up: the oldest goes
                    q.pop(0)
                    self.counters["frag_ack_fail"] += 1
                q.append((node, aps))
            payload = self._reassemble(eh, group, payload)
            if payload is None:
                return
        d = self.dev
        d[eh] = d.get(eh, 0) & ~0x1FF | 0x100 | src_ep
        try:
            h, o = Z.parse_header(payload)
        except Z.ZclError:
            self.counters["zcl_bad"] += 1
            self._abnormal(eh, "zcl")
            return
        self.counters["zcl_rx"] += 1
        if h.direction:
            w = self._sent.get((eh, cluster, h.tsn))
            if w is not None and w[1] is None:
                w[1] = bytes(payload)
                w[0].set()
                return
        fn = self.zcl_servers.get(cluster)
        if fn is None:  # answered at once: Default Response UNSUPPORTED_CLUSTER
            arg = None if h.direction else default_rsp(h, Z.UNSUPPORTED_CLUSTER)
            if arg is None:
                return
        else:
            arg = bytes(payload[o:])
        if self._busy >= _MAX_BUSY:
            self.counters["busy_drop"] += 1
            self._abnormal(eh, "flood")
            return
        self._busy += 1
        asyncio.create_task(self._serve(fn, eh, src_ep, cluster, h, arg))

    def _abnormal(self, eh, what):
        """A known device's malformed frame ("profile", "zcl") or one dropped
        in a flood ("flood"): the coordinator security-logs it (HAN tamper,
        docs/han.md); nothing here."""

    async def _serve(self, fn, eh, src_ep, cluster, h, p):
        try:
            r = p if fn is None else await fn(eh, src_ep, h, p)
            if isinstance(r, list):
                for f in r:
                    await self.zcl_send(eh, src_ep, cluster, f)
            elif r is not None:
                await self.zcl_send(eh, src_ep, cluster, r)
        except DeliveryError:
            self.counters["reply_fail"] += 1
        except Exception as e:
            self.counters["zcl_errors"] += 1
            log("han", "zcl 0x%04X from %s: %r" % (cluster, eh, e))
        finally:
            self._busy -= 1

    # -- Tunneling cluster ------------------------------------------------------

    def _tunnel_for(self, eh):
        """The device's tunnel: its own to the hub, (tunnel id | device ep <<
        16 | 1 << 24, device max incoming), else one the hub opened, as
        _client holds it; None: no tunnel."""
        for tid, peer in self.tunnels.peers.items():
            if peer == eh:
                t = self._tinfo.get(tid, 1 | MAX_MESSAGE << 8)
                return tid | (t & 0xFF) << 16 | 1 << 24, t >> 8
        return self._client.get(eh)

    def _fail_exchange(self, eh, why):
        w = self._exchange.get(eh)
        if w is not None and w[1] is None and w[2] is None:
            w[2] = DeliveryError("tunnel", why)
            w[0].set()

    async def _deliver(self, eh, src_ep, data, tid, server_side, h):
        """TransferData from eh on a valid tunnel: an exchange's answer, or a
        device-initiated message for on_tunnel_message, whose answer is sent
        here so that its delivery can be reported to on_tunnel_reply."""
        self.counters["tunnel_rx"] += 1
        w = self._exchange.get(eh)
        if w is not None and w[1] is None and w[2] is None and (
                w[3] is None or (w[3](data) if w[7] is None else w[3](data, w[7]))):
            w[1] = bytes(data)
            w[0].set()
            return None
        fn = self.on_tunnel_message
        if fn is None:
            self.counters["tunnel_unclaimed"] += 1
            return None
        r = await fn(eh, bytes(data), True)
        if not r:
            return None
        ok = False
        try:
            await self.zcl_send(eh, src_ep, T.CLUSTER_TUNNELING,
                                T.encode_transfer_data(bytearray(), self.next_tsn(), tid, r, server_side))
            ok = True
        except DeliveryError as e:
            self.counters["reply_fail"] += 1
            log("han", "tunnel answer to %s lost: %s" % (eh, e))
        finally:
            cb = self.on_tunnel_reply
            if cb is not None:
                cb(eh, ok)
        return None

    async def tunnel_server(self, eh, src_ep, h, p):
        """zcl_servers[0x0704]: both the server side (tunnels devices open to
        the hub: commands client -> server) and the client side (answers on
        tunnels the hub opened: server -> client). Returns the reply frame or
        None; a ZclError from a payload decoder is answered
        MALFORMED_COMMAND. One method: a function per command cost RAM."""
        if h.frame_type != Z.FT_CLUSTER:
            return None if h.direction or h.command_id == Z.DEFAULT_RSP else default_rsp(h, Z.UNSUP_GENERAL_COMMAND)
        if h.manufacturer is not None:
            return default_rsp(h, Z.UNSUP_MANUF_CLUSTER_COMMAND)
        c = h.command_id
        try:
            if h.direction:  # from a device that is the tunnel server
                # the id of the tunnel the hub opened to it (-1: none)
                t = self._client.get(eh)
                t = -1 if t is None else (t[0] if isinstance(t, tuple) else t) & 0xFFFF
                if c == T.TUN_REQUEST_TUNNEL_RSP:
                    # the device's answer to the RequestTunnel of tunnel_ask
                    w = self._exchange.get(eh)
                    if w is not None and w[2] is False:
                        w[1] = T.decode_request_tunnel_rsp(p)
                        w[0].set()
                elif c == T.TUN_TRANSFER_DATA_S2C:
                    # TransferData on a tunnel the hub opened to the device
                    tid, data = T.decode_transfer_data_payload(p)
                    if t != tid:
                        return reply(h, T.TUN_TRANSFER_DATA_ERROR_C2S,
                                     T.encode_transfer_data_error(tid, T.TRANSFER_NO_SUCH_TUNNEL), Z.FT_CLUSTER)
                    return await self._deliver(eh, src_ep, data, tid, False, h)
                elif c == T.TUN_TRANSFER_DATA_ERROR_S2C:
                    # the exchange waiting on the tunnel fails; the tunnel the hub opened is dropped
                    tid, st = T.decode_transfer_data_error(p)
                    self._client.pop(eh, None)
                    self._fail_exchange(eh, "device reports TransferDataError %d on tunnel %d" % (st, tid))
                elif c == T.TUN_CLOSURE_NOTIFICATION:
                    if t == T.decode_tunnel_id(p):
                        del self._client[eh]
                return None  # an unknown answer is ignored
            # from a device that is the tunnel client
            if c == T.TUN_REQUEST_TUNNEL:
                return self._request_tunnel(eh, src_ep, h, p)
            if c == T.TUN_CLOSE_TUNNEL:
                tid = T.decode_tunnel_id(p)
                if self.tunnels.peers.get(tid) == eh:
                    self.tunnels.close(tid)
                    self._tinfo.pop(tid, None)
                return default_rsp(h, Z.SUCCESS)
            if c == T.TUN_TRANSFER_DATA_C2S:
                # TransferData on a tunnel the device opened to the hub
                tid, data = T.decode_transfer_data_payload(p)
                try:
                    self.tunnels.check(tid, eh)
                except T.TunnelError as e:
                    return reply(h, T.TUN_TRANSFER_DATA_ERROR_S2C, T.encode_transfer_data_error(tid, e.status),
                                 Z.FT_CLUSTER)
                return await self._deliver(eh, src_ep, data, tid, True, h)
            if c == T.TUN_TRANSFER_DATA_ERROR_C2S:
                # the exchange waiting on the tunnel fails
                tid, st = T.decode_transfer_data_error(p)
                self._fail_exchange(eh, "device reports TransferDataError %d on tunnel %d" % (st, tid))
                return None
            return default_rsp(h, Z.UNSUP_CLUSTER_COMMAND)  # an unknown request is refused
        except Z.ZclError:
            return default_rsp(h, Z.MALFORMED_COMMAND)

    def _request_tunnel(self, eh, src_ep, h, p):
        """RequestTunnel from a device: GB-HRGP without flow control only."""
        proto, _manuf, flow, max_in = T.decode_request_tunnel(p)
        tid = 0xFFFF
        if proto != T.PROTO_GB_HRGP:
            st = T.TUNNEL_PROTOCOL_NOT_SUPPORTED
        elif flow:
            st = T.TUNNEL_FLOW_CONTROL_NOT_SUPPORTED
        else:
            t = self.tunnels.open(eh)
            if t is None:
                st = T.TUNNEL_NO_MORE_IDS
            else:
                tid, st = t, T.TUNNEL_SUCCESS
                self._tinfo[tid] = src_ep | max_in << 8
                # its tunnel is now the one to use (_tunnel_for prefers it); the
                # tunnel the hub opened stays while an exchange awaits its answer on it
                if eh not in self._exchange:
                    self._client.pop(eh, None)
        return reply(h, T.TUN_REQUEST_TUNNEL_RSP, T.encode_request_tunnel_rsp(tid, st, MAX_MESSAGE), Z.FT_CLUSTER)

    async def _send_capped(self, eh, ep, t, data, deadline):
        # A tunnel message as one of at most _SENDERS sends at once: data (a
        # one-item list, emptied once the slot is taken) as TransferData on
        # tunnel t (tunnel id | device ep << 16 | hub is server << 24; its
        # frame, header + a copy of data, made once the slot is taken), or
        # with t None data is the frame. A slot
        # is taken at once while fewer than _SENDERS sends run and none
        # waits; else the send waits with one Flag in _send_q (no chain of
        # coroutine frames down to the NCP, no frame encoded) until
        # _sender_done hands it a slot, first come first served. Eight
        # exchanges sending their fragmented TransferData at once held 1282
        # bytes each on a 32-bit port (916 with the slots)
        if self._senders < _SENDERS and not self._send_q:
            self._senders += 1
        else:
            f = Flag()
            q = self._send_q
            if not q:
                q = self._send_q = []
            q.append(f)
            ok = None
            try:
                ok = await f.wait_ms(max(1, _left(deadline)))
            finally:
                if not f.state:  # handed no slot (the deadline, or cancelled): out of the queue
                    q.remove(f)
                    if not q:
                        del self._send_q  # the class's () again
                elif ok is None:  # cancelled once handed a slot: the slot goes on
                    self._sender_done()
            if not f.state:
                raise DeliveryError("timeout", "no send slot in time")
            f = q = None
        try:
            data = data.pop()  # a one-item list: the caller holds nothing of it while it is sent
            if t is not None:
                data = T.encode_transfer_data(bytearray(), self.next_tsn(), t & 0xFFFF, data, t >> 24)
                ep = t >> 16 & 0xFF
            await self.zcl_send(eh, ep, T.CLUSTER_TUNNELING, data, max(1, _left(deadline)))
        finally:
            self._sender_done()

    async def tunnel_exchange(self, eui, data, timeout_ms=_EXCHANGE_TIMEOUT_MS, match=None, key=None):
        """Send `data` over the ZSE tunnel to the device (opening one if
        needed), return the device's next TransferData on it (bytes); with
        match(data) -> bool, the next one it accepts (the others, e.g. an
        alert the device sends meanwhile, go to on_tunnel_message); with a
        key too, the next one for which match(data, key) is true.
        `data` as a one-item list is taken out of it: then the exchange
        alone holds it, and lets go of it once sent.
        DeliveryError.reason: "no_route" | "tunnel" | "timeout"."""
        w = await self.tunnel_ask(eui, data, timeout_ms, match, None, key)
        try:
            ok = await w[0].wait_ms(_left(w[6]))
        except BaseException:  # cancelled
            self.tunnel_answer(w, None)
            raise
        return self.tunnel_answer(w, ok)

    async def tunnel_ask(self, eui, data, timeout_ms=_EXCHANGE_TIMEOUT_MS, match=None, flag=None, key=None):
        """tunnel_exchange in two parts, for a caller that awaits many
        answers with one waiter (the router's ESME deliveries: no coroutine
        frame and no Flag of the exchange's while the answer is awaited):
        this one takes the device's exchange lock, sends `data` as
        tunnel_exchange does and returns the exchange `w`; the answer (or a
        fault) sets `flag` (shared by the caller's exchanges); then
        `tunnel_left(w)` is the ms left before its deadline while neither
        came, and `tunnel_answer(w, True)` ends it (the lock released) and
        returns the answer or raises as tunnel_exchange ("timeout" when
        none came; `tunnel_answer(w, None)` ends it only, for a caller
        cancelled meanwhile). DeliveryError here too. match=False: no answer is
        awaited (tunnel_send). With a key, the answer is the TransferData
        for which match(data, key) is true (a function and its argument:
        no closure made per exchange)."""
        if isinstance(data, list):
            data = data.pop()
        eh = self._eh(eui)
        self._node(eh)
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        await self._acquire(self._locks, eh)
        # [Flag, answer, error, match, eh, holds the lock, deadline, key]
        w = [flag, None, None, match, eh, True, deadline, key]
        try:
            self.counters["pushes" if match is False else "exchanges"] += 1
            # the device's own tunnel, else one the hub opens: RequestTunnel,
            # its answer awaited here on a Flag of the exchange's own (no
            # frames below this one)
            t = self._tunnel_for(eh)
            if t is None:
                ep = self.dev.get(eh, 0)
                ep = ep & 0xFF if ep & 0x100 else 1  # the one it last sent from, else 1
                w[0] = Flag()
                w[2] = False  # awaiting the RequestTunnelResponse (tunnel_server's mark)
                self._exchange[eh] = w
                # the hub's RequestTunnel: GB-HRGP, no manufacturer, no flow control
                f = Z.Header(T.TUN_REQUEST_TUNNEL, self.next_tsn(), Z.FT_CLUSTER, 0, True).encode()
                T.encode_request_tunnel(T.PROTO_GB_HRGP, _NO_MANUF, False, MAX_MESSAGE, f)
                try:
                    f = [f]  # emptied by _send_capped: not held here while the answer is awaited
                    await self._send_capped(eh, ep, None, f, deadline)
                    if not await w[0].wait_ms(_left(deadline)):
                        raise DeliveryError("tunnel", "no RequestTunnelResponse from %s" % eh)
                finally:
                    w[2] = None
                    self._exchange.pop(eh, None)
                tid, st, max_in = w[1]
                w[1] = None
                w[0].clear()
                if flag is not None:
                    w[0] = flag
                if st != T.TUNNEL_SUCCESS:
                    raise DeliveryError("tunnel", "%s refused the tunnel: status %d" % (eh, st))
                max_in = max_in or MAX_MESSAGE
                t = tid | max_in << 16 if ep == 1 and max_in < 0x4000 else (tid | ep << 16, max_in)
                self._client[eh] = t
            if isinstance(t, tuple):
                t, max_in = t
            else:  # a tunnel the hub opened to endpoint 1
                t, max_in = t & 0xFFFF | 1 << 16, t >> 16
            if len(data) > max_in:
                raise DeliveryError("tunnel", "%d bytes exceed the device's %d" % (len(data), max_in))
            if match is not False:
                if w[0] is None:
                    w[0] = Flag()
                self._exchange[eh] = w
            data = [data]  # _send_capped takes it out: not held here while it is sent
            await self._send_capped(eh, 0, t, data, deadline)
        except BaseException:
            self.tunnel_answer(w, None)
            raise
        return w

    def tunnel_left(self, w):
        """ms left before the exchange's deadline while neither its answer
        nor a fault came; 0 once one came or the deadline passed."""
        if w[1] is not None or w[2] is not None:
            return 0
        return max(0, _left(w[6]))

    def tunnel_answer(self, w, answered):
        eh = w[4]
        if self._exchange.get(eh) is w:
            del self._exchange[eh]
        if w[5]:
            w[5] = None
            self._release(self._locks, eh)
        if answered is None:
            return None
        if not answered or w[1] is None and w[2] is None:
            raise DeliveryError("timeout", "no answer from %s" % eh)
        if w[2] is not None:
            raise w[2]
        return w[1]

    async def tunnel_send(self, eui, data, timeout_ms=_EXCHANGE_TIMEOUT_MS):
        """Send `data` over the ZSE tunnel to the device (its own tunnel to
        the hub, or one the hub opens) without awaiting an answer: a GSME's
        response routed back to the PPMID that sent the command. Returns when
        the NCP reports it delivered; DeliveryError as tunnel_exchange."""
        self.tunnel_answer(await self.tunnel_ask(eui, data, timeout_ms, False), None)

    # -- device versions (CCS04/CCS05 active_devices: app and stack version) --

    def on_device_joined(self, eh):
        """After a join or rejoin: read the device's Basic application and
        stack versions a second later (one reader task serves every device
        waiting; a sleepy device answers when it polls)."""
        q = self._reading
        if q is None:
            q = self._reading = [""]
            asyncio.create_task(self._read_versions())
        elif eh in q:  # being read or waiting
            return
        q.append(eh)
        q.append(time.ticks_add(time.ticks_ms(), _VERSIONS_DELAY_S * 1000 + 3) & ~3)

    async def _read_versions(self):
        # the devices one at a time, the one due first first; a device that
        # does not answer is tried again 2 s, then 3 s later (3 attempts).
        # self._reading, made with the task and deleted when it ends: the
        # device being read ("" between reads), then for each device waiting
        # its eui hex and a small int, the ms it is due (rounded up to 4 ms)
        # | its attempts so far (one flat list: no tuple a device)
        q = self._reading
        try:
            while len(q) > 1:
                i = 1
                for j in range(3, len(q), 2):
                    if time.ticks_diff(q[j + 1], q[i + 1]) < 0:
                        i = j
                w = time.ticks_diff(q[i + 1] & ~3, time.ticks_ms())
                if w > 0:
                    await asyncio.sleep_ms(w)
                    continue
                eh = q[0] = q.pop(i)
                n = q.pop(i) & 3
                # one attempt: done is False when the device is to be asked again
                f = Z.Header(Z.READ_ATTRIBUTES, self.next_tsn()).encode()
                Z.encode_read_attributes((0x0001, 0x0002), f)
                done = True
                try:
                    ep = self.dev.get(eh, 0)
                    a = await self.zcl_request(eh, ep & 0xFF if ep & 0x100 else 1, ZC.CLUSTER_BASIC, f)
                    h, o = Z.parse_header(a)
                    if h.command_id == Z.READ_ATTRIBUTES_RSP and h.frame_type == Z.FT_GLOBAL and h.manufacturer is None:
                        # bit 8: application version known (bits 0-7), bit 17: stack version (bits 9-16)
                        v = 0
                        for a_id, st, _t, val in Z.decode_read_attributes_rsp(a, o):
                            if st == Z.SUCCESS and a_id in (1, 2) and isinstance(val, int):
                                v |= (0x100 | val & 0xFF) << (9 * (a_id - 1))
                        self.dev[eh] = self.dev.get(eh, 0) & 0x1FF | 0x200 | v << 10
                except (DeliveryError, Z.ZclError):
                    done = False
                finally:
                    q[0] = ""
                    a = h = val = None  # the answer, its header and values not kept while the next waits
                if not done and n < 2:
                    q.append(eh)
                    q.append(time.ticks_add(time.ticks_ms(), _VERSIONS_DELAY_S * 1000 * (n + 2) + 3) & ~3 | n + 1)
        finally:
            q = None  # a finished task's frame keeps its locals: not the list
            del self._reading  # the class's None again: no reader

    def device_versions(self, eui):
        """(application version, stack version) from the device's Basic
        cluster, read after it joined; None items when it does not say;
        None when not read (yet)."""
        try:
            v = self.dev.get(eui_hex(eui), 0)
        except ValueError:
            return None
        if not v & 0x200:
            return None
        v >>= 10
        return (v & 0xFF if v & 0x100 else None, v >> 9 & 0xFF if v & 0x20000 else None)

    def forget(self, eh):
        """A device left the log: drop its tunnels and state."""
        for tid, peer in list(self.tunnels.peers.items()):
            if peer == eh:
                self.tunnels.close(tid)
                self._tinfo.pop(tid, None)
        self._client.pop(eh, None)
        self.dev.pop(eh, None)
        q = self._reading
        for i in range(len(q) - 2 if q is not None else 0, 0, -2):
            if q[i] == eh:
                q.pop(i)
                q.pop(i)

