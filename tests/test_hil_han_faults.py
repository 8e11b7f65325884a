"""HIL: faults on the hub's NCP link and late joins, against the real hub
(built image, under micropython) and the rig's NCP emulator with the demo
HAN. Each ASH fault is injected by the emulator's NCP side (hil/ncp/ash.py)
while the hub is busy with a tunnel exchange to the ESME: corrupted,
truncated, over-long, out-of-sequence frames and line noise are counted and
dropped; lost host frames, lost host ACKs and a short NAK storm are
recovered inside ASH; a long NAK storm and an ASH ERROR take the link down
and the coordinator comes back on its own (networkInit, never formNetwork).
After every fault the hub is alive, the Device Log still lists the four
devices as joined and an exchange with the ESME works. A logged device that
tries to join after its window closed is refused and written to the
security log (0x8F3E)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from chub.cli import main
from hil.han_setup import DEVICES, DeviceSpec
from hil.system import EmulatedSystem

EV_JOIN_WINDOW_CLOSED = 0x8F3E  # codes.EV_JOIN_WINDOW_CLOSED
LATE = DeviceSpec("late", "70B3D5C1AAAA0007", 5, bytes.fromhex("0A1B2C3D4E5F60718293A4B5C6D7E8F9"))
KEEPER = DeviceSpec("keeper", "70B3D5C1AAAA0008", 6, bytes.fromhex("F9E8D7C6B5A4938271605F4E3D2C1B0A"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, hub_image: Path) -> Iterator[EmulatedSystem]:
    s = EmulatedSystem(tmp_path_factory.mktemp("han_faults") / "sys", image=hub_image, fresh=True)
    s.start()
    yield s
    s.stop()


def _healthy(system: EmulatedSystem) -> dict:
    """The hub is alive, the ESME reachable over the tunnel and the HAN up
    with its four devices joined in the Device Log (node_count)."""
    r = system.wait_until(lambda: (x := system.call("han_tunnel", eui=DEVICES["esme"].eui, data="c0ffee",
                                                    timeout_ms=8000))["ok"] and x, 20, "an exchange with the ESME")
    assert r["reply"] == "c0ffee", r  # type: ignore[index]
    st = system.call("han_status")
    assert st["state"] == "up" and st["node_count"] == 4, st
    assert system.dut is not None and system.dut.alive
    return st


FAULTS = [  # (kind, count, the hub's ASH counter that must rise, by at least)
    ("corrupt", 3, "crc_errors", 3),
    ("truncated", 2, "length_errors", 2),
    ("overlong", 2, "length_errors", 2),
    ("out_of_sequence", 2, "rx_out_of_seq", 1),
    ("drop", 2, "tx_retx", 2),
    ("nak", 3, "rx_nak", 3),
    ("ack_lost", 2, "rx_dup", 1),
]


def test_ash_faults_recovered_inside_the_link(demo: EmulatedSystem) -> None:
    before = _healthy(demo)
    restarts = before["restarts"]
    for kind, n, stat, rise in FAULTS:
        demo.han.fault(kind, n)
        after = _healthy(demo)  # the exchange runs through the fault
        if kind == "ack_lost":  # the NCP only retransmits when nothing else acks
            demo.wait_until(lambda: demo.han.ash_faults.get("ack_lost", 0) >= 1, 5, "a lost ACK")
            after = demo.wait_until(
                lambda: (s := demo.call("han_status"))["ash"][stat] > before["ash"][stat] and s,  # noqa: B023
                5, "the duplicate")  # type: ignore[assignment]
        assert after["ash"][stat] >= before["ash"][stat] + rise, (kind, before["ash"], after["ash"])
        assert after["restarts"] == restarts, f"{kind}: the link recovered without a restart"
        assert after["ash"]["link_failures"] == 0 and after["ash"]["ncp_resets"] == 0, kind
        before = after


def test_line_noise(demo: EmulatedSystem) -> None:
    before = _healthy(demo)
    demo.han.fault("garbage", 4)
    after = _healthy(demo)
    assert after["restarts"] == before["restarts"]


def test_long_nak_storm_and_ash_error_restart_the_link(demo: EmulatedSystem) -> None:
    han = demo.han
    st = _healthy(demo)
    mark = len(han.commands)
    hard = st["counters"]["hard_resets"]
    # NAKs for more than the 5 tries: LinkFailure, the NCP's reset line is
    # pulled and the network resumed
    han.fault("nak", 12)
    r = demo.call("han_tunnel", eui=DEVICES["esme"].eui, data="01", timeout_ms=3000)
    assert not r["ok"]
    st2 = demo.wait_until(lambda: (s := demo.call("han_status"))["restarts"] > st["restarts"] and s, 10, "a restart")
    st2 = _healthy(demo)
    assert st2["counters"]["hard_resets"] == hard + 1
    after = han.commands[mark:]
    assert "networkInit" in after and "formNetwork" not in after
    # an ASH ERROR frame: the NCP failed; the job restarts (no reset-line pull)
    han.fault("error")
    demo.wait_until(lambda: demo.call("han_status")["restarts"] > st2["restarts"], 10, "a restart")
    st3 = _healthy(demo)
    assert st3["counters"]["hard_resets"] == hard + 1 and st3["counters"]["ncp_resets"] >= 1


def test_join_after_the_window_closed_is_refused_and_logged(demo: EmulatedSystem) -> None:
    han = demo.han
    han.add_device(LATE)
    han.add_device(KEEPER)  # its open window keeps joining permitted
    for spec, secs in ((KEEPER, 600), (LATE, 1)):
        r = demo.call("device_log_add", eui=spec.eui, type=spec.dev_type, install_code=spec.install_code_hex,
                      join_timeout=secs)
        assert r["code"] == 0, r
    time.sleep(2.5)  # the LATE window closes; the trust centre drops its key
    han.power_on("late")
    demo.wait_until(lambda: han.devices["late"]["state"] in ("refused", "gave up"), 10, "the late device refused")
    assert not han.nodes["late"].joined

    def logged() -> bool:
        r = CliRunner().invoke(main, ["hht", "--port", demo.local_port_url, "logs", "--which", "security", "--json"])
        entries = json.loads(r.output.strip().splitlines()[-1])["entries"]
        return (EV_JOIN_WINDOW_CLOSED, LATE.eui) in {(e[1], e[2].upper()) for e in entries}

    demo.wait_until(logged, 10, "0x8F3E in the security log")
    _healthy(demo)
    # removing a device that never joined sends no removeDevice
    assert demo.call("device_log_remove", eui=KEEPER.eui)["code"] == 0
    time.sleep(1.5)  # a trust-centre sync
    assert bytes.fromhex(KEEPER.eui) not in han.emu.removed and "removeDevice" not in han.commands


def test_hostile_device_frames(demo: EmulatedSystem) -> None:
    """A joined device (the IHD) sends 160 malformed or unexpected messages
    to the hub's own servers (Basic, Time, Tunneling) and to a cluster it
    has none for: random bytes, valid headers with random payloads, APS
    fragments with random indexes and counts, Tunneling commands for
    tunnels that are not its own. The hub answers or drops each one; no
    handler fails, the link stays up."""
    from hil.ncp.emulator import ApsFrame

    han = demo.han
    node = han.nodes["ihd"]
    before = _healthy(demo)
    rng = random.Random(5)

    def rnd(n: int) -> bytes:
        return bytes(rng.randrange(256) for _ in range(n))

    async def storm() -> int:
        sent = 0
        for i in range(160):
            cluster = rng.choice([0x0000, 0x000A, 0x0704, 0x0B04])
            opts, group, kind = 0x0040, 0, i % 4
            if kind == 0:
                payload = rnd(rng.randrange(0, 60))
            elif kind == 1:
                payload = bytes((rng.choice([0x00, 0x01, 0x04, 0x08, 0x10, 0x11, 0x14]), rng.randrange(256),
                                 rng.randrange(256))) + rnd(rng.randrange(0, 40))
            elif kind == 2:
                opts, group = 0x8040, rng.randrange(0x10000)
                payload = rnd(rng.randrange(1, 64))
            else:
                cluster = 0x0704
                payload = bytes((0x01, rng.randrange(256), rng.randrange(1, 8))) + rnd(rng.randrange(0, 8))
            sent += han.emu.device_send(node, ApsFrame(0x0109, cluster, 1, 1, opts, group, 0), payload)
            await asyncio.sleep(0.005)
        return sent

    assert han.run(storm()) == 160
    time.sleep(0.5)
    after = _healthy(demo)
    c0, c1 = before["counters"], after["counters"]
    assert after["restarts"] == before["restarts"]
    assert c1["zcl_errors"] == c0["zcl_errors"] and after["ezsp"]["handler_errors"] == 0, c1
    assert c1["zcl_bad"] > c0["zcl_bad"] and c1["frag_drop"] > c0["frag_drop"], (c0, c1)
    assert c1["rx"] - c0["rx"] >= 160
