"""The Device Log's slot layout is written twice: chf/device_log.py packs
the slots in RAM, chf/devlog_store.py reads and writes them on flash (a
private `const` cannot be imported from another module, and a public one
would cost a global in the boot set). Every name the two share must have
the same value, so the two cannot drift apart."""

from __future__ import annotations

import ast
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"


def _consts(path: Path) -> dict[str, str]:
    out = {}
    for node in ast.parse(path.read_text()).body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Call) and getattr(node.value.func, "id", "") == "const"):
            out[node.targets[0].id] = ast.literal_eval(node.value.args[0])
    return out


def test_the_store_reads_the_slots_as_the_log_packs_them() -> None:
    log = _consts(FIRMWARE / "chf/device_log.py")
    store = _consts(FIRMWARE / "chf/devlog_store.py")
    shared = sorted(set(log) & set(store))
    # the slot size, header, offsets, statistics and flags the store uses
    assert {"_S", "_W", "_HDR", "_O_HASH", "_O_ST", "_ST", "_F_KEY", "_F_HASH", "_F_LK", "_JS_WINDOW", "_HS"} <= set(shared)
    assert [n for n in shared if log[n] != store[n]] == []
