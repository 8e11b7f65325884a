"""The 32-bit frozen hub's heap at its peak (measurement only).

    CHUB_MICROPYTHON=build/unix32/micropython .venv/bin/python bench/heapdump/peak.py \\
        build/unix32/image 256k STEP BYTES [--own CLASS] [--who NAME]

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

import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import heapdump  # noqa: E402
from heapdump import Heap, capacity, last_dump, mprun, pool_place  # noqa: E402


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
                    addr, plen = pool_place(run)
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
    return last_dump(text)


def main() -> None:
    image, heap, step_name, limit = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    own = sys.argv[sys.argv.index("--own") + 1] if "--own" in sys.argv else None
    who = sys.argv[sys.argv.index("--who") + 1] if "--who" in sys.argv else None
    h = Heap(dump_peak(image, heap, step_name, limit), Path(mprun.micropython_exe()).parent / "port/micropython.map")
    heapdump.report(h, own, who)


if __name__ == "__main__":
    main()
