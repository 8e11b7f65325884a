"""The pytest plugin as another team uses it: examples/ci-user (a project
outside tests/) passes on the installed package's plugin; `pytest --fixtures`
explains each chub fixture; a failing test's report names the DUT log and
shows its tail; --chub-dut serial without --chub-port is refused at start-up."""

from __future__ import annotations

import subprocess
from pathlib import Path

from chubcore.paths import ROOT, venv_tool

EXAMPLE = ROOT / "examples" / "ci-user"


def _pytest(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([venv_tool("pytest"), "-p", "no:cacheprovider", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=400)


def test_example_project_passes(tmp_path: Path) -> None:
    r = _pytest("-q", str(EXAMPLE), "--rootdir", str(EXAMPLE), cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "4 passed" in r.stdout


def test_fixtures_documented_and_dut_log_on_failure(tmp_path: Path) -> None:
    r = _pytest("--fixtures", str(EXAMPLE), "--rootdir", str(EXAMPLE), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for name in ("chub_system", "chub_hub", "chub_meter", "hub", "hub_image", "hil_log", "rig"):
        i = r.stdout.find(name + " ")
        assert i >= 0, name
        assert "no docstring available" not in r.stdout[i: r.stdout.find("\n\n", i)], r.stdout[i: i + 300]
    (tmp_path / "test_fails.py").write_text(
        "def test_fails(chub_hub):\n    assert chub_hub.call('status')['board'] == 'esp32'\n")
    r = _pytest("-q", str(tmp_path / "test_fails.py"), "--rootdir", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 1
    assert "chub DUT log" in r.stdout and "dut.log" in r.stdout and "--- last lines ---" in r.stdout, r.stdout[-3000:]
    r = _pytest("-q", str(tmp_path / "test_fails.py"), "--rootdir", str(tmp_path), "--chub-dut", "serial",
                cwd=tmp_path)
    assert r.returncode == 4 and "--chub-port" in r.stderr, r.stdout[-1000:] + r.stderr
