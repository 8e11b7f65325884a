"""Our own MicroPython: mpy-cross and a unix port with the hub frozen in,
built from the MicroPython source tarball in ../shared/micropython (never
copied into the repository).

`build_micropython("unix32")` builds the board's image (chubcore.build: the
app tree and manifest.py beside it), unpacks the tarball under
build/micropython/, builds mpy-cross and the unix port as board.json's
"micropython" recipe says (for unix32: `gcc -m32`, the standard variant's
manifest plus the hub's app tree as FROZEN_MANIFEST) and leaves the binary at
build/BOARD/micropython. A hash of the tarball, the board's files, the
firmware sources and the recipe is stamped beside it; while it matches,
nothing is rebuilt.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .build import BuildError, board_spec, build, sources
from .paths import BOARDS, BUILD, shared_dir

# bump when the way of building changes (the stamp then no longer matches)
RECIPE = 1
STAMP = "micropython.stamp"
BINARY = "micropython"

Progress = Callable[[str], None]


class MpBuildError(Exception):
    """A MicroPython build that could not run or failed: says why and what to do."""


@dataclass
class Firmware:
    board: str
    binary: Path  # the unix port with the hub frozen in
    mpy_cross: Path  # the source tree's mpy-cross (compiled the frozen code)
    image: Path  # build/BOARD/image: what is not frozen (image.json, main.py)
    stamp: str  # the hash the binary was built from
    built: bool  # False: the cached binary matched the stamp
    seconds: float


def source_tarball() -> Path:
    """$CHUB_MICROPYTHON_SRC, else the one micropython-*.tar.xz in ../shared/micropython."""
    env = os.environ.get("CHUB_MICROPYTHON_SRC")
    if env:
        return Path(env)
    try:
        folder = shared_dir() / "micropython"
    except FileNotFoundError as e:
        raise MpBuildError(str(e)) from None
    found = sorted(folder.glob("micropython-*.tar.xz"))
    if len(found) != 1:
        raise MpBuildError(
            f"need exactly one micropython-*.tar.xz in {folder} (found {len(found)}); "
            "or set CHUB_MICROPYTHON_SRC"
        )
    return found[0]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_hash(board: str, tarball: Path | None = None) -> str:
    """What the binary depends on: the tarball, the board's own files (board.json,
    manifest.py), every source of its image and this recipe."""
    spec = board_spec(board)
    h = hashlib.sha256(f"recipe {RECIPE}\n".encode())
    h.update(_sha256(tarball or source_tarball()).encode())
    for f in sorted((BOARDS / board).iterdir()):
        if f.is_file():
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    for src, rel in sources(board):
        h.update(rel.encode() + b"\0" + src.read_bytes())
    h.update(json.dumps(spec, sort_keys=True).encode())
    return h.hexdigest()


def board_dir(board: str) -> Path:
    return BUILD / board


def binary_path(board: str) -> Path:
    return board_dir(board) / BINARY


def frozen_binary(image: Path) -> Path | None:
    """The binary built for a frozen image folder (build/BOARD/image ->
    build/BOARD/micropython), if there is one."""
    exe = Path(image).parent / BINARY
    return exe if exe.exists() else None


def is_current(board: str) -> bool:
    """The board's binary exists and was built from today's sources."""
    stamp = board_dir(board) / STAMP
    return binary_path(board).exists() and stamp.exists() and stamp.read_text().strip() == build_hash(board)


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    """One build at a time (pytest-xdist workers, two shells)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _unpack(tarball: Path, say: Progress) -> Path:
    """The source tree, unpacked once per tarball under build/micropython/."""
    tag = _sha256(tarball)[:12]
    dest = BUILD / "micropython" / f"src-{tag}"
    tree = dest / "micropython"
    done = dest / ".unpacked"
    if done.exists() and tree.is_dir():
        return tree
    say(f"unpacking {tarball.name}")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with tarfile.open(tarball) as tf:
        tf.extractall(dest, filter="data")
    if not tree.is_dir():
        raise MpBuildError(f"{tarball} did not unpack to micropython/")
    done.write_text(tarball.name + "\n")
    return tree


