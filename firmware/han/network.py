# The HAN's rarely run steps, loaded on first use and dropped after
# (firmware/lazy.py; docs/architecture.md "Features loaded on first use"):
# the NCP's bring-up after each start of the HAN job (the EZSP
# configuration; resuming, adopting or forming the network; a hub
# replacement's move to the restored extended PAN id: Coordinator.run), an
# energy scan (forming; han_energy_scan) and the adoption of a join the hub
# never recorded (TrustCentre.sync). Functions on the parts they are handed
# (han.ezsp.Ezsp ez, the Coordinator, the TrustCentre): the hub holds none of
# this code between those moments.
from binascii import hexlify, unhexlify
import os

from micropython import const

from flag import Flag
from han import ezsp_frames as F
from han.ezsp import SE_PROFILE
from log import log

# config ids / policy ids / values (bellows' EzspConfigId / EzspPolicyId)
_CFG = (
    (0x0C, 2),  # STACK_PROFILE: ZigBee PRO
    (0x0D, 5),  # SECURITY_LEVEL
    (0x03, 10),  # APS_UNICAST_MESSAGE_COUNT
    (0x11, 32),  # MAX_END_DEVICE_CHILDREN
    (0x1A, 16),  # SOURCE_ROUTE_TABLE_SIZE
    (0x1E, 20),  # KEY_TABLE_SIZE
    (0x36, 300),  # TRANSIENT_KEY_TIMEOUT_S
)
# trust-centre policy: ALLOW_JOINS (0x01) | JOINS_USE_INSTALL_CODE_KEY (0x10);
# not ALLOW_UNSECURED_REJOINS (0x02)
_TC_POLICY = const(0x11)
_POLICIES = (
    (0x00, _TC_POLICY),  # TRUST_CENTER_POLICY
    (0x05, 0x50),  # TC_KEY_REQUEST_POLICY: deny
    (0x06, 0x61),  # APP_KEY_REQUEST_POLICY: allow (partner link keys, docs/cbke.md)
    (0x04, 0x40),  # MESSAGE_CONTENTS_IN_CALLBACK_POLICY: tag only
)
# initial security bitmask: HAVE_NETWORK_KEY (0x0200) | HAVE_PRECONFIGURED_KEY
# (0x0100) | REQUIRE_ENCRYPTED_KEY (0x0800) | TRUST_CENTER_GLOBAL_LINK_KEY (0x0004)
_SEC_BITMASK = const(0x0B04)
_ALL_CHANNELS = const(0x07FFF800)

# ------------------------------------------------------------ the NCP ----


async def _wait_state(ez, up, timeout):
    # until the NCP reports the network up (or down): stackStatusHandler
    while ez.network_up != up:
        if ez.fault is not None:
            raise F.EzspError("EzspLinkDown", "link down: %s" % ez.fault)
        ez._state_ev.clear()
        if not await ez._state_ev.wait_ms(timeout * 1000):
            raise F.EzspError("EzspTimeout", "network %s not reported" % ("up" if up else "down"))


async def startup(ez, endpoint=1, device_id=0x0500, in_clusters=(0x000A, 0x0702, 0x0704, 0x0800),
                  out_clusters=(0x000A, 0x0702, 0x0704, 0x0800)):
    """The NCP's configuration, policies and the hub's endpoint, after
    ez.connect(); -> the NCP's EUI-64 (also ez.eui)."""
    ez.eui = (await ez.command("getEui64"))[0]
    for cid, val in _CFG:
        await ez.ok("setConfigurationValue", cid, val)
    for pid, dec in _POLICIES:
        await ez.ok("setPolicy", pid, dec)
    await ez.ok("addEndpoint", endpoint, SE_PROFILE, device_id, 0, (list(in_clusters), list(out_clusters)))
    return ez.eui


