"""HIL: trust on the head-end link (issue 16, items 1-2). The hub under
micropython, the SIM7600 emulator and the head-end server as in
tests/test_hil_wan.py; here the network between the modem and the head-end is
hostile: bytes are injected into it (`push_to_link`: as if they came from the
network on the hub's head-end connection) and captured from it
(`on_downlink`: what arrives from the network, as on the wire) to be replayed.

Findings (each of these failed on the plain-TCP link):
* a forged ACK deleted a queued response from the outbox;
* a forged TIME frame moved the hub's clock;
* a replayed TIME frame moved the hub's clock back.

One emulated system per module (fresh flash); each test leaves the link up.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.system import EmulatedSystem

ECS26I = "6.2.4_ECS26i/ECS26i_6.2.4_SUCCESS_COMMAND_GBCS.HEX"
ACK, TIME = 4, 5


def link_frame(ftype: int, fid: int, payload: bytes) -> bytes:
    """A head-end link frame as a forger would build it (docs/headend-link.md)."""
    head = b"CH" + bytes([ftype]) + fid.to_bytes(4, "big") + len(payload).to_bytes(2, "big")
    return head + payload + zlib.crc32(head + payload).to_bytes(4, "big")


@pytest.fixture(scope="module")
def system(hub_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedSystem]:
    s = EmulatedSystem(tmp_path_factory.mktemp("wan_trust"), image=hub_image, fresh=True).start()
    assert s.headend.headend is not None, "the test DCC was not provisioned"
    s.call_timeout = 10
    s.call("wan_config", set={"retry_ms": 100, "retry_max_ms": 1000})
    yield s
    s.stop()


def on_rig(s: EmulatedSystem, fn) -> None:  # noqa: ANN001
    async def go() -> None:
        fn()

    assert s.rig is not None
    s.rig.call(go())


def connected(s: EmulatedSystem) -> None:
    s.wait_until(lambda: s.call("wan_status")["connected"] and s.headend.connected, 20, "the link up")


def clock_offset(s: EmulatedSystem) -> float:
    return s.call("status")["clock"]["utc"] - time.time()


def test_forged_ack_does_not_delete_a_queued_response(system: EmulatedSystem, vectors: Path) -> None:
    s, he = system, system.headend
    connected(s)
    he.ack_hub_frames = False  # the head-end holds its ACKs: the response stays queued
    try:
        n = len(he.received)
        raw = (vectors / "gbcs" / "rtds" / ECS26I).read_text().strip()
        assert he.loop is not None
        fut = asyncio.run_coroutine_threadsafe(he.asend_command(bytes.fromhex(raw), timeout=15), he.loop)
        he.wait(lambda: len(he.received) > n, 15, "the response")
        rid = he.received[n].id
        s.wait_until(lambda: s.call("wan_status")["outbox_pending"] >= 1, 5, "the response queued")
        on_rig(s, lambda: s.modem.push_to_link(0, link_frame(ACK, rid, b"\x00")))  # forged on the network
        time.sleep(1.0)
        assert s.call("wan_status")["outbox_pending"] >= 1, "a forged ACK deleted the queued response"
    finally:
        he.ack_hub_frames = True
    # the real head-end's ACK still takes it (after a reconnect where the forgery cut the link)
    fut.result(30)
    s.wait_until(lambda: s.call("wan_status")["outbox_pending"] == 0, 20, "the response delivered")
    assert he.by_id[rid].copies >= 1
    connected(s)


def test_forged_time_does_not_move_the_clock(system: EmulatedSystem) -> None:
    s = system
    connected(s)
    assert abs(clock_offset(s)) <= 2
    for ahead in (8, 3600):  # within the 10 s tolerance, and far out
        on_rig(s, lambda a=ahead: s.modem.push_to_link(0, link_frame(TIME, 0, (int(time.time()) + a).to_bytes(4, "big"))))
        time.sleep(1.0)
        assert abs(clock_offset(s)) <= 2, f"a forged TIME {ahead} s ahead moved the clock"
        connected(s)


def test_replayed_time_does_not_move_the_clock_back(system: EmulatedSystem) -> None:
    s, he = system, system.headend
    connected(s)
    wire: list[bytes] = []
    on_rig(s, lambda: setattr(s.modem, "on_downlink", lambda n, d: wire.append(bytes(d))))
    try:
        he.send_time()  # the real head-end's TIME, captured on the wire
        he.wait(lambda: bool(wire), 5, "the TIME frame on the wire")
        time.sleep(0.3)
        captured = b"".join(wire)
    finally:
        on_rig(s, lambda: setattr(s.modem, "on_downlink", None))
    time.sleep(6)  # later: the captured time is now 6 s in the past
    on_rig(s, lambda: s.modem.push_to_link(0, captured))
    time.sleep(1.0)
    assert abs(clock_offset(s)) <= 2, "a replayed TIME moved the clock back"
    connected(s)