def _check_cc(cc: str) -> None:
    """The compiler can build and link for the target (gcc -m32 needs Debian's gcc-multilib)."""
    probe = subprocess.run(
        [*cc.split(), "-x", "c", "-", "-o", os.devnull],
        input="int main(void) { return 0; }\n",
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        hint = " (install gcc-multilib: apt-get install -y gcc-multilib)" if "-m32" in cc else ""
        raise MpBuildError(f"`{cc}` cannot build a program{hint}: {probe.stderr.strip()[-400:]}")


def _make(args: list[str], say: Progress, what: str, log: Path) -> None:
    """Run make, telling `say` each file it compiles; the full output goes to `log`."""
    n = 0
    with log.open("a") as out:
        out.write(f"$ {' '.join(args)}\n")
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            word = line.split(" ", 1)[0]
            if word in ("CC", "MPY", "LINK", "GEN", "QSTR"):
                n += 1
                say(f"{what}: {n} steps, {line.strip()[:70]}")
        rc = proc.wait()
    if rc != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-25:])
        raise MpBuildError(f"{what} failed (make exit {rc}); full log {log}:\n{tail}")


def build_micropython(board: str = "unix32", progress: Progress | None = None, jobs: int = 2,
                      force: bool = False) -> Firmware:
    """The board's MicroPython with the hub frozen in (cached: see the module doc)."""
    say = progress or (lambda _m: None)
    spec = board_spec(board)
    recipe = spec.get("micropython")
    if not spec.get("frozen") or not recipe:
        raise MpBuildError(f"board {board!r} has no MicroPython recipe (board.json \"micropython\", \"frozen\")")
    if recipe.get("port") != "unix":
        raise MpBuildError(f"board {board!r}: only the unix port is built here, not {recipe.get('port')!r}")
    t0 = time.monotonic()
    out = board_dir(board)
    tarball = source_tarball()
    with _lock(BUILD / f".{board}.lock"):
        stamp = build_hash(board, tarball)
        stamp_file = out / STAMP
        exe = out / BINARY
        tree_hint = BUILD / "micropython" / f"src-{_sha256(tarball)[:12]}" / "micropython"
        if not force and exe.exists() and stamp_file.exists() and stamp_file.read_text().strip() == stamp:
            say(f"{exe} is current (stamp {stamp[:12]})")
            return Firmware(board, exe, tree_hint / "mpy-cross" / "build" / "mpy-cross", out / "image", stamp,
                            False, time.monotonic() - t0)
        cc = recipe.get("cc", "gcc")
        _check_cc(cc)
        say(f"building the {board} image (app tree and manifest)")
        try:
            img = build(board, out=out / "image")
        except BuildError as e:
            raise MpBuildError(str(e)) from None
        manifest = Path(img.info["manifest"]).resolve()
        tree = _unpack(tarball, say)
        log = out / "make.log"
        log.write_text("")
        mpy_cross = tree / "mpy-cross" / "build" / "mpy-cross"
        if not mpy_cross.exists():
            say("mpy-cross")
            _make(["make", "-C", str(tree / "mpy-cross"), f"-j{jobs}"], say, "mpy-cross", log)
        port_build = (out / "port").resolve()
        args = ["make", "-C", str(tree / "ports" / recipe["port"]), f"-j{jobs}", f"CC={cc}",
                *recipe.get("make", []), f"BUILD={port_build}", f"FROZEN_MANIFEST={manifest}"]
        say(f"MicroPython {recipe['port']} port ({cc})")
        _make(args, say, f"{recipe['port']} port", log)
        built = port_build / BINARY
        if not built.exists():
            raise MpBuildError(f"make finished but {built} is missing; see {log}")
        tmp = exe.with_suffix(".tmp")
        shutil.copyfile(built, tmp)
        tmp.chmod(0o755)
        tmp.replace(exe)
        stamp_file.write_text(stamp + "\n")
        return Firmware(board, exe, mpy_cross, img.path, stamp, True, time.monotonic() - t0)
