"""The HIL scenario tests on the serial backend, unchanged.

A "board" is brought up the way a lab bench has one: `chub sim --headless` in
its own process (the hub under micropython with its own emulated NCP, modem
and head-end, i.e. the rig's peripherals on the far side of the wires), its
console/local port reachable only as a pyserial `socket://` URL. Then pytest
runs the scenario modules that use the `hub` fixture with `--chub-dut serial --chub-port
URL`, exactly as a lab runs them against `/dev/ttyUSB0` or `rfc2217://`.
The same modules run in the ordinary suite with the default `--chub-dut unix`.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import tty
from pathlib import Path
from types import SimpleNamespace

from chubcore.paths import venv_tool

ROOT = Path(__file__).resolve().parents[1]
# the scenario modules written against the `hub` fixture only
SCENARIOS = ["tests/test_hil_local_port.py", "tests/test_hil_boot.py"]
# tests in those modules that build their own unix system (not the `hub` fixture)
NOT_FIXTURE = "not small_heap_boot"


def _board(workdir: Path) -> tuple[subprocess.Popen[str], dict]:
    proc = subprocess.Popen(
        [venv_tool("chub"), "sim", "--headless", "--ready-timeout", "60", "--workdir", str(workdir), "--fresh"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise AssertionError(f"the board did not come up: {proc.stderr.read() if proc.stderr else ''}")
    return proc, json.loads(line)


def test_scenarios_pass_unchanged_on_the_serial_backend(tmp_path: Path) -> None:
    proc, ready = _board(tmp_path / "board")
    try:
        url = ready["local_port"]
        assert url.startswith("socket://")
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=-ra",
             "--chub-dut", "serial", "--chub-port", url, "-k", NOT_FIXTURE, *SCENARIOS],
            cwd=ROOT, capture_output=True, text=True, timeout=180, env=dict(os.environ),
        )
        out = r.stdout + r.stderr
        assert r.returncode == 0, out[-4000:]
        m = re.search(r"(\d+) passed", out)
        assert m and int(m.group(1)) >= 5, out[-2000:]
        # unix-only steps (power cut, heap limit, RTC wire) skip with a reason
        # instead of failing: nothing else may skip
        skips = re.findall(r"SKIPPED \[\d+\] [^\n]*", out)
        assert all("emulated board" in s for s in skips), skips
        # and the scenario really talked to the board behind the URL: the
        # board's own hub answered and is still the same process
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_uart_bridge_serves_the_ncp_emulator_on_a_tty(tmp_path: Path) -> None:
    """The lab wiring in miniature: a pseudo-terminal stands for the USB-serial
    adapter on the board's NCP UART. The board's side (the pty master) sends
    an ASH RST; the rig's NCP emulator, reached through UartBridge and a real
    tty opened by pyserial, answers RSTACK."""
    from hil.dut import UartBridge
    from hil.log import DutLog
    from hil.ncp import ash
    from hil.rig import Rig
    from hil.system import attach_peripherals

    log = DutLog(tmp_path / "rig.log")
    rig = Rig(log).start()
    master, slave = os.openpty()
    tty.setraw(slave)
    bridge = None
    try:
        attach_peripherals(SimpleNamespace(rig=rig, log=log, local_port_url=rig.local_port_url, han_demo=False))
        bridge = UartBridge(os.ttyname(slave), rig, "ncp", log).start()
        os.write(master, b"\x1a" + ash.build(0xC0))  # CANCEL, RST
        de = ash.Deframer()
        frames: list[bytes] = []
        deadline = time.monotonic() + 10
        while not frames and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                frames += de.feed(os.read(master, 4096))
        assert frames and frames[0][0] == ash.RSTACK, frames
        assert rig.connected["ncp"]
    finally:
        if bridge:
            bridge.stop()
        os.close(master)
        os.close(slave)
        rig.stop()
        log.close()
