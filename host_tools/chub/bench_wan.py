"""WAN figures for `chub bench` (issue 6; docs/headend-link.md).

  link_recovery_s              network drop (the modem emulator's +IPCLOSE and
                               +CIPEVENT: NETWORK CLOSED UNEXPECTEDLY) -> the
                               head-end has the hub's HELLO on a new connection;
                               the hub under micropython with its default
                               settings, the emulator's own delays zero; the
                               median of RUNS drops, each after the link was up
                               for STABLE_S (a link that was up a while is
                               retried at once)
  outbox_block_writes_per_msg  flash block writes (littlefs programs, <= 128 B)
                               per message queued and acknowledged by the
                               head-end: the outbox journal append + ack and the
                               `ack` transaction-log entry (bench/mp_wan.py)
  outbox_block_erases_per_msg  block erases for the same
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

RUNS = 3
STABLE_S = 10.5


def outbox_figures(heap: str) -> dict[str, Any]:
    from .bench import BENCH, _last_json, _mp

    with tempfile.TemporaryDirectory() as tmp:
        fig = _last_json(_mp([str(BENCH / "mp_wan.py"), str(Path(tmp) / "f.bin")], heap, cwd=Path(tmp)), "FIGURES")
    if fig["pending_after"] != 0:
        raise RuntimeError(f"outbox bench left {fig['pending_after']} messages pending")
    return {
        "outbox_block_writes_per_msg": round(fig["writes_per_msg"], 1),
        "outbox_block_erases_per_msg": round(fig["erases_per_msg"], 2),
    }


def link_recovery(image: Path, heap: str, runs: int = RUNS) -> float:
    from hil.system import EmulatedSystem

    with tempfile.TemporaryDirectory() as tmp:
        with EmulatedSystem(Path(tmp), heap=heap, image=image, fresh=True) as s:
            he, emu = s.headend, s.modem
            assert s.rig is not None
            he.wait_hello(1, timeout=30)
            took = []
            for _ in range(runs):
                n = len(he.hellos)
                time.sleep(max(0.0, STABLE_S - (time.monotonic() - he.hellos[-1].at)))

                async def drop() -> float:
                    t = time.monotonic()
                    emu.drop_network()
                    return t

                t0 = s.rig.call(drop())
                he.wait_hello(n + 1, timeout=60)
                took.append(he.hellos[n].at - t0)
    return round(statistics.median(took), 3)


def figures(heap: str, image: Path) -> dict[str, Any]:
    out = outbox_figures(heap)
    out["link_recovery_s"] = link_recovery(image, heap)
    return out
