# The CHF as the rest of the hub sees it: build() makes it (identity, use
# cases) from its parts, and the local-port commands of the HHT role:
#   identity                  -> {chf: {eui, ka_pub, ds_pub}, gpf: {...}} (hex)
#   send_gbcs {frame: hex}    -> {response: hex, alerts: [hex...]}: one
#                                pre-protected command, exactly as from the
#                                WAN; a tunnel delivery is awaited;
#                                {hht: true}: a GSME's response comes later
#                                to the HHT (route_replies), not the WAN
from chf.identity import Identity
from chf.usecases import Chf
from ids import hex_bytes, hex_text


def build(store, event_log, security_log, device_log, utc2000, versions=None, log_capacity=40):
    """-> Chf. utc2000() -> UTC seconds since 2000; versions(eui) -> the
    device's (app, stack) versions the HAN read (CCS04/05/06), or None.
    Sub GHz state and trust anchor cells load on first use (chf.subghz,
    chf.credentials)."""
    chf = Chf(Identity(store), event_log, security_log, device_log, utc2000=utc2000, store=store,
              log_capacity=log_capacity)
    if versions is not None:
        chf.versions = versions
    return chf


# Local-port commands (fn(hub, req): docs/local-port.md).

async def cmd_identity(hub, req):
    return hub.identity.public()


async def cmd_send(hub, req):
    data = hex_bytes(req.get("frame"), "frame")
    # hht: true -- a GSME's response to it is kept for the HHT (route_replies)
    # instead of going to the head-end
    resp, alerts = await hub.router.route_wait(data, source="hht" if req.get("hht") is True else None)
    return {"response": hex_text(resp) if resp is not None else None, "alerts": [hex_text(a) for a in alerts]}


COMMANDS = (("identity", cmd_identity), ("send_gbcs", cmd_send))
