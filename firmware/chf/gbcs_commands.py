# The CHF's local-port commands of the HHT role (fn(hub, req):
# docs/local-port.md; listed in chf.gbcs_port): loaded for each call and
# dropped after it (chf.gbcs_port.COMMANDS names this module;
# app.Hub.run_command loads it).
from ids import hex_bytes, hex_text


def public(identity):
    """{"chf": {"eui", "ka_pub", "ds_pub"}, "gpf": {...}} as hex strings
    (the public keys read from KV "identity": chf.identity.Identity.key)."""
    out = {}
    for name in ("chf", "gpf"):
        out[name] = {"eui": hex_text(identity.key(name, "eui")), "ka_pub": hex_text(identity.key(name, "ka_q")),
                     "ds_pub": hex_text(identity.key(name, "ds_q"))}
    return out


async def cmd_identity(hub, req):
    return public(hub.identity)


async def cmd_send(hub, req):
    data = hex_bytes(req.get("frame"), "frame")
    # hht: true -- a GSME's response to it is kept for the HHT (route_replies)
    # instead of going to the head-end
    resp, alerts = await hub.router.route_wait(data, source="hht" if req.get("hht") is True else None)
    return {"response": hex_text(resp) if resp is not None else None, "alerts": [hex_text(a) for a in alerts]}


COMMANDS = (("identity", cmd_identity), ("send_gbcs", cmd_send))
