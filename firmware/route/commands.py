# The router's local-port commands (fn(hub, req): docs/local-port.md; the
# router is route.router's), its status and its settings' changes, the
# command buffer's read-outs (queue, in_hand, pool: they take the
# CommandBuffer): loaded for each call and dropped after it
# (route.router.COMMANDS names this module; app.Hub.run_command loads it).
import struct

from micropython import const

from route import router as R
from route.buffer import _end

_REC = const(9)  # route.buffer's: a record's pool files start here
_LEN_AT = const(18)  # route.buffer's: the message length in chunk 0's header


def queue(buf, eui_hex):
    """[(seq, expiry, length)] of a device's queue in buf, oldest first
    (each length read from its chunk 0's header)."""
    q = buf._q.get(eui_hex.upper(), b"")
    out = []
    o = 0
    h = bytearray(_LEN_AT + 2)
    while o < len(q):
        n = struct.unpack_from("<H", q, o + _REC)[0]  # chunk 0's pool file
        if n == buf._fn:
            f = buf._fh
            f.seek(0)
            f.readinto(h)
        else:
            with open(buf._path(n), "rb") as f:
                f.readinto(h)
        out.append(struct.unpack_from("<II", q, o) + struct.unpack_from("<H", h, _LEN_AT))
        o = _end(q, o)
    return out


def in_hand(buf, eui_hex):
    """seq of the message handed out to the device and not confirmed, or None."""
    return buf._hand.get(eui_hex.upper())


def pool(buf):
    """(files in buf's pool, free ones)."""
    return buf._pool, len(buf._free)


def configure(rt, changes):
    """route_config: the router rt's settings changed (ValueError for an
    unknown name or a value out of its range, nothing changed), kept in its
    KV "cfg" and given to its command buffer. -> the settings."""
    for k, v in changes.items():
        if k not in R.DEFAULTS:
            raise ValueError("unknown route setting %r" % k)
        if not R._setting_ok(k, v):
            lo, hi = R.RANGES[R.RANGES.index(k) + 1]
            raise ValueError("%s must be an integer %d..%d" % (k, lo, hi))
    rt.cfg.update(changes)
    kv = rt.store.kv("route")
    saved = dict(kv.get("cfg", {}))
    saved.update(changes)
    kv.set("cfg", saved)
    b = rt.buffer
    for k in ("capacity", "max_bytes", "expiry_s"):  # on the instance only when not the class's default
        if getattr(b, k) != rt.cfg[k]:
            setattr(b, k, rt.cfg[k])
    rt.wake.set()
    return rt.cfg


def status(rt):
    """route_status of the router rt."""
    kv = rt.store.kv
    return {"han_out": len(kv("han_out")), "hht_replies": len(kv("hht_replies")), "cfg": rt.cfg,
            "counters": dict(rt.counters.items()), "buffer": rt.buffer.devices(),
            "buffer_stats": dict((k, rt.store.stats.get(k, 0)) for k in
                                 ("buffered", "offered", "delivered", "expired", "dropped", "refused_full",
                                  "discarded_at_open")),
            "unsent": len(rt.unsent or ()), "last_esme_ms": rt.last_esme_ms,
            "deliveries": rt.deliveries}


def replies(rt, take=False):
    """The GSME's responses to the HHT's commands (oldest key first);
    take: they leave the flash."""
    kv = rt.store.kv("hht_replies")
    out = [{"key": k, "frame": kv.get(k)} for k in sorted(kv.keys())]
    if take:
        for k in list(kv.keys()):
            kv.delete(k)
    return out


async def route_status(hub, req):
    return status(hub.router)


async def route_config(hub, req):
    # only the settings: the request also carries the local port's own keys
    return {"cfg": configure(hub.router, dict((k, v) for k, v in req.items() if k in R.DEFAULTS))}


async def route_buffer(hub, req):
    from local_args import eui_arg

    eh = eui_arg(req)
    return {"eui": eh, "queue": [list(q) for q in queue(hub.router.buffer, eh)]}


async def route_replies(hub, req):
    # {take: bool} -> {replies: [{key, frame (hex)}]}: the GSME's responses to
    # the commands the HHT sent it with send_gbcs
    return {"replies": replies(hub.router, req.get("take") is True)}


COMMANDS = (("route_status", route_status), ("route_config", route_config), ("route_buffer", route_buffer),
            ("route_replies", route_replies))
