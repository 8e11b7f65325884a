# Local-port commands of the WAN (fn(hub, req): docs/local-port.md):
#   wan_status, wan_config {set: {...}}, transactions {before?}
# The settings and the transaction log belong to the WAN service, so
# wan_config and transactions answer also before the job's session runs.
from wan import settings

# req["_from"] of a request that came over the head-end's management channel
# (wan.mgmt, loaded on first use: the marker lives here, with the hub for
# good); no JSON value is it, so req.get("_from") is HEADEND tells a request
# of the channel
HEADEND = object()


async def wan_status(hub, req):
    if hub.wan.session is None:
        return {"state": "starting", "connected": False, "outbox_pending": None}
    return hub.wan.session.status()


async def wan_config(hub, req):
    """The same for the installer and the head-end (wan.mgmt): one schema,
    one check; a change is logged with its origin (WanService.changed)."""
    w = hub.wan
    modem = w.session.modem if w.session is not None else None
    changes = req.get("set") or {}
    origin = "local"
    if req.get("_from") is HEADEND:  # over the management channel
        origin = "headend"
        for k in changes if isinstance(changes, dict) else ():
            if k in settings.LOCAL_ONLY:
                raise ValueError("wan setting %s is set on the local port only" % k)
    before = dict(w.settings.items()) if changes else None
    c = settings.configure(w.store.kv("wan"), w.settings, w.outbox, modem, hub.clock, changes)
    if changes:
        w.changed(changes, before, origin)
    return c


async def transactions(hub, req):
    """{before?: seq} -> the newest entries older than `before` that fit
    ~1.5 KB, oldest first, each with its seq; `total` = entries held. Page
    back with before = the first seq of the previous page."""
    before = req.get("before")
    if before is not None:
        from local_port import int_arg

        before = int_arg(req, "before", 0, 0xFFFFFFFF)
    tx = hub.wan.txlog
    return {"total": len(tx), "entries": tx.page(before)}


COMMANDS = (("wan_status", wan_status), ("wan_config", wan_config), ("transactions", transactions))
