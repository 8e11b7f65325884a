# hub.gpf: the Gas Proxy Function as the rest of the hub sees it. install()
# costs almost nothing: the mirror (gpf.mirror) loads with the first ZCL frame
# for a mirrored cluster, the use cases and tap-off (gpf.function,
# gpf.tapoff) with the first GBCS frame for the GPF or the first TOM command
# for the GSME -- the heap stays free for the jobs until the GPF is used.
#
#   handle(frame) -> (response, [alerts])      frames addressed to the GPF EUI
#   tap_off(command_frame) -> bool             a command for the GSME was buffered
#   on_gsme_message(frame) -> [alerts]         the GSME PUT a response/alert
#   set_tunnel_pending(flag)                   something is queued for the GSME
#   coordinator.zcl_servers[0x0702/0x0705/0x0700] = the mirror's ZCL server
#   local-port command gpf_status; provision_test_dcc {device: "gpf"} also
#   provisions the GPF's trust anchor cells (optional "cells" list)
from micropython import const

from gbcs import frame as gframe

_EPOCH_2000 = const(946684800)
# message codes that concern the tap-off (gpf.tapoff.TOM + the 0x00CD alert)
_TAP_CODES = (0x006B, 0x006F, 0x0071, 0x0015, 0x007C, 0x007E, 0x0088, 0x00A3, 0x00CD)
MIRRORED = (0x0702, 0x0705, 0x0700)  # Metering, Prepayment, Price


def clock_fn(hub):
    """now() -> (UTC seconds since 2000, valid) from hub.clock, or the board's
    RTC marked not valid when no clock is installed."""

    def now():
        c = getattr(hub, "clock", None)
        if c is not None:
            return c.now() - _EPOCH_2000, bool(c.valid)
        import board

        return board.utc() - _EPOCH_2000, False

    return now


class _MirrorServer:
    # a mirrored cluster's ZCL server: an object of two fields, where a
    # closure would hold a function object and a cell each
    def __init__(self, svc, cluster):
        self.svc = svc
        self.cluster = cluster

    async def __call__(self, eui_hex, src_ep, header, payload):
        return await self.svc.mirror().zcl_server(eui_hex, src_ep, header, payload, self.cluster)


class GpfService:
    def __init__(self, hub):
        self.hub = hub
        self.now = clock_fn(hub)
        self._mirror = None
        self._gpf = None
        self._pending = False

    def mirror(self):
        if self._mirror is None:
            from gpf.mirror import Mirror

            self._mirror = Mirror(self.hub.store, self.now)
            self._mirror.tunnel_pending = self._pending
        return self._mirror

    def impl(self):
        if self._gpf is None:
            from gpf.function import Gpf

            h = self.hub
            self._gpf = Gpf(
                h.identity,
                h.store,
                self.mirror(),
                self.now,
                getattr(h, "security_log", None),
                getattr(h, "event_log", None),
            )
        return self._gpf

    def handle(self, frame, tag=None):
        return self.impl().handle(frame, tag)

    def _tap_code(self, frame):
        try:
            return gframe.parse(frame).message_code in _TAP_CODES
        except ValueError:
            return False

    def tap_off(self, command_frame):
        if not self._tap_code(command_frame):
            return False
        return self.impl().tap_off(command_frame)

    def on_gsme_message(self, frame):
        if not self._tap_code(frame):
            return []
        return self.impl().on_gsme_message(frame)

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
        d["loaded"] = self._gpf is not None
        d["mirror_loaded"] = self._mirror is not None
        d["tunnel_pending"] = self._pending
        return d


# The commands: module functions fn(hub, req), so the hub holds no closure
# (and no cells) per command.

async def gpf_status(hub, req):
    return hub.gpf.status()


async def provision_gpf(hub, req):
    # the CHF's provisioning sets the GPF's trust anchors; the GPF's trust
    # anchor cells (CS02b) come from the same list, or from "cells" (same
    # shape, + pp_ka_pub/pp_ka_ski) when they differ
    from chf.gbcs_port import cmd_provision

    out = await cmd_provision(hub, req)
    if req.get("device") == "gpf":
        # the cells only (KV ta_cells_gpf, shared with a loaded Gpf):
        # provisioning does not load the GPF's use cases
        from chf.credentials import Credentials

        Credentials(hub.store, hub.identity, "gpf").provision(req.get("cells") or req["anchors"])
    return out


def install(hub):
    """hub.gpf (after the CHF: needs hub.identity); the mirror's ZCL servers
    on hub.coordinator.zcl_servers; local-port command gpf_status."""
    svc = GpfService(hub)
    hub.gpf = svc
    coord = getattr(hub, "coordinator", None)
    if coord is not None:
        servers = getattr(coord, "zcl_servers", None)
        if servers is None:
            servers = {}
            coord.zcl_servers = servers
        for cl in MIRRORED:
            servers[cl] = svc.zcl_server(cl)

    hub.commands["gpf_status"] = gpf_status
    if "provision_test_dcc" in hub.commands:
        hub.commands["provision_test_dcc"] = provision_gpf
    return svc
