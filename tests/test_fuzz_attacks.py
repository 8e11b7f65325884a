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

from chubcore.localport import LocalPortClient, LocalPortError, encode_frame
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


# ---- issue 16: trust at the local port, the settings and the security log ----

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"
HOSTILE = [None, True, False, -1, 0, 2**31, 2**64, -(2**64), "", "x", "zz", "é\u2603", "00" * 9, "0" * 600,
           [], [1, "a"], {}, {"a": {"b": [None]}}]


def local_port_commands() -> dict[str, set[str]]:
    """Every command in a COMMANDS table of the firmware -> the argument
    names its module reads (req.get("x"), req["x"]) plus the router's
    settings for route_config."""
    import re

    out: dict[str, set[str]] = {"status": set()}
    for path in sorted(FIRMWARE.rglob("*.py")):
        text = path.read_text()
        m = re.search(r"^COMMANDS = \((.*?)\)\n", text, re.S | re.M)
        if not m:
            continue
        names = set(re.findall(r"req(?:\.get\(|\[)\"(\w+)\"", text))
        names |= set(re.findall(r"(?:int|str|hex|eui)_arg\(req, \"(\w+)\"", text))
        if path.name == "router.py":
            names |= set(re.findall(r"^    \"(\w+)\": ", text, re.M))
        if path.name == "commands.py" and path.parent.name == "wan":
            names.add("before")
        for cmd in re.findall(r"\(\"(\w+)\", \w+\)", m.group(1)):
            out[cmd] = names - {"cmd", "auth"}
    out.update({"auth_challenge": set(), "auth": {"mac"}, "auth_end": set()})
    return out


def test_argument_fuzz_of_every_local_port_command(system: EmulatedSystem) -> None:
    """Every command with no arguments and with each of its arguments set to
    each hostile value (wrong types, out of range, huge numbers, odd text):
    the hub answers every one with a result or a refusal (status 0, 4, 5, 6),
    never an internal error (7) and never a traceback; it keeps serving."""
    boots = system.dut.boots  # type: ignore[union-attr]
    pos = system.log.position
    cmds = local_port_commands()
    skip = {"console_release", "auth_end"}  # the fuzzing client's own session
    assert {"device_log_list", "han_zcl_read", "wan_config", "send_gbcs", "logs", "prov_stage"} <= set(cmds)
    bad: list[str] = []
    n = 0
    statuses: dict[int, int] = {}
    with LocalPortClient(system.local_port_url, timeout=20) as c:
        c.authenticate()
        for cmd, names in sorted(cmds.items()):
            if cmd in skip:
                continue
            reqs: list[dict] = [{}]
            reqs += [{name: v} for name in sorted(names) for v in HOSTILE]
            for args in reqs:
                n += 1
                try:
                    c.call(cmd, **args)
                    st = 0
                except LocalPortError as e:
                    st = e.status
                    if st == 7:
                        bad.append(f"{cmd} {args!r}: {e.message}")
                except TimeoutError:
                    tail = "\n".join(system.log.lines(after=pos)[-15:])
                    raise AssertionError(f"no answer to {cmd} {args!r}; the hub said:\n{tail}") from None
                statuses[st] = statuses.get(st, 0) + 1
            c.call("prov_abort")  # a run a fuzzed prov_begin may have opened
            c.call("gbcs_fault", clear=True)
    print(f"fuzzed {n} requests over {len(cmds)} commands: statuses {statuses}")
    assert not bad, "\n".join(bad[:40])
    assert set(statuses) <= {0, 4, 5, 6}, statuses
    assert not [ln for ln in system.log.lines(after=pos) if "Traceback" in ln]
    alive_and_same_boot(system, boots)


def _raw(sock: socket.socket, body: bytes) -> None:
    sock.sendall(encode_frame(body))


