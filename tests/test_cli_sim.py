"""README command 1 in miniature: `chub sim --headless` brings the hub up under
micropython, prints its ready line, answers `chub hht status`, stops on SIGINT.
And the serial DUT backend, pointed at that hub's local port."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from chub.core.paths import default_heap, venv_tool


def _chub() -> str:
    return venv_tool("chub")


def test_sim_headless_ready_line_and_hht_status(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [_chub(), "sim", "--headless", "--ready-timeout", "60", "--workdir", str(tmp_path / "sim"), "--fresh"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"no ready line; stderr: {proc.stderr.read() if proc.stderr else ''}"
        ready = json.loads(line)
        assert ready["event"] == "ready" and ready["board"] == "unix" and ready["heap"] == default_heap()
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
        # without --port, hht finds the running sim through its ready file
        assert (tmp_path / "sim" / "ready.json").exists()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        assert not (tmp_path / "sim" / "ready.json").exists()
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
            from chub.core.localport import LocalPortClient

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
