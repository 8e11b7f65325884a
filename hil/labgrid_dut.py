"""The labgrid backend (`--chub-dut labgrid --lg-env FILE`): the board of a labgrid
place, reserved through the coordinator for the pytest session.

The environment file (labgrid's own, read by labgrid's pytest plugin) names
the place as the `RemotePlace` of its target (`main` by default) and the
power driver:

    targets:
      main:
        resources:
          RemotePlace:
            name: chub-1
        drivers:
          NetworkPowerDriver: {}

`LabgridPlace.acquire()` acquires the place with labgrid's client API
(`labgrid.remote.client`'s session, as `labgrid-client acquire` does: a
place another client holds is refused) and reads the place's resources: the board's
console/local port and the wires to its NCP and modem UARTs as
`NetworkSerialPort`s named `console`, `ncp`, `modem` (raw TCP or RFC 2217;
an isolated exporter's ports through labgrid's SSH proxy), and the target's
`PowerProtocol` driver when it has one. `release()` powers the board off and
releases the place. `LabgridDut` is the serial backend's DUT on the console
port that switches the board's power first, so every test starts from a boot.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from .dut import SerialDut, UartBridge
from .log import DutLog
from .rig import Rig

DEFAULT_COORDINATOR = "127.0.0.1:20408"


class PlaceRefused(RuntimeError):
    """No place for this run: the coordinator refused it (another client
    holds it) or did not answer."""


def serial_url(res: Any) -> str:
    """The pyserial URL of a labgrid NetworkSerialPort (through labgrid's
    proxy when its exporter is isolated)."""
    from labgrid.util.proxy import proxymanager

    host, port = proxymanager.get_host_and_port(res)
    scheme = "socket" if res.protocol == "raw" else "rfc2217"
    return f"{scheme}://{host}:{port}"


class LabgridPlace:
    """The place of an environment's target, acquired for one pytest session."""

    def __init__(self, env: Any, role: str = "main"):
        self.env, self.role = env, role
        self.address = env.config.get_option("coordinator_address",
                                             os.environ.get("LG_COORDINATOR", DEFAULT_COORDINATOR))
        self.session: Any = None
        self.target: Any = None
        self.power: Any = None
        self.ports: dict[str, str] = {}
        self.acquired_at = 0.0

    def acquire(self) -> LabgridPlace:
        from labgrid.protocol import PowerProtocol
        from labgrid.remote.client import Error
        from labgrid.resource import NetworkSerialPort
        from labgrid.resource.remote import RemotePlaceManager

        t0 = time.monotonic()
        # one client session per process: the coordinator tells clients
        # apart by their connection, and grpc shares one connection between
        # the channels of a process. So the session is the one labgrid's
        # RemotePlace resources use (their manager's), started here on the
        # environment's coordinator address
        mgr = RemotePlaceManager.get()
        if mgr.session is None:
            mgr.env, mgr.url = self.env, self.address
            try:
                mgr._start()  # noqa: SLF001 - what the manager does for its first RemotePlace
            except (Error, OSError) as e:
                raise PlaceRefused(f"the labgrid coordinator {self.address} did not answer: {e}") from e
        self.session = mgr.session
        self.session.args = argparse.Namespace(place=None, allow_unmatched=False, kick=False)
        try:
            self.session.loop.run_until_complete(self.session.acquire())
        except Error as e:
            self.session = None
            raise PlaceRefused(f"labgrid place {', '.join(self._env_places())} refused: {e}") from e
        self.acquired_at = t0
        try:
            self.target = self.env.get_target(self.role)
            for name in ("console", "ncp", "modem"):
                try:
                    res = self.target.get_resource(NetworkSerialPort, name=name, wait_avail=False)
                except Exception:  # noqa: BLE001 - labgrid's NoResourceFoundError: the place has no such wire
                    continue
                self.ports[name] = serial_url(res)
            if "console" not in self.ports:
                raise PlaceRefused(f"the place of target {self.role!r} has no NetworkSerialPort named 'console'")
            try:
                self.power = self.target.get_driver(PowerProtocol)
            except Exception:  # noqa: BLE001 - NoDriverFoundError: a bench without a power switch
                self.power = None
        except BaseException:
            self.release()
            raise
        return self

    def _env_places(self) -> list[str]:
        from labgrid.factory import target_factory

        names: list[str] = []
        for cfg in self.env.config.get_targets().values():
            resources, _ = target_factory.normalize_config(cfg)
            names += list(resources.get("RemotePlace", {}))
        return names

    def release(self) -> None:
        """Power the board off (when the place has a switch) and release the place."""
        if self.session is None:
            return
        try:
            if self.power is not None:
                self.power.off()
        finally:
            s, self.session = self.session, None
            s.loop.run_until_complete(s.release())


class LabgridDut(SerialDut):
    """The place's board on its console port; `start()` switches its power
    off and on first (a place without a switch: the board as it runs)."""

    kind = "labgrid"

    def __init__(self, place: LabgridPlace, log: DutLog):
        super().__init__(place.ports["console"], log)
        self.place = place

    def start(self) -> LabgridDut:
        if self.place.power is not None:
            self.place.power.off()
            self.place.power.on()
            self.log.write("rig", "labgrid: board power cycled")
        super().start()
        return self


def bridge_wires(place: LabgridPlace, rig: Rig, log: DutLog) -> list[UartBridge]:
    """The rig's emulated NCP and modem (with its HAN and head-end) on the
    place's `ncp` / `modem` wires; the caller stops the bridges."""
    from types import SimpleNamespace

    from .system import attach_peripherals

    attach_peripherals(SimpleNamespace(rig=rig, log=log, local_port_url=rig.local_port_url, han_demo=False))
    return [UartBridge(place.ports[u], rig, u, log, rtscts=u == "ncp").start() for u in ("ncp", "modem")
            if u in place.ports]


def stop_all(bridges: list[UartBridge]) -> None:
    """Stop the bridges at once (pyserial waits 0.3 s closing each socket port)."""
    import threading

    ts = [threading.Thread(target=b.stop) for b in bridges]
    for t in ts:
        t.start()
    for t in ts:
        t.join(5)
