"""SIM7600: the firmware driver (wan.sim7600 under micropython) against the rig's
emulator (hil.modem), the emulator against the transcripts of
vectors/modem/SIM7600.md, and the AT parser fuzzed under micropython."""

from __future__ import annotations

import asyncio
import calendar
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hil.modem import Sim7600Config, Sim7600Emulator
from mpy import micropython_exe, mp_path, run_mp

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "modem_driver_mp.py"


# ---------------------------------------------------------------- driver under micropython


async def _scenario(name: str, cfg: Sim7600Config) -> tuple[int, str, str]:
    emu = Sim7600Emulator(cfg)
    echo_clients: list[asyncio.StreamWriter] = []

    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        echo_clients.append(w)
        try:
            while data := await r.read(4096):
                w.write(data)
                await w.drain()
        except OSError:
            pass
        w.close()

    async def ctl(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while line := await r.readline():
            req = json.loads(line)
            op, args = req["op"], req["args"]
            res: dict[str, Any] = {}
            try:
                if op == "commands":
                    res["result"] = emu.commands
                elif op == "get":
                    res["result"] = getattr(emu, args[0])
                elif op == "link_open":
                    lk = emu.links.get(args[0])
                    res["result"] = bool(lk and lk.open)
                elif op == "server_send":
                    echo_clients[-1].write(bytes.fromhex(args[0]))
                elif op == "server_close":
                    echo_clients[-1].close()
                else:
                    getattr(emu, op)(*args)
            except Exception as e:  # report to the micropython side
                res["error"] = repr(e)
            w.write(json.dumps(res).encode() + b"\n")
            await w.drain()

    uart = await asyncio.start_server(emu.serve, "127.0.0.1", 0)
    ctl_srv = await asyncio.start_server(ctl, "127.0.0.1", 0)
    echo_srv = await asyncio.start_server(echo, "127.0.0.1", 0)
    ports = [s.sockets[0].getsockname()[1] for s in (uart, ctl_srv, echo_srv)]
    env = {"MICROPYPATH": mp_path()}
    import os

    proc = await asyncio.create_subprocess_exec(
        micropython_exe(), "-X", "heapsize=256k", str(SCRIPT), name, *map(str, ports),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, **env},
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        for s in (uart, ctl_srv, echo_srv):
            s.close()
        await emu.close()
    return proc.returncode or 0, out.decode(), err.decode()


SCENARIOS = {
    "startup": {},
    "pin": {"pin": "1234"},
    "registration": {},
    "signal": {},
    "cell": {},
    "data": {},
    "remote_close": {},
    "network_drop": {},
    "pdp_fail": {},
    "socket_fail": {},
    "no_sim": {"sim_present": False},
    "silent": {},
    "garbled": {},
    "time": {},
    "unexpected_boot": {},
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_driver_against_emulator(name: str) -> None:
    cfg = Sim7600Config(**SCENARIOS[name])
    code, out, err = asyncio.run(_scenario(name, cfg))
    assert code == 0 and f"PASS {name}" in out, f"exit {code}\n{out[-3000:]}\n{err[-3000:]}"
