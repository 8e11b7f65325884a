"""Build a board's app image: every firmware and board module through mpy-cross."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .paths import BOARDS, BUILD, FIRMWARE, ROOT, venv_tool

# Scripts MicroPython runs as source at boot; everything else ships as .mpy.
SOURCE_ONLY = {"main.py", "boot.py"}


class BuildError(Exception):
    """A module mpy-cross rejected: carries the file and line."""

    def __init__(self, path: Path, line: int | None, message: str):
        self.path, self.line, self.message = path, line, message
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {message}")


@dataclass
class Image:
    board: str
    path: Path
    modules: list[str]
    version: str
    info: dict


def boards() -> list[str]:
    return sorted(p.name for p in BOARDS.iterdir() if (p / "board.json").exists())


def board_spec(name: str) -> dict:
    f = BOARDS / name / "board.json"
    if not f.exists():
        raise BuildError(BOARDS / name, None, f"unknown board {name!r}; known: {', '.join(boards())}")
    return json.loads(f.read_text())


def firmware_version() -> str:
    text = (FIRMWARE / "version.py").read_text()
    m = re.search(r'VERSION\s*=\s*"([^"]+)"', text)
    if not m:
        raise BuildError(FIRMWARE / "version.py", None, "no VERSION string")
    return m.group(1)


def _git_rev() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        rev = out.stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "firmware", "boards"], cwd=ROOT, capture_output=True, text=True)
        return rev + ("-dirty" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def sources(board: str) -> list[tuple[Path, str]]:
    """(source file, path inside the image) for the firmware and the board."""
    out: list[tuple[Path, str]] = []
    for f in sorted(FIRMWARE.rglob("*.py")):
        out.append((f, f.relative_to(FIRMWARE).as_posix()))
    for f in sorted((BOARDS / board).glob("*.py")):
        if f.name != "manifest.py":
            out.append((f, f.name))
    return out


_LINE = re.compile(r'File "[^"]*", line (\d+)')


def compile_module(src: Path, dst: Path, args: list[str]) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        [venv_tool("mpy-cross"), *args, "-s", src.name, "-o", str(dst), str(src)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        text = (r.stderr or r.stdout).strip()
        m = _LINE.search(text)
        shown = src.relative_to(ROOT) if src.is_relative_to(ROOT) else src
        raise BuildError(shown, int(m.group(1)) if m else None, text.splitlines()[-1] if text else "mpy-cross failed")


def build(board: str, out: Path | None = None, progress: Callable[[str], None] | None = None) -> Image:
    spec = board_spec(board)
    out = out or BUILD / board / "image"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    version = firmware_version()
    info = {
        "version": version,
        "board": board,
        "git": _git_rev(),
        "built_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    gen = out.parent / "build_info.py"
    gen.write_text("".join(f"{k.upper()} = {v!r}\n" for k, v in info.items()))
    jobs = [*sources(board), (gen, "build_info.py")]
    args = list(spec.get("mpy_cross_args", []))
    modules: list[str] = []

    def one(job: tuple[Path, str]) -> str:
        src, rel = job
        if rel in SOURCE_ONLY:
            # still checked by mpy-cross, shipped as source
            compile_module(src, out / ".check" / (rel + ".mpy"), args)
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out / rel)
            return rel
        dst = out / (rel[:-3] + ".mpy")
        compile_module(src, dst, args)
        return dst.relative_to(out).as_posix()

    with ThreadPoolExecutor(max_workers=4) as pool:
        for name in pool.map(one, jobs):
            modules.append(name)
            if progress:
                progress(name)
    shutil.rmtree(out / ".check", ignore_errors=True)
    (out / "image.json").write_text(json.dumps({**info, "modules": sorted(modules)}, indent=1))
    return Image(board=board, path=out, modules=sorted(modules), version=version, info=info)