def test_slow_loris_does_not_hold_the_port(system: EmulatedSystem) -> None:
    """A frame header announcing 4095 bytes, then a byte a second: the frame
    is given up 2 s after its start (status 8), and a client's request sent
    meanwhile is answered, not swallowed."""
    boots = system.dut.boots  # type: ignore[union-attr]
    host, port = system.local_port_url.removeprefix("socket://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"\xc5\x0f\xff\x01")
        t0 = time.monotonic()
        got = b""
        while time.monotonic() - t0 < 6 and b"truncated" not in got:
            sock.sendall(b"{")
            sock.settimeout(1.0)
            try:
                got += sock.recv(4096)
            except TimeoutError:
                pass
        held = time.monotonic() - t0
        assert b"truncated" in got, got
        assert held < 3.5, f"the port was held {held:.1f} s"
        # the trickle goes on; a real request in the middle of it is answered
        sock.sendall(b"\xc5\x0f\xff")
        sock.sendall(encode_frame(b"\x09" + b'{"cmd":"status"}'))
        sock.settimeout(6)
        buf = b""
        t1 = time.monotonic()
        while b'"version"' not in buf and time.monotonic() - t1 < 6:
            try:
                buf += sock.recv(4096)
            except TimeoutError:
                break
        assert b'"version"' in buf, buf[-200:]
    alive_and_same_boot(system, boots)


def test_100_wrong_credentials_logged_and_slowed(system: EmulatedSystem) -> None:
    """100 wrong installer credentials as fast as the line allows: each one
    heard is in the security log (0x8F53, collapsed with its count), the
    others are refused unheard by the back-off; the rate of credentials the
    hub evaluates stays under its ceiling; the right credential works after
    the back-off (and resets it)."""
    from chubcore.localport import LocalPortError as LPE

    boots = system.dut.boots  # type: ignore[union-attr]
    heard: list[float] = []
    slowed = 0
    t0 = time.monotonic()
    with LocalPortClient(system.local_port_url, timeout=10, credential=False) as c:
        for _ in range(100):
            time.sleep(0.04)  # 100 tries over about 5 s
            c.call("auth_challenge")
            try:
                c.call("auth", mac="00" * 32)
            except LPE as e:
                assert e.status == 6
                if "wrong installer credential" in e.message:
                    heard.append(time.monotonic())
                else:
                    assert "wait" in e.message, e.message
                    slowed += 1
    elapsed = time.monotonic() - t0
    peak = max(sum(1 for u in heard if t <= u < t + 1.0) for t in heard)
    print(f"auth_failures_per_s_max={peak} (100 tries in {elapsed:.1f} s: {len(heard)} heard, {slowed} slowed)")
    assert len(heard) + slowed == 100 and slowed >= 90
    assert peak <= 2 and len(heard) / max(elapsed, 1.0) < 2
    time.sleep(max(heard) + lp_backoff_ms(len(heard)) / 1000 - time.monotonic() + 0.2)
    sec = system.call("logs", which="security")["entries"]
    failed = [e for e in sec if e[1] == 0x8F53 and bytes.fromhex(e[2]) == b"credential"]
    assert sum(e[3] if len(e) > 3 else 1 for e in failed) >= len(heard), failed
    alive_and_same_boot(system, boots)


def lp_backoff_ms(failures: int) -> int:
    # firmware/local_port.py backoff_ms: 500 ms doubling per wrong credential in a row, at most 30 s
    return 0 if failures <= 0 else min(500 << (failures - 1), 30000)


def test_wrong_typed_settings_for_every_key_refused(system: EmulatedSystem) -> None:
    """wan_config with a wrong type or an out-of-range value for every WAN
    setting: status 5 naming the setting, nothing stored, the link stays up."""
    boots = system.dut.boots  # type: ignore[union-attr]
    from chubcore.localport import LocalPortError as LPE

    before = system.call("wan_config", set={})
    keys = sorted(before)
    assert {"host", "port", "apn", "ping_ms", "timings", "on_exhausted"} <= set(keys)
    wrong = ["x", -1, 2**40, None, [1], {"a": 1}, True, ""]
    refused = 0
    system.keep_connection = True  # one installer session for the ~170 calls (a session each: ~0.3 s per call)
    try:
        for k in keys:
            for v in wrong:
                if v is None and k in ("pin", "radio", "timings"):
                    continue  # null is their default
                if (k in ("critical_alerts", "remote_mgmt") and isinstance(v, bool)) or (
                        k in ("apn", "host") and v == "x") or (k == "apn" and v == ""):
                    continue  # valid values
                with pytest.raises(LPE) as ei:
                    system.call("wan_config", set={k: v})
                assert ei.value.status == 5 and k in ei.value.message, (k, v, ei.value)
                refused += 1
    finally:
        system.drop_connection()
        system.keep_connection = False
    assert system.call("wan_config", set={}) == before
    assert refused > 150
    system.wait_until(lambda: system.call("wan_status")["connected"], 20, "link up")
    alive_and_same_boot(system, boots)


def test_wan_junk_flood_keeps_the_security_log(system: EmulatedSystem, vectors: Path) -> None:
    """A forged command (its 0x8F1E entry names the originator), then 200
    junk frames from the WAN: the forged command's entry is still there, the
    junk is one entry with a count, nothing is lost, and 0x8F60 is in the
    security log and reached the head-end as an alert (once)."""
    boots = system.dut.boots  # type: ignore[union-attr]
    he = system.headend.headend
    raw, f = he.rebuild(bytes.fromhex((vectors / "gbcs" / "rtds" / ECS26I).read_text().strip()))
    forged = bytearray(raw)
    forged[-1] ^= 0x01
    assert system.headend.send_raw(bytes(forged)) == "rejected"
    r0 = system.call("logs", which="security")
    evidence = [e for e in r0["entries"] if e[1] == 0x8F1E and e[2]][-3:]
    assert evidence
    rnd = random.Random(16)
    for _ in range(200):
        system.headend.send_raw(b"\xdd" + rnd.randbytes(rnd.randint(0, 60)))
    r = system.call("logs", which="security")
    after = r["entries"]
    for e in evidence:
        assert [e[0], e[1], e[2]] in [x[:3] for x in after], (e, after)
    junk = [e for e in after if e[1] == 0x8F1E and not e[2]]
    assert sum(e[3] if len(e) > 3 else 1 for e in junk) >= 150, junk
    # the flood costs a few entries (its own, 0x8F60), not the log: the older
    # entries lost are counted
    assert r["lost"] - r0["lost"] <= 3, (r0, r)
    assert any(e[1] == 0x8F60 for e in after), after
    system.wait_until(lambda: any(
        rr.frame is not None and rr.frame.cra == 3 and _alert_code(rr.frame.payload) == 0x8F60
        for rr in system.headend.received), 20, "the 0x8F60 alert at the head-end")
    alive_and_same_boot(system, boots)
    good_command(system, vectors)


def _alert_code(payload: bytes) -> int | None:
    from test_hil_wan_faults import alert_code

    try:
        return alert_code(payload)
    except (AssertionError, ValueError, IndexError):
        return None


def test_bad_setting_on_flash_does_not_keep_the_wan_down(system: EmulatedSystem, tmp_path: Path) -> None:
    """Values an older firmware could have stored (ping_ms "x", port "x",
    host 5, apn ["a"], idle_timeout_ms -1, signal_ms null) planted in the
    hub's flash while it is off: after the boot the link comes up with the
    defaults, and the event log names each bad setting once (0x8FF3)."""
    from mpy import run_mp

    assert system.dut is not None
    he = system.headend
    hellos = len(he.hellos)
    system.dut.stop()
    script = tmp_path / "plant.py"
    script.write_text(
        "import vfs\nfrom blockdev import FileBlockDevice\nfrom store import Store\n"
        f"dev = FileBlockDevice({str(system.dut.flash_path)!r}, {system.dut.flash_blocks})\n"
        "vfs.mount(vfs.VfsLfs2(dev), '/flash')\n"
        "Store('/flash').kv('wan').update({'ping_ms': 'x', 'port': 'x', 'host': 5, 'apn': ['a'],"
        " 'idle_timeout_ms': -1, 'signal_ms': None})\nvfs.umount('/flash')\nprint('PLANTED')\n")
    r = run_mp([str(script)], cwd=tmp_path)
    assert "PLANTED" in r.stdout, r.stdout + r.stderr
    pos = system.log.position
    system.dut.start()
    system.dut.wait_ready(30, after=pos)
    he.wait_hello(hellos + 1, timeout=40)
    system.wait_until(lambda: system.call("wan_status")["connected"], 30, "link up with the defaults")
    ev = [e for e in system.call("logs", which="event")["entries"] if e[1] == 0x8FF3]
    names = sorted(bytes.fromhex(e[2]).decode() for e in ev)
    assert names == sorted(["ping_ms", "port", "host", "apn", "idle_timeout_ms", "signal_ms"]), ev
    assert all(len(e) == 3 for e in ev)  # once each
    # a correction replaces them
    system.call("wan_config", set={"ping_ms": 60000, "port": 4059, "host": "headend.chub.test", "apn": "chub.m2m",
                                   "idle_timeout_ms": 180000, "signal_ms": 10000})
