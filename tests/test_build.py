"""Image build: every firmware and board module through mpy-cross."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from chub.cli import main
from chubcore import build as b


def test_every_firmware_and_board_module_compiles(tmp_path: Path) -> None:
    img = b.build("unix", out=tmp_path / "img")
    srcs = b.sources("unix")
    assert srcs, "no firmware sources found"
    for src, rel in srcs:
        target = rel if rel in b.SOURCE_ONLY else rel[:-3] + ".mpy"
        assert (img.path / target).is_file(), f"{src} missing from the image"
    info = json.loads((img.path / "image.json").read_text())
    assert info["version"] == b.firmware_version() and info["board"] == "unix"
    assert (img.path / "build_info.mpy").is_file()


def test_rejected_module_reports_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\n\ndef f(:\n    pass\n")
    with pytest.raises(b.BuildError) as ei:
        b.compile_module(bad, tmp_path / "bad.mpy", [])
    assert ei.value.line == 3
    assert "bad.py:3" in str(ei.value) and "SyntaxError" in str(ei.value)


def test_cli_build_unknown_board_fails_clearly(tmp_path: Path) -> None:
    # a narrow terminal must not break the message (CI's checkout path is long)
    r = CliRunner(env={"COLUMNS": "40"}).invoke(main, ["build", "--board", "no_such_board", "--out", str(tmp_path / "x")])
    assert r.exit_code == 1
    assert "unknown board 'no_such_board'" in r.output


def test_cli_build_unix(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["build", "--board", "unix", "--out", str(tmp_path / "img")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "img" / "main.py").is_file()
