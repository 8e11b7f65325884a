"""The wheel carries firmware/, boards/ and bench/ as package data in
chubcore/_tree (with source.json naming the git revision), so a plain
`pip install` runs the tools; chubcore.paths reads them there. The rest of
the packaging is declared in pyproject.toml."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
TREES = ("firmware", "boards", "bench")


def _git_rev() -> str:
    try:
        r = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=HERE, capture_output=True, text=True)
    except OSError:
        return "unknown"
    if r.returncode != 0 or not r.stdout.strip():
        return "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain", *TREES], cwd=HERE, capture_output=True, text=True)
    return r.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


class BuildPyWithTrees(build_py):
    """build_py, then the three trees into build_lib/chubcore/_tree (not for
    an editable install: that one reads the checkout)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        dest = Path(self.build_lib) / "chubcore" / "_tree"
        if dest.exists():
            shutil.rmtree(dest)
        for name in TREES:
            shutil.copytree(HERE / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (dest / "source.json").write_text(json.dumps({"git_rev": _git_rev()}) + "\n")


setup(cmdclass={"build_py": BuildPyWithTrees})
