"""The pytest plugin as another team uses it: examples/ci-user (a project
outside tests/) passes on a plain, non-editable install of the package (a
wheel built from a copy of the sources into a fresh venv, which borrows only
the dependencies of this venv); the wheel carries firmware/, boards/ and
bench/; `pytest --fixtures` explains each chub fixture; a failing test's
report names the DUT log and shows its tail; --chub-dut serial without
--chub-port is refused at start-up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

from chubcore.paths import ROOT, vectors_dir

EXAMPLE = ROOT / "examples" / "ci-user"
# what the wheel is built from (setup.py copies the three trees into chubcore/_tree)
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "host_tools", "hil", "firmware", "boards", "bench")
TREES = ("firmware", "boards", "bench")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


class Installed:
    """A fresh venv with the chub wheel installed (not editable)."""

    def __init__(self, base: Path) -> None:
        have = tuple(int(x) for x in version("setuptools").split(".")[:2])
        assert have >= (70, 1), f"setuptools {version('setuptools')}: run pip install -e '.[dev]' again (>= 70.1)"
        src, wheels, self.venv = base / "src", base / "wheels", base / "venv"
        src.mkdir()
        for name in SOURCES:
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, src / name, ignore=_IGNORE)
            else:
                shutil.copy2(ROOT / name, src / name)
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
        self._run(*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(wheels), str(src))
        (self.wheel,) = wheels.glob("chub-*.whl")
        self._run(sys.executable, "-m", "venv", "--without-pip", str(self.venv))
        self.python = self.venv / "bin" / "python"
        self._run(*pip, "--python", str(self.python), "install", "--no-deps", "--no-index", str(self.wheel))
        # the dependencies (pytest, bellows, the micropython binary ...) are this venv's
        site = Path(subprocess.check_output([str(self.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                            text=True).strip())
        deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
        (site / "_chub_dev_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
        self.env = {**os.environ, "PATH": os.pathsep.join([str(self.venv / "bin"), str(Path(sys.executable).parent),
                                                          os.environ.get("PATH", "")]),
                    "CHUB_STATE": str(base / "state"), "CHUB_VECTORS": str(vectors_dir())}
        self.env.pop("PYTHONPATH", None)

    @staticmethod
    def _run(*args: str) -> None:
        r = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]

    def pytest(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.python), "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd,
                              env=self.env, capture_output=True, text=True, timeout=400)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    return Installed(tmp_path_factory.mktemp("installed"))


def test_the_wheel_carries_the_trees(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for tree in TREES:
        want = {f"chubcore/_tree/{p.relative_to(ROOT).as_posix()}" for p in (ROOT / tree).rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}
        assert want and not want - names, sorted(want - names)[:5]
    for pkg in ("hil", "host_tools"):
        for init in (ROOT / pkg).rglob("__init__.py"):
            rel = init.relative_to(ROOT / pkg if pkg == "host_tools" else ROOT).as_posix()
            assert rel in names, f"the wheel lacks the package {rel}"
    assert "chubcore/_tree/source.json" in names
    # the installed tools read the wheel's copy, not this checkout, and keep their state outside it
    r = subprocess.run([str(installed.python), "-c", "import chubcore.paths as p, hil; "
                        "print(p.INSTALLED, p.FIRMWARE, p.state_dir(), hil.__file__, sep='\\n')"],
                       cwd=installed.venv, env=installed.env, capture_output=True, text=True, timeout=60)
    flag, firmware, state, hil_file = r.stdout.split("\n")[:4]
    assert flag == "True" and Path(firmware).is_relative_to(installed.venv), r.stdout + r.stderr
    assert Path(hil_file).is_relative_to(installed.venv) and not Path(state).is_relative_to(ROOT)


def test_example_project_passes(installed: Installed, tmp_path: Path) -> None:
    r = installed.pytest("-q", str(EXAMPLE), "--rootdir", str(EXAMPLE), cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "4 passed" in r.stdout


def test_fixtures_documented_and_dut_log_on_failure(installed: Installed, tmp_path: Path) -> None:
    r = installed.pytest("--fixtures", str(EXAMPLE), "--rootdir", str(EXAMPLE), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for name in ("chub_system", "chub_hub", "chub_meter", "hub", "hub_image", "hil_log", "rig"):
        i = r.stdout.find(name + " ")
        assert i >= 0, name
        assert "no docstring available" not in r.stdout[i: r.stdout.find("\n\n", i)], r.stdout[i: i + 300]
    (tmp_path / "test_fails.py").write_text(
        "def test_fails(chub_hub):\n    assert chub_hub.call('status')['board'] == 'esp32'\n")
    r = installed.pytest("-q", str(tmp_path / "test_fails.py"), "--rootdir", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 1
    assert "chub DUT log" in r.stdout and "dut.log" in r.stdout and "--- last lines ---" in r.stdout, r.stdout[-3000:]
    r = installed.pytest("-q", str(tmp_path / "test_fails.py"), "--rootdir", str(tmp_path), "--chub-dut", "serial",
                         cwd=tmp_path)
    assert r.returncode == 4 and "--chub-port" in r.stderr, r.stdout[-1000:] + r.stderr
