# The Gas Proxy Function as the rest of the hub sees it (hub.gpf). Building
# it costs almost nothing: the mirror (gpf.mirror) loads with the first ZCL frame
# for a mirrored cluster (or a tapped-off tariff), the use cases
# (gpf.function) with the first GBCS frame for the GPF; the tap-off
# (gpf.tapoff, alone) is loaded for each TOM command for the GSME and each
# GSME response or alert that may concern one, and dropped after (its copies
# are on flash) -- the heap stays free for the jobs until the GPF is used.
#
#   handle(frame) -> (response, [alerts])      frames addressed to the GPF EUI
#   take_alerts() -> [alerts]                  alerts for the commands it refused
#   tap_off(command_frame) -> bool             a command for the GSME was buffered
#   on_gsme_message(frame) -> [alerts]         the GSME PUT a response/alert
#   set_tunnel_pending(flag)                   something is queued for the GSME
#   zcl_server(cluster)                        the GPF's ZCL server for a
#                                              cluster of SERVED (the wiring
#                                              puts them on the coordinator):
#                                              the mirror, and the tapped-off
#                                              Price / Calendar data (gpf.served)
#   local-port command gpf_status
from micropython import const

import lazy
from gbcs import frame as gframe
from ids import EPOCH_2000
# message codes that concern the tap-off (gpf.tapoff.TOM + the 0x00CD alert)
_TAP_CODES = (0x006B, 0x006F, 0x0071, 0x0015, 0x007C, 0x007E, 0x0088, 0x00A3, 0x00CD)
MIRRORED = (0x0702, 0x0705, 0x0700)  # Metering, Prepayment, Price
SERVED = MIRRORED + (0x0707,)  # + Calendar (tapped-off data only)
_TAPPED = (0x0700, 0x0707)  # gpf.served.CLUSTERS: Get commands answered from tapped-off data
_FT_CLUSTER = const(1)
_TAPOFF = const("gpf.tapoff")
_GBZ = const("gbcs.gbz")


class _MirrorServer:
    # a mirrored cluster's ZCL server
    def __init__(self, svc, cluster):
        self.svc = svc
        self.cluster = cluster

    async def __call__(self, eui_hex, src_ep, header, payload):
        if self.cluster in _TAPPED and header.frame_type == _FT_CLUSTER and not header.direction:
            from gpf import served  # loaded with the first Get command

            return served.answer(self.svc.store.kv("gpf_tom"), self.cluster, header)
        return await self.svc.mirror().zcl_server(eui_hex, src_ep, header, payload, self.cluster)


class GpfService:
    """Its parts: the store, the hub's identity (the GPF's EUI, keys, trust
    anchors), the hub's clock and the CHF security and event logs."""

    def __init__(self, store, identity, clock, security_log, event_log, ke_status=None):
        self.store = store
        self.ke_status = ke_status  # coordinator.ke_result (CS03B)
        self.identity = identity
        self.clock = clock
        self.security_log = security_log
        self.event_log = event_log
        self._mirror = None
        self._gpf = None
        self._pending = False
        self.tap_applied = 0  # tap-off copies applied and discarded since boot (gpf.tapoff counts)
        self.tap_discarded = 0

    def mirror(self):
        if self._mirror is None:
            from gpf.mirror import Mirror

            self._mirror = Mirror(self.store, self.now)
            self._mirror.tunnel_pending = self._pending
        return self._mirror

    def tap(self):
        """A gpf.tapoff.TapOff over the copies on flash (the module stays
        loaded until lazy.drop)."""
        return lazy.load(_TAPOFF).TapOff(self.store, self)

    def alert(self, message_code, payload):
        """A GPF alert: the GBZ payload MAC'd for the ACB."""
        return bytes(self.identity.parties("gpf").protect_alert(message_code, payload))

    def now(self):
        """(UTC seconds since 2000, clock valid)"""
        c = self.clock
        return c.now() - EPOCH_2000, bool(c.valid)

    def handle(self, frame, tag=None):
        if self._gpf is None:  # gpf.function, loaded for the first GPF command
            from gpf.function import Gpf

            self._gpf = Gpf(self.identity, self.store, self.mirror(), self.now, self.security_log, self.event_log,
                            self.ke_status)
        return self._gpf.handle(frame, tag)

    def take_alerts(self):
        """The GPF's alerts for refused commands (gpf.function), for the router."""
        return [] if self._gpf is None else self._gpf.take_alerts()

    def _tap_frame(self, frame):
        # the parsed frame when its message code is one the GPF taps off
        try:
            f = gframe.frame_of(frame)
        except ValueError:
            return None
        return f if f.message_code in _TAP_CODES else None

    def tap_off(self, command_frame):
        f = self._tap_frame(command_frame)
        if f is None:
            return False
        try:
            return self.tap().tap_off(f)
        finally:
            # the tap-off and the GBZ codec it imports go (a loaded gpf.function
            # keeps its own reference to the codec; the router's alert builder
            # imports it again when it needs it)
            lazy.drop(_TAPOFF)
            lazy.drop(_GBZ)

    def on_gsme_message(self, frame):
        f = self._tap_frame(frame)
        if f is None:
            return []
        try:
            return self.tap().on_gsme_message(f)
        finally:
            lazy.drop(_TAPOFF)  # as tap_off
            lazy.drop(_GBZ)

    def set_tunnel_pending(self, pending):
        self._pending = bool(pending)
        if self._mirror is not None:
            self._mirror.tunnel_pending = self._pending

    def zcl_server(self, cluster):
        return _MirrorServer(self, cluster)

    def status(self):
        if self._gpf is not None:
            d = self._gpf.status()
        elif self._mirror is not None:
            d = self._mirror.status()
        else:
            d = {}
        d["tap_pending"] = len(self.store.kv("gpf_tap", False))  # the copies on flash
        d["tap_applied"] = self.tap_applied
        d["tap_discarded"] = self.tap_discarded
        d["loaded"] = self._gpf is not None
        d["mirror_loaded"] = self._mirror is not None
        d["tunnel_pending"] = self._pending
        return d


# Local-port commands (fn(hub, req): docs/local-port.md).

async def gpf_status(hub, req):
    return hub.gpf.status()


COMMANDS = (("gpf_status", gpf_status),)
