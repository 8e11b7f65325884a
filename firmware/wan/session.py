# The WAN session: modem bring-up and the head-end link. wan.service loads
# this module when the job "wan" first runs, not while the hub boots.
# One task drives the modem (the AT channel runs one command at a time):
# init -> SIM -> registration -> PDP -> TLS session (run by the modem, with
# the hub's link certificate; docs/headend-link.md) -> HELLO/HELLO_ACK, then a loop
# that sends what the outbox says is due, reads frames, answers them and
# keeps the link alive. Any failure drops the link and starts again; a modem
# that stops answering gets a hardware reset. docs/headend-link.md.
import asyncio
import time

import board
import lazy
import mono
from micropython import const
from log import kind_of, log
from wan import at, link
from wan import modem as md
from wan import outbox as ob
from wan.critical import is_critical
from wan.sim7600 import Sim7600  # the modem's driver

_STABLE_MS = const(10000)
_SEEN = const(32)  # head-end frame ids remembered against duplicates
_TLS_HANDSHAKE_FAILED = const(15)  # AT+CCHOPEN's <err>: the handshake failed


# A planned end of the session is raised as md.ModemError("Planned", reason):
# reason "pdp" (refresh, or a new APN), "reinit", "radio", "credentials" (new
# link credentials) or "settings" (a new head-end host or port).


