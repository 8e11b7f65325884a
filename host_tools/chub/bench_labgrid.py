"""The labgrid backend's start for `chub bench` (issue 20; docs/hil.md).

  labgrid_place_acquire_s   a test run's start on a labgrid place: acquire the
                            place through labgrid's client session (a real
                            `labgrid-coordinator` and `labgrid-exporter` on
                            127.0.0.1, the emulated board served by
                            `hil.labgrid_board`), read its resources, attach the
                            rig's NCP and modem emulators to its wires, switch
                            the board off and on through labgrid's power driver
                            and wait until the hub answers `status` on the
                            console port (what `--chub-dut labgrid` does per run and
                            per test)
  labgrid_direct_unix_start_s  the same hub started as `--chub-dut unix` starts it
                            (the rig's emulators attached, the unix port
                            spawned, until `hub READY`), in the same run

Without labgrid installed (it is a dev extra) both are left out.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

PLACE, GROUP = "chub-bench", "chub-emu-bench"


def direct_unix_start_s(image: Path, heap: str, workdir: Path) -> float:
    from types import SimpleNamespace

    from hil.dut import UnixDut
    from hil.log import DutLog
    from hil.rig import Rig
    from hil.system import attach_peripherals

    log = DutLog(workdir / "dut.log")
    rig = Rig(log).start()
    try:
        t0 = time.monotonic()
        attach_peripherals(SimpleNamespace(rig=rig, log=log, local_port_url=rig.local_port_url, han_demo=False))
        dut = UnixDut(image, workdir / "board", rig, log, heap=heap)
        pos = log.position
        dut.start()
        try:
            dut.wait_ready(timeout=30, after=pos)
            return time.monotonic() - t0
        finally:
            dut.stop()
    finally:
        rig.stop()
        log.close()


def place_acquire_s(image: Path, workdir: Path) -> float:
    from labgrid import Environment

    from hil.labgrid_dut import LabgridDut, LabgridPlace, bridge_wires, stop_all
    from hil.labgrid_lab import Lab
    from hil.log import DutLog
    from hil.rig import Rig

    with Lab(workdir / "lab", {PLACE: GROUP}, image=image) as lab:
        env = Environment(config_file=str(lab.workdir / f"env-{PLACE}.yaml"))
        env.config.set_option("coordinator_address", lab.coordinator)
        log = DutLog(workdir / "labgrid-dut.log")
        rig = Rig(log).start()
        place = LabgridPlace(env).acquire()
        try:
            bridges = bridge_wires(place, rig, log)
            dut = LabgridDut(place, log).start()
            dut.wait_ready(timeout=30)
            took = time.monotonic() - place.acquired_at
            dut.stop()
            stop_all(bridges)
        finally:
            place.release()
            env.cleanup()
            rig.stop()
            log.close()
    return took


def figures(heap: str, image: Path) -> dict[str, Any]:
    try:
        import labgrid  # noqa: F401
    except ImportError:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        return {
            "labgrid_place_acquire_s": round(place_acquire_s(image, Path(tmp)), 2),
            "labgrid_direct_unix_start_s": round(direct_unix_start_s(image, heap, Path(tmp)), 2),
        }


if __name__ == "__main__":  # this part alone: python -m chub.bench_labgrid
    import json

    from chubcore.build import build
    from chubcore.paths import default_heap

    with tempfile.TemporaryDirectory() as tmp:
        img = build("unix", out=Path(tmp) / "image").path
        print(json.dumps({"date": time.strftime("%Y-%m-%d"), **figures(default_heap(), img)}))
