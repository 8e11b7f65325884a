# The HAN coordinator job: brings the EFR32 NCP up (ASH reset, EZSP version
# negotiation, configuration), forms the network on first boot or resumes it
# (networkInit) afterwards, then runs the trust centre over the CHF Device
# Log and feeds the Device Log's HAN statistics from the message callbacks.
# The configuration and network steps are han.network's, loaded for them and
# dropped after; the local-port commands are han.commands.
#
# The wiring (app.py) spawns `run` as the supervised job "han". Any link fault (an NCP
# reboot, ASH link failure, EZSP timeout, the network going down) raises out
# of the job: the supervisor restarts it with back-off, the NCP's reset line
# is pulled first unless the NCP has just rebooted by itself, and the network
# is resumed from the NCP's NVM, never re-formed (except on the extended PAN
# id a CCS03 restore put in the Device Log: hub replacement). KV "han" keeps what was
# formed: {"formed": 1, "ch": channel, "pan": PAN id, "xpan": ext PAN hex}.
from micropython import const
import asyncio
from binascii import hexlify

import board
import lazy
from codes import EV_BAD_DEVICE_MESSAGE
from counters import Counters
from han import zcl_servers
from han.ash import Ash, NcpReset
from han.ezsp import Ezsp
from han.messaging import Messaging
from han.trust_centre import TrustCentre
from log import KindException, log
from version import VERSION

_SYNC_S = const(1)  # trust-centre sync period
_RESET_SETTLE_MS = const(300)  # after pulling the NCP's reset line


# its own counters, then han.messaging.COUNTERS (written out: a constant
# tuple, in flash when frozen; a sum of two is built in RAM at import)
_COUNTERS = ("formed", "resumed", "ncp_resets", "hard_resets", "rx", "tx_ok", "tx_fail", "abnormal", "scans",
             "rx_unknown", "zcl_rx", "zcl_bad", "frag_rx", "frag_drop", "frag_tx", "busy_drop", "zcl_errors",
             "reply_fail", "tunnel_rx", "tunnel_unclaimed", "exchanges", "pushes", "frag_ack", "frag_ack_fail")


