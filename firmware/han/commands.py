# The HAN's local-port commands (fn(hub, req): docs/local-port.md), loaded on
# first use and dropped after each (firmware/lazy.py; app.py _LAZY_COMMANDS):
# the coordinator's status, a raw tunnel exchange, a ZCL read, an energy scan
# on request and the network key's rotation (rotate_key: also for tests;
# local_port's argument helpers are imported by the commands that use them).
import asyncio
from binascii import hexlify
import os

import board
import codes
import lazy
from han import zcl as Z
from han.messaging import DeliveryError
from log import KindException


async def han_status(hub, req):
    c = hub.coordinator
    kv = c.kv
    job = c.supervisor.jobs.get("han") or {}
    ez = c.ezsp
    return {
        "state": c.state,
        "ezsp_version": ez.ver if ez is not None and c.state == "up" else None,
        "channel": kv.get("ch"),
        "pan_id": kv.get("pan"),
        "ext_pan_id": kv.get("xpan"),
        # joined devices heard since start; those the log holds joined
        # but has not heard from since start are listed in not_heard
        "node_count": sum(1 for e in c.device_log.entries() if e["node_id"] is not None
                          and e["join_state"] == "joined"),
        "not_heard": c.device_log.not_heard(),
        "restarts": job.get("restarts", 0),
        "counters": dict(c.counters.items()),
        "trust_centre": c.tc.stats if c.tc is not None else None,
        "versions": {k: list(c.device_versions(k)) for k in c.dev if c.device_versions(k)},
        "ash": dict(ez.t.stats.items()) if ez is not None and hasattr(ez.t, "stats") else None,
        "ezsp": ez.stats if ez is not None else None,
        "energy_scan": kv.get("scan"),
    }


def _not_alert(m):
    # a raw exchange's answer is anything but a GBCS alert: an alert the
    # device sends meanwhile goes to the router (on_tunnel_message)
    from gbcs import frame as gframe

    try:
        return gframe.parse(m).cra != gframe.CRA_ALERT
    except ValueError:
        return True


async def han_tunnel(hub, req):
    # {eui, data: hex, timeout_ms, match_prefix: hex} -> {ok, reply (hex), ms} | {ok: false, reason, error}
    from local_args import eui_arg, hex_arg, int_arg

    c = hub.coordinator
    eui = eui_arg(req)
    data = hex_arg(req, "data", 1800, "")
    timeout_ms = int_arg(req, "timeout_ms", 0, 120000, 30000)
    pre = hex_arg(req, "match_prefix", 64, "")
    t0 = board.ticks_ms()
    try:
        r = await c.tunnel_exchange(eui, data, timeout_ms, (lambda m: bytes(m[:len(pre)]) == pre) if pre else _not_alert)
    except DeliveryError as e:
        return {"ok": False, "reason": e.reason, "error": str(e)}
    return {"ok": True, "reply": hexlify(r).decode(), "ms": asyncio.ticks_diff(board.ticks_ms(), t0)}


