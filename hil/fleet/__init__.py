"""The fleet check (issue 21, docs/headend-link.md "Send window"): N
emulated hubs against one head-end, each sending its periodic report at its
own time in the send window, and the histogram of their arrivals.

What runs: one `HeadEndServer` (multi_hub, plain TCP on 127.0.0.1) and one
MicroPython process (the real unix port) with N asyncio tasks, each a hub's
link end built from the firmware's own modules (`wan.link` frames,
`wan.window.next_send` scheduling: hil/fleet/fleet_mp.py) on its own TCP
connection. They are not N whole hubs (a whole hub is a MicroPython process
plus a modem and NCP emulator, about 20 MB and a share of the 2 cores each;
the HIL tests run the whole hub's report job: tests/test_hil_mgmt.py), and
the link is TCP without the modem's TLS.

The window is shortened to seconds (the code takes any length): it opens
`lead_s` after the start and lasts `length_s`; peak ratio = the most arrivals
in any one second over the uniform mean (N / length_s).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path

from hil.headend.server import HeadEndServer
from hil.mprun import Micropython

SCRIPT = Path(__file__).with_name("fleet_mp.py")


@dataclass
class FleetResult:
    hubs: int
    length_s: int
    histogram: list[int]  # arrivals per second of the window
    peak_ratio: float  # max(histogram) / (hubs / length_s)
    outside: int  # arrivals before the window opened or after it closed (+1 s)
    late_ms: int  # the latest send after its scheduled time, as the hub saw it
    due_peak_ratio: float  # the same ratio over the scheduled times (the reports' due_ms): load-free


async def _run(n: int, length_s: int, lead_s: int, timeout: float) -> FleetResult:
    he = HeadEndServer()
    he.multi_hub = True
    port = await he.start()
    try:
        period_s = 3600  # one window in the run
        now = time.time()
        start_s = (int(now) + lead_s) % period_s
        opens = int(now) + lead_s
        mp = Micropython(heap="4m")
        proc = await asyncio.create_subprocess_exec(
            *mp.argv([str(SCRIPT), str(port), str(n), str(start_s), str(period_s), str(length_s * 1000)]),
            env=mp.environ(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            raise
        if proc.returncode != 0:
            raise RuntimeError(f"fleet script failed: {err.decode()[-2000:]}")
        fig = json.loads(next(ln for ln in out.decode().splitlines() if ln.startswith("FLEET "))[6:])
    finally:
        await he.stop()
    hist = [0] * length_s
    outside = 0
    for r in he.reports:
        sec = int(r.utc - opens)
        if 0 <= sec < length_s:
            hist[sec] += 1
        elif sec == length_s and r.utc - opens < length_s + 1:
            hist[-1] += 1  # the link's last milliseconds
        else:
            outside += 1
    due = [0] * length_s
    for r in he.reports:
        sec = int((r.body["due_ms"] / 1000) - opens)
        due[min(max(sec, 0), length_s - 1)] += 1
    got = len(he.reports)
    mean = got / length_s
    return FleetResult(got, length_s, hist, round(max(hist) / mean, 2), outside,
                       int(fig["late_ms"]), round(max(due) / mean, 2))


def run_fleet(n: int = 200, length_s: int = 10, lead_s: int = 3, timeout: float = 60.0) -> FleetResult:
    """N hubs, one window of length_s opening lead_s from now; bounded by timeout."""
    return asyncio.run(_run(n, length_s, lead_s, timeout))
