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
    out.update(tls_figures(image, heap))
    return out


def tls_figures(image: Path, heap: str, runs: int = 5, frames: int = 20) -> dict[str, Any]:
    """The head-end link's TLS (run by the modem: docs/headend-link.md).

    link_handshake_ms       AT+CCHOPEN -> the session open: TCP connect and the
                            full TLS 1.2 handshake (ECDHE-ECDSA P-256, both
                            certificates verified) the modem runs with the
                            head-end, here the emulator's OpenSSL against the
                            head-end server's, over loopback; median of `runs`
                            reconnects
    link_frame_overhead_us  TLS record work per GBCS link frame over plain TCP
                            (encrypting the hub's frames, decrypting the
                            head-end's), at the modem: the hub's own path is the
                            same AT dialogue as plain (AT+CCHSEND/CCHRECV in
                            place of AT+CIPSEND/CIPRXGET)
    tls_heap_kb             heap the hub holds for one TLS session: none (the
                            modem holds the TLS state; the driver keeps the
                            credentials' fingerprint and three flags)
    """
    from chubcore.paths import vectors_dir
    from hil.system import EmulatedSystem

    raw = bytes.fromhex((vectors_dir() / "gbcs" / "rtds" / "6.2.4_ECS26i"
                         / "ECS26i_6.2.4_SUCCESS_COMMAND_GBCS.HEX").read_text().strip())
    with tempfile.TemporaryDirectory() as tmp:
        with EmulatedSystem(Path(tmp), heap=heap, image=image, fresh=True) as s:
            he, emu = s.headend, s.modem
            assert s.rig is not None
            he.wait_hello(1, timeout=30)
            shakes = []
            for _ in range(runs):
                n = len(he.hellos)

                async def close() -> None:
                    emu.remote_close(0)

                s.rig.call(close())
                he.wait_hello(n + 1, timeout=30)
                shakes.append(emu.cch[0].handshake_s * 1000)
            sess = emu.cch[0]
            t0 = sess.tls_s
            for _ in range(frames):
                he.send_command(raw, timeout=15)
            # each command: GBCS + ACK down, response + ACK up (records may carry several frames)
            per_frame = (sess.tls_s - t0) / (frames * 4) * 1e6
    return {"link_handshake_ms": round(statistics.median(shakes), 1),
            "link_frame_overhead_us": round(per_frame, 1), "tls_heap_kb": 0.0}
