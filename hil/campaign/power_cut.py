"""Power-cut campaign: the full HIL scenario (hil/campaign/scenario.py) with
the power cut at flash block write N of the first boot, for every N (the full
sweep) or a seeded sample.

A clean run first learns W, the number of block writes the scenario makes.
Each cut run boots a fresh hub with `cut_after=N` (boards/unix/blockdev.py
tears the Nth write and kills the process), keeps driving the scenario, powers
the hub back on when it dies, resumes the interrupted step and finishes; then
`scenario.check` proves that no acknowledged command or Device Log change was
lost, nothing was delivered twice, the logs are consistent, and the HAN came
back on the same network with no re-forming and no re-joining.
`power_cut_recovery_s` is the median time from power-on after a cut until the
hub is back in service (READY and, once provisioned, its HELLO to the head-end).

CLI: `chub bench --power-cut-sweep` (full sweep); tests/test_campaign_power_cut.py
runs a seeded sample in CI.
"""

from __future__ import annotations

import random
import shutil
import statistics
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .scenario import HubDown, Run, Violation, check, run_steps

CUT_LINE = "BOARD power-cut after block write"


@dataclass
class CutResult:
    n: int
    reached: bool  # the cut happened (N <= the writes this run made)
    survived: bool
    step: str = ""  # where the hub went down
    error: str = ""
    recovery_s: float | None = None
    seconds: float = 0.0
    put_window: int = 0  # GSME responses lost in the protocol's PUT window (scenario.check)


@dataclass
class Summary:
    writes: int
    tried: int = 0
    survived: int = 0
    not_reached: int = 0
    failures: list[CutResult] = field(default_factory=list)
    recovery_s: list[float] = field(default_factory=list)
    seconds: float = 0.0
    gsme_put_window: int = 0  # cuts that fell in the GSME's PUT window (a response the protocol loses)

    @property
    def ratio(self) -> float:
        return self.survived / self.tried if self.tried else 0.0

    def figures(self) -> dict[str, Any]:
        return {
            "power_cuts_tried": self.tried,
            "power_cuts_survived": self.survived,
            "power_cuts_survived_ratio": round(self.ratio, 4),
            "power_cut_recovery_s": round(statistics.median(self.recovery_s), 2) if self.recovery_s else None,
            "power_cuts_gsme_put_window": self.gsme_put_window,
        }


def clean_run(image: Path, workdir: Path, heap: str | None = None) -> tuple[int, dict]:
    """The scenario without a cut: (block writes it made, check summary)."""
    run = Run(workdir, image, heap=heap)
    try:
        if not run.power_on():
            raise RuntimeError("the hub did not boot")
        run_steps(run, max_reboots=0)
        summary = check(run)
        writes = run.call("status")["flash"]["writes"]
        return writes, summary
    finally:
        run.stop()


def cut_run(image: Path, workdir: Path, n: int, keep: bool = False, heap: str | None = None) -> CutResult:
    t0 = time.monotonic()
    res = CutResult(n, reached=False, survived=False)
    run = Run(workdir, image, heap=heap)
    try:
        if not run.power_on(cut_after=n):
            res.step = "boot"
            t = time.monotonic()
            run.reboot()
            run.recovery_s.append(time.monotonic() - t)
        run_steps(run)
        for _ in range(2):
            try:
                res.put_window = check(run).get("gsme_put_window", 0)
                break
            except HubDown:  # the cut fell after the last step
                res.step = res.step or "after the scenario"
                t = time.monotonic()
                run.reboot()
                run.recovery_s.append(time.monotonic() - t)
        else:
            raise Violation("the hub kept going down during the checks")
        res.reached = CUT_LINE in run.log.path.read_text(errors="replace")
        res.survived = True
    except Exception as e:  # noqa: BLE001 - a failed cut is a finding, not a crash of the campaign
        res.reached = True
        res.error = f"{type(e).__name__}: {e}"[:600]
        if not isinstance(e, (Violation, AssertionError)):
            res.error += "\n" + traceback.format_exc(limit=3)[-600:]
        res.error += f"\n(log: {run.log.path})\n" + diagnose(run)
    finally:
        run.stop()
        if not res.step and run.events:
            res.step = run.events[0].removeprefix("down in ")
        res.recovery_s = statistics.median(run.recovery_s) if run.recovery_s else None
        res.seconds = time.monotonic() - t0
        if res.survived and not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return res


def diagnose(run: Run) -> str:
    """The rig's and the hub's view of the HAN, for a failed cut."""
    out = []
    try:
        out.append("devices: " + repr({n: (d["joined"], d["state"], d["attempts"])
                                        for n, d in run.system.han.devices.items()}))
    except Exception as e:  # noqa: BLE001
        out.append(f"devices: {e}")
    try:
        from .scenario import device_log

        out.append("device log: " + repr([(e["eui"], e["join_state"]) for e in device_log(run)]))
    except Exception as e:  # noqa: BLE001
        out.append(f"device log: {e}")
    try:
        tx = run.call("transactions")["entries"]
        out.append("transactions: " + repr([(e["event"], e["id"], e["detail"]) for e in tx[:8]]))
    except Exception as e:  # noqa: BLE001
        out.append(f"transactions: {e}")
    out.append(f"events: {run.events}")
    return "\n".join(out)


def sample(writes: int, count: int | None, seed: int) -> list[int]:
    """Cut points: every write 1..W (count None or >= W), else a seeded sample."""
    points = list(range(1, writes + 1))
    if count is None or count >= writes:
        return points
    return sorted(random.Random(seed).sample(points, count))


def campaign(image: Path, workdir: Path, count: int | None = None, seed: int = 8, workers: int = 2,
             progress=None, heap: str | None = None) -> Summary:  # noqa: ANN001
    """Clean run, then the cuts (in parallel, each its own system). progress(i, total, CutResult)."""
    t0 = time.monotonic()
    workdir = Path(workdir)
    writes, _ = clean_run(image, workdir / "clean", heap)
    points = sample(writes, count, seed)
    summary = Summary(writes)
    done = 0

    def one(n: int) -> CutResult:
        return cut_run(image, workdir / f"cut{n}", n, heap=heap)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for res in pool.map(one, points):
            done += 1
            if not res.reached:
                summary.not_reached += 1
            else:
                summary.tried += 1
                if res.survived:
                    summary.survived += 1
                    summary.gsme_put_window += res.put_window
                else:
                    summary.failures.append(res)
                if res.recovery_s is not None:
                    summary.recovery_s.append(res.recovery_s)
            if progress:
                progress(done, len(points), res)
    summary.seconds = time.monotonic() - t0
    return summary