async def energy_scan(ez, channels_mask, duration):
    """{channel: RSSI dBm} of an energy scan of channels_mask (bits 11..26)."""
    res = {}
    done = Flag()
    st = [0]

    def on_res(v):
        res[v[0]] = v[1]

    def on_done(v):
        st[0] = v[1]
        done.set()

    ez.on("energyScanResultHandler", on_res)
    ez.on("scanCompleteHandler", on_done)
    try:
        await ez.ok("startScan", 0, channels_mask, duration)
        if not await done.wait_ms((ez.timeout + 0.5 * len(range(11, 27))) * 1000):
            raise F.EzspError("EzspTimeout", "no end of the energy scan")
    finally:
        # the callbacks hold the scan's state: not kept past the scan
        ez._handlers.pop("energyScanResultHandler", None)
        ez._handlers.pop("scanCompleteHandler", None)
    if st[0] != 0:
        raise F.EzspError("EzspStatusError", "scan failed: status 0x%X" % st[0])
    return res


async def form_network(ez, channels_mask=_ALL_CHANNELS, ext_pan_id=None, pan_id=None, tx_power=8):
    """Energy scan, pick the quietest allowed channel, form; return
    (channel, pan id, ext pan id)."""
    scan = await energy_scan(ez, channels_mask, 3)
    best = None
    for ch in range(11, 27):
        if channels_mask & (1 << ch) and ch in scan and (best is None or scan[ch] < scan[best]):
            best = ch
    if best is None:
        raise F.EzspError("EzspError", "no allowed channel in the energy scan")
    if ext_pan_id is None:
        ext_pan_id = os.urandom(8)
    if pan_id is None:
        pan_id = int.from_bytes(os.urandom(2), "little") % 0xFFF7 + 1
    net_key = os.urandom(16)
    tc = ez.eui or bytes(8)
    # preconfigured key: the ZigBee Alliance well-known key is not used for
    # joins (policy demands install-code keys); keep the field random.
    await ez.ok("setInitialSecurityState", (_SEC_BITMASK, os.urandom(16), net_key, 0, tc))
    ez.network_up = False
    await ez.ok("formNetwork", (ext_pan_id, pan_id, tx_power, best, 0, 0, 0, 1 << best))
    await _wait_state(ez, True, ez.timeout)
    return best, pan_id, ext_pan_id


async def leave_network(ez):
    """leaveNetwork; True once the NCP reports the network down (or it
    was not on one)."""
    r = await ez.command("leaveNetwork", *((0,) if ez.ver >= 14 else ()))
    if r[0] != 0:
        return False
    if ez.network_up:
        await _wait_state(ez, False, ez.timeout)
    return True


async def resume_network(ez):
    """networkInit; True once the NCP reports the network up."""
    ez.network_up = False
    r = await ez.command("networkInit", 0)
    if r[0] != 0:
        return False
    await _wait_state(ez, True, ez.timeout)
    return True


async def network_parameters(ez):
    """getNetworkParameters -> (channel, pan_id, ext_pan_id) of the
    network the NCP is on, or None."""
    r = await ez.command("getNetworkParameters")
    if r[0] != 0:
        return None
    n = r[2]
    return n[3], n[1], n[0]


# --------------------------------------------------- the coordinator ----


async def reform(coord, ez, xpan):
    """Hub replacement (CCS03): the HAN moves to the restored extended
    PAN id. A cut anywhere in here leaves the KV on the old id, so the
    next start comes here again; a network the NCP already formed on the
    restored id is adopted."""
    coord.state = "forming"
    if await resume_network(ez):
        p = await network_parameters(ez)
        if p is not None and p[2] == xpan:
            _store(coord, *p)
            log("han", "network on the restored ext PAN id adopted")
            return
    await leave_network(ez)
    ch, pan, _x = await form_network(ez, _ALL_CHANNELS, xpan)
    _store(coord, ch, pan, xpan)
    coord.tc.link_reset()
    coord.counters["formed"] += 1
    log("han", "network re-formed on the restored ext PAN id ch=%d pan=0x%04X" % (ch, pan))


