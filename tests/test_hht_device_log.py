"""`chub hht device-log ...` / `chub hht logs` against a micropython process
serving the firmware's chf.commands through the real local_port.serve on a
loopback socket (one connection per CLI call)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from zigpy.util import CrcX25

from chub.cli import hht, main
from chub.hht_device_log import register
from chubcore.localport import LocalPortClient, LocalPortError
from mpy import mp

if "device-log" not in hht.commands:
    register(hht)

HUB = r"""
import asyncio
import sys
import local_port as lp
from store import Store
from chf.commands import COMMANDS
from chf.device_log import DeviceLog
from chf.logs import open_logs

class Coordinator:
    tc = None  # no HAN job here: no trust centre to sync

clock = [1000]

class Hub:
    def __init__(self):
        st = self.store = Store("data")
        self.device_log = DeviceLog(st, lambda: clock[0], 3)
        self.event_log, self.security_log = open_logs(st, 40, utc=lambda: clock[0])
        self.coordinator = Coordinator()
        self.commands = dict(COMMANDS)

hub = Hub()
hub.security_log.append(0x8FE0, bytes.fromhex("00DB1234567890F0"))

async def dispatch(req):
    fn = hub.commands.get(req.get("cmd"))
    if fn is None:
        raise KeyError(req.get("cmd"))
    clock[0] += 1
    return await fn(hub, req)

async def conn(r, w):
    await lp.serve(r, w, dispatch)
    w.close()

async def main():
    await asyncio.start_server(conn, "127.0.0.1", int(sys.argv[1]))
    print("READY")
    while True:
        await asyncio.sleep(1)

