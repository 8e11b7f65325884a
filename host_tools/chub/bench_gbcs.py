"""GBCS figures for `chub bench` (issue 4): bench/mp_gbcs.py under micropython.

gbcs_verify_decode_us (MAC verify + decode of a CCS05 command),
gbcs_response_build_us (build + MAC of its response) and gbcs_handle_us
(the CHF's whole handle() of that command, counter persisted).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any


def figures(heap: str) -> dict[str, Any]:
    from .bench import BENCH, _last_json, _mp

    with tempfile.TemporaryDirectory() as tmp:
        return _last_json(_mp([str(BENCH / "mp_gbcs.py")], heap, cwd=Path(tmp)))
