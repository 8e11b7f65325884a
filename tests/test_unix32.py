"""The unix32 board: our own 32-bit MicroPython with the hub frozen in
(chubcore.mpbuild), the binary chosen by $CHUB_MICROPYTHON / --chub-micropython,
a frozen image that boots only frozen code, and the bench's module list of a
frozen image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chubcore import mpbuild
from chubcore.build import build
from chubcore.paths import MICROPYTHON_ENV, micropython_exe, venv_tool
from mpy import run_mp

# the first test to use `unix32` builds the binary on a clean clone: ~40 s on
# idle cores, over the default 180 s on busy ones (a clean-clone CI run on
# 2026-12-07 had make killed at 180 s and 5 tests in error)
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="session")
def unix32() -> mpbuild.Firmware:
    """The cached build (built here when stale; ~40 s on 2 cores)."""
    try:
        return mpbuild.build_micropython("unix32")
    except mpbuild.MpBuildError as e:
        if os.environ.get("CI") or "cannot build a program" not in str(e):
            raise
        pytest.skip(f"no 32-bit compiler here: {e}")


def test_build_hash_follows_the_firmware_the_board_and_the_tarball(tmp_path: Path, monkeypatch) -> None:
    base = mpbuild.build_hash("unix32")
    assert base == mpbuild.build_hash("unix32")  # nothing else (time, git) goes in
    extra = tmp_path / "extra.py"
    extra.write_text("X = 1\n")
    real = mpbuild.sources
    monkeypatch.setattr(mpbuild, "sources", lambda board: [*real(board), (extra, "extra.py")])
    changed = mpbuild.build_hash("unix32")
    assert changed != base
    extra.write_text("X = 2\n")
    assert mpbuild.build_hash("unix32") != changed
    monkeypatch.setattr(mpbuild, "sources", real)
    other = tmp_path / "micropython-other.tar.xz"
    other.write_bytes(b"not the same source")
    assert mpbuild.build_hash("unix32", other) != base


def test_a_board_without_a_recipe_is_refused() -> None:
    with pytest.raises(mpbuild.MpBuildError, match="no MicroPython recipe"):
        mpbuild.build_micropython("unix")


def test_the_binary_is_32_bit_with_the_hub_frozen_in_and_cached(unix32: mpbuild.Firmware) -> None:
    assert mpbuild.is_current("unix32")
    r = subprocess.run([str(unix32.binary), "-c", "import sys, build_info; print(sys.maxsize, build_info.BOARD)"],
                       env={**os.environ, "MICROPYPATH": ".frozen"}, capture_output=True, text=True, timeout=30)
    assert r.stdout.split() == [str(2**31 - 1), "unix32"], r.stderr
    # a second build is the cached one
    out = subprocess.run([venv_tool("chub"), "build", "--board", "unix32"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "up to date" in out.stderr, out.stderr


def test_chub_micropython_chooses_the_binary_of_the_test_tier(unix32: mpbuild.Firmware, monkeypatch) -> None:
    monkeypatch.setenv(MICROPYTHON_ENV, str(unix32.binary))
    assert micropython_exe() == str(unix32.binary.resolve())
    r = run_mp(code="import sys\nprint(sys.maxsize)")
    assert r.stdout.strip() == str(2**31 - 1), r.stderr
    monkeypatch.setenv(MICROPYTHON_ENV, str(Path(sys.executable).parent / "no-such-micropython"))
    with pytest.raises(FileNotFoundError, match=MICROPYTHON_ENV):
        micropython_exe()


def test_a_frozen_image_boots_only_frozen_code(unix32: mpbuild.Firmware, tmp_path: Path, monkeypatch) -> None:
    """Modules beside the image's main.py (a stale .mpy, a stray source) must
    not shadow the frozen ones: before, the DUT ran `micropython IMAGE/main.py`,
    whose folder comes first on sys.path."""
    from types import SimpleNamespace

    from hil.dut import UnixDut
    from hil.log import DutLog
    from hil.rig import Rig
    from hil.system import attach_peripherals

    monkeypatch.delenv(MICROPYTHON_ENV, raising=False)
    image = tmp_path / "image"
    shutil.copytree(unix32.image, image)
    shadow = 'print("SHADOWED")\nraise SystemExit(3)\n'
    for name in ("app.py", "log.py", "board.py", "main.py"):
        (image / name).write_text(shadow)
    log = DutLog(tmp_path / "dut.log")
    rig = Rig(log).start()
    dut = UnixDut(image, tmp_path / "board", rig, log, exe=unix32.binary)
    try:
        attach_peripherals(SimpleNamespace(rig=rig, log=log, local_port_url=rig.local_port_url, han_demo=False))
        assert dut.frozen and dut.heap == "256k"
        dut.start()
        dut.wait_ready(timeout=30)
    finally:
        dut.stop()
        rig.stop()
        log.close()
    text = (tmp_path / "dut.log").read_text()
    assert "SHADOWED" not in text and "-m main" in text


def test_the_bench_reads_a_frozen_images_module_list(tmp_path: Path) -> None:
    from chub.bench import image_modules

    img = build("unix32", out=tmp_path / "image")
    doc = json.loads((img.path / "image.json").read_text())
    assert doc["frozen"] and doc["modules"] == ["main.py"]  # nothing but main on the file system
    assert "main.py" in doc["frozen_modules"]  # the DUT boots the frozen main
    mods = image_modules(img.path)
    assert {"app", "han.ash", "board", "blockdev", "build_info", "rig.hooks"} <= set(mods)
    assert "main" not in mods


def test_heap_census_covers_every_module(unix32: mpbuild.Firmware, monkeypatch) -> None:
    from chub.bench import census_markdown, heap_census, image_modules

    monkeypatch.setenv(MICROPYTHON_ENV, str(unix32.binary))
    rows = heap_census(unix32.image, "256k")
    seen = {r["module"] for r in rows} | {m for r in rows for m in r["with"]}
    assert set(image_modules(unix32.image)) <= seen
    assert all(r["bytes"] > 0 for r in rows)
    # only a package whose __init__ imports its submodules brings others along
    assert all(all(m.startswith(r["module"] + ".") for m in r["with"]) for r in rows)
    assert "| `app` |" in census_markdown(rows)


def test_chub_sim_boots_the_frozen_board(unix32: mpbuild.Firmware, tmp_path: Path) -> None:
    import signal

    proc = subprocess.Popen(
        [venv_tool("chub"), "sim", "--board", "unix32", "--headless", "--ready-timeout", "60",
         "--workdir", str(tmp_path / "sim"), "--fresh"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        ready = json.loads(line)
        assert ready["event"] == "ready" and ready["heap"] == "256k"
        log = Path(ready["log"]).read_text()
        assert f"{unix32.binary} -X heapsize=256k -m main" in log
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
