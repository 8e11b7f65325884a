"""HIL: the coordinator's ZCL/tunnel API end to end. The hub (built image,
under micropython) and the demo HAN of emulated devices (hil/devices, their
own CPython ZCL/APS coding): after joining, the ESME, GSME and IHD have read
the hub's Time cluster; the hub tunnels 1200-byte messages to the ESME (the
hub opens the tunnel) and to the sleepy GSME (on the tunnel the GSME
opened), APS-fragmented both ways; ZCL reads in both directions; the
DeliveryError reasons."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chubcore.localport import LocalPortError
from hil.han_setup import DEVICES
from hil.system import EmulatedSystem

UNIX_2000 = 946684800


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, hub_image: Path) -> Iterator[EmulatedSystem]:
    # the board's default heap; the heap budget is tests/test_hil_boot.py's
    # business, this test is about the messaging
    s = EmulatedSystem(tmp_path_factory.mktemp("han_msg") / "sys", image=hub_image, fresh=True)
    s.han_version = 14  # type: ignore[attr-defined]
    s.call_timeout = 40
    s.start()
    yield s
    s.stop()


def _counters(system: EmulatedSystem) -> dict:
    return system.call("han_status")["counters"]


def test_devices_read_the_hub_time_after_joining(demo: EmulatedSystem) -> None:
    han = demo.han
    for name in ("esme", "gsme", "ihd"):
        d = han.device(name)
        t = demo.wait_until(lambda d=d: d.hub_time, 10, f"{name} reading the hub time")
        # Master always; Synchronized is the CH clock's validity (tested
        # byte-exact in tests/mp/mp_zcl_servers.py)
        assert t["status"] & 0x01, t
        assert abs(t["unix"] - time.time()) < 5, (t, time.time())
        assert t["time"] == t["unix"] - UNIX_2000
        assert not d.errors, d.errors
    # the GSME opened its tunnel to the hub
    gsme = han.device("gsme")
    demo.wait_until(lambda: gsme.tunnel_id is not None or gsme.errors, 5, "the GSME's tunnel")
    assert gsme.tunnel_id is not None, gsme.errors
    # the hub read each device's Basic application and stack versions after
    # it joined (for CCS04/CCS05 active_devices); the sleepy GSME too
    want = {DEVICES[n].eui: [1, 0x10] for n in ("esme", "gsme", "ihd")}
    demo.wait_until(lambda: all(demo.call("han_status")["versions"].get(k) == v for k, v in want.items()), 10,
                    "every device's versions read")


def test_tunnel_exchange_esme_and_gsme(demo: EmulatedSystem) -> None:
    han = demo.han
    esme, gsme = DEVICES["esme"].eui, DEVICES["gsme"].eui
    before = _counters(demo)
    msg = os.urandom(1200)
    r = demo.call("han_tunnel", eui=esme, data=msg.hex(), timeout_ms=20000)
    assert r["ok"], r
    assert bytes.fromhex(r["reply"]) == msg  # the ESME's default hook echoes
    assert han.device("esme").tunnel_in[-1] == msg and han.device("esme").served  # the hub opened it
    c = _counters(demo)
    assert c["frag_tx"] - before["frag_tx"] >= 19 and c["frag_rx"] - before["frag_rx"] >= 19
    # the hub acknowledged each of the ESME's 19 reply fragments (sendReply,
    # groupId 0xFF00 | index), as EmberZNet's host fragmentation does
    nid = han.nodes["esme"].node_id
    demo.wait_until(lambda: sorted(i for n, i in han.emu.fragment_acks if n == nid)[-19:] == list(range(19)), 5,
                    "an APS ACK for each of the 19 fragments")
    # a second exchange reuses the tunnel; a short message is not fragmented
    r = demo.call("han_tunnel", eui=esme, data="0102", timeout_ms=5000)
    assert r["ok"] and r["reply"] == "0102" and len(han.device("esme").served) == 1
    # the sleepy GSME: on the tunnel it opened (hub = server), delivered on poll
    msg = os.urandom(700)
    from hil.devices import echo, ignore

    han.device("gsme").on_tunnel_data = echo
    try:
        r = demo.call("han_tunnel", eui=gsme, data=msg.hex(), timeout_ms=20000)
    finally:
        han.device("gsme").on_tunnel_data = ignore
    assert r["ok"], r
    assert bytes.fromhex(r["reply"]) == msg and not han.device("gsme").served
    assert _counters(demo)["tunnel_rx"] >= before["tunnel_rx"] + 3
    # a device-initiated message (a GSME GET) reaches the hub's tunnel layer:
    # on_tunnel_message (the router's, when installed) answers it on the same
    # tunnel, or it is counted as unclaimed
    c0 = _counters(demo)
    g = han.device("gsme")
    n = len(g.tunnel_in)

    async def get() -> bool:
        return g.tunnel_send(b"\x01")

    assert han.run(get())
    demo.wait_until(lambda: _counters(demo)["tunnel_rx"] == c0["tunnel_rx"] + 1, 5, "the tunnel message counted")
    demo.wait_until(lambda: _counters(demo)["tunnel_unclaimed"] > c0["tunnel_unclaimed"] or len(g.tunnel_in) > n, 5,
                    "the GET answered or counted unclaimed")


def test_delivery_errors(demo: EmulatedSystem) -> None:
    han = demo.han
    r = demo.call("han_tunnel", eui="70B3D5C1DEAD0009", data="01", timeout_ms=2000)
    assert not r["ok"] and r["reason"] == "no_route"
    with pytest.raises(LocalPortError) as ei:  # not an EUI-64: a bad argument
        demo.call("han_tunnel", eui="not-an-eui", data="01", timeout_ms=2000)
    assert ei.value.status == 5 and "eui" in ei.value.message
    # the ESME gets the message but does not answer
    esme = han.device("esme")

    async def silent(data: bytes) -> None:
        return None

    esme.on_tunnel_data = silent
    try:
        t0 = time.monotonic()
        r = demo.call("han_tunnel", eui=DEVICES["esme"].eui, data="0a0b", timeout_ms=1500)
        assert not r["ok"] and r["reason"] == "timeout" and time.monotonic() - t0 < 5
    finally:
        from hil.devices import echo

        esme.on_tunnel_data = echo
    # the radio loses everything: the NCP reports the unicast not delivered
    han.emu.han.loss = 1.0
    try:
        r = demo.call("han_tunnel", eui=DEVICES["ihd"].eui, data="0c", timeout_ms=3000)
    finally:
        han.emu.han.loss = 0.0
    assert not r["ok"] and r["reason"] == "no_route" and "not delivered" in r["error"], r
    # a message longer than the device accepts
    r = demo.call("han_tunnel", eui=DEVICES["esme"].eui, data="00" * (esme.max_in + 1), timeout_ms=2000)
    assert not r["ok"] and r["reason"] == "tunnel"


def test_exchange_skips_what_does_not_match(demo: EmulatedSystem) -> None:
    """While an exchange waits, the ESME first pushes an unrelated message
    (an alert): with a match predicate the exchange takes only its answer;
    the alert goes to on_tunnel_message (or is counted unclaimed)."""
    han = demo.han
    esme = han.device("esme")
    from hil.devices import echo

    async def alert_first(data: bytes) -> bytes:
        esme.tunnel_push(b"\xa1alert")
        await asyncio.sleep(0.05)
        return b"\x00" + data

    c0 = _counters(demo)
    esme.on_tunnel_data = alert_first
    try:
        r = demo.call("han_tunnel", eui=DEVICES["esme"].eui, data="1234", match_prefix="00", timeout_ms=5000)
        # without a predicate the alert is taken as the answer
        r2 = demo.call("han_tunnel", eui=DEVICES["esme"].eui, data="5678", timeout_ms=5000)
    finally:
        esme.on_tunnel_data = echo
    assert r["ok"] and r["reply"] == "001234", r
    assert r2["ok"] and r2["reply"] == b"\xa1alert".hex(), r2
    c1 = demo.wait_until(lambda: (c := _counters(demo))["tunnel_rx"] >= c0["tunnel_rx"] + 4 and c, 5,
                         "four tunnel messages counted")
    assert c1["exchanges"] == c0["exchanges"] + 2



def _exchange_with_an_alert(demo: EmulatedSystem, send: str) -> dict:
    """A raw han_tunnel exchange with the ESME during which it sends a GBCS
    alert: send "push" on the tunnel the hub opened, "own" on a tunnel of
    its own (opened then, as the living ESME reports). -> the exchange's
    answer, once the router has taken the alert."""
    from hil.campaign.capacity import ALERT, readdress, rtds
    from hil.devices import echo

    esme = demo.han.device("esme")
    alert = readdress(rtds(ALERT), originator=DEVICES["esme"].eui)

    async def own() -> None:
        if esme.tunnel_id is None:
            await esme.open_tunnel(5)
        esme.tunnel_send(alert)

    async def alert_first(data: bytes) -> bytes:
        if send == "push":
            esme.tunnel_push(alert)
        else:
            asyncio.get_running_loop().create_task(own())
        await asyncio.sleep(0.3)
        return data

    before = demo.call("route_status")["counters"]["device_messages"]
    esme.on_tunnel_data = alert_first
    try:
        r = demo.call("han_tunnel", eui=DEVICES["esme"].eui, data="0d0a", timeout_ms=8000)
    finally:
        esme.on_tunnel_data = echo
    demo.wait_until(lambda: demo.call("route_status")["counters"]["device_messages"] == before + 1, 5,
                    "the alert routed")
    return r


def test_a_gbcs_alert_during_a_raw_exchange_is_routed_not_taken(demo: EmulatedSystem) -> None:
    """An installer's raw exchange (no match predicate) never takes a GBCS
    alert the device sends meanwhile: the alert goes to the router (to the
    head-end), the exchange gets the device's answer."""
    r = _exchange_with_an_alert(demo, "push")
    assert r["ok"] and r["reply"] == "0d0a", r


