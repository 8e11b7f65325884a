"""Hub replacement on the rig (E2E R05, CCS03 Restore CHF Device Log): two
hubs in turn on one emulated HAN. Meters join hub A with their install
codes; hub A goes; hub B (a blank NCP, its own network) gets hub A's Device
Log by the RTDS CCS03 command (its extended PAN id replaced by hub A's); the
meters, which remember hub A's network and their link keys, rejoin hub B.
Used by tests/test_hil_hub_replacement.py and `chub bench` (restore_rejoin_s).

The meters are the RTDS's ...A0 and ...A1 with the 16-octet values the RTDS
Device Log backups carry for them. Those are install codes (83FED340...05 is
the ZigBee install-code test vector), so hub A's backup holds the bytes the
CCS03 restores."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from hil.han_setup import DeviceSpec
from hil.headend.gbcs import HeadEnd
from hil.system import EmulatedSystem

METERS = [DeviceSpec("esme_a0", "00DB1234567890A0", 1, bytes.fromhex("83FED3407A939723A5C639B26916D506")),
          DeviceSpec("ihd_a1", "00DB1234567890A1", 6, bytes.fromhex("83FED3407A939723A5C639B26916D505"))]
RTDS_EPID = bytes.fromhex("0000000000000140")
CCS03 = "gbcs/rtds/8.12.1_CCS03/CCS03_8.12.1_SUCCESS_COMMAND_GBCS.HEX"


def _system(path: Path, image: Path, heap: str) -> EmulatedSystem:
    s = EmulatedSystem(path, image=image, fresh=True, heap=heap)
    s.han_demo = False  # type: ignore[attr-defined]
    s.han_version = 14  # type: ignore[attr-defined]
    return s.start()


def _up(s: EmulatedSystem) -> dict[str, Any]:
    return s.wait_until(lambda: (st := s.call("han_status"))["state"] == "up" and st, 30, "the HAN up")  # type: ignore[return-value]


def device_log(s: EmulatedSystem) -> dict[str, dict[str, Any]]:
    return {e[0]: {"key_hash": e[3], "join_state": e[5]} for e in s.call("device_log_list")["entries"]}


def swap(workdir: Path, image: Path, vectors: Path, *, heap: str = "768k", cut: bool = False) -> dict[str, Any]:
    """Run the swap; cut: the power goes while hub B re-forms (right after its
    NCP left the old network) and hub B reboots. Returns what the two hubs
    showed: a_log, epid (hub A's), b_first_epid, b_epid, b_network, b_log,
    b_commands (the EZSP commands hub B's NCP got), rejoined {name: bool},
    cut (whether it happened), restore_rejoin_s (the CCS03 sent .. every
    meter joined in hub B's Device Log; the meters retry every 0.5 s)."""
    out: dict[str, Any] = {}
    a = _system(workdir / "a", image, heap)
    try:
        _up(a)
        for spec in METERS:
            a.han.add_device(spec)
            r = a.call("device_log_add", eui=spec.eui, type=spec.dev_type, install_code=spec.install_code_hex,
                       join_timeout=600)
            if r["code"] != 0:
                raise RuntimeError(f"hub A: device_log_add {r}")
            a.han.power_on(spec.name)
        if not a.han.wait_joined([m.name for m in METERS], 15):
            raise RuntimeError("the meters did not join hub A")
        a.wait_until(lambda: all(v["join_state"] == "joined" for v in device_log(a).values()), 10, "hub A's joins")
        out["a_log"] = device_log(a)
        epid = out["epid"] = bytes.fromhex(a.call("han_status")["ext_pan_id"])
        memory = {m.name: (a.han.nodes[m.name].ext_pan_id, a.han.nodes[m.name].link_key) for m in METERS}
    finally:
        a.stop()  # hub A is taken off the wall

    b = _system(workdir / "b", image, heap)
    try:
        out["b_first_epid"] = bytes.fromhex(_up(b)["ext_pan_id"])
        for spec in METERS:  # the same meters, with their memory of hub A's network
            b.han.add_device(spec)
            node = b.han.nodes[spec.name]
            node.ext_pan_id, node.link_key = memory[spec.name]
        ident = b.call("identity", timeout=40)
        he = HeadEnd.for_hub(vectors / "gbcs" / "keystore", ident)
        b.call("provision_test_dcc", timeout=40, anchors=he.test_dcc_anchors())
        raw = bytes.fromhex((vectors / CCS03).read_text())
        if raw.count(RTDS_EPID) != 1:
            raise RuntimeError("the RTDS CCS03 changed")
        cmd, _f = he.rebuild(raw.replace(RTDS_EPID, epid))
        ncp = b.han.emu
        cuts: list[float] = []

        def done(name: str) -> None:
            if name == "leaveNetwork" and cut and not cuts:
                cuts.append(time.monotonic())
                proc = b.dut.proc  # type: ignore[union-attr]
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)

        ncp.on_command_done = done
        t0 = time.monotonic()
        try:
            r = b.call("send_gbcs", timeout=20, frame=cmd.hex())
            out["ccs03_response"] = r.get("response")
        except Exception:  # noqa: BLE001 - the cut may come before the answer
            if not cut:
                raise
        if cut:
            b.wait_until(lambda: bool(cuts), 20, "the re-form's leaveNetwork")
            ncp.on_command_done = None
            b.reboot(power_cut=True)
        out["cut"] = bool(cuts)
        b.wait_until(lambda: bytes.fromhex(b.call("han_status")["ext_pan_id"] or "00") == epid
                     and b.call("han_status")["state"] == "up", 30, "hub B on the restored ext PAN id")
        out["b_epid"] = bytes.fromhex(b.call("han_status")["ext_pan_id"])
        out["b_network"] = dict(b.han.network)
        out["rejoined"] = {spec.name: b.han.rejoin(spec.name, 15) for spec in METERS}
        b.wait_until(lambda: all(v["join_state"] == "joined" for v in device_log(b).values()), 15,
                     "hub B's rejoins")
        out["restore_rejoin_s"] = time.monotonic() - t0
        out["b_log"] = device_log(b)
        out["b_commands"] = list(b.han.commands)
        out["keys_match"] = all(b.han.emu.han.key_table.get(b.han.nodes[m.name].eui) == memory[m.name][1]
                                for m in METERS)
    finally:
        b.stop()
    return out
