"""`chub build` for the ESP32 boards: the .mpy image with the board's pin map
stamped in, the frozen build's manifest + app tree, pin-map refusals, and the
wiring doc agreeing with board.json."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from chub.cli import main
from chubcore import build as b
from hil.mprun import Micropython

ROOT = Path(__file__).resolve().parents[1]
ESP32_BOARDS = ("esp32_s3_devkitc", "esp32_devkitc")


def test_boards_are_listed() -> None:
    assert set(b.boards()) >= {"unix", *ESP32_BOARDS}
    assert "esp32_common" not in b.boards()


def test_s3_image_has_board_modules_and_hashes(tmp_path: Path) -> None:
    img = b.build("esp32_s3_devkitc", out=tmp_path / "img")
    doc = json.loads((img.path / "image.json").read_text())
    assert doc["board"] == "esp32_s3_devkitc" and doc["version"] == b.firmware_version() and not doc["frozen"]
    for m in ("board.mpy", "esp32_board.mpy", "board_map.mpy", "board_cfg.mpy", "build_info.mpy", "app.mpy",
              "chf/identity.mpy", "main.py"):
        assert m in doc["modules"], m
    # every file is listed with its SHA-256 (what `chub flash` verifies on the board)
    assert set(doc["files"]) == set(doc["modules"])
    for rel, h in doc["files"].items():
        assert hashlib.sha256((img.path / rel).read_bytes()).hexdigest() == h
    # the stamped pin map is board.json, readable by MicroPython
    src = (tmp_path / "board_cfg.py").read_text()
    out = Micropython((), heap=None).run(code=src + "\nimport json\nprint(json.dumps(CONFIG))", timeout=30)
    assert json.loads(out.stdout) == json.loads((ROOT / "boards/esp32_s3_devkitc/board.json").read_text())


def test_frozen_build_writes_manifest_and_app_tree(tmp_path: Path) -> None:
    img = b.build("esp32_devkitc", out=tmp_path / "img")
    doc = json.loads((img.path / "image.json").read_text())
    assert doc["frozen"] and doc["modules"] == ["main.py"]
    assert sorted(p.name for p in img.path.iterdir()) == ["image.json", "main.py"]
    manifest = tmp_path / "manifest.py"
    assert doc["manifest"] == str(manifest) and manifest.is_file()
    # run the manifest the way MicroPython's makemanifest does: freeze paths
    # are relative to the manifest's folder
    calls: list[tuple] = []
    exec(compile(manifest.read_text(), str(manifest), "exec"),
         {"include": lambda *a: calls.append(("include", *a)), "freeze": lambda *a: calls.append(("freeze", *a))})
    # asyncio, the port's boot modules and the app (tests/test_esp32_manifest.py)
    assert ("freeze", "app") in calls and ("include", "$(MPY_DIR)/extmod/asyncio") in calls
    app = manifest.parent / "app"
    frozen = sorted(p.relative_to(app).as_posix() for p in app.rglob("*.py"))
    assert frozen == doc["frozen_modules"]
    for src, rel in b.sources("esp32_devkitc"):
        if rel != "main.py":
            assert (app / rel).read_bytes() == src.read_bytes(), rel
    assert "main.py" not in frozen and {"board_cfg.py", "build_info.py", "esp32_board.py"} <= set(frozen)
    assert "VERSION = " in (app / "build_info.py").read_text()


def test_bad_pin_map_fails_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    boards = tmp_path / "boards"
    shutil.copytree(ROOT / "boards", boards)
    cfg = json.loads((boards / "esp32_s3_devkitc/board.json").read_text())
    cfg["leds"]["data"]["pin"] = cfg["uarts"]["modem"]["pwrkey"]
    (boards / "esp32_s3_devkitc/board.json").write_text(json.dumps(cfg))
    monkeypatch.setattr(b, "BOARDS", boards)
    with pytest.raises(b.BuildError) as ei:
        b.build("esp32_s3_devkitc", out=tmp_path / "img")
    assert "leds.data" in str(ei.value) and "GPIO10" in str(ei.value) and "modem.pwrkey" in str(ei.value)


def test_cli_build_frozen_board_names_the_manifest(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["build", "--board", "esp32_devkitc", "--out", str(tmp_path / "img")])
    assert r.exit_code == 0, r.output
    assert f"FROZEN_MANIFEST={tmp_path / 'manifest.py'}" in r.output


def _doc_rows(section: str) -> dict[str, int]:
    text = (ROOT / "docs/wiring.md").read_text()
    part = text.split(f"(`{section}`)", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for m in re.finditer(r"^\| ([a-zA-Z_.\[\]0-9 /]+?)(?: \(UART\d\))? \| (\d+) \|", part, re.M):
        rows[m.group(1)] = int(m.group(2))
    return rows


@pytest.mark.parametrize("board", ESP32_BOARDS)
def test_wiring_doc_matches_board_json(board: str) -> None:
    cfg = json.loads((ROOT / "boards" / board / "board.json").read_text())
    want = {"console / local port TX": cfg["console"]["tx"], "console / local port RX": cfg["console"]["rx"],
            "power_fail": cfg["power_fail"]["pin"]}
    for name, u in cfg["uarts"].items():
        for k in ("tx", "rx", "rts", "cts", "reset", "pwrkey"):
            if u.get(k) is not None:
                want[f"{name}.{k}"] = u[k]
    for name, led in cfg["leds"].items():
        if name == "han":
            for i, x in enumerate(led):
                want[f"leds.han[{i}]"] = x["pin"]
        else:
            want[f"leds.{name}"] = led["pin"]
    assert _doc_rows(board) == want


RIG_HOOKS = ("provision_test_dcc", "gbcs_fault", "subghz_event")


@pytest.mark.parametrize("board", ESP32_BOARDS)
def test_device_images_carry_no_test_hooks(board: str, tmp_path: Path) -> None:
    # the rig's local-port hooks (firmware/rig/) go only into the unix image:
    # no module of an ESP32 image, .mpy or frozen source, names them
    img = b.build(board, out=tmp_path / "img")
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".mpy", ".py")]
    assert any(p.stem == "app" for p in files)
    for p in files:
        assert "rig" not in p.relative_to(tmp_path).parts[:-1], p
        data = p.read_bytes()
        for name in RIG_HOOKS:
            assert name.encode() not in data, (p.relative_to(tmp_path), name)
    # the unix image has them: the check above would see them
    unix = b.build("unix", out=tmp_path / "unix")
    hooks = unix.path / "rig" / "hooks.mpy"
    assert hooks.is_file() and all(n.encode() in hooks.read_bytes() for n in RIG_HOOKS)
    assert img.path.is_dir()
