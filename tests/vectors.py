"""Where the shared byte-exact vectors live (never copied into the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def vectors_dir() -> Path:
    """`$CHUB_VECTORS`, else ../shared/vectors. Missing: a failure under CI, a skip elsewhere."""
    d = Path(os.environ.get("CHUB_VECTORS", ROOT.parent / "shared" / "vectors"))
    if not d.is_dir():
        msg = f"vectors folder {d} is missing (set CHUB_VECTORS)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return d
