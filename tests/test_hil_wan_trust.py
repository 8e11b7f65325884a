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


def test_campaign_tampered_replayed_and_injected_records(system: EmulatedSystem, vectors: Path) -> None:
    """TLS records tampered with, replayed and injected while a response waits
    in the outbox: each time the session ends and comes back; the hub keeps
    serving, the queued response is not lost (delivered once when the
    head-end ACKs again), the clock does not move."""
    import random

    s, he, emu = system, system.headend, system.modem
    connected(s)
    rnd = random.Random(16)
    he.ack_hub_frames = False
    errors = len(emu.tls_errors)
    try:
        n = len(he.received)
        raw = (vectors / "gbcs" / "rtds" / ECS26I).read_text().strip()
        assert he.loop is not None
        fut = asyncio.run_coroutine_threadsafe(he.asend_command(bytes.fromhex(raw), timeout=60), he.loop)
        he.wait(lambda: len(he.received) > n, 15, "the response")
        rid = he.received[n].id
        wire: list[bytes] = []
        on_rig(s, lambda: setattr(emu, "on_downlink", lambda _n, d: wire.append(bytes(d))))
        he.send_time()  # real records to tamper with and replay
        he.wait(lambda: bool(wire), 5, "records on the wire")
        time.sleep(0.3)
        for i in range(12):
            rec = wire[rnd.randrange(len(wire))]
            kind = i % 4
            if kind == 0:  # one bit flipped in a record
                b = bytearray(rec)
                b[rnd.randrange(5, len(b))] ^= 1 << rnd.randrange(8)
                bad = bytes(b)
            elif kind == 1:  # a record replayed
                bad = rec
            elif kind == 2:  # a forged plaintext ACK for the queued response
                bad = link_frame(ACK, rid, b"\x00")
            else:  # a record of random bytes with a valid TLS header
                body = rnd.randbytes(rnd.randrange(20, 200))
                bad = b"\x17\x03\x03" + len(body).to_bytes(2, "big") + body
            hellos = len(he.hellos)
            on_rig(s, lambda b=bad: emu.push_to_link(0, b))
            he.wait_hello(hellos + 1, timeout=20)  # the session ended and the hub came back
            assert s.call("status")["version"]  # the local port serves throughout
            assert s.call("wan_status")["outbox_pending"] >= 1, f"round {i}: the queued response was lost"
            assert abs(clock_offset(s)) <= 2, f"round {i}: the clock moved"
        assert len(emu.tls_errors) >= errors + 12, emu.tls_errors[errors:]
    finally:
        on_rig(s, lambda: setattr(emu, "on_downlink", None))
        he.ack_hub_frames = True
    fut.result(60)
    s.wait_until(lambda: s.call("wan_status")["outbox_pending"] == 0, 20, "the response delivered")
    assert [r.id for r in he.received].count(rid) == 1
    connected(s)


def _rogue_context(folder: Path, client_ca: bytes | None = None) -> object:
    """A TLS server context with a certificate from a CA of its own (not the
    hub's link anchor); it asks for no client certificate."""
    import ssl

    from chubcore.pki import LinkCA

    cert, key = LinkCA(folder).headend()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    (folder / "rogue.pem").write_bytes(cert + key)
    ctx.load_cert_chain(str(folder / "rogue.pem"))
    return ctx


def test_campaign_wrong_headend_certificate_refused(system: EmulatedSystem, tmp_path: Path, vectors: Path) -> None:
    """A head-end whose certificate does not chain to the hub's link anchor
    (and which would send a time an hour off): the modem refuses its
    handshake every time; the hub keeps serving, keeps its queue and its
    clock; the real head-end gets everything once it is reachable again."""
    from hil.headend.server import HeadEndServer

    s, he, emu = system, system.headend, system.modem
    connected(s)
    assert s.rig is not None
    rogue = HeadEndServer(tls=_rogue_context(tmp_path))  # type: ignore[arg-type]
    rogue.time_offset = 3600
    port = s.rig.call(rogue.start())
    real = emu.cfg.port_map[4059]
    errors = len(emu.tls_errors)
    drops = s.call("wan_status")["drops"]
    try:
        emu.cfg.port_map[4059] = port
        on_rig(s, lambda: emu.remote_close(0))
        s.wait_until(lambda: len(emu.tls_errors) >= errors + 2, 20, "the rogue refused twice")
        assert all("certificate verify failed" in e for e in emu.tls_errors[errors:]), emu.tls_errors[errors:]
        assert rogue.hellos == [] and rogue.connections == 0
        st = s.call("wan_status")
        assert not st["connected"] and "SocketOpenFailed" in (st["last_error"] or "") and st["drops"] == drops + 1
        # the security log keeps the evidence: the refused head-end, 0x8F53
        sec = [e for e in s.call("logs", which="security")["entries"] if e[1] == 0x8F53]
        assert any(bytes.fromhex(e[2]).startswith(b"headend tls") for e in sec), sec
        # meanwhile: an alert queued from the local port side stays queued
        assert s.call("status")["version"] and abs(clock_offset(s)) <= 2
    finally:
        emu.cfg.port_map[4059] = real
        s.rig.call(rogue.stop())
    connected(s)
    assert abs(clock_offset(s)) <= 2
    assert he.send_command(vectors / "gbcs" / "rtds" / ECS26I, timeout=15).frame is not None


def test_campaign_hub_without_a_valid_certificate_refused(system: EmulatedSystem, tmp_path: Path) -> None:
    """At the head-end, a peer posing as the hub (its HELLO names the real
    hub): no client certificate, one from another CA, and a valid one for
    another EUI-64 are all refused, and the real hub's link stays up."""
    import socket
    import ssl

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from chubcore.pki import LinkCA, TestCA

    s, he = system, system.headend
    connected(s)
    drops, refused = s.call("wan_status")["drops"], len(he.refused)
    key = ec.generate_private_key(ec.SECP256R1())
    pub = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    keyfile = tmp_path / "k.pem"
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    other = tmp_path / "other"
    forged_eui = bytes.fromhex("02CB0F00DEADBEEF")
    hub_eui = bytes.fromhex(s.call("identity")["chf"]["eui"])
    hellos = len(he.hellos)
    cases = {  # name -> the certificate presented (None: none)
        "none": None,
        "other CA": TestCA(other).issue_link(forged_eui, pub),
        "valid, another EUI": TestCA().issue_link(forged_eui, pub),
    }
    for name, der in cases.items():
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(cadata=LinkCA().pem.decode())
        if der is not None:
            cert = tmp_path / f"{len(name)}.pem"
            cert.write_bytes(ssl.DER_cert_to_PEM_cert(der).encode())
            ctx.load_cert_chain(str(cert), str(keyfile))
        with socket.create_connection(("127.0.0.1", he.port), timeout=5) as raw:
            try:
                with ctx.wrap_socket(raw) as t:
                    t.sendall(link_frame(1, 0, hub_eui + b"\x7f" + b"rogue"))  # HELLO as the real hub
                    got = t.recv(4096)
                    assert got == b"", f"{name}: the head-end answered {got!r}"
            except (ssl.SSLError, ConnectionError):
                pass

        he.wait(lambda r=refused: len(he.refused) > r, 5, f"{name} refused")
        refused = len(he.refused)
    assert [h.version for h in he.hellos[hellos:]] == []  # no rogue HELLO taken
    time.sleep(0.5)
    st = s.call("wan_status")
    assert st["connected"] and st["drops"] == drops and he.connected
