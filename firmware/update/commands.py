# Local-port commands of the hub's own update (docs/firmware-update.md):
# the installer's path for an image (fn(hub, req), behind the installer
# guard like every command that changes the hub). A piece of the image is
# at most PIECE bytes (hex text in the 4 KB request body).
from micropython import const

from local_args import hex_arg, int_arg, str_arg
from update.image import Refused, version_tuple

PIECE = const(1536)


async def image_status(hub, req):
    return hub.update_server().status()


async def image_write(hub, req):
    """{offset, data}: a piece of the image; answers {"received": n}, the
    offset of the next piece the hub takes (a resend after a break or a
    power cut continues from there)."""
    off = int_arg(req, "offset", 0, 0x7FFFFFFF)
    data = hex_arg(req, "data", PIECE)
    try:
        n = hub.update_server().write(off, data)
    except Refused as e:
        raise ValueError("image refused: " + str(e))
    return {"received": n, "state": hub.update_server().state}


async def image_end(hub, req):
    try:
        return hub.update_server().end()
    except Refused as e:
        raise ValueError("image refused: " + str(e))


async def image_activate(hub, req):
    """{total, at}: activate the verified image with this total hash (hex,
    as CS06 names the image) at UTC `at` (0: now); the hub resets into it."""
    total = str_arg(req, "total", 64)
    at = int_arg(req, "at", 0, 0xFFFFFFFF, 0)
    hub.update_server().activate(total, at)
    return hub.update_server().status()


async def image_abort(hub, req):
    hub.update_server().abort()
    return hub.update_server().status()


async def image_anchor(hub, req):
    """{anchor, min_version}: the manufacturer anchor (the P-256 public
    point, 65 bytes hex) and the lowest version the hub takes (a stored
    higher minimum stays: it is never lowered)."""
    from binascii import hexlify

    import lazy

    anchor = hex_arg(req, "anchor", 65)
    b = lazy.borrow("gbcs.p256")  # P-256 goes with the check unless something held it before
    try:
        lazy.load("gbcs.p256").decode_point(anchor)  # ValueError for a point that is not on P-256
    finally:
        lazy.give_back(b)
    mv = str_arg(req, "min_version", 23, "0")
    cur = hub.update_server().kv.get("min_version")
    if cur and version_tuple(cur) > version_tuple(mv):
        mv = cur  # anti-rollback: a minimum is never lowered (the answer says which one holds)
    hub.update_server().kv.update({"anchor": hexlify(anchor).decode(), "min_version": mv})
    return hub.update_server().status()


COMMANDS = (("image_status", image_status), ("image_write", image_write), ("image_end", image_end),
            ("image_activate", image_activate), ("image_abort", image_abort), ("image_anchor", image_anchor))
