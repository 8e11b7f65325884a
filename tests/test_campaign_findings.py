"""The power-cut campaign's findings, each reproduced without depending on
which flash block write it falls on: the rig cuts the hub's power (SIGKILL)
from inside the NCP emulator at the exact protocol moment. Both failed before
their fix (docs/proof.md, "Findings"): the hub formed a second network, and
the join was lost in the Device Log."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

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

            def done(name: str) -> None:
                if name == "formNetwork":  # the NCP has formed it (its NVM keeps the network) ...
                    ncp.on_command_done = None
                    _cut_now(r)  # ... and the hub loses power before it hears so

            ncp.on_command_done = done

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


@pytest.mark.parametrize("version", [8, 14])  # v13: the join-cut test above
def test_only_a_device_holding_its_install_code_key_is_adopted(version: int, hub_image: Path, tmp_path: Path,
                                                                vectors: Path) -> None:
    """The repair of a lost join proves before it adopts: a device on the NCP's
    network that is not whitelisted, or whose key-table entry is not the key
    the Device Log gives it, stays out however much it talks."""
    run = Run(tmp_path / "sys", hub_image)
    run.system.han_version = version  # type: ignore[attr-defined]
    try:
        assert run.power_on()
        run.until(lambda: run.call("han_status")["state"] == "up", 30, "the HAN up")
        han = run.system.han
        ncp = han.emu
        spec = han.specs["esme"]
        r = run.call("device_log_add", eui=spec.eui, type=spec.dev_type, install_code=spec.install_code_hex,
                     join_timeout=3600)
        assert r["code"] == 0
        esme, ihd = han.nodes["esme"], han.nodes["ihd"]  # the IHD is not whitelisted
        report = bytes((0x18, 0x01, 0x0A, 0, 0, 0x20, 3))

        async def on_network() -> None:  # on the NCP's network, the hub never told
            for n, nid, key in ((esme, 0x2001, bytes(16)), (ihd, 0x2002, ihd.link_key)):
                ncp.add_node(n)
                n.joined, n.node_id = True, nid
                ncp.han.key_table[n.eui] = key

        han.rig.call(on_network())
        for _ in range(3):
            assert han.send("esme", report) and han.send("ihd", report)
            time.sleep(1.2)
        tc = run.call("han_status")["trust_centre"]
        assert tc["adopted"] == 0 and tc["not_adopted"] >= 2, tc
        # both were looked up, and the whitelisted one's key was checked
        key_cmds = ("exportLinkKeyByEui",) if ncp.version >= 13 else ("findKeyTableEntry", "getKeyTableEntry")
        assert "lookupEui64ByNodeId" in ncp.log or ncp.version >= 14
        assert all(c in ncp.log for c in key_cmds), ncp.log[-20:]
        rows = {e["eui"]: e for e in device_log(run)}
        assert set(rows) == {spec.eui} and rows[spec.eui]["join_state"] == "join window open"
        # the NCP holds the ESME's install-code key: adopted, with its node id
        ncp.han.key_table[esme.eui] = esme.link_key
        run.until(lambda: han.send("esme", report) and spec.eui in joined(run), 10, "the ESME adopted")
        rows = {e["eui"]: e for e in device_log(run)}
        assert set(rows) == {spec.eui} and rows[spec.eui]["node_id"] == 0x2001
        st = run.call("han_status")
        assert st["trust_centre"]["adopted"] == 1 and st["ezsp_version"] == version
    finally:
        run.stop()
