"""HAN figures for `chub bench` (issue 3; docs/han.md, "Figures").

From bench/mp_han.py under micropython:
  ash_frame_us          ASH encode + decode of one DATA frame carrying a
                        100-byte EZSP frame
  ezsp_overhead_us      the host's cost of one EZSP command/response
                        (Ezsp.command with a transport that answers at once)
From the emulated system (the hub under micropython, the rig's NCP emulator
and the emulated ESME, whose tunnel hook echoes):
  han_round_trip_ms     hub -> ESME -> hub: one tunnel_exchange of a
                        MESSAGE-byte message (APS-fragmented both ways), as
                        the hub times it (`han_tunnel` ms); the tunnel is
                        already open
  han_round_trip_ch_ms  the hub's own share: that minus the time spent
                        outside the hub, traced in the NCP emulator (each
                        fragment's emulated air time: sendUnicast taken ..
                        messageSentHandler queued; the ESME: the last fragment
                        delivered .. its first reply fragment handed to the
                        radio)
each the median of RUNS exchanges.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from .bench_trace import trace_ncp

RUNS = 11
MESSAGE = 300  # bytes: a mid-sized GBCS command (RTDS ESME commands are 70..530)


def mp_figures(heap: str) -> dict[str, Any]:
    from .bench import BENCH, _last_json, _mp

    with tempfile.TemporaryDirectory() as tmp:
        return _last_json(_mp([str(BENCH / "mp_han.py")], heap, cwd=Path(tmp)))


def _wait(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench: {what} not in time")
        time.sleep(0.05)


def system_figures(image: Path, heap: str) -> dict[str, Any]:
    from chubcore.localport import LocalPortClient
    from hil.han_setup import DEVICES
    from hil.system import EmulatedSystem

    esme = DEVICES["esme"]
    msg = bytes((i * 29 + 3) & 0xFF for i in range(MESSAGE))
    with tempfile.TemporaryDirectory() as tmp:
        s = EmulatedSystem(Path(tmp), heap=heap, image=image, fresh=True)
        s.han_demo = False  # type: ignore[attr-defined]
        with s, LocalPortClient(s.local_port_url, timeout=20) as c:
            han = s.han  # type: ignore[attr-defined]
            _wait(lambda: c.call("han_status")["state"] == "up", 20, "the HAN")
            r = c.call("device_log_add", eui=esme.eui, type=esme.dev_type, install_code=esme.install_code_hex,
                       join_timeout=600)
            if r["code"] != 0:
                raise RuntimeError(f"bench: device_log_add {r}")
            han.power_on("esme")
            if not han.wait_hub_joined(c, ["esme"], 20):
                raise RuntimeError("bench: the ESME did not join")
            # let the after-join traffic finish (the ESME reads the hub's
            # Time; the hub reads the ESME's Basic versions)
            dev = han.device("esme")
            _wait(lambda: dev.hub_time is not None and esme.eui in c.call("han_status")["versions"], 15,
                  "the after-join reads")
            emu = han.emu
            marks, untrace = trace_ncp(emu)
            total: list[float] = []
            share: list[float] = []
            try:
                for i in range(RUNS + 1):
                    marks.clear()
                    r = c.call("han_tunnel", eui=esme.eui, data=msg.hex(), timeout_ms=10000)
                    if not r.get("ok") or bytes.fromhex(r["reply"]) != msg:
                        raise RuntimeError(f"bench: exchange failed: {r}")
                    if i == 0:
                        continue  # the first one also opens the tunnel
                    rx = [t for k, t in marks if k == "rx"]
                    # the request's fragments: what the hub sent before the
                    # ESME's reply (later unicasts are other work)
                    first_rx = rx[0] if rx else float("inf")
                    tx = [t for k, t in marks if k == "tx" and t < first_rx]
                    done = [t for k, t in marks if k == "sent"]
                    air = [min((d for d in done if d >= t), default=None) for t in tx]
                    if not tx or None in air:
                        raise RuntimeError(f"bench: unexpected HAN trace {marks}")
                    last = max(a for a in air if a is not None)
                    reply = [t for t in rx if t >= last]
                    if not reply:
                        raise RuntimeError(f"bench: no reply in the HAN trace {marks}")
                    outside = sum(d - t for t, d in zip(tx, air, strict=True) if d is not None) + (reply[0] - last)
                    total.append(float(r["ms"]))
                    share.append(float(r["ms"]) - outside * 1000)
            finally:
                untrace()
    total.sort()
    share.sort()
    return {
        "han_round_trip_ms": round(total[len(total) // 2], 1),
        "han_round_trip_ch_ms": round(share[len(share) // 2], 1),
    }


def figures(heap: str, image: Path | None = None) -> dict[str, Any]:
    out = mp_figures(heap)
    if image is None:
        from chubcore.build import build

        with tempfile.TemporaryDirectory() as tmp:
            out.update(system_figures(build("unix", out=Path(tmp) / "image").path, heap))
    else:
        out.update(system_figures(image, heap))
    return out