async def han_zcl_read(hub, req):
    # {eui, cluster, attrs: [ids], ep} -> {ok, records: [[attr, status, type, value]]}
    from local_args import eui_arg, int_arg

    c = hub.coordinator
    eui = eui_arg(req)
    ep = int_arg(req, "ep", 1, 240, 1)
    cluster = int_arg(req, "cluster", 0, 0xFFFF, 0)
    timeout_ms = int_arg(req, "timeout_ms", 0, 60000, 10000)
    attrs = req.get("attrs", [])
    if not isinstance(attrs, list) or len(attrs) > 32:
        raise ValueError("'attrs' must be a list of at most 32 attribute ids")
    for a_id in attrs:
        if not isinstance(a_id, int) or isinstance(a_id, bool) or not 0 <= a_id <= 0xFFFF:
            raise ValueError("'attrs' must hold integers 0..65535")
    f = Z.Header(Z.READ_ATTRIBUTES, c.next_tsn()).encode()
    Z.encode_read_attributes(attrs, f)
    try:
        a = await c.zcl_request(eui, ep, cluster, f, timeout_ms)
    except DeliveryError as e:
        return {"ok": False, "reason": e.reason, "error": str(e)}
    h, o = Z.parse_header(a)
    if h.command_id != Z.READ_ATTRIBUTES_RSP or h.frame_type != Z.FT_GLOBAL or h.manufacturer is not None:
        return {"ok": False, "reason": "zcl", "error": "answer 0x%02X %s" % (h.command_id, hexlify(a).decode())}
    recs = Z.decode_read_attributes_rsp(a, o)
    out = []
    for a_id, st, t, v in recs:
        if isinstance(v, bytes):
            try:
                v = v.decode() if t == Z.T_CHARSTR else hexlify(v).decode()
            except UnicodeError:
                v = hexlify(v).decode()
        out.append([a_id, st, t, v])
    return {"ok": True, "records": out}


async def han_energy_scan(hub, req):
    # {channels: [11..26] (default all), duration: 0..6} -> {ok, scan: {t, rssi: [[ch, dBm]...]}}
    # while the network is up (the radio leaves its channel for the scan's
    # time); kept in KV "han" "scan": {t: UTC seconds since 2000, rssi:
    # [[channel, dBm]...]} and shown by han_status
    from local_args import int_arg

    chans = req.get("channels", list(range(11, 27)))
    if not isinstance(chans, list) or not chans or not all(
            isinstance(c, int) and not isinstance(c, bool) and 11 <= c <= 26 for c in chans):
        raise ValueError("'channels' must be a list of channels 11..26")
    mask = 0
    for ch in chans:
        mask |= 1 << ch
    duration = int_arg(req, "duration", 0, 6, 3)
    c = hub.coordinator
    try:
        if c.state != "up" or c.ezsp is None:
            raise KindException("HanDown", "HAN is %s" % c.state)
        net = lazy.load("han.network")  # the scan's code, dropped after it
        try:
            res = await net.energy_scan(c.ezsp, mask, duration)
        finally:
            net = None
            lazy.drop("han.network")
    except Exception as e:  # the HAN down, the NCP refusing: said, not raised
        return {"ok": False, "error": repr(e)}
    scan = {"t": c.device_log.utc(), "rssi": [[ch, res[ch]] for ch in sorted(res)]}
    c.kv.set("scan", scan)
    c.counters["scans"] += 1
    return {"ok": True, "scan": scan}


async def rotate_key(ez, security_log, utc, switch_delay):
    """A new network key from os.urandom broadcast by the NCP (han.ezsp.Ezsp
    ez), switched to after switch_delay seconds; the security log gets
    0x8FE2 (utc(): its time)."""
    await ez.ok("broadcastNextNetworkKey", os.urandom(16))
    if switch_delay:
        await asyncio.sleep(switch_delay)
    await ez.ok("broadcastNetworkKeySwitch")
    security_log.append(codes.EV_NETWORK_KEY_ROTATED, b"", utc())


async def han_rotate_key(hub, req):
    # a new network key from os.urandom, broadcast, then switched to;
    # written to the security log (0x8FE2)
    from local_args import int_arg

    c = hub.coordinator
    delay = int_arg(req, "switch_delay_s", 0, 3600, 0)
    ez = c.ezsp
    if c.tc is None or ez is None or c.state != "up":
        return {"ok": False, "error": "HAN is %s" % c.state}
    try:
        await rotate_key(ez, c.security_log, c.device_log.utc, delay)
    except Exception as e:
        return {"ok": False, "error": repr(e)}
    return {"ok": True}


COMMANDS = (("han_status", han_status), ("han_rotate_key", han_rotate_key), ("han_tunnel", han_tunnel),
            ("han_zcl_read", han_zcl_read), ("han_energy_scan", han_energy_scan))
