"""The HIL scenario tests on a labgrid lab, with real labgrid processes.

On 127.0.0.1: `labgrid-coordinator`, two emulated boards served as benches
(`python -m hil.labgrid_board`: each board's console, NCP and modem UARTs as
raw-TCP `NetworkSerialPort`s and its power switch as a `simplerest`
`NetworkPowerPort`), one `labgrid-exporter` exporting both, and two places
made with `labgrid-client create` / `add-match` (hil/labgrid_lab.py; the
commands of docs/hil.md's labgrid recipe). Two pytest runs with `--chub-dut
labgrid --lg-env` run the scenario module on the two places at once (one
with a failing test as well); while one holds its place, a third run on that
place is refused; both runs release their places at their end (after the
failure too), and then another client acquires one.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the scenario module written against the `hub` fixture (tests/test_hil_serial.py
# runs it and tests/test_hil_local_port.py on the serial backend, the same client path)
SCENARIOS = ["tests/test_hil_boot.py"]
# not: the test that boots a unix DUT of its own (not the `hub` fixture)
SELECT = "not code_plus_data_budget"
PLACES = {"chub-1": "chub-emu-1", "chub-2": "chub-emu-2"}

pytest.importorskip("labgrid", reason="labgrid is in the dev extras: pip install -e '.[dev]'")


def _pytest(lab, place: str, *args: str, user: str = "ci") -> subprocess.Popen[str]:
    env = {**lab.env, "LG_USERNAME": user}
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=-ra",
         "--chub-dut", "labgrid", "--lg-env", str(lab.workdir / f"env-{place}.yaml"), "--lg-coordinator", lab.coordinator,
         *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )


def _finish(p: subprocess.Popen[str], timeout: float) -> tuple[int, str]:
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        raise AssertionError(f"a pytest run took over {timeout:g} s\n{out[-3000:]}") from None
    return p.returncode, out


def test_scenarios_on_two_labgrid_places_in_parallel(tmp_path: Path, hub_image: Path) -> None:
    from hil.labgrid_lab import Lab

    # chub-2's run also has a failing test: its place is released all the same
    failing = tmp_path / "test_fails_on_the_place.py"
    failing.write_text("def test_fails_on_the_place(hub):\n    assert hub.call('status')['board'] == 'no such board'\n")
    with Lab(tmp_path / "lab", PLACES, image=hub_image) as lab:
        runs = {place: _pytest(lab, place, "-k", SELECT, *SCENARIOS, *([str(failing)] if place == "chub-2" else []))
                for place in PLACES}
        try:
            # chub-1 held by its run (it switched its board on after the acquire): a run
            # by another user is refused at once, naming the holder
            deadline = time.monotonic() + 60
            while lab.power_state("chub-emu-1") != "1":
                if runs["chub-1"].poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"chub-1's board never powered on:\n{_finish(runs['chub-1'], 60)[1][-4000:]}")
                time.sleep(0.1)
            code, out = _finish(_pytest(lab, "chub-1", "-k", "status", *SCENARIOS, user="other"), 60)
            assert code == 3 and re.search(r"chub-1 refused: .*already acquired by \S+/ci", out), out[-3000:]
        finally:
            results = {place: _finish(p, 120) for place, p in runs.items()}
        for place, (code, out) in results.items():
            failed = re.findall(r"FAILED (\S+)", out)
            if place == "chub-2":
                assert code == 1 and [f.split("::")[-1] for f in failed] == ["test_fails_on_the_place"], out[-4000:]
            else:
                assert code == 0, f"{place}:\n{out[-4000:]}"
            m = re.search(r"(\d+) passed", out)
            assert m and int(m.group(1)) >= 2, out[-2000:]
            # only the steps that need the emulated board's wires skip
            skips = re.findall(r"SKIPPED \[\d+\] [^\n]*", out)
            assert all("emulated board" in s for s in skips), skips
        # each run released its place at its end (chub-2's after its failure) and switched its board off
        assert lab.client("places", "--acquired").stdout.strip() == ""
        assert all(lab.power_state(group) == "0" for group in PLACES.values())
        # and the place refused before is another client's now
        lab.client("-p", "chub-1", "acquire")
        lab.client("-p", "chub-1", "release")


def test_a_lab_that_fails_to_start_leaves_no_process(tmp_path: Path) -> None:
    """The boards refuse an image folder that is not a built image: the
    lab's start fails naming the step and the refusal, and every process it
    had started (the coordinator) is ended."""
    import subprocess as sp

    from hil.labgrid_lab import Lab

    lab = Lab(tmp_path / "lab", {"chub-x": "chub-emu-x"}, image=tmp_path / "no-image", timeout=30)
    started: list[sp.Popen] = []
    real_spawn = lab._spawn

    def spawn(*a, **kw):  # the lab's own spawn, remembering what it started
        p = real_spawn(*a, **kw)
        started.append(p)
        return p

    lab._spawn = spawn  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match=r"(?s)the boards did not come up.*no-image is not a built unix image"):
        lab.start()
    assert len(started) == 2  # the coordinator and the boards; the exporter never started
    assert all(p.returncode is not None for p in started)
    assert lab.procs == []
