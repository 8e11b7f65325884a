# The router's local-port commands (fn(hub, req): docs/local-port.md; the
# router is route.router's, with its status()): loaded for each call and dropped after it
# (route.router.COMMANDS names this module; app.Hub.run_command loads it).
from route import router as R


def replies(rt, take=False):
    """The GSME's responses to the HHT's commands (oldest key first);
    take: they leave the flash."""
    kv = rt.hht_replies
    out = [{"key": k, "frame": kv.get(k)} for k in sorted(kv.keys())]
    if take:
        for k in list(kv.keys()):
            kv.delete(k)
    return out


async def route_status(hub, req):
    return hub.router.status()


async def route_config(hub, req):
    # only the settings: the request also carries the local port's own keys
    return {"cfg": hub.router.configure(dict((k, v) for k, v in req.items() if k in R.DEFAULTS))}


async def route_buffer(hub, req):
    from local_port import eui_arg

    eh = eui_arg(req)
    return {"eui": eh, "queue": [list(q) for q in hub.router.buffer.queue(eh)]}


async def route_replies(hub, req):
    # {take: bool} -> {replies: [{key, frame (hex)}]}: the GSME's responses to
    # the commands the HHT sent it with send_gbcs
    return {"replies": replies(hub.router, req.get("take") is True)}


COMMANDS = (("route_status", route_status), ("route_config", route_config), ("route_buffer", route_buffer),
            ("route_replies", route_replies))
