"""README command 1 in miniature: `chub sim --headless` brings the hub up under
micropython, prints its ready line, answers `chub hht status`, stops on SIGINT.
And the serial DUT backend, pointed at that hub's local port."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from chubcore.paths import venv_tool
from hil.meters.living import LIVING_HEAP


def _chub() -> str:
    return venv_tool("chub")


def _env(tmp_path: Path) -> dict[str, str]:
    import os

    return {**os.environ, "CHUB_STATE": str(tmp_path / "state")}


def test_sim_headless_ready_line_and_hht_status(tmp_path: Path) -> None:
    env = _env(tmp_path)
    proc = subprocess.Popen(
        [_chub(), "sim", "--headless", "--ready-timeout", "60", "--workdir", str(tmp_path / "sim"), "--fresh"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"no ready line; stderr: {proc.stderr.read() if proc.stderr else ''}"
        ready = json.loads(line)
        assert ready["event"] == "ready" and ready["board"] == "unix" and ready["heap"] == LIVING_HEAP
        assert ready["local_port"].startswith("socket://127.0.0.1:")
        out = subprocess.run(
            [_chub(), "hht", "--port", ready["local_port"], "status", "--json"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        st = json.loads(out.stdout)
        assert st["version"] == ready["version"] and st["board"] == "unix"
        # without --port, hht finds the running sim, though it was started with --workdir
        ready_file = tmp_path / "sim" / "ready.json"
        assert json.loads(ready_file.read_text()) == ready
        out = subprocess.run([_chub(), "hht", "status", "--json"], capture_output=True, text=True, timeout=30,
                             env=env)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["version"] == ready["version"]
        # a second sim on the same workdir is refused, naming the first; the
        # first's ready file stays
        second = subprocess.run([_chub(), "sim", "--headless", "--workdir", str(tmp_path / "sim")],
                                capture_output=True, text=True, timeout=30, env=env)
        assert second.returncode == 1 and f"pid {proc.pid}" in second.stderr, second.stderr
        assert json.loads(ready_file.read_text()) == ready
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        assert not ready_file.exists()
        # no sim now: hht says how to reach a hub
        out = subprocess.run([_chub(), "hht", "status"], capture_output=True, text=True, timeout=30, env=env)
        assert out.returncode == 2 and "no running `chub sim` found" in out.stderr and "--workdir" in out.stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_serial_backend_reaches_a_hub_over_a_socket_url(tmp_path: Path) -> None:
    from hil.dut import SerialDut
    from hil.log import DutLog
    from hil.system import EmulatedSystem

    with EmulatedSystem(tmp_path / "sys", fresh=True) as system:
        log = DutLog(tmp_path / "serial.log")
        dut = SerialDut(system.local_port_url, log).start()
        try:
            assert dut.wait_ready(timeout=20) >= 0
            from chubcore.localport import LocalPortClient

            with LocalPortClient(dut.local_port_url) as c:
                assert c.call("status")["board"] == "unix"
        finally:
            dut.stop()
            log.close()


def test_serial_backend_wrong_port_is_a_clear_error(tmp_path: Path) -> None:
    import pytest

    from hil.dut import SerialDut
    from hil.log import DutLog

    log = DutLog(tmp_path / "serial.log")
    with pytest.raises(ConnectionError, match="cannot open the board's port"):
        SerialDut("/dev/does-not-exist", log).start()
    log.close()


def test_hht_help_needs_no_hub(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from chub.cli import main

    env = {"CHUB_STATE": str(tmp_path / "state")}  # no sim registered there
    for args in (["hht", "--help"], ["hht", "status", "--help"], ["hht", "device-log", "add", "--help"],
                 ["hht", "han", "read", "--help"], ["hht", "commission", "--help"], ["hht", "send-gbcs", "--help"]):
        r = CliRunner().invoke(main, args, env=env)
        assert r.exit_code == 0 and "Usage:" in r.output, (args, r.output)


def test_flash_needs_a_board(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from chub.cli import main

    port = tmp_path / "ttyUSB0"
    r = CliRunner().invoke(main, ["flash", "--port", str(port)])
    assert r.exit_code == 2 and "--board" in r.output, r.output
    assert not port.exists()  # nothing was flashed to a directory of that name


def test_hht_on_a_busy_serial_port_says_so(tmp_path: Path) -> None:
    """A real board's port held open by another program (a pty stands in
    for /dev/ttyUSB0): a clear "port busy" naming that process, not a hub
    error."""
    import os

    master, slave = os.openpty()
    try:
        path = os.ttyname(slave)  # held open by this process
        out = subprocess.run([_chub(), "hht", "--port", path, "status"], capture_output=True, text=True,
                             timeout=30, env=_env(tmp_path))
        assert out.returncode == 3, out.stderr
        assert "busy" in out.stderr and f"pid {os.getpid()}" in out.stderr, out.stderr
        assert "no answer from the hub" not in out.stderr
    finally:
        os.close(slave)
        os.close(master)
