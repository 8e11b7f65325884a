"""docs/hht.md runs: every `.venv/bin/chub` command in its ```sh blocks,
in order, against a `chub sim` (the default living system, the GSME waking
every 3 s), from a scratch folder; each `#>` line after a command must be
found in its output (`...` stands for anything on the line), `#> exit N`
is its exit status (default 0)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from chubcore.paths import ROOT, vectors_dir, venv_tool

DOC = ROOT / "docs" / "hht.md"


def documented_commands(text: str) -> list[tuple[str, list[str], int]]:
    """(command, expected output lines, exit status) in document order."""
    out: list[tuple[str, list[str], int]] = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.strip()
            if line.startswith(".venv/bin/chub "):
                out.append((line, [], 0))
            elif line.startswith("#> ") and out:
                cmd, want, code = out[-1]
                m = re.fullmatch(r"#> exit (\d+)", line)
                if m:
                    out[-1] = (cmd, want, int(m.group(1)))
                else:
                    want.append(line[3:])
    return out


def _found(pattern: str, text: str) -> bool:
    rx = ".*?".join(re.escape(" ".join(p.split())) for p in pattern.split("..."))
    flat = "\n".join(" ".join(line.replace("│", " ").split()) for line in text.splitlines())
    return re.search(rx, flat) is not None


def test_every_documented_command_runs_against_the_sim(tmp_path: Path) -> None:
    cmds = documented_commands(DOC.read_text())
    assert len(cmds) >= 12, cmds
    if not (vectors_dir() / "gbcs" / "rtds").is_dir():
        pytest.skip("RTDS vectors not available")
    env = {**os.environ, "CHUB_STATE": str(tmp_path / "state"), "COLUMNS": "80"}
    chub = venv_tool("chub")
    sim = subprocess.Popen([chub, "sim", "--headless", "--fresh", "--gsme-wake", "3", "--ready-timeout", "60",
                            "--workdir", str(tmp_path / "sim")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env=env)
    try:
        assert sim.stdout is not None
        line = sim.stdout.readline()
        assert line, sim.stderr.read() if sim.stderr else ""
        assert json.loads(line)["event"] == "ready"
        work = tmp_path / "work"
        work.mkdir()
        for cmd, want, code in cmds:
            argv = cmd.replace("../shared/vectors", str(vectors_dir())).split()
            argv[0] = chub
            r = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=180)
            text = r.stdout + r.stderr
            assert r.returncode == code, f"{cmd}: exit {r.returncode}\n{text}"
            for w in want:
                assert _found(w, text), f"{cmd}: {w!r} not in\n{text}"
    finally:
        sim.send_signal(signal.SIGINT)
        try:
            sim.wait(30)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait(10)
