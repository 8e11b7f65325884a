"""HIL: hub replacement (E2E R05, CCS03 Restore CHF Device Log). Two hubs in
turn on one emulated HAN: meters join hub A with their install codes; hub A
goes; hub B (a blank NCP, its own network) gets hub A's Device Log by the
RTDS CCS03 command (its extended PAN id set to hub A's), re-forms the HAN on
that extended PAN id, hands the restored devices' link keys to its NCP, and
the meters rejoin it with what they hold (no new install). The power is cut
while hub B re-forms (right after the NCP left the old network): it finishes
the job after the reboot.

The meters are the RTDS's ...A0 and ...A1 with the 16-octet values the RTDS
Device Log backups carry for them: those are install codes (83FED340...05 is
the ZigBee install-code test vector), so hub A's backup holds the same
bytes the CCS03 restores."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from hil.han_setup import DeviceSpec
from hil.headend.gbcs import HeadEnd
from hil.system import EmulatedSystem

METERS = [DeviceSpec("esme_a0", "00DB1234567890A0", 1, bytes.fromhex("83FED3407A939723A5C639B26916D506")),
          DeviceSpec("ihd_a1", "00DB1234567890A1", 6, bytes.fromhex("83FED3407A939723A5C639B26916D505"))]
RTDS_EPID = bytes.fromhex("0000000000000140")


def _system(path: Path, image: Path) -> EmulatedSystem:
    s = EmulatedSystem(path, image=image, fresh=True, heap="768k")
    s.han_demo = False  # type: ignore[attr-defined]
    s.han_version = 14  # type: ignore[attr-defined]
    return s.start()


def _up(s: EmulatedSystem) -> dict:
    return s.wait_until(lambda: (st := s.call("han_status"))["state"] == "up" and st, 30, "the HAN up")  # type: ignore[return-value]


def _log(s: EmulatedSystem) -> dict[str, dict]:
    return {e[0]: {"key_hash": e[3], "join_state": e[5]} for e in s.call("device_log_list")["entries"]}


def test_hub_replacement_restore_rejoin_and_power_cut(tmp_path: Path, hub_image: Path, vectors: Path) -> None:
    a = _system(tmp_path / "a", hub_image)
    try:
        _up(a)
        for spec in METERS:
            a.han.add_device(spec)
            r = a.call("device_log_add", eui=spec.eui, type=spec.dev_type, install_code=spec.install_code_hex,
                       join_timeout=600)
            assert r["code"] == 0, r
            a.han.power_on(spec.name)
        assert a.han.wait_joined([m.name for m in METERS], 15)
        a.wait_until(lambda: all(v["join_state"] == "joined" for v in _log(a).values()), 10, "hub A's joins")
        epid = bytes.fromhex(a.call("han_status")["ext_pan_id"])
        # hub A's Device Log (what CS14 / CCS07 carry) holds the install codes
        assert {e: v["key_hash"].upper() for e, v in _log(a).items()} == {
            m.eui: m.install_code.hex().upper() for m in METERS}
        memory = {m.name: (a.han.nodes[m.name].ext_pan_id, a.han.nodes[m.name].link_key) for m in METERS}
        assert all(x == epid for x, _k in memory.values())
    finally:
        a.stop()  # hub A is taken off the wall

    b = _system(tmp_path / "b", hub_image)
    try:
        st = _up(b)
        assert bytes.fromhex(st["ext_pan_id"]) != epid  # its own network first
        for spec in METERS:  # the same meters, with their memory of hub A's network
            b.han.add_device(spec)
            node = b.han.nodes[spec.name]
            node.ext_pan_id, node.link_key = memory[spec.name]
        ident = b.call("identity", timeout=40)
        he = HeadEnd.for_hub(vectors / "gbcs" / "keystore", ident)
        b.call("provision_test_dcc", timeout=40, anchors=he.test_dcc_anchors())
        rtds = (vectors / "gbcs/rtds/8.12.1_CCS03/CCS03_8.12.1_SUCCESS_COMMAND_GBCS.HEX").read_text()
        raw = bytes.fromhex(rtds)
        assert raw.count(RTDS_EPID) == 1
        cmd, _f = he.rebuild(raw.replace(RTDS_EPID, epid))
        # the power goes while hub B re-forms: right after its NCP left the old network
        ncp = b.han.emu
        cut = []

        def done(name: str) -> None:
            if name == "leaveNetwork" and not cut:
                cut.append(time.monotonic())
                proc = b.dut.proc  # type: ignore[union-attr]
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)

        ncp.on_command_done = done
        t0 = time.monotonic()
        try:
            b.call("send_gbcs", timeout=20, frame=cmd.hex())
        except Exception:  # noqa: BLE001 - the cut may come before the answer
            pass
        b.wait_until(lambda: bool(cut), 20, "the re-form's leaveNetwork")
        ncp.on_command_done = None
        b.reboot(power_cut=True)
        st = _up(b)
        assert bytes.fromhex(st["ext_pan_id"]) == epid and b.han.network["ext_pan_id"] == epid.hex().upper()
        assert {e for e, v in _log(b).items()} == {m.eui for m in METERS}
        # the restored keys are in the NCP's key table; the meters rejoin with them
        assert "importLinkKey" in b.han.commands
        for spec in METERS:
            assert b.han.rejoin(spec.name, 15), spec.name
        b.wait_until(lambda: all(v["join_state"] == "joined" for v in _log(b).values()), 15, "hub B's rejoins")
        print("restore_rejoin_s (with a power cut)", round(time.monotonic() - t0, 3))
    finally:
        b.stop()
