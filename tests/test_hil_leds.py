"""HIL: the status LEDs follow the real hub's state (firmware/leds.py, the
unix board's emulated LEDs as `status` reports them, docs/wiring.md). The
hub (built image, under micropython) with the NCP emulator (no demo devices),
the SIM7600 emulator and the head-end: a device added then joining lights
its HAN LED (fast blink, then steady); the WAN link going down and up again
switches the data LED and the signal LED follows the modem's CSQ; a
power-fail makes the power LED blink and its outage alert lights the alert
LED until the head-end has acknowledged it."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hil.han_setup import DEVICES
from hil.system import EmulatedSystem

ROOT = Path(__file__).resolve().parents[1]
BOARD_MODULES = (ROOT / "boards/unix/board.py", ROOT / "boards/esp32_common/esp32_board.py")


def _public_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
            out.add(node.name)
        elif isinstance(node, ast.Assign):
            out |= {t.id for t in node.targets if isinstance(t, ast.Name) and not t.id.startswith("_")}
    return out


def test_every_board_has_what_the_firmware_calls() -> None:
    # the firmware calls board.X directly (board.set_leds among them): the
    # ESP32 boards cannot run here, so their module is checked by its names
    used = set()
    for f in (ROOT / "firmware").rglob("*.py"):
        used |= set(re.findall(r"\bboard\.([A-Za-z_]+)", f.read_text()))
    assert "set_leds" in used
    # console_released() is asked only of a board whose release_console is
    # not None (docs/architecture.md): a board without a REPL console has neither
    guarded = "board.release_console is not None and board.console_released()"
    assert guarded in (ROOT / "firmware/app.py").read_text()
    assert all(guarded in ln for f in (ROOT / "firmware").rglob("*.py")
               for ln in f.read_text().splitlines() if "board.console_released" in ln)
    for m in BOARD_MODULES:
        text = m.read_text()
        need = used - {"console_released"} if "\nrelease_console = None" in text else used
        missing = need - _public_names(m)
        assert not missing, (m.name, sorted(missing))


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, hub_image: Path) -> Iterator[EmulatedSystem]:
    s = EmulatedSystem(tmp_path_factory.mktemp("leds") / "sys", image=hub_image, fresh=True)
    s.han_demo = False  # type: ignore[attr-defined]
    with s:
        yield s


def _leds_until(system: EmulatedSystem, want: dict[str, Any], timeout: float = 30.0) -> dict:
    """Poll `status` until every LED in `want` shows its pattern."""
    last: list[dict] = [{}]

    def shown() -> dict | None:
        leds = last[0] = system.call("status").get("leds") or {}
        return leds if all(leds.get(k) == v for k, v in want.items()) else None

    return system.wait_until(shown, timeout, lambda: f"the LEDs to show {want} (last: {last[0]})", interval=0.25)


def test_leds_follow_han_joins_wan_link_and_power_fail(system: EmulatedSystem) -> None:
    # up: the head-end link is up with the emulator's CSQ 21 (good signal);
    # no HAN device yet, nothing waiting
    rssi = system.modem.cfg.rssi  # type: ignore[attr-defined]
    assert rssi >= 15
    leds = _leds_until(system, {"data": "on", "wan_signal": "on"})
    assert leds == {"power": "on", "han": [], "alert": "off", "wan_signal": "on", "data": "on"}, leds

    # HAN: the installer adds the ESME (join window open: fast blink), it joins (steady)
    esme = DEVICES["esme"]
    r = system.call("device_log_add", eui=esme.eui, type=esme.dev_type, install_code=esme.install_code_hex,
              join_timeout=600)
    assert r["code"] == 0, r
    _leds_until(system, {"han": ["fast"]}, 10)
    system.han.power_on("esme")  # type: ignore[attr-defined]
    _leds_until(system, {"han": ["on"]}, 30)

    # WAN: coverage lost (no registration, a weak CSQ when it comes back)
    modem = system.modem  # type: ignore[attr-defined]
    modem.set_csq(5)
    modem.deny_registration()
    modem.drop_network()
    leds = _leds_until(system, {"data": "off"}, 30)
    assert leds["han"] == ["on"]  # the HAN does not care

    # power fail while the link is down: the outage alert waits in the outbox
    system.rig.power_fail()  # type: ignore[union-attr]
    leds = _leds_until(system, {"power": "blink", "alert": "on"}, 15)
    assert leds["data"] == "off"
    assert system.call("wan_status")["outbox_pending"] >= 1

    # coverage back: link up (data on), signal from the new CSQ 5 (slow blink),
    # the alert delivered and acknowledged (alert off)
    modem.regain_registration()
    leds = _leds_until(system, {"data": "on", "wan_signal": "slow", "alert": "off"}, 60)
    assert leds["han"] == ["on"] and leds["power"] == "blink"
