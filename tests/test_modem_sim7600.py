"""SIM7600: the firmware driver (wan.sim7600 under micropython) against the rig's
emulator (hil.modem), the emulator against the transcripts of
vectors/modem/SIM7600.md, and the AT parser fuzzed under micropython."""

from __future__ import annotations

import asyncio
import calendar
import json
import time
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


# ---------------------------------------------------------------- CCLK / CSQ against references

CCLK_CODE = """
import sys
from wan.sim7600 import parse_cclk, rssi_to_dbm
for ln in sys.stdin.read().split("\\n"):
    if ln:
        print(parse_cclk(ln.encode()))
print("CSQ", [rssi_to_dbm(r) for r in list(range(32)) + list(range(100, 192))])
"""


@settings(max_examples=5, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 99 * 366 * 86400 - 1), st.integers(-48, 56)), min_size=30, max_size=30))
def test_cclk_to_utc_matches_calendar(samples: list[tuple[int, int]]) -> None:
    base = calendar.timegm((2000, 1, 1, 0, 0, 0))
    lines, want = [], []
    for off, zone in samples:
        utc = base + off
        local = time.gmtime(utc + zone * 900)
        if not 1 <= local.tm_year - 2000 <= 99 or local.tm_year == 2080:
            continue
        sign = "+" if zone >= 0 else "-"
        lines.append(f'+CCLK: "{time.strftime("%y/%m/%d,%H:%M:%S", local)}{sign}{abs(zone):02d}"')
        want.append(str(utc))
    lines.append('+CCLK: "80/01/06,07:09:04"')  # never set (SIM7600G-H log)
    want.append("None")
    r = run_mp(code=CCLK_CODE, stdin="\n".join(lines).encode())
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode().split("\n")
    assert out[: len(want)] == want
    # 27.007 table: 0..31 -> -113 + 2n (0 is "<= -113", 31 ">= -51"); 100..191 -> n - 216
    csq = [-113 + 2 * n for n in range(32)] + [n - 216 for n in range(100, 192)]
    assert out[len(want)] == f"CSQ {csq}".replace("'", "")


# ---------------------------------------------------------------- parser fuzz under micropython

FUZZ_CODE = """
import sys, binascii
from wan.at import ATParser, ATFormatError, ATError, split_fields
from wan.sim7600 import parse_csq, parse_reg, parse_cpsi, parse_cclk
n = 0
for ln in sys.stdin.read().split("\\n"):
    if not ln:
        continue
    kind, hx = ln.split(" ")
    data = binascii.unhexlify(hx)
    p = ATParser(maxline=64, maxraw=64)
    got = []
    p.on(b"+CREG:", lambda l: parse_reg(l, b"+CREG:"))
    p.on(b"+IPCLOSE:", lambda l: split_fields(l, b"+IPCLOSE:"))
    p.on_data = lambda link, mv: got.append(bytes(mv))
    if kind == "cmd":
        p.begin(b"AT+CIPRXGET=2,0,64", b"+CIPRXGET: 2,")
    elif kind == "send":
        p.begin(b"AT+CIPSEND=0,5", b"+CIPSEND:", b"+CIPSEND:", True)
    for i in range(0, len(data), 7):
        p.feed(data[i:i + 7])
    assert p.result is None or isinstance(p.result, ATError)
    for fn, pre in ((parse_csq, None), (parse_cpsi, None), (parse_cclk, None), (parse_reg, b"+CGREG:")):
        for line in data.split(b"\\r\\n"):
            try:
                fn(line, pre) if pre else fn(line)
            except ATFormatError:
                pass
    n += 1
print("FUZZ", n)
"""

_LINES = [b"OK", b"ERROR", b"+CME ERROR: 10", b"+CME ERROR: SIM busy", b"+CSQ: 21,99", b"+CREG: 1",
          b'+CREG: 1,"1A2D","01B2C3D4"', b"+IPCLOSE: 0,1", b"RDY", b"+RECEIVE,0,5", b"+IPD3",
          b"+CIPRXGET: 2,0,4,0", b"+CIPRXGET: 1,0", b"+CIPSEND: 0,5,5", b"+CIPERROR: 4", b">",
          b'+CCLK: "24/04/02,13:39:57+08"', b"+CPSI: LTE,Online,234-50,0x1A2D,27447574,301,EUTRAN-BAND20,6300",
          b"+IP ERROR: No data", b"+CGREG: 0,1"]
_chunk = st.one_of(
    st.sampled_from(_LINES).map(lambda b: b"\r\n" + b + b"\r\n"),
    st.binary(max_size=40),
    st.sampled_from(_LINES).flatmap(lambda b: st.integers(0, len(b)).map(lambda k: b[:k] + b[k + 1:])),
)
_case = st.tuples(st.sampled_from(["idle", "cmd", "send"]), st.lists(_chunk, max_size=12).map(b"".join))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_case, min_size=60, max_size=60))
def test_fuzz_parser_under_micropython(batch: list[tuple[str, bytes]]) -> None:
    stdin = "\n".join(f"{k} {d.hex() or '00'}" for k, d in batch).encode()
    r = run_mp(code=FUZZ_CODE, stdin=stdin, heap="256k")
    assert r.returncode == 0 and b"FUZZ 60" in r.stdout, (r.stdout[-2000:], r.stderr[-2000:])
