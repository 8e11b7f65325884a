"""Where the repository's parts are, in a checkout and in an installed wheel.

A checkout (or an editable install of it) reads firmware/, boards/ and bench/
in the repository. The wheel carries those three trees as package data in
chubcore/_tree (setup.py copies them at build time), so a plain
`pip install` runs `chub sim`, `chub bench` and the pytest plugin; it keeps
its records and builds under the user's state folder, and finds the shared
test vectors and MicroPython source only through $CHUB_VECTORS /
$CHUB_MICROPYTHON_SRC (a checkout also looks in ../shared beside it).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

_TREE = Path(__file__).resolve().parent / "_tree"
INSTALLED = (_TREE / "firmware").is_dir()  # a wheel's copy, not a checkout
ROOT = _TREE if INSTALLED else Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
BOARDS = ROOT / "boards"
BENCH = ROOT / "bench"


def _user_state() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "chub"


STATE = _user_state() if INSTALLED else ROOT / ".chub"
BUILD = Path(os.environ.get("CHUB_STATE", STATE)) / "build" if INSTALLED else ROOT / "build"


def source_rev() -> str | None:
    """The git revision the wheel was built from (None in a checkout: ask git)."""
    f = ROOT / "source.json"
    return json.loads(f.read_text()).get("git_rev") if INSTALLED and f.exists() else None


def venv_tool(name: str) -> str:
    """A console script installed beside this interpreter, else on PATH."""
    exe = Path(sys.executable).with_name(name)
    if exe.exists():
        return str(exe)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} is not installed; run the README's setup command")
    return found


MICROPYTHON_ENV = "CHUB_MICROPYTHON"


def micropython_exe() -> str:
    """The `micropython` binary every tool runs: $CHUB_MICROPYTHON (e.g. our own
    32-bit frozen build, build/unix32/micropython), else the one installed
    beside this interpreter (the PyPI unix port), else on PATH."""
    chosen = os.environ.get(MICROPYTHON_ENV)
    if chosen:
        exe = Path(chosen).expanduser()
        if not exe.is_file() or not os.access(exe, os.X_OK):
            raise FileNotFoundError(f"{MICROPYTHON_ENV}={chosen} is not an executable file")
        return str(exe.resolve())
    return venv_tool("micropython")


def default_heap(board: str = "unix") -> str:
    """The board's MicroPython heap limit (`default_heap` in boards/<board>/board.json).

    On the unix board the `.mpy` bytecode lives in this heap (a frozen ESP32
    build keeps it in flash), so the limit is code plus the data working set;
    the one number every tool and test uses comes from here.
    """
    return str(json.loads((BOARDS / board / "board.json").read_text())["default_heap"])


def state_dir() -> Path:
    """The laptop's records: $CHUB_STATE, else .chub in the repository
    (installed: $XDG_STATE_HOME/chub, else ~/.local/state/chub)."""
    return Path(os.environ.get("CHUB_STATE", STATE))


def shared_dir() -> Path:
    """../shared beside the checkout (the team's vectors and MicroPython source);
    an installed package has no such neighbour."""
    if INSTALLED:
        raise FileNotFoundError("an installed chub has no ../shared folder: set CHUB_VECTORS to the test "
                                "vectors (and CHUB_MICROPYTHON_SRC to the MicroPython tarball for frozen builds)")
    return ROOT.parent / "shared"


def vectors_dir() -> Path:
    """The shared test vectors: $CHUB_VECTORS, else ../shared/vectors beside the repository."""
    env = os.environ.get("CHUB_VECTORS")
    return Path(env) if env else shared_dir() / "vectors"


def keystore_dir() -> Path:
    """The GBCS keystore of the test DCC (vectors/gbcs/keystore)."""
    return vectors_dir() / "gbcs" / "keystore"
