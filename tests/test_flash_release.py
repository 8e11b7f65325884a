"""`chub flash` on a real board reaches the REPL through the hub's
console_release whenever an app may be running: without --firmware (an app
update) and with --firmware but without --erase (the old app on the file
system boots on the new MicroPython; the frozen esp32_devkitc always flashes
firmware). esptool and mpremote are replaced by recorders here: these steps
need the board (tests/test_flash.py covers them against esptool's image
format and the emulated board)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from chub import flash_board as fb


def _image(tmp: Path, board: str) -> Path:
    img = tmp / "image"
    img.mkdir()
    (img / "main.py").write_text("import app\napp.main()\n")
    doc = {"board": board, "version": "1", "git": "g",
           "files": {"main.py": hashlib.sha256((img / "main.py").read_bytes()).hexdigest()}}
    (img / "image.json").write_text(json.dumps(doc))
    return img


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []

    class Transport:
        def enter_raw_repl(self, soft_reset: bool = True) -> None:
            seen.append("repl")

        def exec_raw_no_follow(self, code: str) -> None:
            seen.append("reset")

        def close(self) -> None:
            pass

    monkeypatch.setattr(fb, "check_firmware", lambda path, spec: SimpleNamespace(project="MicroPython", version="v1.29"))
    monkeypatch.setattr(fb, "flash_firmware", lambda *a: seen.append("firmware") or {})
    monkeypatch.setattr(fb, "open_transport", lambda port: Transport())
    monkeypatch.setattr(fb, "copy_image", lambda *a: seen.append("copy") or {})
    monkeypatch.setattr(fb, "wait_ready", lambda *a: seen.append("ready") or {})
    monkeypatch.setattr(fb, "release_console", lambda port, wait_s=3.0: seen.append("release") or True)
    monkeypatch.setattr(fb.time, "sleep", lambda s: None)
    return seen


def test_firmware_without_erase_releases_the_console(tmp_path: Path, steps: list[str]) -> None:
    fw = tmp_path / "fw.bin"
    fw.write_bytes(b"x")
    fb.flash_board("esp32_devkitc", "/dev/null", _image(tmp_path, "esp32_devkitc"), fw, False, lambda *a: None)
    assert steps == ["firmware", "release", "repl", "copy", "reset", "ready"]


def test_firmware_with_erase_has_no_app_to_release(tmp_path: Path, steps: list[str]) -> None:
    fw = tmp_path / "fw.bin"
    fw.write_bytes(b"x")
    fb.flash_board("esp32_devkitc", "/dev/null", _image(tmp_path, "esp32_devkitc"), fw, True, lambda *a: None)
    assert steps == ["firmware", "repl", "copy", "reset", "ready"]


def test_app_update_releases_the_console(tmp_path: Path, steps: list[str]) -> None:
    fb.flash_board("esp32_s3_devkitc", "/dev/null", _image(tmp_path, "esp32_s3_devkitc"), None, False,
                   lambda *a: None)
    assert steps == ["release", "repl", "copy", "reset", "ready"]


def test_release_waits_for_the_port_to_come_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the S3's native USB console re-enumerates at the reset: the device
    # node goes away and comes back
    calls: list[str] = []

    class Client:
        def __init__(self, port: str, timeout: float) -> None:
            pass

        def __enter__(self) -> Client:
            return self

        def __exit__(self, *a: object) -> None:
            pass

        def call(self, cmd: str) -> dict:
            calls.append(cmd)
            return {"released": True}

    dev = tmp_path / "ttyACM0"
    ticks = iter(range(1000))

    def fake_sleep(s: float) -> None:
        n = next(ticks)
        if n == 0:
            dev.unlink(missing_ok=True)  # gone at the reset
        if n == 3:
            dev.write_text("")  # back
        calls.append("sleep")

    dev.write_text("")
    monkeypatch.setattr(fb, "LocalPortClient", Client)
    monkeypatch.setattr(fb.time, "sleep", fake_sleep)
    assert fb.release_console(str(dev)) is True
    assert calls[0] == "console_release" and dev.exists()  # returned once the port is back
    assert calls.count("sleep") >= 4
