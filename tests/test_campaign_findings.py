"""The power-cut campaign's findings, each reproduced without depending on
which flash block write it falls on: the rig cuts the hub's power (SIGKILL)
from inside the NCP emulator at the exact protocol moment. Both failed before
their fix (docs/proof.md, "Findings"): the hub formed a second network, and
the join was lost in the Device Log."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from hil.campaign.scenario import JOINERS, Run, device_log, joined, run_steps, step_join, step_provision


def _cut_now(run: Run) -> None:
    proc = run.dut.proc
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGKILL)


def test_cut_right_after_form_network_resumes_the_ncps_network(hub_image: Path, tmp_path: Path,
                                                                vectors: Path) -> None:
    run = Run(tmp_path / "sys", hub_image)
    try:
        def arm(r: Run) -> None:
            ncp = r.system.han.emu
            orig = ncp._c_formNetwork

            def form(p: bytes) -> bytes:
                out = orig(p)  # the NCP has formed it (its NVM keeps the network) ...
                ncp._c_formNetwork = orig
                _cut_now(r)  # ... and the hub loses power before it hears so
                return out

            ncp._c_formNetwork = form

        run.power_on(before_start=arm)
        deadline = time.monotonic() + 30
        while run.dut.alive and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not run.dut.alive, "formNetwork never came"
        han = run.system.han
        net = dict(han.network)
        assert net["formed"]
        run.reboot()
        run.until(lambda: run.call("han_status")["state"] == "up", 30, "the HAN up")
        assert han.commands.count("formNetwork") == 1, "the hub formed a second network"
        assert han.network == net
    finally:
        run.stop()


def test_cut_right_after_a_join_keeps_the_join(hub_image: Path, tmp_path: Path, vectors: Path) -> None:
    run = Run(tmp_path / "sys", hub_image)
    try:
        assert run.power_on()
        step_provision(run)
        han = run.system.han
        ncp = han.emu
        orig = ncp.join

        def join(node, node_id=None):  # noqa: ANN001, ANN202
            ok = orig(node, node_id)
            if ok and node.eui == bytes.fromhex(han.specs["ihd"].eui):
                _cut_now(run)  # the IHD is in; the hub loses power as the NCP reports it
            return ok

        ncp.join = join
        run_steps(run, [step_join], max_reboots=2)  # reboots after the cut, resumes the step
        assert run.reboots == 1
        want = {han.specs[n].eui for n in JOINERS}
        assert want <= joined(run)
        ihd = next(e for e in device_log(run) if e["eui"] == han.specs["ihd"].eui)
        assert ihd["node_id"] == han.nodes["ihd"].node_id and ihd["key_state"] == "established"
        assert han.commands.count("formNetwork") == 1
    finally:
        run.stop()
