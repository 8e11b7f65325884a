"""SIM7600: the firmware driver (wan.sim7600 under micropython) against the rig's
emulator (hil.modem), the emulator against the transcripts of
vectors/modem/SIM7600.md, and the AT parser fuzzed under micropython."""

from __future__ import annotations

import asyncio
import calendar
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hil.modem import Sim7600Config, Sim7600Emulator
from hil.modem.sim7600 import GROUPS, command_table
from mpy import mp, run_mp

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
                elif op == "data_after_read":
                    emu.data_after_read(bytes.fromhex(args[0]))
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
    try:
        r = await mp("256k").arun([str(SCRIPT), name, *map(str, ports)], merge_stderr=False, timeout=60)
    finally:
        for s in (uart, ctl_srv, echo_srv):
            s.close()
        await emu.close()
    return r.returncode, r.stdout, r.stderr


SCENARIOS = {
    "startup": {},
    "pin": {"pin": "1234"},
    "registration": {},
    "signal": {},
    "cell": {},
    "data": {},
    "rx_race": {},
    "wake": {},
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
from wan.sim7600 import rssi_to_dbm
from wan.sim7600_up import parse_cclk
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
from wan.sim7600 import parse_csq, parse_reg
from wan.sim7600_up import parse_cpsi, parse_cclk
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


# ---------------------------------------------------------------- emulator vs the dialect's transcripts

_CMT = re.compile(r"\s{2,}.*$")
_NBYTES = re.compile(r"^<(?:exactly )?(\d+) (?:raw )?bytes")


def _sections(md: str) -> dict[str, list[list[list[str]]]]:
    """'### 9.2 ...' -> code blocks (each split into '--' segments) of that section."""
    out: dict[str, list[list[list[str]]]] = {}
    head = ""
    in_block = False
    for line in md.splitlines():
        if line.startswith("#"):
            m = re.match(r"#+\s+(\d+(?:\.\d+)?)", line)
            head = m.group(1) if m else head
        elif line.startswith("```"):
            in_block = not in_block
            if in_block:
                out.setdefault(head, []).append([[]])
        elif in_block:
            if line.startswith("--"):
                out[head][-1].append([])
            else:
                out[head][-1][-1].append(line)
    return out


def _tokens(buf: bytearray) -> list[str]:
    out: list[str] = []
    while buf:
        if buf[:2] == b"\r\n":
            del buf[:2]
            continue
        if buf[:1] == b">":
            out.append(">")
            del buf[:1]
            continue
        i = buf.find(b"\r")
        if i < 0:
            break
        line = bytes(buf[:i]).decode("latin-1")
        del buf[: i + 1]
        if buf[:1] == b"\n":
            del buf[:1]
        out.append(line)
        m = re.match(r"\+CIPRXGET: 2,\d+,(\d+),\d+$", line)
        if m:
            n = int(m.group(1))
            assert len(buf) >= n
            del buf[:n]
            out.append(f"<{n} raw bytes>")
    return out


Hook = Any


async def _play(lines: list[str], cfg: Sim7600Config, pre: list[str], setup: Hook, actions: dict[str, Hook],
                before: dict[int, Hook]) -> tuple[list[str], list[str]]:
    emu = Sim7600Emulator(cfg)
    clients: list[asyncio.StreamWriter] = []

    async def sink(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        clients.append(w)
        while await r.read(4096):
            pass

    srv = await asyncio.start_server(sink, "127.0.0.1", 0)
    cfg.port_map = {p: srv.sockets[0].getsockname()[1] for p in (5000, 7000)}
    uart = await asyncio.start_server(emu.serve, "127.0.0.1", 0)
    r, w = await asyncio.open_connection("127.0.0.1", uart.sockets[0].getsockname()[1])
    buf = bytearray()

    async def collect() -> None:
        while True:
            try:
                data = await asyncio.wait_for(r.read(4096), 0.05)
            except TimeoutError:
                return
            buf.extend(data)

    actual: list[str] = []
    expected: list[str] = []
    sent: set[str] = set()
    await collect()
    boot = [x for x in lines if not x.startswith("..")][0].startswith("<<")
    if not boot:
        buf.clear()
    for c in pre:  # unchecked preamble
        w.write(c.encode() + b"\r")
        await collect()
        buf.clear()
    if setup:
        setup(emu, clients)
    ncmd = 0
    for raw in lines:
        line = raw.rstrip()
        if line.startswith(">>"):
            actual += _tokens(buf)
            cmd = _CMT.sub("", line[2:].strip())
            if ncmd in before:
                before[ncmd](emu, clients)
            ncmd += 1
            m = _NBYTES.match(cmd)
            if m:
                w.write(b"x" * int(m.group(1)))
            else:
                sent.add(cmd)
                w.write(cmd.encode() + b"\r")
            await collect()
        elif line.startswith("<<"):
            expected.append(_CMT.sub("", line[2:].strip()))
        elif _NBYTES.match(line):
            expected.append(f"<{_NBYTES.match(line).group(1)} raw bytes>")  # type: ignore[union-attr]
        elif line.startswith(".."):
            for key, fn in actions.items():
                if key in line:
                    fn(emu, clients)
                    await collect()
    actual += _tokens(buf)
    w.close()
    uart.close()
    srv.close()
    await emu.close()
    return [t for t in expected if t not in sent], [t for t in actual if t not in sent]


def _send50(emu: Sim7600Emulator, clients: list[asyncio.StreamWriter]) -> None:
    clients[-1].write(bytes(range(50)))


def _coverage_lost(emu: Sim7600Emulator, clients: list[asyncio.StreamWriter]) -> None:
    emu.drop_network()
    emu.lose_registration(2)


_OPEN = ["ATE0", "AT+NETOPEN", 'AT+CIPOPEN=0,"TCP","203.0.113.10",7000']
TRANSCRIPTS: dict[str, tuple[str, int, int, dict[str, Any]]] = {
    # name: (section, block, segment, setup)
    "3.1 csq": ("3.1", 0, 0, {"pre": ["ATE0"]}),
    "3.2 reg read": ("3.2", 0, 0, {"pre": ["ATE0"]}),
    "3.4 cnmp": ("3.4", 0, 0, {"pre": ["ATE0"]}),
    "2.5 cpin": ("2.5", 0, 0, {"pre": ["ATE0"]}),
    "4.4 netopen": ("4.4", 0, 0, {"pre": ["ATE0"], "cfg": {"ip": "10.148.0.17"}}),
    "4.6 cipsend": ("4.6", 0, 0, {"pre": _OPEN}),
    "4.9 cipclose": ("4.9", 0, 0, {"pre": _OPEN}),
    "5.1 cclk": ("5.1", 0, 0, {"pre": ["ATE0"], "setup": lambda e, c: e.set_clock(
        calendar.timegm((2018, 12, 22, 18, 33, 12)) - 32 * 900, 32)}),
    "8 happy path": ("8", 0, 0, {"cfg": {"reg_stat": 2, "rssi": 99}, "actions": {
        "poll every 1 s": lambda e, c: (e.regain_registration(), e.set_csq(21)),
        "server replies 50 bytes": _send50, "coverage lost": _coverage_lost,
        ".. 20 s ..": lambda e, c: e.regain_registration()}}),
    "9.1 no sim": ("9.1", 0, 0, {"cfg": {"sim_present": False, "rssi": 99}}),
    "9.2 pin": ("9.2", 0, 0, {"cfg": {"pin": "1234"}}),
    "9.2 wrong pin": ("9.2", 0, 1, {"cfg": {"cmee": 2}, "pre": ["ATE0"]}),
    "9.3 denied": ("9.3", 0, 0, {"pre": ["ATE0"], "cfg": {"rssi": 99, "reg_stat": 0}, "before": {
        2: lambda e, c: (e.set_csq(18), e.deny_registration())}}),
    "9.4 pdp urc": ("9.4", 0, 0, {"pre": ["ATE0"], "setup": lambda e, c: e.fail_pdp("urc")}),
    "9.4 pdp error": ("9.4", 0, 1, {"pre": ["ATE0"], "setup": lambda e, c: e.fail_pdp("error")}),
    "9.4 cgact": ("9.4", 0, 2, {"pre": ["ATE0", "AT+CMEE=1"], "setup": lambda e, c: e.fail_pdp("urc")}),
    "9.5 cipopen timeout": ("9.5", 0, 0, {"pre": ["ATE0", "AT+NETOPEN"],
                                          "setup": lambda e, c: e.fail_socket_open(10)}),
    "9.5 dns": ("9.5", 0, 1, {"pre": ["ATE0", "AT+NETOPEN"]}),
    "9.5 not opened": ("9.5", 0, 2, {"pre": ["ATE0"]}),
    "9.5 in use": ("9.5", 0, 3, {"pre": _OPEN}),
}


@pytest.mark.parametrize("name", list(TRANSCRIPTS))
def test_emulator_matches_transcript(name: str, vectors: Path) -> None:
    sec, blk, seg, setup = TRANSCRIPTS[name]
    lines = _sections((vectors / "modem" / "SIM7600.md").read_text())[sec][blk][seg]
    assert any(x.startswith(">>") for x in lines), lines
    cfg = Sim7600Config(**setup.get("cfg", {}))
    exp, act = asyncio.run(_play(lines, cfg, setup.get("pre", []), setup.get("setup"),
                                 setup.get("actions", {}), setup.get("before", {})))
    assert exp and act == exp, "\n".join(lines)


# ---------------------------------------------------------------- command table, dispatch, link taps


def test_command_table_joins_the_groups() -> None:
    names = [n for g in GROUPS for n in g.COMMANDS]
    assert len(names) == len(set(names)) == len(Sim7600Emulator.COMMANDS)
    for name, fn in Sim7600Emulator.COMMANDS.items():
        assert name == name.upper() and callable(fn), name
    with pytest.raises(ValueError, match=r"\+CSQ"):
        command_table(GROUPS[0].COMMANDS, {"+CSQ": GROUPS[0].COMMANDS["+CMEE"]}, {"+CSQ": GROUPS[0].COMMANDS["+CMEE"]})


async def _session(emu: Sim7600Emulator, steps: list[str | bytes | Hook]) -> list[str]:
    """Send each command (str: a line, bytes: raw) or run each hook; the lines that came back."""
    uart = await asyncio.start_server(emu.serve, "127.0.0.1", 0)
    r, w = await asyncio.open_connection("127.0.0.1", uart.sockets[0].getsockname()[1])
    buf = bytearray()
    for step in steps:
        if callable(step):
            step()
        else:
            w.write(step.encode() + b"\r" if isinstance(step, str) else step)
        await asyncio.sleep(0.05)
        while True:
            try:
                buf += await asyncio.wait_for(r.read(4096), 0.05)
            except TimeoutError:
                break
    w.close()
    await asyncio.sleep(0.05)  # the session sees the hub hang up
    uart.close()
    await emu.close()
    return [x for x in bytes(buf).decode("latin-1").replace("\r", "\n").split("\n") if x]


def test_dispatch_basic_and_extended_forms() -> None:
    emu = Sim7600Emulator(Sim7600Config(boot_on_connect=False))
    out = asyncio.run(_session(emu, ["ATE0", "AT", "ATI", "ATE", "AT+CSQ", "AT+CSQ=?", "at+cmee=1", "AT+CMEE?",
                                     "AT+NOPE", "AT+CSQ!", "AT+CGDCONT=99", "XYZ"]))
    assert out == [
        "ATE0", "OK", "OK",
        "Manufacturer: SIMCOM INCORPORATED", "Model: SIMCOM_SIM7600G-H", "Revision: LE20B04SIM7600G22",
        "QCN:", "IMEI: 862636050029311", "MEID:", "+GCAP: +CGSM", "DeviceInfo: 173,170", "OK",
        "ERROR",  # ATE: no such basic command
        "+CSQ: 21,99", "OK", "+CSQ: (0-31,99),(0-7,99)", "OK", "OK", "+CMEE: 1", "OK",
        "ERROR",  # unknown extended command
        "ERROR",  # no form ends in "!"
        "ERROR",  # the handler's ValueError (cid out of range)
        "ERROR",  # not a command
    ], out
    assert emu.commands[-1] == "XYZ" and emu.cmee == 1 and not emu.echo


def test_link_taps_see_both_directions() -> None:
    async def run() -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes]], bytes]:
        got = bytearray()

        async def sink(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            while data := await r.read(4096):
                got.extend(data)

        srv = await asyncio.start_server(sink, "127.0.0.1", 0)
        cfg = Sim7600Config(boot_on_connect=False, port_map={5000: srv.sockets[0].getsockname()[1]})
        emu = Sim7600Emulator(cfg)
        down: list[tuple[int, bytes]] = []
        up: list[tuple[int, bytes]] = []
        emu.on_downlink = lambda n, d: down.append((n, d))
        emu.on_uplink = lambda n, d: up.append((n, d))
        out = await _session(emu, ["ATE0", "AT+NETOPEN", 'AT+CIPOPEN=1,"TCP","203.0.113.10",5000',
                                   "AT+CIPSEND=1,3", b"abc", lambda: emu.push_to_link(1, b"xyz")])
        srv.close()
        assert "+CIPSEND: 1,3,3" in out and "+IPD3" in out, out
        return down, up, bytes(got)

    down, up, got = asyncio.run(run())
    assert up == [(1, b"abc")] and got == b"abc"
    assert down == [(1, b"xyz")]
