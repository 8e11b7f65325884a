"""Remote-management and fleet figures for `chub bench` (issue 21;
docs/headend-link.md, "Remote management" and "Send window").

  remote_config_round_trip_ms  the head-end's MGMT request -> the hub's
                               MGMT_REPLY: a `wan_config` read and a
                               `wan_config` set of one value (alternating),
                               the whole hub under micropython behind the
                               SIM7600 emulator and TLS; median of RUNS
  fleet_hubs                   emulated hubs against one head-end in the
                               fleet check (hil/fleet: the firmware's link
                               codec and send-window scheduling in one
                               MicroPython process, a TCP connection each)
  fleet_send_peak_ratio        the most reports arriving in one second of the
                               (shortened, 10 s) window over the uniform mean
                               (hubs / 10); goal <= 2
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

RUNS = 20
FLEET_HUBS = 500


def round_trip_ms(image: Path, heap: str, runs: int = RUNS) -> float:
    from hil.system import EmulatedSystem

    with tempfile.TemporaryDirectory() as tmp:
        with EmulatedSystem(Path(tmp), heap=heap, image=image, fresh=True) as s:
            he = s.headend
            he.wait_hello(1, timeout=30)
            s.wait_until(lambda: s.call("wan_status")["connected"], 20, "link")
            took = []
            for i in range(runs):
                req: dict[str, Any] = {"cmd": "wan_config"}
                if i % 2:
                    req["set"] = {"signal_ms": 10000 + i}
                t0 = time.perf_counter()
                he.manage(req)
                took.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(took), 1)


def fleet_figures(hubs: int = FLEET_HUBS) -> dict[str, Any]:
    from hil.fleet import run_fleet

    r = run_fleet(hubs)
    if r.hubs != hubs or r.outside:
        raise RuntimeError(f"fleet: {r.hubs} of {hubs} reports, {r.outside} outside the window")
    return {"fleet_hubs": r.hubs, "fleet_send_peak_ratio": r.peak_ratio}


def figures(heap: str, image: Path) -> dict[str, Any]:
    out = {"remote_config_round_trip_ms": round_trip_ms(image, heap)}
    out.update(fleet_figures())
    return out
