"""GPF figures for `chub bench` (issue 5): bench/mp_gpf.py under micropython.

gpf_read_ms (the GPF's whole handle() of a GCS13a read answered from the
mirror: MAC check, counter persisted, component encrypted for the supplier,
response MAC'd -- the hub's share of head-end -> GPF -> head-end) and
gpf_mirror_report_ms (one Metering attribute report into the mirror).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any


def figures(heap: str) -> dict[str, Any]:
    from .bench import BENCH, _last_json, _mp

    with tempfile.TemporaryDirectory() as tmp:
        return _last_json(_mp([str(BENCH / "mp_gpf.py")], heap, cwd=Path(tmp)))
