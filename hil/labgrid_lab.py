"""A labgrid lab on 127.0.0.1, each part its own process, for CI and the bench:
`labgrid-coordinator`, the emulated boards (`python -m hil.labgrid_board`),
one `labgrid-exporter` exporting them, and a place per board made with
`labgrid-client` (the commands of docs/hil.md's labgrid recipe). Every step
is bounded in time; `stop()` ends every process it started, also after a
failure."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

from chubcore.paths import venv_tool

EXPORTER = "rig-a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_yaml(place: str) -> str:
    """The labgrid environment of a test run on `place` (JSON is YAML)."""
    return json.dumps({"targets": {"main": {"resources": {"RemotePlace": {"name": place}},
                                            "drivers": {"NetworkPowerDriver": {}}}}}, indent=1) + "\n"


class Lab:
    def __init__(self, workdir: Path, places: dict[str, str], image: Path | None = None, timeout: float = 60.0):
        """places: place name -> the exporter group of its board."""
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.places, self.image, self.timeout = places, image, timeout
        self.coordinator = f"127.0.0.1:{free_port()}"
        self.procs: list[subprocess.Popen] = []
        self.boards: dict[str, dict[str, int]] = {}

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "LG_COORDINATOR": self.coordinator}

    def _spawn(self, argv: list[str], name: str, stdout: int | None = None) -> subprocess.Popen:
        with open(self.workdir / f"{name}.log", "w") as log:  # the child keeps its own copy of the handle
            p = subprocess.Popen(argv, cwd=self.workdir, env=self.env, text=True,
                                 stdout=stdout if stdout is not None else log, stderr=log)
        self.procs.append(p)
        return p

    def client(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """One `labgrid-client` command against this lab's coordinator."""
        r = subprocess.run([venv_tool("labgrid-client"), *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout, cwd=self.workdir)
        if check and r.returncode != 0:
            raise RuntimeError(f"labgrid-client {' '.join(args)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
        return r

    def start(self) -> Lab:
        deadline = time.monotonic() + self.timeout
        try:
            # the coordinator keeps its places.yaml / resources.yaml in its cwd
            self._spawn([venv_tool("labgrid-coordinator"), "-l", self.coordinator], "coordinator")
            board = self._spawn([sys.executable, "-m", "hil.labgrid_board", "--workdir", str(self.workdir / "boards"),
                                 "--exporter-config", str(self.workdir / "exporter.yaml"),
                                 *(["--image", str(self.image)] if self.image else []), *self.places.values()],
                                "boards", stdout=subprocess.PIPE)
            self.boards = self._ready_line(board, deadline)["boards"]
            self._spawn([venv_tool("labgrid-exporter"), "-c", self.coordinator, "-n", EXPORTER, "--hostname",
                         "127.0.0.1", str(self.workdir / "exporter.yaml")], "exporter")
            self._wait_resources(deadline)
            for place, group in self.places.items():
                self.client("-p", place, "create")
                self.client("-p", place, "add-match", f"{EXPORTER}/{group}/*")
                (self.workdir / f"env-{place}.yaml").write_text(env_yaml(place))
        except BaseException:
            self.stop()
            raise
        return self

    def _ready_line(self, proc: subprocess.Popen, deadline: float) -> dict:
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if select.select([proc.stdout], [], [], 0.2)[0]:
                line = proc.stdout.readline()
                if line:
                    return json.loads(line)
        raise RuntimeError(f"the boards did not come up:\n{self.log('boards')}")

    def _wait_resources(self, deadline: float) -> None:
        want = set(self.places.values())
        while time.monotonic() < deadline:
            r = self.client("resources", check=False)
            seen = {line.split("/")[1] for line in r.stdout.splitlines() if line.startswith(f"{EXPORTER}/")}
            if want <= seen:
                return
            time.sleep(0.3)
        raise RuntimeError(f"the exporter's resources did not reach the coordinator:\n{self.log('exporter')}")

    def power_state(self, group: str) -> str:
        """The board's power switch as its simplerest endpoint reads: "1" or "0"."""
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.boards[group]['power']}/power", timeout=5) as r:
            return r.read().decode()

    def log(self, name: str) -> str:
        f = self.workdir / f"{name}.log"
        return f.read_text()[-3000:] if f.exists() else ""

    def stop(self) -> None:
        """End every process of the lab (newest first), killing one that lingers."""
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
            if p.stdout:
                p.stdout.close()
        self.procs = []

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