class Coordinator(Messaging):
    """The HAN job plus the messaging API of han.messaging (zcl_send,
    tunnel_exchange, zcl_servers, on_tunnel_message). Its parts: the store
    (KV "han"), the CHF Device Log and security log (the trust centre's), the
    supervisor (the job's restarts for status) and the hub's clock (the Time
    cluster server)."""

    # the fault that ended the last run (None: none; an instance attribute
    # only while it holds one)
    last_fault = None

    def __init__(self, store, device_log, security_log, supervisor, clock):
        self.store = store
        self.device_log = device_log
        self.security_log = security_log
        self.supervisor = supervisor
        self.state = "starting"
        self.ezsp = None
        self.tc = None
        self.runs = 0
        self._xpan = None  # the extended PAN id the HAN is on (RAM; KV "han" xpan)
        self.counters = Counters(_COUNTERS)
        self._init_messaging()
        self.zcl_servers[0x0000] = zcl_servers.AttributeServer(0x0000, VERSION, self._stack_version)
        self.zcl_servers[0x000A] = zcl_servers.AttributeServer(0x000A, clock, board.utc)
        self.zcl_servers[0x0704] = self.tunnel_server
        # Key Establishment (han.cbke): loaded on its first frame (a CBKE is
        # rare: once per device join), so it costs no heap until then; then
        # it is zcl_servers[0x0800] itself
        self.zcl_servers[0x0800] = self._key_establishment
        device_log.on_change(self._on_log_change)

    def _on_log_change(self, kind, eh):
        # a device removed from the Device Log: its key establishment outcome
        # goes (a re-added device has run none with the hub)
        if kind == "remove":
            try:
                self.store.kv("cbke").delete(eh)
            except OSError:
                pass

    async def _key_establishment(self, eh, src_ep, h, p):
        ke = self.zcl_servers[0x0800]
        if not isinstance(ke, zcl_servers.AttributeServer):  # not loaded yet (else a frame dispatched before it was)
            from han.cbke import KeyEstablishment

            ke = self.zcl_servers[0x0800] = KeyEstablishment(self.device_log, self.security_log, self.store.kv("cbke"))
            if self.ezsp is not None:
                ke.attach(self.ezsp)
        return await ke(eh, src_ep, h, p)

    def ke_result(self, eh):
        """A device's last key establishment with the hub (han.cbke's KV
        "cbke"): 0 done, its Terminate status, or None; read without
        loading han.cbke."""
        return self.store.kv("cbke").get(eh)

    @property
    def kv(self):
        return self.store.kv("han")

    def _stack_version(self):
        return self.ezsp.stack_version if self.ezsp is not None else 0

    # -- status (han_status: han.commands) --

    def summary(self):
        kv = self.kv
        return {"state": self.state, "channel": kv.get("ch"), "pan_id": kv.get("pan")}

    # -- callbacks --

    def _on_incoming(self, v):
        ez = self.ezsp
        # incomingMessageHandler's (sender, aps, payload, lqi, rssi)
        if ez.ver >= 14:
            sender, aps, payload, lqi, rssi = v[2], v[1], v[9], v[6], v[7]
        else:
            sender, aps, payload, lqi, rssi = v[4], v[1], v[7], v[2], v[3]
        dl = self.device_log
        eh = dl.eui_of(sender)
        self.counters["rx"] += 1
        if eh is None:
            self.counters["rx_unknown"] += 1
            # maybe a device whose join the hub never recorded (power cut):
            # the trust centre checks it with the NCP and adopts it
            # (v14 incomingMessageHandler carries its EUI-64: all zero or all
            # 0xFF when the stack does not know it; None before v14)
            if self.tc is not None:
                self.tc.unknown_sender(sender, v[3] if ez.ver >= 14 and v[3] not in (bytes(8), b"\xff" * 8) else None)
            return
        dl.record_rx(eh, rssi, lqi, dl.utc())
        self._incoming(eh, aps, payload, sender)

    def _abnormal(self, eh, what):
        # HAN tamper (product requirements 10.7): security log 0x8F1E, data =
        # the device's EUI; repeats collapse into one entry, and the log's
        # 0x8F60 watch (chf.logs.MalformedWatch) alerts a run of them, at
        # most once an hour
        self.counters["abnormal"] += 1
        try:
            self.security_log.append(EV_BAD_DEVICE_MESSAGE, eh.encode(), self.device_log.utc())
        except Exception as e:  # noqa: BLE001 - flash trouble: the counter has it
            log("han", "abnormal frame from %s (%s) not logged: %r" % (eh, what, e))

    def _on_sent(self, v):
        # messageSentHandler's (tag, status, destination)
        if self.ezsp.ver >= 14:
            tag, status, dest = v[4], v[0], v[2]
        else:
            tag, status, dest = v[3], v[4], v[1]
        self._sent_cb(tag, status)
        ok = status == 0
        self.counters["tx_ok" if ok else "tx_fail"] += 1
        dl = self.device_log
        eh = dl.eui_of(dest)
        if eh is not None:
            dl.record_tx(eh, ok)

    # -- the job --

    def _restored_xpan(self):
        """The Device Log's extended PAN id when a restore (CCS03) set one
        the HAN is not on, else None."""
        x = self.device_log.ext_pan_id
        if x is None or x == self._xpan:
            return None
        if self._xpan is None and hexlify(x).decode() == self.kv.get("xpan"):
            self._xpan = x
            return None
        return x

    async def run(self):
        self.runs += 1
        if self.runs > 1 and not isinstance(self.last_fault, NcpReset):
            # the NCP did not reboot by itself: pull its reset line
            self.counters["hard_resets"] += 1
            board.hard_reset("ncp")
            await asyncio.sleep_ms(_RESET_SETTLE_MS)
        if self.last_fault is not None:
            del self.last_fault  # the class's None again
        self.state = "connecting"
        reader, writer = await board.open_uart("ncp")
        ash = Ash(reader, writer, board.ticks_ms)
        ez = self.ezsp
        if ez is None:
            ez = self.ezsp = Ezsp(ash)  # EZSP v14 asked first
            ez.on("incomingMessageHandler", self._on_incoming)
            ez.on("messageSentHandler", self._on_sent)
            self.tc = TrustCentre(ez, self.device_log, self.security_log)
            self.tc.on_removed = self.forget
            self.tc.on_joined = self.on_device_joined
            if isinstance(self.zcl_servers[0x0800], zcl_servers.AttributeServer):  # han.cbke's, loaded
                self.zcl_servers[0x0800].attach(ez)
        else:
            ez.close()
            ez.t = ash
            self.tc.link_reset()
        try:
            try:
                ver = await ez.connect()
            except Exception as e:
                self.last_fault = e
                raise
            # the bring-up's steps are loaded for it (han.network) and dropped after
            net = lazy.load("han.network")
            try:
                await net.startup(ez)
                await net.network(self, ez)
            finally:
                net = None
                lazy.drop("han.network")
            self.state = "up"
            log("han", "up ezsp=v%d" % ver)
            while True:
                # the EZSP host's state Flag wakes the wait below: a link
                # fault, a stack status (the network up or down)
                ez._state_ev.clear()
                if ez.fault is not None:
                    self.last_fault = ez.fault
                    if isinstance(self.last_fault, NcpReset):
                        self.counters["ncp_resets"] += 1
                    raise KindException("HanDown", "NCP link down: %r" % (self.last_fault,))
                if not ez.network_up:
                    raise KindException("HanDown", "network down")
                x = self._restored_xpan()
                if x is not None:
                    net = lazy.load("han.network")
                    try:
                        await net.reform(self, ez, x)
                    finally:
                        net = None
                        lazy.drop("han.network")
                    self.state = "up"
                await self.tc.sync()
                await ez._state_ev.wait_ms(_SYNC_S * 1000)
        except Exception:
            if self.last_fault is None and ez.fault is not None:
                self.last_fault = ez.fault
            raise
        finally:
            self.state = "down"
            ez.close()
            ash.close()
            try:
                writer.close()
            except Exception:
                pass
