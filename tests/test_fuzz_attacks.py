"""HIL attacks on the running hub (built image under micropython, the rig's
head-end and local port): forged and replayed GBCS commands over the WAN,
hostile GBCS bytes and link frames, garbage on the local port. After each,
the hub has not restarted, still answers, and executed nothing it should
not have. (Join attempts by unknown devices and by devices holding the
wrong install code: tests/test_hil_han.py.)"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chub.core.localport import LocalPortClient, encode_frame
from hil.headend.gbcs import decode_access_response
from hil.system import EmulatedSystem

ECS26I = "6.2.4_ECS26i/ECS26i_6.2.4_SUCCESS_COMMAND_GBCS.HEX"
GBCS_CORPUS = Path(__file__).resolve().parent / "corpus" / "gbcs"


@pytest.fixture(scope="module")
def system(hub_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedSystem]:
    s = EmulatedSystem(tmp_path_factory.mktemp("attack"), image=hub_image, fresh=True).start()
    assert s.headend.headend is not None
    s.headend.wait_hello(1, timeout=30)
    s.call_timeout = 10
    yield s
    s.stop()


def responses_to(s: EmulatedSystem, counter: int) -> list:
    return [r for r in s.headend.received if r.frame is not None and r.frame.cra == 2 and r.frame.counter == counter]


def alive_and_same_boot(s: EmulatedSystem, boots: int) -> None:
    assert s.dut is not None and s.dut.alive and s.dut.boots == boots, "the hub restarted"
    assert s.call("status")["version"]


def good_command(s: EmulatedSystem, vectors: Path) -> None:
    reply = s.headend.send_command(vectors / "gbcs" / "rtds" / ECS26I, timeout=15)
    assert all(code == 0 for _, code in decode_access_response(reply.frame.payload).results)


def test_forged_command_rejected_not_executed(system: EmulatedSystem, vectors: Path) -> None:
    boots = system.dut.boots  # type: ignore[union-attr]
    he = system.headend.headend
    raw, f = he.rebuild(bytes.fromhex((vectors / "gbcs" / "rtds" / ECS26I).read_text().strip()))
    forged = bytearray(raw)
    forged[-1] ^= 0x01  # the MAC's last byte
    assert system.headend.send_raw(bytes(forged)) == "rejected"
    # a payload changed under the original MAC
    forged = bytearray(raw)
    forged[len(forged) // 2] ^= 0x40
    assert system.headend.send_raw(bytes(forged)) == "rejected"
    time.sleep(1.0)
    assert responses_to(system, f.counter) == []
    alive_and_same_boot(system, boots)
    good_command(system, vectors)


def test_replayed_command_answered_once(system: EmulatedSystem, vectors: Path) -> None:
    boots = system.dut.boots  # type: ignore[union-attr]
    reply = system.headend.send_command(vectors / "gbcs" / "rtds" / ECS26I, timeout=15)
    assert reply.ack_status == "done"
    # the same bytes again under a new link frame id: a replay, not a resend
    for _ in range(2):
        assert system.headend.send_raw(reply.command) == "rejected"
    time.sleep(1.0)
    assert len(responses_to(system, reply.frame.counter)) == 1
    ev = [e for e in system.call("transactions")["entries"] if e.get("event") == "reject"]
    assert len(ev) >= 2, system.call("transactions")["entries"][-5:]
    alive_and_same_boot(system, boots)


def test_hostile_gbcs_bytes_over_the_wan(system: EmulatedSystem, vectors: Path) -> None:
    """The GBCS fuzz corpus and random bytes, each as a GBCS link frame: every
    one is acknowledged (rejected, or executed when it happens to be valid),
    the hub never restarts and still serves a real command."""
    boots = system.dut.boots  # type: ignore[union-attr]
    rnd = random.Random(8)
    inputs = [bytes.fromhex(ln) for p in sorted(GBCS_CORPUS.glob("*.hex")) for ln in p.read_text().split()]
    inputs = rnd.sample(inputs, min(40, len(inputs))) + [rnd.randbytes(rnd.randint(0, 300)) for _ in range(20)]
    statuses = [system.headend.send_raw(b) for b in inputs]
    assert set(statuses) <= {"done", "rejected"}, statuses
    assert statuses.count("rejected") >= len(inputs) // 2
    alive_and_same_boot(system, boots)
    good_command(system, vectors)


def test_garbage_on_the_local_port(system: EmulatedSystem) -> None:
    """Random bytes, torn and corrupted frames, oversized lengths and non-JSON
    bodies on the hub's console UART: the hub answers what it can, never
    restarts, and serves a clean client afterwards."""
    boots = system.dut.boots  # type: ignore[union-attr]
    rnd = random.Random(3)
    good = encode_frame(b"\x07" + b'{"cmd":"status"}')
    blobs = [rnd.randbytes(rnd.randint(1, 300)) for _ in range(20)]
    blobs += [good[: rnd.randint(1, len(good) - 1)] for _ in range(5)]
    blobs += [bytes(b ^ (1 << rnd.randrange(8)) if i == rnd.randrange(len(good)) else b for i, b in enumerate(good))
              for _ in range(10)]
    blobs += [b"\x7e\xff\xff" + rnd.randbytes(50), encode_frame(b"\x01\xff\xfe"), encode_frame(b"\x02[1,2]"),
              encode_frame(b'\x03{"cmd": 7}'), encode_frame(b"")]
    host, port = system.local_port_url.removeprefix("socket://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        for b in blobs:
            sock.sendall(b)
        time.sleep(1.5)  # the hub times out torn frames and resynchronises
    alive_and_same_boot(system, boots)
    with LocalPortClient(system.local_port_url, timeout=10) as c:
        assert c.call("status")["version"]


def test_unauthenticated_local_port_writes_refused(system: EmulatedSystem) -> None:
    """Without an installer session (auth_challenge/auth), the hub refuses
    every command that changes it - with no tag, a forged tag or a stale
    request number - and the Device Log is unchanged; read-only commands stay
    open."""
    boots = system.dut.boots  # type: ignore[union-attr]
    # what a write could change: EUI, type, key state and hash, node, join
    # state (not the traffic counters: the HAN keeps talking meanwhile)
    def entries() -> list:
        return [row[:6] for row in system.call("device_log_list")["entries"]]

    before = entries()
    eui = "70B3D5C1BADC0DE7"
    writes = [
        {"cmd": "device_log_add", "eui": eui, "type": 1, "install_code": "00" * 18},
        {"cmd": "device_log_remove", "eui": before[0][0] if before else eui},
        {"cmd": "wan_config", "set": {"retry_ms": 1}},
        {"cmd": "send_gbcs", "frame": "dd00"},
        {"cmd": "device_log_add", "eui": eui, "type": 1, "install_code": "00" * 18, "auth": [1, "00" * 32]},
        {"cmd": "device_log_add", "eui": eui, "type": 1, "install_code": "00" * 18, "auth": [0, "zz"]},
    ]
    import json as _json

    with LocalPortClient(system.local_port_url, timeout=10) as c:
        for i, req in enumerate(writes, 1):
            c.send_raw(encode_frame(bytes((i,)) + _json.dumps(req).encode()))
            r = c.read_response(seq=i, timeout=5)
            assert r.status == 6, (req["cmd"], r)  # NOT_AUTHORISED
        # the open commands still answer without a session
        c.send_raw(encode_frame(bytes((40,)) + b'{"cmd":"status"}'))
        assert c.read_response(seq=40, timeout=5).status == 0
    assert entries() == before
    alive_and_same_boot(system, boots)
