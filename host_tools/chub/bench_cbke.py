"""Key establishment and hub replacement figures for `chub bench` (issue 18;
docs/cbke.md, docs/device-log.md).

From the emulated system (the hub under micropython with the demo HAN, the
rig's NCP emulator holding suite-2 credentials from a rig CA, the emulated
IHD initiating):
  cbke_s         one CBKE (suite 2, sect283k1) as the IHD sees it: its
                 Initiate Key Establishment Request sent .. the hub's Confirm
                 Key Response checked
  cbke_ncp_s     of that, the emulated NCP's crypto (generateCbkeKeys283k1 +
                 calculateSmacs283k1, CPython; a real EFR32 takes its own time)
  cbke_device_s  of that, the IHD's own crypto (CPython)
  cbke_ch_s      the rest: the hub's share (its ZCL server and EZSP
                 commands under micropython) plus the emulated radio
each the median of RUNS key establishments.

From two emulated systems in turn on one HAN (hil/hub_swap.py):
  restore_rejoin_s  hub replacement: hub B gets hub A's Device Log (CCS03,
                    local port send_gbcs) .. both meters joined in hub B's
                    Device Log; it includes hub B's re-form on the restored
                    extended PAN id (an energy scan of 16 channels) and the
                    meters' rejoin attempts, 0.5 s apart. One run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from .bench_han import _wait

RUNS = 3
HUB_EUI = bytes.fromhex("00DB1234567890A2")


def restore_figures(heap: str, image: Path) -> dict[str, Any]:
    from chubcore.paths import vectors_dir
    from hil.hub_swap import swap

    with tempfile.TemporaryDirectory() as tmp:
        r = swap(Path(tmp), image, vectors_dir(), heap=heap)
    if not all(r["rejoined"].values()):
        raise RuntimeError(f"bench: the meters did not rejoin: {r['rejoined']}")
    return {"restore_rejoin_s": round(r["restore_rejoin_s"], 3)}


def figures(heap: str, image: Path) -> dict[str, Any]:
    out = cbke_figures(heap, image)
    out.update(restore_figures(heap, image))
    return out


def cbke_figures(heap: str, image: Path) -> dict[str, Any]:
    from chubcore.localport import LocalPortClient
    from hil.devices.cbke import establish
    from hil.ncp.cbke import SUITE2, Ca, CbkeNcp
    from hil.system import EmulatedSystem

    rows: list[tuple[float, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        s = EmulatedSystem(Path(tmp), heap=heap, image=image, fresh=True)
        s.han_demo = True  # type: ignore[attr-defined]
        with s, LocalPortClient(s.local_port_url, timeout=20) as c:
            han = s.han  # type: ignore[attr-defined]
            _wait(lambda: c.call("han_status")["node_count"] == 4, 20, "the demo HAN")
            ca = Ca(SUITE2)
            ncp = han.emu.cbke = CbkeNcp(han.emu, {2: ca.issue(HUB_EUI)})
            ihd = han.device("ihd")
            creds = ca.issue(ihd.node.eui)
            for _ in range(RUNS):
                ncp.busy_s.clear()
                r = han.run(establish(ihd, creds), timeout=120)
                if not r["ok"]:
                    raise RuntimeError(f"bench: CBKE failed: {r}")
                rows.append((r["s"], sum(ncp.busy_s), r["device_s"]))
    rows.sort()
    total, ncp_s, dev_s = rows[len(rows) // 2]
    return {
        "cbke_s": round(total, 3),
        "cbke_ncp_s": round(ncp_s, 3),
        "cbke_device_s": round(dev_s, 3),
        "cbke_ch_s": round(total - ncp_s - dev_s, 3),
    }