class Wan:
    """One modem and head-end session after another, for the WAN service
    `svc` (wan.service.WanService), whose parts it uses, read through it:
    the store, the settings (wan.settings through KV "wan"), the
    transaction log and outbox (built before the job: emit queues into the
    outbox meanwhile), the identity (the CHF EUI in HELLO), route(frame,
    tag) for a GBCS frame from the head-end, the hub's clock (head-end time
    sets it, network time is a cross-check), the link credentials
    (wan.linkcred), the security and event logs and manage (wan.mgmt.Channel:
    the head-end's MGMT requests)."""

    def __init__(self, svc):
        # its KV stores, opened when used (a KV object is its name on the
        # store's shared copy): "wan" (the settings), "wan_fallback" ("prev":
        # link settings to go back to, wan_config), "wan_report" ("install":
        # the installation report is queued; wan.report keeps "t" there),
        # "wan_seen" ("ids": the seen head-end frame ids; a cold store: the
        # list is this session's, the file read back only when written)
        self.svc = svc
        self._relink = None  # a planned end's reason: wan_config changed host, port or apn
        self._fb_ms = mono.ms()  # when the fall-back was armed (or the job started with one pending)
        self._install_ms = None  # when the installation report is due (its signal window sampled)
        self.seen = []  # recent head-end frame ids (link.seen_add), persisted in KV "wan_seen"
        for i in (svc.store.kv("wan_seen", keep=False).get("ids") or []) + svc.outbox.he_ids():
            if isinstance(i, int):
                link.seen_add(self.seen, i, _SEEN)
        self.modem = None
        self.state = "idle"
        self.connected = False
        self.signal = None
        self.cell = None
        self.connects = 0
        self.drops = 0
        self.resets = 0
        self.duplicates = 0
        self.rx_polls_found = 0
        self.last_error = None
        self.init_ms = self.good_ms = self.attach_ms = self._fb_ms  # mono.ms() at the start
        self.errors = 0  # sessions in a row that failed before the link came up
        self.pdp_refreshes = 0
        # the radio mode set since the modem booted (None: none); False: the
        # modem needs its init (it booted, or a reset failed)
        self.radio = False
        self._nitz = False  # the network sent its time: read AT+CCLK?

    def _up(self):
        # the driver's bring-up steps (module modem.UP: init, SIM, registration,
        # attach, TLS, reset, ...), loaded while the link is down and dropped
        # once it is up (session; sys.modules holds it meanwhile)
        return lazy.load(self.modem.UP)

    # ---- modem events (called from the AT reader) ----
    def _event(self, kind, value):
        if kind == md.EV_BOOT:
            self.radio = False  # init needed
        elif kind == md.EV_NET_LOST:
            log("wan", "network lost")
        elif kind == md.EV_TIME:
            self._nitz = True

    def _reset_line(self):
        board.hard_reset("modem")

    # ---- the job ----
    async def run(self):
        m = await board.open_uart("modem")  # (reader, writer)
        m = self.modem = Sim7600(m[0], m[1], self._reset_line, self.svc.settings.get("timings"))
        m.listener = self._event
        # the reader runs from the job's start: the modem's notices (RDY,
        # registration) are taken off the UART also while the session waits
        # (no link credentials yet), not left to overflow its buffer
        m.at.start()
        try:
            delay = self.svc.settings["retry_ms"]
            self.init_ms = self.good_ms = mono.ms()
            while True:
                try:
                    # the link's bring-up, then its loop: one coroutine frame
                    # at a time under this one (the bring-up's is gone while
                    # the link serves)
                    await self._serve(await self.session())
                except (md.ModemError, at.ATError, ValueError, OSError) as e:
                    # ValueError covers link.LinkError and AT/field format
                    # errors. What follows a session's end runs in a frame
                    # of its own: none of its names in this one meanwhile
                    delay = await self._ended(e, delay)
        finally:
            # the job ends (error or cancel): its AT reader leaves the UART,
            # which the board keeps for the next run's reader
            m.at.stop()

    async def _ended(self, e, delay):
        # after a session's end (`e` ended it): the counts, the link
        # settings' fall-back, the modem's health (a hardware reset when it
        # misbehaves or is due) and the wait before the next -> the next
        # session's back-off delay
        m = self.modem
        cfg = self.svc.settings
        silent = False
        planned = None
        k = kind_of(e)
        if k == "Planned":
            planned = e.args[1]
            self.last_error = "planned " + planned
        else:
            self.last_error = repr(e)
            if k in ("ATTimeout", "ModemSilent"):
                silent = True
            else:
                log("wan", "session ended: %r" % e)
        e = None
        now = mono.ms()
        # a link that was up a while is tried again at once (a flapping one backs off)
        was_up = self.connected and now - self.good_ms >= _STABLE_MS
        if self.connected:
            self.drops += 1
            self.svc.txlog.add("link_drop", 0, self.last_error or "")
            log("wan", "link down")
            self.good_ms = now
            delay = cfg["retry_ms"]
            self.errors = 0
        elif planned is None:
            self.errors += 1
        self.connected = False
        self.state = "down"
        fb = self.svc.store.kv("wan_fallback")
        if fb.get("prev") and now - self._fb_ms >= cfg["fallback_ms"]:
            prev = fb.get("prev")
            names = ",".join(sorted(prev))
            self.svc.store.kv("wan").update(prev)
            fb.delete("prev")
            self.svc.txlog.add("fallback", 0, names)
            log("wan", "link not back with the new %s: the old values return" % names)
            if self.svc.event_log is not None:
                from codes import EV_SETTINGS_ROLLED_BACK  # here: a name less in this module's dict

                try:
                    self.svc.event_log.append(EV_SETTINGS_ROLLED_BACK, ("fallback " + names).encode())
                except Exception:  # noqa: BLE001 - no clock: the console and the transaction log have it
                    pass
            if "apn" in prev:
                await self._refresh_pdp()
        # modem health: a hardware reset when it misbehaves or is due
        reason = None
        if not silent and self.radio is not False:
            try:
                silent = not await self._up().alive(m)
            except (md.ModemError, at.ATError):
                silent = True
        if silent:
            reason = "silent"
        elif planned == "reinit" or now - self.init_ms >= cfg["reinit_ms"]:
            reason = "periodic"
        elif self.errors >= cfg["max_errors"]:
            reason = "errors"
        elif now - self.good_ms >= cfg["stuck_ms"]:
            reason = "stuck"
        if reason is not None:
            self.resets += 1
            self.errors = 0
            self.state = "reset"
            self.svc.txlog.add("modem_reset", 0, reason)
            log("wan", "modem %s: hardware reset" % reason)
            self.init_ms = self.good_ms = mono.ms()
            self.radio = False  # until the reset's init is done
            try:
                await self._up().hw_reset(self.modem)  # RDY, then init
                self.radio = None
            except (md.ModemError, at.ATError) as e:
                self.last_error = repr(e)
        elif planned == "pdp":
            await self._refresh_pdp()
        elif m.socket_open:
            try:
                await m.close_socket()
            except (md.ModemError, at.ATError):
                pass
        if planned is None and not was_up:
            await asyncio.sleep_ms(delay)
            delay = min(delay * 2, cfg["retry_max_ms"])
        return delay

    def relink(self, keys, before, origin):
        """wan_config changed `keys` (of host, port, apn; `before`: the old
        effective values): make the link again with them. While the link is
        up the old values are kept in KV "wan_fallback" and come back when
        the link is not up again within `fallback_ms` (the oldest values
        that worked stay there until a link comes up)."""
        if self.connected:
            fb = self.svc.store.kv("wan_fallback")
            prev = fb.get("prev") or {}
            for k in keys:
                if k not in prev:
                    prev[k] = before[k]
            fb.set("prev", prev)
            self._fb_ms = mono.ms()
            log("wan", "link settings %s changed by %s: fall-back armed" % (",".join(keys), origin))
        self._relink = "pdp" if "apn" in keys else "settings"

    async def _refresh_pdp(self):
        """The daily PDP context refresh: close the socket and the network
        library; the next session activates the context again."""
        m = self.modem
        self.pdp_refreshes += 1
        self.svc.txlog.add("pdp_refresh")
        log("wan", "PDP context refresh")
        try:
            await m.close_socket()
            await self._up().detach(m)
        except (md.ModemError, at.ATError):
            pass
        m.attached = False

    async def session(self):
        """The modem and link brought up to HELLO_ACK -> the session's link
        decoder (frames that came behind HELLO_ACK wait in it)."""
        m = self.modem
        up = self._up()
        cfg = self.svc.settings
        self.svc.outbox.configure(cfg)
        cred = self.svc.link
        if not cred.ready():
            # no link certificate: no head-end to talk to until one is installed
            self.state = "no_credentials"
            self.last_error = "no link certificate"
            cred.changed.clear()
            while not cred.ready():
                await cred.changed.wait_ms(60000)
        if self.radio is False:
            self.state = "init"
            await up.init(m)
            self.radio = None
            self.init_ms = mono.ms()
        if cfg["radio"] and cfg["radio"] != self.radio:
            await up.set_radio_mode(m, cfg["radio"])
            self.radio = cfg["radio"]
        self.state = "sim"
        await up.sim_ready(m, cfg["pin"])
        self.state = "registering"
        if not md.registered(await up.wait_registered(m, cfg["reg_timeout_ms"])):
            raise md.ModemError("ModemError", "not registered")
        self.signal = await m.signal_dbm()
        self.cell = await up.cell_id(m)
        await self._network_time()
        if not m.attached:
            self.state = "attaching"
            try:
                ip = await up.attach(m, cfg["apn"])
            except md.ModemError as e:
                if e.args[0] == "AttachFailed":
                    self.svc.txlog.add("pdp_fail", 0, str(e))
                raise
            self.svc.txlog.add("pdp_up", 0, ip or "")
            self.attach_ms = mono.ms()
        self.state = "connecting"
        cred.changed.clear()  # set again by new credentials: the link is made again with them (_planned)
        await up.tls_prepare(m, cred)
        try:
            await up.open_tls(m, cfg["host"], cfg["port"])
        except md.ModemError as e:
            # SocketOpenFailed: args[2] is the modem's <err>
            if e.args[0] == "SocketOpenFailed" and e.args[2] == _TLS_HANDSHAKE_FAILED and self.svc.security_log is not None:
                from codes import EV_HEADEND_REFUSED

                self.svc.security_log.append(EV_HEADEND_REFUSED, b"headend tls " + cfg["host"].encode()[:32])
            raise
        dec = link.Decoder()  # this session's stream (_serve goes on with it)
        from version import VERSION

        await m.send(link.hello(self.svc.identity.chf["eui"], VERSION, self.signal))
        # HELLO_ACK
        deadline = time.ticks_add(time.ticks_ms(), cfg["hello_timeout_ms"])
        fr = None
        while fr is None:
            left = time.ticks_diff(deadline, time.ticks_ms())
            if left <= 0:
                raise md.ModemError("SocketClosed", "no HELLO_ACK")
            data = await m.recv(left)
            if data:
                dec.feed(data)
                fr = dec.next()
        if fr[0] != link.HELLO_ACK:
            raise link.LinkError("BadType", "frame %d before HELLO_ACK" % fr[0])
        # a time source: the authenticated link. Frames right behind
        # HELLO_ACK stay in the decoder for _serve
        self.svc.clock.from_source("headend", link.u32_payload(fr[2], "HELLO_ACK"))
        self.connected = True
        self.connects += 1
        self.state = "connected"
        self.svc.txlog.add("link_up", self.connects)
        self.good_ms = mono.ms()
        self.errors = 0
        log("wan", "link up to %s:%d" % (cfg["host"], cfg["port"]))
        self._relink = None
        fb = self.svc.store.kv("wan_fallback")
        if fb.get("prev"):
            fb.delete("prev")  # the new link settings work: no fall-back
            self.svc.txlog.add("fallback", 0, "kept")
        if self._install_ms is None and not self.svc.store.kv("wan_report").get("install"):
            # the installation report leaves once the signal average covers its window
            self._install_ms = mono.ms() + m.t["signal_window"]
        self.svc.outbox.reconnected()
        # the link is up: the bring-up steps go until it is down again (run
        # goes on with _serve, and this session's decoder)
        lazy.drop(m.UP)
        return dec

    async def _serve(self, dec):
        # the link loop, reading the session's stream with decoder `dec`
        m = self.modem
        now = time.ticks_ms()
        last_rx = last_tx = last_sig = last_poll = now
        # frames that arrived together with HELLO_ACK: each taken by _frame
        # itself (no draining coroutine between this frame and its own)
        while await self._frame(dec):
            pass
        while True:
            if await self._send_due():
                last_tx = time.ticks_ms()
            cfg = self.svc.settings  # wan_config may change it meanwhile
            wait = self.svc.outbox.next_due_ms()
            wait = 200 if wait is None else max(10, min(wait, 200))
            data = await m.recv(wait)  # SocketClosed ends the session
            now = time.ticks_ms()
            if data:
                last_rx = now
                dec.feed(data)  # the decoder reads the frames from the chunk itself
                # the decoder holds the chunk while its frames are taken, not
                # this frame: neither its local nor its value stack (the
                # chunk's stack slot is the one _frame's argument overwrites)
                data = True
                while await self._frame(dec):
                    pass
            if time.ticks_diff(now, last_tx) >= cfg["ping_ms"]:
                await m.send(link.encode(link.PING, now & 0xFFFF))
                last_tx = now
            if time.ticks_diff(now, last_rx) >= cfg["idle_timeout_ms"]:
                raise md.ModemError("SocketClosed", "head-end silent")
            if self._nitz:
                try:
                    await self._network_time()
                finally:
                    lazy.drop(m.UP)  # loaded for it (_up) while the link is up
            t = mono.ms()
            if t - self.attach_ms >= cfg["pdp_refresh_ms"]:
                raise md.ModemError("Planned", "pdp")
            if t - self.init_ms >= cfg["reinit_ms"]:
                raise md.ModemError("Planned", "reinit")
            if cfg["radio"] and cfg["radio"] != self.radio:
                raise md.ModemError("Planned", "radio")  # a new radio mode: set it, then connect again
            if self.svc.link.changed.state:
                raise md.ModemError("Planned", "credentials")  # new link credentials: connect with them
            if self._relink is not None:
                r, self._relink = self._relink, None
                raise md.ModemError("Planned", r)  # new host, port or apn: connect with them (wan_config)
            if self._install_ms is not None and t >= self._install_ms:
                # the installation report (first link after provisioning): the
                # signal average over the modem's signal window and the cell
                from wan.report import queue

                self._install_ms = None
                queue(self.svc.outbox, self.svc.txlog, "install", self.signal_report(), ob.CRITICAL)
                self.svc.store.kv("wan_report").set("install", True)
            if time.ticks_diff(now, last_sig) >= cfg["signal_ms"]:
                last_sig = now
                self.signal = await m.signal_dbm()
            if not data and time.ticks_diff(now, last_poll) >= cfg["rx_poll_ms"]:
                # safety net for a "data waiting" URC lost on the line (noise):
                # ask the modem what it holds now and then
                last_poll = now
                if await m.poll_rx():
                    self.rx_polls_found += 1

    async def _send_due(self):
        # what the outbox says is due -> True when it sent any. A frame of
        # its own: no record or frame stays in _serve's while it waits (a
        # coroutine frame keeps what its stack last held)
        sent = False
        for seq in self.svc.outbox.due():
            rec = self.svc.outbox.read(seq)
            fr = link.encode(link.REPORT if rec[0] == ob.KIND_REPORT else link.GBCS, seq, rec[3])
            rec = None  # only the encoded frame is held while it goes
            await self.modem.send(fr)
            fr = None
            sent = True
        return sent

    async def _frame(self, dec):
        # the next frame from the link decoder `dec`, answered -> False when
        # it had none. Taken here: the frame (its payload a view of the
        # chunk) is in no caller's frame while this one awaits
        fr = dec.next()
        if fr is None:
            return False
        ftype, fid, p = fr
        fr = None
        m = self.modem
        if ftype == link.GBCS:
            if fid in self.seen:
                self.duplicates += 1
                self.svc.txlog.add("duplicate", fid)
                p = None
                await m.send(link.ack(fid, link.ACK_DUPLICATE))
                return True
            status = link.ACK_DONE
            try:
                # the link frame id goes with it: an exact resend of an
                # answered command (its ACK lost to a power cut) is answered
                # again from the CHF/GPF's stored last answer
                resp, alerts = await self.svc.route(bytes(p), fid.to_bytes(4, "big"))
            except Exception as e:  # noqa: BLE001
                # ValueError: GBCS frame/security/use-case rejections. Anything
                # else is a fault in the hub; it is refused too, or the
                # head-end would redeliver the same frame after every reconnect
                resp, alerts = None, ()
                status = link.ACK_REJECTED
                self.svc.txlog.add("reject", fid, kind_of(e))
                if not isinstance(e, ValueError):
                    from log import log_exc

                    log_exc("wan", e)
            # the retry class by the GBCS use case's criticality (wan.critical)
            if resp is not None:
                self.svc.outbox.add(resp, ob.CRITICAL if is_critical(resp) else ob.NON_CRITICAL, ob.KIND_RESPONSE, fid)
            ca = self.svc.settings["critical_alerts"]
            for a in alerts:
                self.svc.outbox.add(a, ob.CRITICAL if is_critical(a, True, ca) else ob.NON_CRITICAL, ob.KIND_ALERT)
            # queued on flash: the answer and alerts are not held while the ACK goes
            resp = alerts = a = p = None
            link.seen_add(self.seen, fid, _SEEN)
            # a cold store: what it compares the list with is the one on
            # flash (a RAM copy would be this very list, changed in place)
            self.svc.store.kv("wan_seen", keep=False).set("ids", self.seen)
            await m.send(link.ack(fid, status))
        elif ftype == link.ACK:
            link.parse_ack(p)
            self.svc.outbox.acked(fid)
        elif ftype == link.MGMT:
            if self.svc.manage is None:
                reply = b'{"status": 4, "error": "no management channel"}'
            else:
                reply = await self.svc.manage(fid, p)
            p = None
            fr = link.encode(link.MGMT_REPLY, fid, reply)
            reply = None  # only the encoded reply is held while it goes
            await m.send(fr)
        elif ftype == link.PING:
            await m.send(link.encode(link.PONG, fid))
        elif ftype == link.TIME or ftype == link.HELLO_ACK:
            # the head-end's time, over the authenticated link: a time source
            self.svc.clock.from_source("headend", link.u32_payload(p, "TIME"))
        elif ftype == link.PONG:
            pass
        else:
            raise link.LinkError("BadType", "unexpected frame %d from the head-end" % ftype)
        return True

    async def _network_time(self):
        """The modem's clock (AT+CTZU=1: set from the network's time, which
        nothing authenticates) cross-checks the CH clock; "never set" (year
        80) is nothing to check against."""
        self._nitz = False
        try:
            t = await self._up().network_time(self.modem)
        except (at.ATError, ValueError) as e:
            if kind_of(e) == "ATTimeout":
                raise
            return
        if t is not None:
            self.svc.clock.cross_check("network", t)

    def signal_report(self):
        """The WAN signal as the reports carry it (and wan_status shows it)."""
        m = self.modem
        cell = self.cell
        return {"signal_avg_dbm": m.signal_avg_dbm() if m else None, "signal_dbm": self.signal,
                "cell": list(cell) if cell else None, "reg": m.reg_stat if m else None}

    # ---- what the local-port commands show ----
    def status(self):
        m = self.modem
        cell = self.cell
        return {
            "state": self.state, "connected": self.connected,
            "signal_dbm": self.signal, "signal_avg_dbm": m.signal_avg_dbm() if m else None,
            "cell": list(cell) if cell else None, "reg": m.reg_stat if m else None,
            "outbox_pending": len(self.svc.outbox), "connects": self.connects, "drops": self.drops,
            "modem_resets": self.resets, "duplicates": self.duplicates,
            "rx_polls_found": self.rx_polls_found, "last_error": self.last_error,
            "errors": self.errors, "pdp_refreshes": self.pdp_refreshes,
            "garbled": m.at.p.garbled if m else 0,
        }