async def network(coord, ez):
    """The network after the NCP's startup: resumed from the NCP's NVM (KV
    "han" says one was formed), adopted (the NCP has one the hub never
    stored), moved (a restore's extended PAN id) or formed."""
    kv = coord.kv
    x = coord._restored_xpan() if kv.get("formed") else None
    if x is not None:
        await reform(coord, ez, x)
        return
    if kv.get("formed"):
        coord.state = "resuming"
        if await resume_network(ez):
            if coord.device_log.ext_pan_id is None and kv.get("xpan"):
                # a cut between the two writes of _store
                coord.device_log.set_ext_pan_id(unhexlify(kv.get("xpan")))
            coord.counters["resumed"] += 1
            log("han", "network resumed ch=%s pan=0x%04X" % (kv.get("ch"), kv.get("pan") or 0))
            return
        # the NCP lost its NVM (replaced?): form again on the same ids
        log("han", "networkInit failed: forming again")
        xpan = unhexlify(kv.get("xpan")) if kv.get("xpan") else None
        pan = kv.get("pan")
    else:
        # nothing stored, but the NCP may have formed a network the hub
        # never heard of (power cut between formNetwork and the KV
        # write): resume and adopt it rather than form a second one
        coord.state = "resuming"
        if await resume_network(ez):
            p = await network_parameters(ez)
            if p is not None:
                ch, pan, xpan = p
                _store(coord, ch, pan, xpan)
                coord.counters["resumed"] += 1
                log("han", "NCP's network adopted ch=%d pan=0x%04X" % (ch, pan))
                return
        xpan, pan = coord.device_log.ext_pan_id, None  # a restore's, if any
    coord.state = "forming"
    ch, pan, xpan = await form_network(ez, _ALL_CHANNELS, xpan, pan)
    _store(coord, ch, pan, xpan)
    coord.counters["formed"] += 1
    log("han", "network formed ch=%d pan=0x%04X" % (ch, pan))


def _store(coord, ch, pan, xpan):
    coord.kv.update({"formed": 1, "ch": ch, "pan": pan, "xpan": hexlify(xpan).decode()})
    if coord.device_log.ext_pan_id != xpan:
        coord.device_log.set_ext_pan_id(xpan)
    coord._xpan = bytes(xpan)


# ------------------------------------------------- the trust centre ----


async def eui_of_node(ez, node_id):
    """lookupEui64ByNodeId (the NCP's address/child/neighbour tables):
    the EUI-64 of a node on the network, or None."""
    r = await ez.command("lookupEui64ByNodeId", node_id)
    return r[1] if r[0] == 0 else None


async def link_key(ez, eui):
    """The APS link key the NCP's key table holds for eui, or None
    (v8: findKeyTableEntry + getKeyTableEntry; v13+: exportLinkKeyByEui)."""
    if ez.ver >= 14:
        r = await ez.command("exportLinkKeyByEui", eui)
        return r[8] if r[0] == 0 and r[4] == eui else None
    if ez.ver >= 13:
        r = await ez.command("exportLinkKeyByEui", eui)
        return r[0] if r[6] == 0 else None
    i = (await ez.command("findKeyTableEntry", eui, 1))[0]
    if i == 0xFF:
        return None
    r = await ez.command("getKeyTableEntry", i)
    return r[3] if r[0] == 0 and r[7] == eui else None


async def adopt(tc):
    """A join the NCP completed but the hub never recorded (the power cut
    fell between the NCP's trustCenterJoinHandler and the Device Log
    write): the device is on the network and talks. It is recorded as
    joined with that node id (also a joined entry under an older node id:
    a rejoin missed the same way) only if it is in the Device Log and the
    NCP's key table holds for it exactly a link key the log lets it join
    with (its install-code key, or its historic key). Anything else is
    left alone: no join is invented. (tc: the TrustCentre; its traffic
    from unknown node ids, tc._unknown, is taken.)"""
    todo, tc._unknown = tc._unknown, None
    for node, eui in todo.items():
        if eui is None:
            eui = await eui_of_node(tc.ezsp, node)
        if eui is None or eui not in tc.log:
            tc.stats["not_adopted"] += 1
            continue
        have = await link_key(tc.ezsp, eui)
        if have is None or have not in tc.log.link_keys(eui):
            tc.stats["not_adopted"] += 1
            continue
        tc.stats["adopted"] += 1
        tc.log.record_join(eui, node)
        tc._joined(eui, node)
