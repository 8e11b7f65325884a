"""HIL: `chub sim` stopped and started again on kept flash (the emulated
system restarted on the same workdir, as the installer would).

The emulated NCP keeps its NVM in the workdir like a real EFR32 keeps its
flash, so the hub resumes its network (networkInit, no formNetwork) and the
demo meters, still members, make contact again: joined, reachable, the
commissioning checklist passes, and it is ready without waiting out a join.
When the NCP has lost its NVM (a blank or replaced NCP), the meters are not
on the hub's network: the hub shows them "not heard since start" (not
joined), and commissioning fails with that reason."""

from __future__ import annotations

import json
import time
from pathlib import Path

from click.testing import CliRunner

from chub.cli import main
from hil.han_setup import DEVICES, NVM_FILE
from hil.system import EmulatedSystem

HEAP = "768k"  # the whole hub with the demo HAN (tests/test_hil_han.py)
READY_S = 12.0  # start to ready on kept flash; a demo waiting out the joins took over 20 s


def _cli(system: EmulatedSystem, *args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["hht", "--port", system.local_port_url, "--timeout", "20", *args],
                           env={"COLUMNS": "200"})
    return r.exit_code, r.output


def _rows(system: EmulatedSystem) -> dict[str, str]:
    return {r[0]: r[5] for r in system.call("device_log_list")["entries"]}


def _first_run(workdir: Path, image: Path) -> dict:
    s = EmulatedSystem(workdir, image=image, fresh=True, heap=HEAP).start()
    try:
        assert set(_rows(s).values()) == {"joined"}
        return dict(s.han.network)
    finally:
        s.han.stop()
        s.stop()


def _restart(workdir: Path, image: Path) -> tuple[EmulatedSystem, float]:
    t0 = time.monotonic()
    s = EmulatedSystem(workdir, image=image, heap=HEAP).start()
    return s, time.monotonic() - t0


def test_restart_on_kept_flash_resumes_the_network(tmp_path: Path, hub_image: Path) -> None:
    wd = tmp_path / "sim"
    net = _first_run(wd, hub_image)
    assert (wd / NVM_FILE).exists()
    s, took = _restart(wd, hub_image)
    try:
        assert took < READY_S, f"ready after {took:.1f} s"
        assert "networkInit" in s.han.commands and "formNetwork" not in s.han.commands
        assert s.han.network == net
        st = s.call("han_status")
        assert st["counters"]["resumed"] == 1 and st["counters"]["formed"] == 0
        assert (st["channel"], st["pan_id"]) == (net["channel"], net["pan_id"])
        assert _rows(s) == {d.eui: "joined" for d in DEVICES.values()}
        assert st["node_count"] == 4 and st["not_heard"] == []
        # the ESME answers a read now (before: no_route ... status 0x66)
        code, out = _cli(s, "han", "read", "--eui", DEVICES["esme"].eui, "--cluster", "0", "--attr", "5",
                         "--json")
        assert code == 0, out
        code, out = _cli(s, "commission", "--json")
        res = json.loads(out)
        assert code == 0 and res["pass"], out
        meters = [c for c in res["checks"] if c["name"].endswith(" joined")]
        assert len(meters) == 4 and all(c["ok"] for c in meters)
    finally:
        s.han.stop()
        s.stop()


def test_restart_with_a_blank_ncp_shows_the_meters_not_heard(tmp_path: Path, hub_image: Path) -> None:
    wd = tmp_path / "sim"
    _first_run(wd, hub_image)
    (wd / NVM_FILE).unlink()  # the NCP lost its NVM: the meters are not on the network it forms
    s, took = _restart(wd, hub_image)
    try:
        assert took < READY_S, f"ready after {took:.1f} s"
        assert _rows(s) == {d.eui: "not heard since start" for d in DEVICES.values()}
        st = s.call("han_status")
        assert st["node_count"] == 0 and sorted(st["not_heard"]) == sorted(d.eui for d in DEVICES.values())
        # the LEDs do not say joined: no HAN LED is steadily on
        assert "on" not in s.call("status")["leds"]["han"]
        code, out = _cli(s, "commission", "--json")
        res = json.loads(out)
        assert code == 1 and not res["pass"], out
        esme = next(c for c in res["checks"] if DEVICES["esme"].eui in c["name"])
        assert not esme["ok"] and "not heard since the hub started" in esme["detail"]
    finally:
        s.han.stop()
        s.stop()
