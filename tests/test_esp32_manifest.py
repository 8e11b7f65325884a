"""The esp32_devkitc frozen manifest carries only what the hub uses, and
`chub build` states the app size against the 0x1F0000 factory partition."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "boards" / "esp32_devkitc" / "manifest.py"
# built into the ESP32_GENERIC port (ports/esp32/mpconfigport.h, extmod)
BUILTIN = {"array", "binascii", "cryptolib", "esp32", "gc", "hashlib", "json", "machine", "micropython", "os",
           "random", "select", "struct", "sys", "time", "vfs"}


def _calls() -> list[tuple[str, tuple]]:
    calls: list[tuple[str, tuple]] = []

    def rec(name: str):  # noqa: ANN202
        return lambda *a, **k: calls.append((name, a))

    exec(MANIFEST.read_text(), {n: rec(n) for n in ("include", "freeze", "require", "package", "module")})
    return calls


def test_manifest_freezes_only_what_the_hub_uses() -> None:
    calls = _calls()
    assert ("include", ("$(PORT_DIR)/boards/manifest.py",)) not in calls  # the whole port bundle
    assert not [c for c in calls if c[0] == "require"], calls  # no micropython-lib packages
    assert ("include", ("$(MPY_DIR)/extmod/asyncio",)) in calls
    assert ("freeze", ("app",)) in calls
    port = [c for c in calls if c[0] == "freeze" and c[1][0] == "$(PORT_DIR)/modules"]
    assert port and set(port[0][1][1]) == {"_boot.py", "flashbdev.py", "inisetup.py"}  # mounts and formats the fs


def test_every_import_of_the_hub_is_frozen_or_built_in() -> None:
    names: set[str] = set()
    for d in (ROOT / "firmware", ROOT / "boards" / "esp32_common"):
        for p in d.rglob("*.py"):
            for node in ast.walk(ast.parse(p.read_text())):
                if isinstance(node, ast.Import):
                    names |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module.split(".")[0])
    ours = {p.stem for p in (ROOT / "firmware").iterdir()} | {"board", "board_cfg", "board_map", "build_info",
                                                               "esp32_board"}
    assert names - ours - BUILTIN == {"asyncio"}, names - ours - BUILTIN


def test_build_states_the_app_size(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "chub.cli", "build", "--board", "esp32_devkitc", "--out",
                        str(tmp_path / "image")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads((tmp_path / "image" / "image.json").read_text())
    size = doc["app_size"]
    assert size["partition"] == 0x1F0000 and size["estimate"] is True
    assert 100_000 < size["frozen_hub"] < 600_000, size
    assert size["frozen"] == size["frozen_hub"] + size["frozen_lib"]
    assert "estimate" in r.stderr and "1984 KB factory partition" in r.stderr, r.stderr
