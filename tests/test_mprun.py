"""The firmware-under-test harness (hil/mprun.py) and the HIL waits (hil/log.py,
hil/system.py): the command line and module path it builds, a run on the
caller's loop answering the program's lines, log capture, and a wait's
failure naming what was awaited and the DUT log."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from hil.log import DutLog, ExpectTimeout
from hil.mprun import BOARD_UNIX, FIRMWARE, FROZEN, Micropython, capture
from hil.system import HubControl


def test_argv_and_module_path(tmp_path: Path) -> None:
    mp = Micropython([tmp_path], heap="96k", env={"CHUB_X": "1"})
    argv = mp.argv(["main.py", "a"])
    assert argv[1:] == ["-X", "heapsize=96k", "main.py", "a"]
    assert mp.argv(code="pass")[-2:] == ["-c", "pass"]
    assert Micropython(heap=None).argv(["x.py"])[1:] == ["x.py"]
    env = mp.environ()
    assert env["MICROPYPATH"] == os.pathsep.join([FROZEN, str(tmp_path)]) and env["CHUB_X"] == "1"
    assert Micropython().environ()["MICROPYPATH"].split(os.pathsep) == [FROZEN, str(FIRMWARE), str(BOARD_UNIX)]


def test_run_sees_the_path_heap_and_environment(tmp_path: Path) -> None:
    (tmp_path / "probe_mod.py").write_text("X = 41\n")
    r = Micropython([tmp_path], heap="128k", env={"CHUB_PROBE": "yes"}, cwd=tmp_path).run(
        code="import os, gc, probe_mod\nprint(probe_mod.X + 1, os.getenv('CHUB_PROBE'), gc.mem_free() + gc.mem_alloc())"
    )
    assert r.returncode == 0, r.stderr
    n, probe, heap = r.stdout.split()
    assert (n, probe) == ("42", "yes") and int(heap) <= 128 * 1024


def test_arun_answers_lines_on_the_callers_loop() -> None:
    code = "import sys\nfor i in range(3):\n    print('ASK', i)\n    print('GOT', sys.stdin.readline().strip())\n"
    asked: list[str] = []

    def on_line(line: str) -> str | None:
        if line.startswith("ASK"):
            asked.append(line.split()[1])
            return f"x{line.split()[1]}"
        return None

    r = asyncio.run(Micropython(()).arun(code=code, on_line=on_line, timeout=20))
    assert r.returncode == 0 and asked == ["0", "1", "2"]
    assert [ln for ln in r.stdout.splitlines() if ln.startswith("GOT")] == ["GOT x0", "GOT x1", "GOT x2"]


def test_arun_kills_a_run_past_its_timeout() -> None:
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        asyncio.run(Micropython(()).arun(code="import time\ntime.sleep(30)", timeout=1))
    assert time.monotonic() - t0 < 10


def test_capture_copies_stdout_and_stderr_into_the_log(tmp_path: Path) -> None:
    log = DutLog(tmp_path / "dut.log")
    proc = Micropython(()).popen(code="import sys\nprint('hello')\nsys.stderr.write('oops\\n')")
    threads = capture(proc, log)
    proc.wait(20)
    for t in threads:
        t.join(5)
    assert log.lines("dut") == ["hello"] and log.lines("dut!") == ["oops"]
    log.close()


class _Handle(HubControl):
    def __init__(self, log: DutLog) -> None:
        self.log = log


def test_wait_until_returns_the_value_or_names_what_and_the_log(tmp_path: Path) -> None:
    log = DutLog(tmp_path / "dut.log")
    log.write("dut", "the last line the hub printed")
    h = _Handle(log)
    seen = iter([0, 0, {"ok": 1}])
    assert h.wait_until(lambda: next(seen), 5, "the third poll") == {"ok": 1}
    with pytest.raises(ExpectTimeout) as e:
        h.wait_until(lambda: None, 0.2, "the HAN up")
    msg = str(e.value)
    assert "waiting for the HAN up" in msg and str(log.path) in msg and "the last line the hub printed" in msg
    last = [3]
    with pytest.raises(AssertionError, match=r"a status \(last: 3\)"):
        h.wait_until(lambda: None, 0.1, lambda: f"a status (last: {last[0]})")
    log.close()
