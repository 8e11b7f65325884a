"""Build a board's app image: every firmware and board module through mpy-cross."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .paths import BOARDS, BUILD, FIRMWARE, ROOT, source_rev, venv_tool

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
    rev = source_rev()
    if rev:
        return rev  # an installed wheel: the revision it was built from
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        rev = out.stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "firmware", "boards"], cwd=ROOT, capture_output=True, text=True)
        return rev + ("-dirty" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def sources(board: str) -> list[tuple[Path, str]]:
    """(source file, path inside the image) for the firmware and the board
    (with the shared folders its board.json lists under "common"); the
    firmware's rig/ package only where board.json says "rig": true."""
    out: list[tuple[Path, str]] = []
    spec = board_spec(board)
    for f in sorted(FIRMWARE.rglob("*.py")):
        rel = f.relative_to(FIRMWARE).as_posix()
        if rel.startswith("rig/") and not spec.get("rig"):
            continue  # the rig's hooks: only on a board with a rig (the emulated one)
        out.append((f, rel))
    for folder in [*spec.get("common", []), board]:
        for f in sorted((BOARDS / folder).glob("*.py")):
            if f.name != "manifest.py":
                out.append((f, f.name))
    return out


def _board_map():  # boards/esp32_common/board_map.py is plain Python: CPython runs it too
    path = BOARDS / "esp32_common" / "board_map.py"
    spec = importlib.util.spec_from_file_location("chub_board_map", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def check_pin_map(board: str, spec: dict) -> None:
    """A real board's pin map must pass the same checks the board runs at boot."""
    if "chip_family" not in spec:
        return
    bm = _board_map()
    try:
        bm.check(spec)
    except bm.BoardMapError as e:
        raise BuildError(BOARDS / board / "board.json", None, f"pin map: {e}") from None


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
    """Compile the image into `out` (default build/BOARD/image). A frozen
    board also gets `manifest.py` and the sources to freeze in `app/` beside
    the image folder; its image then holds only what goes on the board's file
    system (main.py). image.json lists every file with its SHA-256."""
    spec = board_spec(board)
    check_pin_map(board, spec)
    out = out or BUILD / board / "image"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    frozen = bool(spec.get("frozen"))
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
    if "chip_family" in spec:
        cfg = out.parent / "board_cfg.py"
        cfg.write_text(f"# generated by chub build from boards/{board}/board.json\nCONFIG = {spec!r}\n")
        jobs.append((cfg, "board_cfg.py"))
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
    extra: dict = {}
    if frozen:
        extra = _frozen_tree(board, out, jobs)
        from .app_size import estimate

        extra["app_size"] = estimate(sum((out / m).stat().st_size for m in modules if m not in SOURCE_ONLY))
        for m in list(modules):
            if m not in SOURCE_ONLY:
                (out / m).unlink()
                modules.remove(m)
        for d in sorted(out.rglob("*"), reverse=True):
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
    files = {m: sha256_file(out / m) for m in sorted(modules)}
    doc = {**info, "frozen": frozen, "modules": sorted(modules), "files": files, **extra}
    (out / "image.json").write_text(json.dumps(doc, indent=1))
    info = {**info, **extra}
    return Image(board=board, path=out, modules=sorted(modules), version=version, info=info)


def _frozen_tree(board: str, out: Path, jobs: list[tuple[Path, str]]) -> dict:
    """build/BOARD/manifest.py (the board's, copied) and build/BOARD/app/ with
    the sources to freeze: everything but main.py, which stays on the file
    system so that the board boots it, unless board.json says "frozen_main"
    (the unix32 board boots the frozen `main`: nothing on disk can shadow it)."""
    src_manifest = BOARDS / board / "manifest.py"
    if not src_manifest.exists():
        raise BuildError(src_manifest, None, "a frozen board needs a manifest.py")
    app = out.parent / "app"
    if app.exists():
        shutil.rmtree(app)
    frozen_modules = []
    freeze_main = bool(board_spec(board).get("frozen_main"))
    for src, rel in jobs:
        if rel in SOURCE_ONLY and not (freeze_main and rel == "main.py"):
            continue
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, app / rel)
        frozen_modules.append(rel)
    manifest = out.parent / "manifest.py"
    shutil.copyfile(src_manifest, manifest)
    return {"manifest": str(manifest), "frozen_modules": sorted(frozen_modules)}


# The parts of asyncio that load on first use (Event, Lock, wait_for,
# open_connection): code the hub loads while it runs, so they count in the
# code's share, not in the working set (together ~4 KB on the unix port).
RUNTIME_STDLIB = ("asyncio.event", "asyncio.funcs", "asyncio.lock", "asyncio.stream")


def image_modules(image: Path) -> list[str]:
    """Every module of the image by import name, but `main` (which starts the
    hub), then the library modules the hub loads on first use (RUNTIME_STDLIB).
    A frozen image's modules are its image.json "frozen_modules" (sources
    frozen into the binary) beside the .mpy files it ships."""
    doc = json.loads((image / "image.json").read_text())
    files = [m for m in doc["modules"] if m.endswith(".mpy")] + list(doc.get("frozen_modules", []))
    names = {m.rsplit(".", 1)[0].replace("/__init__", "").replace("/", ".") for m in files}
    return sorted(names - {"main"}) + list(RUNTIME_STDLIB)
