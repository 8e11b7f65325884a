"""`chub headend` without a hub (issue 21): the operator API's address from
a running sim's ready file, NAME=VALUE parsing, and a clear refusal (exit 2)
when the head-end has no hub connected. The end-to-end commands against the
real hub are in tests/test_hil_mgmt.py."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from chub.cli import main as chub_main
from chub.headend_cli import api_address, parse_assignments
from hil.headend.server import HeadEndServer


def test_api_address_from_the_sims_ready_file(tmp_path: Path) -> None:
    (tmp_path / "ready.json").write_text(json.dumps({"local_port": "socket://x", "headend_api": "127.0.0.1:4321"}))
    assert api_address(None, tmp_path) == "127.0.0.1:4321"
    assert api_address("127.0.0.1:1", tmp_path) == "127.0.0.1:1"
    with pytest.raises(click.UsageError):
        api_address(None, tmp_path / "none")


def test_assignments_are_json_where_they_parse() -> None:
    assert parse_assignments(("port=4059", "apn=chub.m2m", "pin=null", "critical_alerts=false",
                              'timings={"cmd": 2000}')) == {
        "port": 4059, "apn": "chub.m2m", "pin": None, "critical_alerts": False, "timings": {"cmd": 2000}}
    with pytest.raises(click.BadParameter):
        parse_assignments(("port",))


def test_no_hub_connected_is_refused_plainly() -> None:
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    he = HeadEndServer()
    try:
        asyncio.run_coroutine_threadsafe(he.start(), loop).result(5)
        port = asyncio.run_coroutine_threadsafe(he.start_api(), loop).result(5)
        r = CliRunner().invoke(chub_main, ["headend", "--api", f"127.0.0.1:{port}", "config", "get"])
        assert r.exit_code == 2 and "no hub connected" in r.output, r.output
        r = CliRunner().invoke(chub_main, ["headend", "--api", f"127.0.0.1:{port}", "reports", "--json"])
        assert r.exit_code == 0 and json.loads(r.output) == []
    finally:
        asyncio.run_coroutine_threadsafe(he.stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)


def test_a_timed_out_command_or_request_says_what_timed_out() -> None:
    # a bare TimeoutError() (asyncio.wait_for's) left a CI run of the whole
    # bench with no clue: the head-end's timeouts name the command and what
    # it lacked. A stand-in hub on 127.0.0.1 says HELLO and ACKs, never answers
    import socket

    from hil.headend.hub_image import MC_CS06, precommand
    from hil.headend.server import ACK, GBCS, HELLO, frame, split_frames

    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    he = HeadEndServer()
    cmd = precommand(MC_CS06, 4, b"\x00")
    try:
        port = asyncio.run_coroutine_threadsafe(he.start(), loop).result(5)
        with pytest.raises(TimeoutError, match=r"0x0012 counter 0 .*not ACKed, no response \(no hub connected"):
            he.send_command(cmd, timeout=0.2, rebuild=False)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as hub:
            hub.sendall(frame(HELLO, 0, bytes(8) + b"\x7f" + b"0.1.0"))
            he.wait_hello(timeout=5)
            acks = threading.Thread(target=_ack_gbcs, args=(hub, split_frames, GBCS, ACK, frame), daemon=True)
            acks.start()
            with pytest.raises(TimeoutError, match=r"counter 0 \(link id \d+\): ACKed, no response \(connected"):
                he.send_command(cmd, timeout=0.5, rebuild=False)
            with pytest.raises(TimeoutError, match=r"no reply to management request 'config_get' .*connected"):
                he.manage({"cmd": "config_get"}, timeout=0.2)
    finally:
        asyncio.run_coroutine_threadsafe(he.stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)


def _ack_gbcs(sock, split_frames, gbcs: int, ack: int, frame) -> None:  # noqa: ANN001
    """The stand-in hub: ACK every GBCS frame the head-end sends, answer none."""
    buf = bytearray()
    try:
        while data := sock.recv(4096):
            buf += data
            for ftype, fid, _ in split_frames(buf):
                if ftype == gbcs:
                    sock.sendall(frame(ack, fid, b"\x00"))
    except OSError:
        pass
