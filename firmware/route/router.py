# The router: every remote-party GBCS frame (WAN or the HHT's send_gbcs) goes
# by the recipient EUI-64 in its grouping header to
#   the CHF (chf.handle), the GPF (gpf.handle),
#   a tunnel-connected device in the CHF Device Log (ESME, HCALCS, PPMID ...)
#     over the ZSE tunnel (coordinator.tunnel_ask, in a task of its own
#     while the tunnel is opened and the frame sent; then the answer is
#     awaited as a record, with no task of its own, by the one task that
#     collects every delivery's answer: the response or 0x8F84 leaves
#     later through emit), or
#   the GSME's persistent command buffer (route/buffer.py), from which the
#     sleepy GSME GETs it over the tunnel;
# and a frame for an EUI that is none of these is refused and written to the
# CHF security log. Device-originated messages (ESME alerts, the GSME's PUT
# responses and alerts) leave through emit unchanged, except a GSME response
# to a command a HAN device sent (a PPMID's top-up: back over the HAN, KV
# "han_out" until delivered) or the HHT sent (kept for the HHT, KV
# "hht_replies", local-port route_replies). See docs/routing.md.
#
# Only the grouping header is parsed (gbcs.frame, zero-copy); the router
# never opens end-to-end protected content addressed to others.
import asyncio
import os
from binascii import unhexlify

from micropython import const

import codes
from gbcs import dlms
from gbcs import frame as gframe
from counters import Counters
from flag import Flag
from han import tunnel
from ids import EPOCH_2000, eui_hex, hex_text
from log import KindError, log
from route.buffer import BufferError, CommandBuffer

# device types (CHF Device Log; PROTOCOLS.md section 2)
_GSME = const(0)

_MC_ESME_UNDELIVERED = const(0x00D5)  # Failure to Deliver Remote Party Message to ESME
MC_GENERIC_NON_CRITICAL = const(0x1001)  # message code of an alert with no use case of its own

_COUNTERS = ("chf", "gpf", "tunnel", "buffered", "unknown", "refused_full", "undelivered", "device_messages",
             "gets", "puts", "expired", "emitted", "emitted_response", "emitted_alert", "bad_device_messages",
             "recovered_inflight", "get_answers_lost", "local_responses", "local_delivered", "local_lost",
             "hht_responses")
_LOCAL_RETRY_S = const(10)  # retry period of the GSME responses waiting for their HAN device
_HHT_MAX = const(16)  # HHT commands for the GSME (and their responses) kept
_STARTING = const(2)  # ESME deliveries in their starting phase (tunnel opened, frame sent) at once
_LONGEST_MS = const(600000)  # the longest esme_timeout_ms (RANGES)
_INFLIGHT = const("%s/esme_inflight/%s")  # an in-flight file (store root, message id hex); "": their folder
DEFAULTS = {
    "esme_timeout_ms": 10000,  # tunnel exchange with an ESME (no answer -> 0x8F84)
    "capacity": 32,  # messages per sleepy device
    "max_bytes": 1200,  # per message
    "expiry_s": 86400,  # unretrieved GSME command -> 0x819D
    "expiry_check_s": 30,  # how often the expiry job looks
    "max_deliveries": 8,  # tunnel deliveries taken at once, waiting to start, starting or awaiting the answer (beyond: inline)
}
# route_config's ranges (inclusive): name, (lo, hi), ... (in flash when frozen)
RANGES = const(("esme_timeout_ms", (100, 600000), "capacity", (1, 256), "max_bytes", (64, 4096),
                 "expiry_s", (1, 2678400), "expiry_check_s", (1, 3600), "max_deliveries", (1, 64)))


def _setting_ok(k, v):
    if k not in DEFAULTS:
        return False
    lo, hi = RANGES[RANGES.index(k) + 1]
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


class RouteError(KindError):
    """A frame the router refuses, raised as RouteError(kind, message): kind
    UnknownRecipient (the recipient EUI-64 is neither the CHF, the GPF nor
    in the Device Log) or BufferRefused (the sleepy device's queue is full
    or the message is too long)."""


def message_id(f):
    """Originator (8) | target (8) | CRA (1) | counter (8): how GBCS alerts
    identify a remote-party message (as in the RTDS 0x8F2C alert body)."""
    return bytes(f.originator) + bytes(f.recipient) + bytes((f.cra,)) + f.counter.to_bytes(8, "big")


