"""The default emulated system: one hub on the unix board plus the rig.

Used by `chub sim`, `chub bench` and the HIL test fixtures, so what a newcomer
sees first is exactly what the tests exercise.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .dut import UnixDut
from .han_setup import attach as attach_han
from .log import DutLog
from .rig import Rig
from .wan_setup import attach as attach_wan
from .wan_setup import provision as provision_wan


def attach_peripherals(target: Any) -> None:
    """Put the emulated peripherals on `target.rig` (target also has `log` and
    `local_port_url`): the NCP emulator with its HAN on "ncp" (`target.han`;
    demo devices unless `target.han_demo` is False) and the SIM7600 emulator
    on "modem" with the head-end server behind it (`target.modem`,
    `target.headend`)."""
    target.han = attach_han(target)
    attach_wan(target)


FLASHED = "flashed.json"  # written by `chub flash --board unix` beside the flash file


class EmulatedSystem:
    """With no image, a workdir that `chub flash --board unix --port WORKDIR`
    flashed boots from its flash; otherwise the unix image is built."""

    def __init__(self, workdir: Path, heap: str | None = None, image: Path | None = None, fresh: bool = False):
        self.workdir = Path(workdir)
        self.heap = heap
        self.image = image
        self.fresh = fresh
        self.from_flash = False
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = DutLog(self.workdir / "dut.log")
        self.rig: Rig | None = None
        self.dut: UnixDut | None = None
        self.boot_to_ready_s: float | None = None

    def start(self, ready_timeout: float = 30.0) -> EmulatedSystem:
        if self.fresh:
            (self.workdir / "flash.bin").unlink(missing_ok=True)
            (self.workdir / FLASHED).unlink(missing_ok=True)
        self.from_flash = self.image is None and (self.workdir / FLASHED).exists()
        if self.image is None and not self.from_flash:
            from chub.core.build import build

            self.image = build("unix", out=self.workdir / "image").path
        self.rig = Rig(self.log).start()
        self.dut = UnixDut(self.image, self.workdir, self.rig, self.log, heap=self.heap, from_flash=self.from_flash)
        attach_peripherals(self)
        pos = self.log.position
        self.dut.start()
        try:
            self.boot_to_ready_s = self.dut.wait_ready(ready_timeout, after=pos)
        except BaseException:
            self.stop()
            raise
        provision_wan(self)  # the hub's keys to the head-end, test DCC anchors to the hub
        self.han.after_ready()  # the demo HAN (chub sim): four devices added and joined
        return self

    def reboot(self, ready_timeout: float = 30.0, power_cut: bool = False) -> float:
        """Power-cycle the hub (cleanly or by cutting power); returns boot-to-ready seconds."""
        assert self.dut is not None
        if power_cut:
            self.dut.power_cut()
        else:
            self.dut.stop()
        # wait for the rig to see the old connections go
        deadline = time.monotonic() + 5
        while self.rig and any(self.rig.connected.values()) and time.monotonic() < deadline:
            time.sleep(0.02)
        pos = self.log.position
        self.dut.start()
        self.boot_to_ready_s = self.dut.wait_ready(ready_timeout, after=pos)
        return self.boot_to_ready_s

    def call(self, cmd: str, timeout: float = 30.0, **kw: Any) -> dict[str, Any]:
        """One local-port command on a fresh connection (the client opens an
        installer session itself when the command needs one)."""
        from chub.core.localport import LocalPortClient

        with LocalPortClient(self.local_port_url, timeout=timeout) as c:
            return c.call(cmd, **kw)

    @property
    def local_port_url(self) -> str:
        assert self.rig is not None
        return self.rig.local_port_url

    def stop(self) -> None:
        if self.dut:
            self.dut.stop()
        if self.rig:
            self.rig.stop()
        self.log.close()

    def __enter__(self) -> EmulatedSystem:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
