"""`chub sim`: the emulated system, with a live view or a headless ready line."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import threading
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.live import Live
from rich.panel import Panel


def _ready_line(system, url: str) -> dict:
    from chubcore.localport import LocalPortClient

    with LocalPortClient(url, timeout=5) as c:
        st = c.call("status")
    return {
        "event": "ready",
        "version": st.get("version"),
        "board": st.get("board"),
        "local_port": url,
        "headend_api": f"127.0.0.1:{system.headend.api_port}",
        "boot_to_ready_s": round(system.boot_to_ready_s or 0, 3),
        "heap": system.heap,
        "log": str(system.log.path),
        "pid": system.dut.proc.pid if system.dut and system.dut.proc else None,
    }


LOCK = "sim.lock"  # in the workdir: held (flock) by the sim running there, with its pid


class WorkdirBusy(Exception):
    """Another `chub sim` holds the workdir's lock (pid: its pid, -1 if unknown)."""

    def __init__(self, pid: int) -> None:
        super().__init__(f"another `chub sim` (pid {pid}) runs on this workdir")
        self.pid = pid


def lock_workdir(workdir: Path) -> IO[str]:
    """Take the workdir's lock for this process: the open lock file, to keep
    open while the sim runs (the lock goes with the process). WorkdirBusy
    when another sim holds it."""
    workdir.mkdir(parents=True, exist_ok=True)
    f = open(workdir / LOCK, "a+")  # noqa: SIM115 - held for the sim's life
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        text = f.read().strip()
        f.close()
        raise WorkdirBusy(int(text) if text.isdigit() else -1) from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def _registry() -> Path:
    from chubcore.paths import state_dir

    return state_dir() / "sims"


def running_sims() -> list[dict[str, Any]]:
    """The `chub sim`s running now: their ready lines with "workdir" and
    "sim_pid" (each sim registers itself in STATE/sims while it runs; an
    entry whose process is gone is ignored)."""
    out = []
    reg = _registry()
    for p in sorted(reg.glob("*.json")) if reg.is_dir() else []:
        try:
            r = json.loads(p.read_text())
            os.kill(int(r["sim_pid"]), 0)
        except (OSError, ValueError, KeyError):
            continue
        out.append(r)
    return out


HEADEND_JOURNAL = "headend.jsonl"  # in the workdir: every GBCS frame the emulated head-end received


class HeadendJournal:
    """Appends each frame the sim's head-end received to WORKDIR/headend.jsonl
    (one JSON object a line: {"t": unix time, "id", "hex"}), so `chub hht
    send-gbcs --wait` in another process can collect a response or alert
    the hub sent later (a sleepy GSME's, once it woke)."""

    def __init__(self, system: Any, path: Path) -> None:
        self.system, self.path, self.n = system, path, 0
        path.write_text("")

    def flush(self) -> None:
        import time

        got = list(self.system.headend.received[self.n:])
        if not got:
            return
        self.n += len(got)
        with self.path.open("a") as f:
            for r in got:
                f.write(json.dumps({"t": round(time.time(), 3), "id": r.id, "hex": r.raw.hex().upper()}) + "\n")


def run_sim(workdir: Path, heap: str, fresh: bool, headless: bool, ready_timeout: float,
            image: Path | None = None, gsme_wake_s: float = 60.0) -> int:
    """`image`: an image folder to boot (a frozen board's, with its binary in
    $CHUB_MICROPYTHON); None: the unix image built into the workdir, or what
    `chub flash --board unix` flashed there. The system is the living one
    (hil.system.EmulatedSystem(living=True)): the GSME wakes every
    `gsme_wake_s` seconds."""
    from hil.system import EmulatedSystem

    err = Console(stderr=True, soft_wrap=True)
    try:
        lock = lock_workdir(workdir)
    except WorkdirBusy as e:
        err.print(f"[red]another `chub sim` (pid {e.pid}) runs on {workdir}:[/red] stop it first, or give "
                  "this one its own --workdir")
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    system = EmulatedSystem(workdir, heap=heap, image=image, fresh=fresh, living=True, gsme_wake_s=gsme_wake_s)
    ready_file = workdir / "ready.json"
    entry = _registry() / f"{os.getpid()}.json"
    try:
        try:
            # progress on stderr (the headless ready line stays alone on stdout)
            with err.status(f"chub sim: building the image and booting the hub (heap {heap}), then the "
                            "demo HAN joins ..."):
                system.start(ready_timeout=ready_timeout)
                line = _ready_line(system, system.local_port_url)
        except Exception as e:  # noqa: BLE001 - report any start-up failure plainly
            err.print(f"[red]the hub did not come up:[/red] {e}")
            return 1
        journal = HeadendJournal(system, workdir / HEADEND_JOURNAL)
        ready_file.write_text(json.dumps(line))
        entry.parent.mkdir(parents=True, exist_ok=True)
        entry.write_text(json.dumps({**line, "workdir": str(workdir.resolve()), "sim_pid": os.getpid()}))
        if headless:
            print(json.dumps(line), flush=True)
            while not stop.wait(0.5):
                journal.flush()
                if not system.dut or not system.dut.alive:
                    err.print(f"the hub stopped (exit {system.dut.returncode if system.dut else '?'})")
                    return 1
            return 0
        return _live(system, line, stop, journal)
    finally:
        entry.unlink(missing_ok=True)
        ready_file.unlink(missing_ok=True)  # this sim's: it holds the workdir's lock
        system.stop()
        lock.close()


def _live(system, ready: dict, stop: threading.Event, journal: HeadendJournal) -> int:
    """The live view: how to stop, the meters, hub/WAN/clock, then the last
    log lines (newest first) in what height is left; 80x24 shows all of it,
    a larger terminal shows more log."""
    from chubcore.localport import LocalPortClient

    from .views import live_view

    url = ready["local_port"]
    client: LocalPortClient | None = None
    console = Console()

    def render():  # noqa: ANN202 - a rich renderable
        nonlocal client
        answers: dict[str, Any] = {}
        error = None
        try:
            if client is None:
                client = LocalPortClient(url, timeout=2)
            for cmd in ("status", "device_log_list", "wan_status"):
                answers[cmd] = client.call(cmd)
        except Exception as e:  # noqa: BLE001 - show the error in the view and retry
            client = None
            error = str(e)
        meters = system.meters.summary() if system.meters else {}
        return live_view(ready, answers, meters, system.log, console.size, error)

    with Live(render(), console=console, refresh_per_second=2, screen=False) as live:
        while not stop.wait(1.0):
            journal.flush()
            if not system.dut.alive:
                live.update(Panel(system.log.tail(20), title="the hub stopped", style="red"))
                return 1
            live.update(render())
    if client:
        client.close()
    return 0