def _key(eui, counter):
    return "%s%016x" % (hex_text(eui), counter)


def _answers(reply, mid):
    # the match of a delivery (tunnel_ask's key: the command's message id)
    try:
        g = gframe.parse(reply)
    except ValueError:
        return False
    return g.cra == gframe.CRA_RESPONSE and bytes(g.originator) == mid[8:16] and g.counter.to_bytes(8, "big") == mid[17:25]


def gpf_alert(parties, alert_code, t2000):
    """A GPF (GBZ) alert with no components: alert code and timestamp."""
    from gbcs import gbz  # rare: loaded when the first alert is built
    payload = gbz.build([], alert_code=alert_code, timestamp=max(0, int(t2000)) & 0xFFFFFFFF)
    return bytes(parties.protect_alert(MC_GENERIC_NON_CRITICAL, payload))


class Router:
    """Delivers remote-party frames by recipient: route(frame) -> (response or
    None, [alerts]) (async). Its parts: the store, the CHF (`chf.handle`,
    `chf.dlms_alert`), the identity (own EUIs, GPF parties), the Device Log,
    the event and security logs, utc2000() -> UTC seconds since 2000; and,
    None where a test leaves them out, the GPF service, the coordinator
    (`tunnel_ask`/`tunnel_left`/`tunnel_answer`: tunnel_exchange in
    parts; `tunnel_exchange` for a delivery awaited inline) and
    emit(frame, kind) (the WAN outbox)."""

    def __init__(self, store, chf, identity, device_log, event_log, security_log, utc2000,
                 gpf=None, coordinator=None, emit=None, cfg=None):
        self.store = store
        self.chf = chf
        self.identity = identity
        self.device_log = device_log
        self.event_log = event_log
        self.security_log = security_log
        self.gpf = gpf
        self.coordinator = coordinator
        self.emit = emit
        c = dict(DEFAULTS)
        for k, v in store.kv("route").get("cfg", {}).items():
            # flash may hold a value route_config would refuse: the default
            # stays, and the event log says so
            if _setting_ok(k, v):
                c[k] = v
            else:
                log("route", "stored setting %s=%r refused: default used" % (k, v))
                try:
                    event_log.append(codes.EV_BAD_SETTING, ("route." + str(k)).encode()[:32])
                except ValueError:
                    pass
        if cfg:
            c.update(cfg)
        self.cfg = c
        self.utc2000 = utc2000
        self.buffer = CommandBuffer(
            store.root + "/gbuf", c["capacity"], c["max_bytes"], c["expiry_s"], store.stats
        )
        self.counters = Counters(_COUNTERS)
        # eui hex -> seqs (None: "nothing queued") of GET answers whose
        # delivery the coordinator has not reported yet, oldest first
        self._replies = {}
        self.unsent = None  # late messages held in RAM when there is no emit (a list once one is)
        self.last_esme_ms = None  # time inside tunnel_exchange for the last ESME command
        self.deliveries = 0  # tunnel deliveries taken (waiting to start, starting or awaiting the answer)
        # deliveries not started yet, oldest first: (EUI hex, message id,
        # deadline in ticks), one record each, no task, no coroutine frame
        # and no frame (it waits in its in-flight file, read back when it
        # starts). _start starts them, at most _STARTING in their
        # starting phase at once and one at a time per device (_running: the
        # EUI of each delivery whose task runs)
        self._waiting = []
        self._running = []
        self._starting = 0
        # deliveries sent, awaiting their answers: three slots each in one
        # flat list (the coordinator's exchange, message id, ticks at the
        # start; the EUI is the message id's target, the deadline the
        # exchange's), no tuple, task or coroutine frame; one task
        # (_collect, while any is left: the list is None when it does not
        # run) waits on _answered, which the coordinator sets at each answer
        self._answering = None
        self._answered = Flag()
        # ESME deliveries in flight: one file each in the folder
        # ROOT/esme_inflight, named by the message id in hex (originator |
        # target | CRA | counter), holding the frame (a waiting delivery
        # reads it back when it starts), removed once the response or 0x8F84
        # is emitted. Files left by a power cut get their 0x8F84 at boot
        # (recover_inflight; so do the keys of KV "esme_inflight", the form
        # before). No RAM copy of the names or frames
        try:
            os.mkdir((_INFLIGHT % (self.store.root, ""))[:-1])
        except OSError:
            pass  # there already
        # GSME responses for a HAN device (KV "han_out": message id hex ->
        # [EUI hex, frame hex, time stored]) until it has them (or expiry_s); commands the HHT
        # sent to the GSME (KV "hht_cmds": originator | counter hex -> time)
        # and their responses (KV "hht_replies": same key -> frame hex). Read
        # here (their RAM copies are the store's); a KV object made at each use
        for name in ("han_out", "hht_cmds", "hht_replies"):
            store.kv(name)
        self.wake = Flag()
        device_log.on_change(self._on_device_log)
        self.buffer.on_change(self._pending_changed)
        for eh, n in self.buffer.devices().items():
            self._pending_changed(eh, n)

    def _pending_changed(self, eh, n):
        # the GPF mirror's "tunnel message pending" flag follows the GSME's queue
        if self.gpf is not None:
            self.gpf.set_tunnel_pending(n > 0)

    # -- helpers -------------------------------------------------------------------

    def _t2000(self):
        return self.utc2000() if self.utc2000 else 0

    def _log(self, lg, code, data=b""):
        t = self._t2000()
        try:
            lg.append(code, bytes(data[:255]), t if t > 0 else 0)
        except Exception as e:  # noqa: BLE001 - logging never stops routing
            log("route", "log %s failed: %r" % (lg.name, e))

    async def _emit(self, frame, kind):
        emit = self.emit
        self.counters["emitted"] += 1
        k = "emitted_" + kind
        if k in self.counters:
            self.counters[k] += 1
        if emit is None:
            u = self.unsent
            if u is None:
                u = self.unsent = []
            elif len(u) >= 16:
                u.pop(0)
            u.append((kind, bytes(frame)))
            log("route", "no emit: %s of %d bytes held in RAM" % (kind, len(frame)))
            return
        r = emit(bytes(frame), kind)
        if r is not None and hasattr(r, "send"):
            await r

    # -- remote-party frames --------------------------------------------------

    async def route(self, data, tag=None, frame=None):
        """(response or None, [alerts]). A frame for a tunnel
        device is handed to a task of its own when there is an emit: (None,
        []) at once, its response (or 0x8F84) emitted when it comes. tag:
        the link frame id (bytes) the frame came under, None from the local
        port: the CHF and GPF answer an exact resend under the same tag from
        their stored last answer (docs/gbcs-usecases.md). frame: `data`
        parsed already (gbcs.frame.parse), passed on rather than parsed again."""
        return await self._route(data, tag, wait=False, f=frame)

    async def route_wait(self, data, source=None):
        """As route(), but a tunnel delivery is awaited and its response or
        0x8F84 returned (for callers that want the answer in hand).
        source="hht": a command for the GSME from the HHT, whose response is
        kept for the HHT (route_replies) instead of going to the WAN."""
        return await self._route(data, wait=True, source=source)

    async def _route(self, data, tag=None, wait=False, f=None, source=None):
        # the frame is parsed here once; the CHF, the GPF, the buffer and the
        # tunnel get the parsed view
        try:
            if f is None:
                f = gframe.parse(data)
        except gframe.FrameError:
            self._log(self.security_log, codes.EV_MALFORMED)
            raise
        rh = eui_hex(f.recipient)
        ident = self.identity
        if bytes(f.recipient) == ident.chf["eui"]:
            self.counters["chf"] += 1
            return self.chf.handle(f, tag)
        gpf = self.gpf
        if gpf is not None and bytes(f.recipient) == ident.gpf["eui"]:
            self.counters["gpf"] += 1
            try:
                return gpf.handle(f, tag)
            except ValueError:
                for a in gpf.take_alerts():  # the GPF's alert for an authentication refusal
                    await self._emit(a, "alert")
                raise
        dtype = self.device_log.type_of(rh)
        if dtype is None:
            self.counters["unknown"] += 1
            self._log(self.security_log, codes.EV_UNKNOWN_RECIPIENT, message_id(f))
            raise RouteError("UnknownRecipient", "recipient %s is not in the CHF Device Log" % rh)
        if dtype == _GSME:
            # the Device Log's own text: the queue is keyed by it (no copy)
            return self._buffer(self.device_log.key(rh) or rh, f, data, source)
        if not wait and self.emit is not None and self.deliveries < self.cfg["max_deliveries"]:
            # on flash before the WAN acks the frame: a cut during the
            # exchange leaves the record, and the boot emits its 0x8F84
            # the task holds the frame and its message id, not the parsed
            # view (a Frame of ~360 bytes on a 32-bit port)
            mid = message_id(f)
            rh = self.device_log.key(rh) or rh  # the Device Log's own text: _waiting and _running share it
            data = bytes(data)
            # the record holds the frame only when the delivery must wait
            # (no starting slot, or its device busy): one that starts at once
            # takes it along, and an empty file is a smaller commit (fewer
            # compactions of the folder)
            now = self._starting < _STARTING and rh not in self._running
            path = _INFLIGHT % (self.store.root, hex_text(mid).upper())
            with open(path, "wb") as fh:  # an OSError refuses the frame (not ACKed)
                if not now:
                    fh.write(data)
            self.deliveries += 1
            # esme_timeout_ms counts from here, waiting to start included;
            # started at once it takes its frame along, else the frame waits
            # on flash only
            q = self._waiting
            q.append((rh, mid, asyncio.ticks_add(asyncio.ticks(), self.cfg["esme_timeout_ms"])))
            self._start(mid, data)
            if now and q and q[-1][1] is mid:  # not started after all: the frame to the file
                with open(path, "wb") as fh:
                    fh.write(data)
            return None, []
        return await self._tunnel(rh, message_id(f), data)

    async def recover_inflight(self):
        """ESME deliveries a power cut interrupted (files left in
        ROOT/esme_inflight, and keys left in KV esme_inflight, where they
        were before): each gets its 0x8F84 (event log, reason "power")
        through emit, then its record is deleted. Not retried: the meter
        may have executed the command already. -> how many."""
        if self.emit is None:
            return 0  # kept for a boot with an outbox
        n = 0
        old = None
        try:
            os.stat(self.store.root + "/esme_inflight.kv")
            old = self.store.kv("esme_inflight", keep=False)
            keys = list(old.keys())
        except OSError:
            keys = []
        keys += os.listdir(_INFLIGHT % (self.store.root, ""))
        for key in keys:
            try:
                mid = bytes(int(key[i : i + 2], 16) for i in range(0, len(key), 2))
            except ValueError:
                mid = b""
            if len(mid) == 25:
                self.counters["recovered_inflight"] += 1
                await self._emit(self._undelivered(key[16:32], mid, "power"), "alert")
                n += 1
            if old is not None and key in old:
                old.delete(key)
            else:
                os.remove(_INFLIGHT % (self.store.root, key))
        return n

    def _buffer(self, eh, f, data, source=None):
        try:
            self.buffer.put(eh, data, self._utc())
        except BufferError as e:
            self.counters["refused_full"] += 1
            self._log(self.event_log, codes.EV_BUFFER_FULL, message_id(f))
            raise RouteError("BufferRefused", str(e))
        self.counters["buffered"] += 1
        if source == "hht":
            kv = self.store.kv("hht_cmds")
            if len(kv) >= _HHT_MAX:  # the oldest mark goes: its response then goes to the WAN
                kv.delete(min(kv.keys(), key=lambda k: kv.get(k, 0)))
            kv.set(_key(f.originator, f.counter), self._t2000())
        if self.gpf is not None:
            try:
                self.gpf.tap_off(f)  # keeps its copy only for the TOM message codes
            except Exception as e:  # noqa: BLE001 - the command is buffered whatever the GPF says
                log("route", "tap_off failed: %r" % (e,))
        return None, []

    def _utc(self):
        # buffer expiry times are UTC Unix seconds
        return self._t2000() + EPOCH_2000

    def _start(self, mid=None, data=None):
        # the waiting deliveries started in order as tasks while fewer than
        # _STARTING are starting, skipping a device with a delivery running
        # (the coordinator's exchange lock would hold it in a task). The
        # delivery of message id `mid` (just taken) gets `data`, its frame;
        # the others read theirs from their in-flight file
        q = self._waiting
        i = 0
        while self._starting < _STARTING and i < len(q):
            d = q[i]
            if d[0] in self._running:
                i += 1
                continue
            del q[i]
            self._running.append(d[0])
            self._starting += 1
            # the frame in a one-item list: tunnel_ask takes it out and lets
            # go of it once sent, so no copy stays while the answer is awaited
            asyncio.create_task(self._send(d[0], d[1], [data if d[1] is mid else None], d[2]))

    async def _send(self, eh, mid, data, deadline):
        # a delivery's starting phase, in a task of its own (at most
        # _STARTING at once): the tunnel opened if needed and the frame sent
        # (coordinator.tunnel_ask). Then the delivery awaits its answer as
        # three slots in _answering (exchange, message id, ticks at the
        # start), and this task ends; a delivery not sent goes there too
        # (None, message id, the reason) for its 0x8F84
        w = None
        reason = "no_route"
        try:
            self.counters["tunnel"] += 1
            c = self.coordinator
            ms = asyncio.ticks_diff(deadline, asyncio.ticks())
            if c is not None and ms <= 0:  # waited its whole time to start: not sent
                reason = "timeout"
            elif c is not None:
                if data[0] is None:  # it waited: its frame from its in-flight file
                    try:
                        with open(_INFLIGHT % (self.store.root, hex_text(mid).upper()), "rb") as fh:
                            data[0] = fh.read()
                        fh = None  # a closed file keeps its cache: not held while the frame is sent
                    except OSError as e:
                        log("route", "frame for %s not read: %r" % (eh, e))
                reason = "flash"  # not read back (its 0x8F84 says so)
                if data[0]:
                    reason = asyncio.ticks()
                    try:
                        w = await c.tunnel_ask(eh, data, ms, _answers, self._answered, mid)
                    except OSError as e:  # han.coordinator.DeliveryError and link faults
                        reason = getattr(e, "reason", None) or "tunnel"
                    except ValueError as e:
                        reason = "tunnel"
                        log("route", "tunnel to %s unusable: %r" % (eh, e))
        except BaseException as e:  # cancelled, or a fault: its in-flight file stays (the next boot's 0x8F84)
            self._running.remove(eh)
            self.deliveries -= 1
            if not isinstance(e, Exception):
                raise
            log("route", "delivery to %s failed: %r" % (eh, e))
            return
        finally:
            data = None
            self._starting -= 1  # sent (or failed): the next may start
            self._start()
        q = self._answering
        if q is not None:
            # a slice assignment grows the list to what it holds (extend
            # doubles it: 32 slots for 8 deliveries' 24)
            q[len(q) :] = (w, mid, reason)
            self._answered.set()  # its deadline counted in
        else:
            self._answering = [w, mid, reason]
            asyncio.create_task(self._collect())

    async def _collect(self):
        # the one task for every delivery awaiting its answer (_answering):
        # woken by the coordinator (an exchange's answer or fault sets
        # _answered) or at the earliest deadline; each answered or late
        # delivery's exchange is ended (_ended: tunnel_answer), its response
        # or 0x8F84 emitted, then its in-flight file removed. Ends when
        # none is left. Its coroutine frame holds few locals: the scan is
        # _ended's (a plain function)
        q = self._answering
        try:
            while q:
                self._answered.clear()
                d = self._ended(q)
                if isinstance(d, int):  # none ended: the ms to the earliest deadline
                    await self._answered.wait_ms(d)
                    continue
                try:
                    if d[2] is not None:
                        await self._emit(d[2], "response")
                    else:
                        await self._emit(self._undelivered(d[0], d[1], d[3]), "alert")
                    # answered (or 0x8F84) on flash in the outbox; a resend
                    # of the same command (same message id, same file)
                    # waiting for this one keeps the file
                    for w in self._waiting:
                        if w[1] == d[1]:
                            break
                    else:
                        os.remove(_INFLIGHT % (self.store.root, hex_text(d[1]).upper()))
                except Exception as e:  # noqa: BLE001 - a failed delivery never takes the router down
                    log("route", "delivery to %s failed: %r" % (d[0], e))
                finally:
                    self._running.remove(d[0])
                    self.deliveries -= 1
                    self._start()
                # after an end (time passed emitting) all are looked at again first
        except BaseException:  # cancelled: every exchange ended, no outcome
            while q:
                if q[0] is not None:
                    self.coordinator.tunnel_answer(q[0], None)
                self._running.remove(eui_hex(q[1][8:16]))
                self.deliveries -= 1
                del q[:3]
            raise
        finally:
            self._answering = None

    def _ended(self, q):
        # the first delivery in q (_answering) whose exchange ended (answered,
        # failed or late), taken out of q with its exchange ended: (EUI hex,
        # message id, response or None, the reason for its 0x8F84); else
        # the ms before the earliest deadline
        c = self.coordinator
        due = _LONGEST_MS
        for i in range(0, len(q), 3):
            w = q[i]
            left = 0 if w is None else c.tunnel_left(w)
            if left > 0:
                due = min(due, left)
                continue
            mid = q[i + 1]
            reason = q[i + 2]  # the reason it was not sent, else its start (ticks)
            del q[i : i + 3]
            eh = eui_hex(mid[8:16])
            resp = None
            if w is not None:
                try:
                    resp = c.tunnel_answer(w, True)
                    self.last_esme_ms = asyncio.ticks_diff(asyncio.ticks(), reason)
                    resp = bytes(resp) if resp is not None and len(resp) else None
                    reason = "tunnel"
                except OSError as e:  # han.coordinator.DeliveryError ("timeout", "tunnel")
                    reason = getattr(e, "reason", None) or "tunnel"
                except ValueError as e:  # a malformed reply from the device
                    reason = "tunnel"
                    log("route", "tunnel reply from %s unusable: %r" % (eh, e))
            return eh, mid, resp, reason
        return due

    async def _tunnel(self, eh, mid, data):
        # -> (response or None, [0x8F84]): a delivery awaited inline
        # (route_wait, or beyond max_deliveries)
        self.counters["tunnel"] += 1
        c = self.coordinator
        reason = "no_route"
        resp = None
        if c is not None:
            t0 = asyncio.ticks()
            try:
                resp = await c.tunnel_exchange(eh, data, self.cfg["esme_timeout_ms"], _answers, mid)
                self.last_esme_ms = asyncio.ticks_diff(asyncio.ticks(), t0)
                if resp is not None and len(resp):
                    resp = bytes(resp)
                else:
                    resp = None
                    reason = "tunnel"
            except OSError as e:  # han.coordinator.DeliveryError and link faults
                reason = getattr(e, "reason", None) or "tunnel"
            except ValueError as e:  # a malformed reply from the device
                reason = "tunnel"
                log("route", "tunnel reply from %s unusable: %r" % (eh, e))
        return resp, [] if resp is not None else [self._undelivered(eh, mid, reason)]

    def _undelivered(self, eh, mid, reason):
        self.counters["undelivered"] += 1
        self._log(self.event_log, codes.ALERT_ESME_UNDELIVERED, mid + reason.encode())
        log("route", "undelivered to %s (%s): 0x8F84" % (eh, reason))
        # 0x8F84 Failure to Deliver Remote Party Message to ESME (message
        # code 0x00D5); body = originator | target | CRA | counter (25 bytes)
        return self.chf.dlms_alert(_MC_ESME_UNDELIVERED, codes.ALERT_ESME_UNDELIVERED, (dlms.OCTET_STRING, mid))

    # -- device-initiated tunnel messages ---------------------------------

    async def on_tunnel_message(self, eui_hex, data, reported=False):
        """coordinator.on_tunnel_message: GSME GET/PUT, or a GBCS frame from
        a tunnel device. Returns the bytes to send back, or None. reported:
        the caller reports the answer's delivery to on_tunnel_reply."""
        eh = eui_hex.upper()
        if eh not in self.device_log:
            self.counters["bad_device_messages"] += 1
            self._log(self.security_log, codes.EV_UNKNOWN_RECIPIENT, b"tunnel from " + eh.encode())
            return None
        if len(data) and data[0] in (tunnel.GSME_GET, tunnel.GSME_PUT, tunnel.GSME_RESPONSE):
            try:
                kind, _n, msg = tunnel.decode_gsme(data)
            except tunnel.GsmeError as e:
                self._bad(eh, e)
                return None
            if kind == tunnel.GSME_GET:
                # the GSME asks again: it has the message handed out before
                # (if any, and if its answer was reported delivered); that
                # one leaves the flash, the next is offered. While an answer
                # is still on its way the head is offered again, not confirmed.
                self.counters["gets"] += 1
                waiting = self._replies.get(eh)
                try:
                    if not waiting:
                        self.buffer.confirm(eh)
                    msg, left = self.buffer.offer(eh)
                except (OSError, BufferError) as e:  # flash trouble: no answer, the GSME asks again
                    log("route", "GET from %s not served: %r" % (eh, e))
                    return None
                if reported:
                    self._replies.setdefault(eh, []).append(None if msg is None else self.buffer.head(eh))
                return tunnel.encode_get_response(min(left, 255), msg)
            if kind == tunnel.GSME_PUT:
                # forwarded (persisted in the outbox) first, then the message
                # in hand confirmed: a cut in between re-offers it, which the
                # GSME refuses by its originator counter
                self.counters["puts"] += 1
                try:
                    await self._device_message(eh, bytes(msg), True)
                except OSError as e:  # not persisted: the command stays in hand
                    log("route", "PUT from %s not forwarded: %r" % (eh, e))
                    return None
                try:
                    self.buffer.confirm(eh)
                except OSError as e:  # still on flash: offered again, refused by its counter
                    log("route", "confirm for %s failed: %r" % (eh, e))
                return None
            self._bad(eh, "a GET response sent to the hub")
            return None
        await self._device_message(eh, bytes(data), False)
        return None

    def on_tunnel_reply(self, eui_hex, delivered):
        """coordinator.on_tunnel_reply: the answer to a GET (in order) did or
        did not reach the GSME. Lost: the command goes back to the head of
        its queue, offered again at the next GET (a copy that did arrive is
        refused by the GSME by its originator counter)."""
        eh = eui_hex.upper()
        w = self._replies.get(eh)
        if not w:
            return
        seq = w.pop(0)
        if not w:
            del self._replies[eh]
        if delivered:
            self.buffer.hand_over(eh, seq)
        elif self.buffer.unhand(eh, seq):
            self.counters["get_answers_lost"] += 1
            log("route", "GET answer to %s lost: offered again at the next GET" % eh)

    def _bad(self, eh, why):
        self.counters["bad_device_messages"] += 1
        self._log(self.security_log, codes.EV_BAD_DEVICE_MESSAGE, eh.encode())
        log("route", "bad tunnel message from %s: %s" % (eh, why))

    async def _device_message(self, eh, msg, from_gsme):
        try:
            f = gframe.parse(msg)
        except gframe.FrameError as e:
            self._bad(eh, e)
            return
        if eui_hex(f.originator) != eh:
            self._bad(eh, "originator %s is not the sender" % eui_hex(f.originator))
            return
        self.counters["device_messages"] += 1
        if f.cra == gframe.CRA_COMMAND:
            # a device's command to another party (e.g. a PPMID to the GSME)
            try:
                resp, alerts = await self.route(msg, frame=f)
            except ValueError as e:
                log("route", "device command from %s refused: %r" % (eh, e))
                return
            if resp is not None:
                await self._emit(resp, "response")
            for a in alerts:
                await self._emit(a, "alert")
            return
        if not (from_gsme and f.cra == gframe.CRA_RESPONSE and self._local_response(f, msg)):
            await self._emit(msg, "response" if f.cra == gframe.CRA_RESPONSE else "alert")
        if from_gsme:
            if self.gpf is not None:
                try:
                    extra = self.gpf.on_gsme_message(f)
                except Exception as e:  # noqa: BLE001 - the GSME's message is already out
                    log("route", "gpf.on_gsme_message failed: %r" % (e,))
                    extra = None
                for a in extra or ():
                    await self._emit(a, "alert")

    def _local_response(self, f, msg):
        """A GSME response to a command from the HHT or a HAN device: kept
        on flash for it (an OSError leaves the command in hand). -> True
        when it does not go to the WAN."""
        key = _key(f.recipient, f.counter)
        cmds = self.store.kv("hht_cmds")
        if cmds.get(key) is not None:
            kv = self.store.kv("hht_replies")
            if len(kv) >= _HHT_MAX:
                kv.delete(sorted(kv.keys())[0])
            kv.set(key, hex_text(msg))
            cmds.delete(key)
            self.counters["hht_responses"] += 1
            return True
        rh = eui_hex(f.recipient)
        dl = self.device_log
        if rh not in dl or dl.type_of(rh) == _GSME or self.coordinator is None:
            return False
        mid = hex_text(message_id(f))
        self.store.kv("han_out").set(mid, [rh, hex_text(msg), self._t2000()])
        self.counters["local_responses"] += 1
        asyncio.create_task(self._deliver_local(mid))
        return True

    async def _deliver_local(self, mid):
        kv = self.store.kv("han_out")
        v = kv.get(mid)
        if v is None:
            return False
        try:
            await self.coordinator.tunnel_send(v[0], unhexlify(v[1]), timeout_ms=self.cfg["esme_timeout_ms"])
        except (OSError, ValueError) as e:
            # kept (no flash write) and tried again every _LOCAL_RETRY_S,
            # until expiry_s or the device leaves the Device Log
            if 0 <= self._t2000() - v[2] < self.cfg["expiry_s"] and v[0] in self.device_log:
                return False
            self.counters["local_lost"] += 1
            self._log(self.event_log, codes.EV_QUEUE_DROPPED, v[0].encode())
            log("route", "GSME response for %s given up: %r" % (v[0], e))
        else:
            self.counters["local_delivered"] += 1
        kv.delete(mid)
        return True

    async def flush_local(self):
        """Deliver the GSME responses still waiting for their HAN device (at
        boot and at each expiry check). -> how many left the flash."""
        n = 0
        for mid in list(self.store.kv("han_out").keys()):
            if await self._deliver_local(mid):
                n += 1
        return n

    # -- buffer upkeep --------------------------------------------------------

    def _on_device_log(self, kind, eh):
        if kind == "remove":
            self._replies.pop(eh.upper(), None)
            n = self.buffer.drop(eh)
            if n:
                self._log(self.event_log, codes.EV_QUEUE_DROPPED, eh.encode())
                log("route", "%s removed: %d buffered commands dropped" % (eh, n))
        elif kind == "restore":
            # the queues of the devices the restored log has not are dropped
            for eh in self.buffer.devices():
                if eh not in self.device_log:
                    self.buffer.drop(eh)

    async def expire_now(self):
        """Remove expired commands: 0x819D alert and a CHF event for each."""
        out = self.buffer.expire(self._utc())
        for eh, msg in out:
            self.counters["expired"] += 1
            mid = b""
            if msg is not None:
                try:
                    mid = message_id(gframe.parse(msg))
                except gframe.FrameError:
                    pass
            self._log(self.event_log, codes.ALERT_GSME_NOT_RETRIEVED, mid or eh.encode())
            log("route", "command for %s not retrieved: expired, 0x819D" % eh)
            try:
                a = gpf_alert(self.identity.parties("gpf"), codes.ALERT_GSME_NOT_RETRIEVED, self._t2000())
            except ValueError as e:  # e.g. no ACB trust anchor for the GPF yet
                log("route", "0x819D alert not built: %r" % (e,))
                continue
            await self._emit(a, "alert")
        return len(out)

    async def run(self):
        """Job "route": 0x8F84 for deliveries a power cut interrupted, then
        expire unretrieved commands."""
        try:
            await self.recover_inflight()
        except Exception as e:  # noqa: BLE001 - the expiry job runs whatever happens
            log("route", "in-flight recovery failed: %r" % (e,))
        while True:
            await self.expire_now()
            try:
                await self.flush_local()
            except Exception as e:  # noqa: BLE001 - the expiry job runs whatever happens
                log("route", "local delivery failed: %r" % (e,))
            self.wake.clear()
            period = max(1, self.cfg["expiry_check_s"])
            if len(self.store.kv("han_out")):
                period = min(period, _LOCAL_RETRY_S)
            nxt = self.buffer.next_expiry()
            if nxt is not None:
                period = max(1, min(period, nxt - self._utc() + 1))
            await self.wake.wait_ms(period * 1000)


# Local-port commands (fn(hub, req): docs/local-port.md), in route.commands
# (with the HHT replies' read-out, the router's status and its route_config
# changes): loaded for each
# call and dropped after it (app.Hub.run_command: a command given as its
# module's name). A constant tuple, in flash when frozen.
COMMANDS = (("route_status", "route.commands"), ("route_config", "route.commands"),
            ("route_buffer", "route.commands"), ("route_replies", "route.commands"))
