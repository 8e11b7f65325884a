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
