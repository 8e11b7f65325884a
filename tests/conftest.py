"""Test tiers: CPython tests are ordinary pytest files; firmware tests are
`tests/mp/mp_*.py` modules whose `test_*` functions each run under the real
`micropython` binary (heap-limited) as one pytest item."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mpy import MP_TESTS, run_mp  # noqa: E402
from vectors import vectors_dir  # noqa: E402


@pytest.fixture(scope="session")
def vectors() -> Path:
    return vectors_dir()


class MpFailure(Exception):
    pass


class MpItem(pytest.Item):
    # uses no fixtures; plugins that read every item's fixture names (labgrid's
    # pytest plugin, a dev extra, checks each for its `strategy`) find none
    fixturenames: tuple[str, ...] = ()

    def __init__(self, *, module: str, heap: str, **kw):
        super().__init__(**kw)
        self.module = module
        self.heap = heap

    def runtest(self) -> None:
        import os
        import tempfile

        env = {}
        vdir = os.environ.get("CHUB_VECTORS", str(Path(__file__).resolve().parents[2] / "shared" / "vectors"))
        env["CHUB_VECTORS"] = vdir
        with tempfile.TemporaryDirectory(prefix="mp-") as tmp:
            r = run_mp([str(MP_TESTS / "runner.py"), self.module, self.name], heap=self.heap, cwd=Path(tmp), env=env)
        if r.returncode != 0 or f"PASS {self.name}" not in r.stdout:
            raise MpFailure(f"exit {r.returncode}\n--- stdout ---\n{r.stdout[-4000:]}\n--- stderr ---\n{r.stderr[-2000:]}")

    def repr_failure(self, excinfo, style=None):  # type: ignore[override]
        if isinstance(excinfo.value, MpFailure):
            return f"micropython test {self.module}.{self.name} failed: {excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, 0, f"mp:{self.module}.{self.name}"


class MpFile(pytest.File):
    def collect(self):
        tree = ast.parse(self.path.read_text())
        heap = "512k"
        for node in tree.body:
            # a module may set HEAP = "256k" to run its tests under a tighter limit
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "HEAP" for t in node.targets):
                heap = ast.literal_eval(node.value)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                yield MpItem.from_parent(self, name=node.name, module=self.path.stem, heap=heap)


# The device-shape tier (`pytest --chub-board unix32 -m device_shape`, the
# README's second test run): the firmware tests and the HIL scenarios, the
# power-cut sample and the fault day again, on our own 32-bit MicroPython with
# the hub frozen in (~3.5 min on 2 cores). Not test_hil_serial.py nor
# test_hil_labgrid.py: they check the serial and labgrid backends against
# hubs of the unix board (any binary).
DEVICE_SHAPE = ("mp/", "test_hil_", "test_provision.py", "test_power_cut_answers.py", "test_campaign_")
NOT_DEVICE_SHAPE = ("test_hil_serial.py", "test_hil_labgrid.py")


# The files that take longest (worker seconds under `pytest -n 2`, 2026-12-07),
# run first: with `-n` the files go whole to the workers in this order
# (pytest_cmdline_main), so the last file a worker takes is a short one.
SLOW_FIRST = ("test_bench.py", "test_hil_hub_update.py", "test_unix32.py", "test_campaign_power_cut.py",
              "test_power_cut_sweep.py", "test_hub_update.py", "test_ota_power_cut.py", "test_fuzz_attacks.py",
              "test_hil_serial.py", "test_campaign_faults.py", "test_hil_ota.py", "test_campaign_findings.py",
              "test_hil_wan_trust.py", "test_docs_hht.py", "test_hil_route.py", "test_cli_sim.py",
              "test_hil_mgmt.py", "test_bench_gpf_han.py", "test_hil_gpf_han.py", "test_hil_labgrid.py",
              "test_example_ci_user.py", "test_hil_wan_faults.py")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config) -> None:
    """`-n N` without `--dist`: whole files per worker (loadfile: a module's
    fixtures set up once), in collection order (SLOW_FIRST), not xdist's
    default of items in chunks."""
    if getattr(config.option, "numprocesses", None) and config.option.dist == "no":
        config.option.dist = "loadfile"
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items) -> None:
    tests = Path(__file__).resolve().parent
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    # stable: the files of SLOW_FIRST first, in its order, each file's items together
    items.sort(key=lambda item: rank.get(Path(str(item.path)).name, len(rank)))
    mark = pytest.mark.device_shape
    for item in items:
        path = Path(str(item.path)).resolve() if item.path else None
        # a test module outside tests/ (given by path, as tests/test_hil_labgrid.py does) is not of the tier
        rel = path.relative_to(tests).as_posix() if path and path.is_relative_to(tests) else ""
        if rel.startswith(DEVICE_SHAPE) and not rel.startswith(NOT_DEVICE_SHAPE):
            item.add_marker(mark)


def pytest_pycollect_makemodule(module_path: Path, parent):
    # pyproject's python_files includes mp_*.py; those modules are MicroPython
    # code, so they become MpFile collectors instead of CPython imports
    if module_path.parent == MP_TESTS and module_path.name.startswith("mp_"):
        return MpFile.from_parent(parent, path=module_path)
    return None
