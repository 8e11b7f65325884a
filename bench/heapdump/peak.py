"""The 32-bit frozen hub's heap at its peak (measurement only).

    CHUB_MICROPYTHON=build/unix32/micropython .venv/bin/python bench/heapdump/peak.py \\
        build/unix32/image 256k STEP BYTES [--own CLASS]

runs the capacity scenario (hil/campaign/capacity.py) up to the step before
STEP (any but the first), arms the hub's watcher (heappeak_mp.py, preloaded with heapdump_mp.py)
and runs STEP: the first time the live heap (after a collection, read every
~2 ms) holds BYTES or more, the hub dumps it there and then, and this prints
it as heapdump.py prints a step's end (by type, then by holder). BYTES is
best a little under the high-water mark the steps script shows for STEP; a
STEP that never reaches it says so. The watcher's own task and frame cost
~0.2 KB beside heapdump_mp's ~1.3 KB.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import heapdump  # noqa: E402
from heapdump import Heap, capacity, mprun  # noqa: E402


def dump_peak(image: Path, heap: str, step_name: str, limit: int) -> list[str]:
    """The hub's log lines of the dump taken at `limit` bytes during `step_name`."""
    real = mprun.module_path
    mprun.module_path = lambda dirs: real([*dirs, str(HERE)])
    with tempfile.TemporaryDirectory() as tmp:
        run = capacity.new_run(Path(tmp), image, heap=heap)
        run.preload = ["heapdump_mp", "heappeak_mp"]
        try:
            assert run.power_on()
            names = [s.__name__ for s in capacity.STEPS]
            if step_name not in names[1:]:
                raise SystemExit(f"no step {step_name} after the first: {', '.join(names[1:])}")
            for step in capacity.STEPS:
                if step.__name__ == step_name:
                    # the pool's place and length (a map now), then the watcher armed
                    pos = run.log.position
                    run.system.rig.send_ctl({"heapdump": "map"})
                    found = run.log.expect(r"GC memory layout; from (?:0x)?([0-9a-f]+)", after=pos, timeout=30)
                    addr = int(found.group(1), 16)
                    run.log.expect(r"HD end$", after=pos, timeout=30)
                    hdr = [ln for ln in run.log.lines(after=pos) if re.match(r"^[0-9a-f]{8}: ", ln)]
                    plen = int(hdr[-1][:8], 16) + (len(hdr[-1]) - 10) * 16
                    pos = run.log.position
                    run.system.rig.send_ctl({"heappeak": f"0x{addr:x}:{plen}:{limit}"})
                    time.sleep(0.5)
                    step(run)
                    time.sleep(1.0)
                    if not any("HD peak" in ln for ln in run.log.lines(after=pos)):
                        raise SystemExit(f"{step_name} never held {limit} bytes")
                    run.log.expect(r"HD end$", after=pos, timeout=120)
                    time.sleep(0.5)
                    break
                step(run)
            text = run.log.path.read_text(errors="replace").splitlines()
        finally:
            run.stop()
            mprun.module_path = real
    i = max(k for k, ln in enumerate(text) if "HD from 0x" in ln)
    j = max(k for k, ln in enumerate(text[:i]) if "HD from map" in ln)
    return [ln.split("| ", 1)[1] if "| " in ln else ln for ln in text[j + 1:]]


def main() -> None:
    image, heap, step_name, limit = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    own = sys.argv[sys.argv.index("--own") + 1] if "--own" in sys.argv else None
    h = Heap(dump_peak(image, heap, step_name, limit), Path(mprun.micropython_exe()).parent / "port/micropython.map")
    heapdump.report(h, own)


if __name__ == "__main__":
    main()
