# Local-port commands of the WAN (fn(hub, req): docs/local-port.md):
#   wan_status, wan_config {set: {...}}, transactions {before?}
from wan import settings


def _session(hub):
    if hub.wan.session is None:
        raise OSError("the wan job has not started yet")
    return hub.wan.session


async def wan_status(hub, req):
    if hub.wan.session is None:
        return {"state": "starting", "connected": False, "outbox_pending": None}
    return hub.wan.session.status()


async def wan_config(hub, req):
    s = _session(hub)
    w = hub.wan
    return settings.configure(s.kv, w.settings, w.outbox, s.modem, hub.clock, req.get("set") or {})


async def transactions(hub, req):
    return _session(hub).transactions(req)


COMMANDS = (("wan_status", wan_status), ("wan_config", wan_config), ("transactions", transactions))