def test_an_exchange_survives_the_device_opening_its_own_tunnel(demo: EmulatedSystem) -> None:
    """While the hub's exchange on the tunnel it opened awaits its answer,
    the device opens a tunnel of its own and sends an alert on it (as the
    living ESME reports): the alert goes to the router, the answer still
    arrives on the hub's tunnel and is taken (before: the hub dropped that
    tunnel, refused the answer and the exchange timed out)."""
    r = _exchange_with_an_alert(demo, "own")
    assert r["ok"] and r["reply"] == "0d0a", r


def test_zcl_reads_both_ways(demo: EmulatedSystem) -> None:
    han = demo.han
    # the hub reads the ESME's Basic cluster
    r = demo.call("han_zcl_read", eui=DEVICES["esme"].eui, cluster=0, attrs=[0x0004, 0x0005, 0x1234])
    assert r["ok"], r
    assert r["records"] == [[4, 0, 0x42, "chub rig"], [5, 0, 0x42, "EMU-ESME"], [0x1234, 0x86, None, None]]
    # the IHD reads the hub's Basic cluster, and an attribute it lacks
    ihd = han.device("ihd")
    got = han.run(ihd.read_hub_attributes(0x0000, [0x0004, 0x0007, 0x4000, 0x1234]))
    assert got[0x0004] == (0, 0x42, "Open CHub") and got[0x0007] == (0, 0x30, 1)
    assert got[0x4000][0] == 0 and got[0x4000][1] == 0x42 and got[0x1234] == (0x86, None, None)
    # a cluster the hub has no server for: Default Response UNSUPPORTED_CLUSTER
    from hil.devices import zcl as Z

    z = han.run(ihd.request(0x0B04, Z.read_attributes(ihd.next_tsn(), [0])))
    assert z.command == Z.DEFAULT_RSP and z.payload == bytes((Z.READ_ATTRIBUTES, Z.UNSUPPORTED_CLUSTER))
    # a cluster-specific command to the Time server: UNSUP_CLUSTER_COMMAND
    z = han.run(ihd.request(0x000A, Z.frame(Z.CLUSTER_SPECIFIC, ihd.next_tsn(), 0x00)))
    assert z.command == Z.DEFAULT_RSP and z.payload == bytes((0x00, Z.UNSUP_CLUSTER_COMMAND))