asyncio.run(main())
"""

ESME = "00DB1234567890A0"


def with_crc(code: bytes) -> str:
    c = CrcX25()
    c.process(code)
    return (code + c.finalbytes(byteorder="little")).hex()


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    (tmp_path / "hub.py").write_text(HUB)
    proc = mp("256k", cwd=tmp_path).popen(["hub.py", str(port)], stdin=None, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.02)
        yield f"socket://127.0.0.1:{port}"
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
    finally:
        proc.kill()
        proc.wait()


def cli(url: str, *args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["hht", "--port", url, *args], env={"COLUMNS": "220"})
    return r.exit_code, r.output


def test_add_list_remove(url: str) -> None:
    code, out = cli(url, "device-log", "add", "--eui", "00:db:12:34:56:78:90:a0", "--type", "ESME",
                    "--install-code", with_crc(b"0123456789ABCDEF"), "--join-timeout", "600", "--json")
    assert code == 0 and json.loads(out) == {"code": 0, "message": "ok", "duplicate": False}
    # a re-add with the same code: already there; with another code: refused
    code, out = cli(url, "device-log", "add", "--eui", ESME, "--type", "1", "--install-code",
                    with_crc(b"0123456789ABCDEF"), "--json")
    assert code == 0 and json.loads(out)["duplicate"] is True
    assert "already in the Device Log" in json.loads(out)["message"]
    code, out = cli(url, "device-log", "add", "--eui", ESME, "--type", "1", "--install-code",
                    with_crc(b"\x11" * 16))
    assert code == 1 and "already in the Device Log with a different install code" in out, out
    code, out = cli(url, "device-log", "list", "--json")
    d = json.loads(out)
    assert code == 0 and d["total"] == 1 and d["capacity"] == 3 and d["historic"] == []
    e = d["entries"][0]
    assert e["eui"] == ESME and e["type_name"] == "ESME" and e["join_state"] == "join window open"
    assert e["window_end"] is not None and e["node_id"] is None and len(e["key_hash"]) == 32
    code, out = cli(url, "device-log", "list")
    assert code == 0 and ESME in out and "join window open" in out
    code, out = cli(url, "device-log", "remove", "--eui", ESME, "--json")
    assert code == 0 and json.loads(out)["code"] == 0
    d = json.loads(cli(url, "device-log", "list", "--json")[1])
    assert d["entries"] == [] and [h["eui"] for h in d["historic"]] == [ESME]
    assert d["historic"][0]["key_hash"] == e["key_hash"]
    code, out = cli(url, "device-log", "remove", "--eui", ESME)
    assert code == 1 and "not in the Device Log" in out


def test_full_and_incompatible(url: str) -> None:
    for i in range(3):
        code, _ = cli(url, "device-log", "add", "--eui", f"00DB00000000000{i}", "--type", "GSME",
                      "--install-code", with_crc(bytes([i]) * 8))
        assert code == 0
    code, out = cli(url, "device-log", "add", "--eui", "00DB000000000009", "--type", "GSME",
                    "--install-code", with_crc(b"\x09" * 8), "--json")
    assert code == 1 and json.loads(out)["code"] == 4
    code, out = cli(url, "device-log", "add", "--eui", "00DB000000000001", "--type", "ESME",
                    "--install-code", with_crc(b"\x01" * 8))
    assert code == 1 and "incompatible" in out and "code 3" in out
    d = json.loads(cli(url, "device-log", "list", "--json")[1])
    assert d["total"] == 3


def test_bad_crc_is_caught_on_the_laptop_and_by_the_hub(url: str) -> None:
    good = with_crc(b"0123456789ABCDEF")
    bad = good[:-2] + f"{int(good[-2:], 16) ^ 1:02x}"
    code, out = cli(url, "device-log", "add", "--eui", ESME, "--type", "ESME", "--install-code", bad)
    assert code == 2 and "CRC" in out
    with LocalPortClient(url, timeout=5) as c:
        r = c.call("device_log_add", eui=ESME, type=1, install_code=bad, join_timeout=60)
        assert r["code"] == 1 and "CRC" in r["message"]
        for bad_args in ({"eui": "zz", "type": 1, "install_code": good},
                         {"eui": ESME, "type": 9, "install_code": good},
                         {"eui": ESME, "type": 1, "install_code": "abc"},
                         {"eui": ESME, "type": 1, "install_code": good[:-4]},
                         {"eui": ESME, "type": "1", "install_code": good}):
            with pytest.raises(LocalPortError, match="bad arguments"):
                c.call("device_log_add", **bad_args)
        with pytest.raises(LocalPortError, match="bad arguments"):
            c.call("logs", which="other")
        assert c.call("device_log_list")["total"] == 0


def test_logs(url: str) -> None:
    code, out = cli(url, "logs", "--which", "security", "--json")
    r = json.loads(out)
    assert code == 0 and r["capacity"] == 40
    assert [e[1:] for e in r["entries"]] == [[0x8FE0, "00db1234567890f0"]]
    code, out = cli(url, "logs", "--which", "security")
    assert code == 0 and "0x8FE0" in out
    code, out = cli(url, "logs", "--json")
    assert code == 0 and json.loads(out)["entries"] == []


def test_device_eui_all_ones_or_zeros_refused(url: str) -> None:
    for bad in ("FFFFFFFFFFFFFFFF", "0000000000000000"):
        # the laptop refuses it before sending
        code, out = cli(url, "device-log", "add", "--eui", bad, "--type", "ESME",
                        "--install-code", with_crc(b"0123456789ABCDEF"))
        assert code == 2 and "not a device address" in out, out
        # and so does the hub, asked directly
        with LocalPortClient(url) as c, pytest.raises(LocalPortError, match="not a device address") as e:
            c.call("device_log_add", eui=bad, type=1, install_code=with_crc(b"0123456789ABCDEF"))
        assert e.value.status == 5
    assert json.loads(cli(url, "device-log", "list", "--json")[1])["entries"] == []


def test_tables_for_people_piped_at_80_columns(url: str) -> None:
    """Piped at 80 columns (a narrow terminal's COLUMNS too): every EUI and
    every byte of log data in full, times as UTC date-times, codes named;
    --json times are Unix time."""
    def narrow(*args: str) -> tuple[int, str]:
        r = CliRunner().invoke(main, ["hht", "--port", url, *args], env={"COLUMNS": "80"})
        return r.exit_code, r.output

    code, _ = cli(url, "device-log", "add", "--eui", ESME, "--type", "ESME",
                  "--install-code", with_crc(b"0123456789ABCDEF"), "--join-timeout", "600")
    assert code == 0
    code, out = narrow("device-log", "list")
    assert code == 0 and ESME in out and "…" not in out, out
    assert "until 2000-01-01" in out, out  # the hub's clock here starts at 1000 s since 2000
    code, out = narrow("logs", "--which", "security")
    assert code == 0 and "…" not in out, out
    assert "00db1234567890f0" in out.replace("\n", "").replace(" ", "").replace("│", "").lower(), out
    assert "2000-01-01 00:16" in out and "0x8FE0" in out  # 0x8FE0: a code of this test's own, no name
    from chub.views import code_name

    assert code_name(0x8F12) == "CHF Device Log Changed"
    assert code_name(0x8FE2) == "network key rotated"  # private: from codes.py
    code, out = cli(url, "logs", "--which", "security", "--json")
    r = json.loads(out)
    assert r["entries"][0][0] >= 946684800 + 1000 and r["names"]["0x8FE0"] == code_name(0x8FE0)
    code, out = cli(url, "device-log", "list", "--json")
    e = json.loads(out)["entries"][0]
    assert e["window_end"] > 946684800 and e["eui"] == ESME


def test_port_after_the_command_too(url: str) -> None:
    """`chub hht logs --port URL` works as `chub hht --port URL logs` (it was refused)."""
    r = CliRunner().invoke(main, ["hht", "logs", "--which", "security", "--port", url, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["capacity"] == 40
    r = CliRunner().invoke(main, ["hht", "device-log", "list", "--json", "--port", url])
    assert r.exit_code == 0 and json.loads(r.output)["total"] == 0, r.output


def test_send_gbcs_wait_needs_a_sim(url: str, tmp_path: Path) -> None:
    """--wait on a port that is no `chub sim`'s: refused before anything is sent (exit 2)."""
    (tmp_path / "cmd.hex").write_text("DF09")
    r = CliRunner().invoke(main, ["hht", "--port", url, "send-gbcs", "--in", str(tmp_path / "cmd.hex"),
                                  "--out", str(tmp_path / "rsp.hex"), "--wait", "5"])
    assert r.exit_code == 2 and "--wait collects late responses from a `chub sim`" in r.output, r.output
