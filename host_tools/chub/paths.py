"""Where the repository's parts are (the tools run from an editable install)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
BOARDS = ROOT / "boards"
BUILD = ROOT / "build"
STATE = ROOT / ".chub"


def venv_tool(name: str) -> str:
    """A console script installed beside this interpreter, else on PATH."""
    exe = Path(sys.executable).with_name(name)
    if exe.exists():
        return str(exe)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} is not installed; run the README's setup command")
    return found