def test_network_key_rotation_on_command(demo: EmulatedSystem) -> None:
    han = demo.han
    old_key, old_seq = han.emu.han.network_key, han.emu.han.key_seq
    r = demo.call("han_rotate_key")
    assert r == {"ok": True}, r
    assert han.emu.han.network_key != old_key and han.emu.han.key_seq == (old_seq + 1) & 0xFF
    assert han.emu.han.next_network_key is None
    assert {"broadcastNextNetworkKey", "broadcastNetworkKeySwitch"} <= set(han.commands)
    sec = demo.call("logs", which="security")["entries"]
    assert any(e[1] == 0x8FE2 for e in sec), sec
    # the HAN carries on
    r = demo.call("han_tunnel", eui=DEVICES["ihd"].eui, data="0d", timeout_ms=5000)
    assert r["ok"] and r["reply"] == "0d", r


def test_removing_a_joined_device_removes_it_from_the_network(demo: EmulatedSystem) -> None:
    """Last in this module: the ESME leaves the Device Log."""
    han = demo.han
    eui = DEVICES["esme"].eui
    assert han.nodes["esme"].joined
    r = demo.call("device_log_remove", eui=eui)
    assert r["code"] == 0, r
    # the trust centre asks the NCP to remove it (removeDevice 0xA8) ...
    demo.wait_until(lambda: bytes.fromhex(eui) in han.emu.removed, 5, "removeDevice at the NCP")
    assert "removeDevice" in han.commands and not han.nodes["esme"].joined
    tc = demo.wait_until(lambda: (t := demo.call("han_status")["trust_centre"])["kicked"] >= 1 and t, 5,
                         "the trust centre's kick")
    assert tc["kick_errors"] == 0
    assert eui not in demo.call("han_status")["versions"]
    # ... and the hub has no route to it any more; the others are untouched
    r = demo.call("han_tunnel", eui=eui, data="01", timeout_ms=2000)
    assert not r["ok"] and r["reason"] == "no_route"
    assert han.nodes["gsme"].joined and han.nodes["ihd"].joined
    r = demo.call("han_tunnel", eui=DEVICES["ihd"].eui, data="0203", timeout_ms=5000)
    assert r["ok"] and r["reply"] == "0203"
