"""pytest plugin for HIL scenarios.

Options: `--dut unix|serial` (default unix), `--port URL` (serial backend: the
board's console/local port, any pyserial URL), `--ncp-port URL` / `--modem-port
URL` (serial backend: USB-serial adapters wired to the board's NCP and modem
UARTs; the rig's emulators serve them), `--heap SIZE` (unix backend:
MicroPython heap limit, default: the unix board's `default_heap`).

Fixtures: `hub_image` (the unix image, built once per session), `hil_log`,
`rig`, `dut` (powered on and ready) and `hub` (everything a scenario needs:
`hub.call(...)`, `hub.wait_until(...)`, `hub.client()`, `hub.expect(...)`,
`hub.rig`, `hub.dut`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from .dut import SerialDut, UartBridge, UnixDut
from .log import DutLog
from .rig import Rig
from .system import HubControl, attach_peripherals


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("chub-hil", "HIL rig")
    g.addoption("--dut", choices=("unix", "serial"), default="unix", help="device-under-test backend")
    g.addoption("--port", default=None, help="pyserial URL of the board (serial backend)")
    g.addoption("--heap", default=None, help="MicroPython heap limit for the unix backend (default: boards/unix/board.json)")
    g.addoption("--ncp-port", default=None, help="serial backend: the USB-serial adapter wired to the board's NCP UART")
    g.addoption("--modem-port", default=None, help="serial backend: the adapter wired to the board's modem UART")


@pytest.fixture(scope="session")
def hub_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from chub.core.build import build

    return build("unix", out=tmp_path_factory.mktemp("image") / "unix").path


@pytest.fixture
def hil_log(tmp_path: Path) -> Iterator[DutLog]:
    log = DutLog(tmp_path / "dut.log")
    yield log
    log.close()


@pytest.fixture
def rig(hil_log: DutLog) -> Iterator[Rig]:
    r = Rig(hil_log).start()
    yield r
    r.stop()


@pytest.fixture
def dut(request: pytest.FixtureRequest, rig: Rig, hil_log: DutLog, tmp_path: Path) -> Iterator[UnixDut | SerialDut]:
    kind = request.config.getoption("--dut")
    d: UnixDut | SerialDut
    if kind == "serial":
        port = request.config.getoption("--port")
        if not port:
            raise pytest.UsageError("--dut serial needs --port URL")
        d = SerialDut(port, hil_log)
        # the rig's emulated NCP / modem on the adapters wired to the board's UARTs
        bridges = [(u, request.config.getoption(f"--{u}-port")) for u in ("ncp", "modem")]
        if any(url for _, url in bridges):
            attach_peripherals(SimpleNamespace(rig=rig, log=hil_log, local_port_url=rig.local_port_url, han_demo=False))
            for u, url in bridges:
                if url:
                    request.addfinalizer(UartBridge(url, rig, u, hil_log, rtscts=u == "ncp").start().stop)
    else:
        image = request.getfixturevalue("hub_image")
        # the emulated NCP (no demo devices) and modem + head-end, as in the
        # default system, so the hub under test has all its UARTs
        attach_peripherals(SimpleNamespace(rig=rig, log=hil_log, local_port_url=rig.local_port_url, han_demo=False))
        d = UnixDut(image, tmp_path / "board", rig, hil_log, heap=request.config.getoption("--heap"))
    pos = hil_log.position
    d.start()
    d.wait_ready(timeout=30, after=pos)
    yield d
    d.stop()


class Hub(HubControl):
    """A scenario's handle on the hub under test, on either backend: `call`
    and `wait_until` as on `EmulatedSystem`, `client()` for a connection of
    the test's own, `expect` for a DUT log line."""

    call_timeout = 5.0

    def __init__(self, dut: UnixDut | SerialDut, rig: Rig, log: DutLog):
        self.dut, self.rig, self.log = dut, rig, log

    @property
    def local_port_url(self) -> str:
        return self.dut.local_port_url

    def client(self, timeout: float = 5.0):
        from chub.core.localport import LocalPortClient

        return LocalPortClient(self.dut.local_port_url, timeout=timeout)

    def expect(self, pattern: str, timeout: float = 10.0, after: int = 0):
        return self.log.expect(pattern, timeout=timeout, after=after)


@pytest.fixture
def hub(dut: UnixDut | SerialDut, rig: Rig, hil_log: DutLog) -> Hub:
    return Hub(dut, rig, hil_log)
