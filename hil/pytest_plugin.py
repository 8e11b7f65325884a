"""pytest plugin for HIL scenarios.

Every option is namespaced (`--chub-...`; pytest-embedded and labgrid's
plugin may share the venv): `--chub-dut unix|serial|labgrid` (default unix),
`--chub-port URL` (serial backend: the board's console/local port, any
pyserial URL), `--chub-ncp-port URL` / `--chub-modem-port URL` (serial
backend: USB-serial adapters wired to the board's NCP and modem UARTs; the
rig's emulators serve them), `--chub-heap SIZE` (unix backend: MicroPython
heap limit, default: the image's board's `default_heap`), `--chub-board NAME`
(unix backend: the board the HIL tests boot, default unix; `unix32` is our
own 32-bit MicroPython with the hub frozen in, built and cached by
chubcore.mpbuild, whose binary then also runs the tests/mp items),
`--chub-micropython PATH` (the binary every micropython run of the session
uses; the same as setting $CHUB_MICROPYTHON), `--chub-gsme-wake SECONDS`
(chub_system). The labgrid backend reads labgrid's
own `--lg-env FILE` (and `--lg-coordinator`, labgrid's pytest plugin): it
acquires the environment's place when the session starts (`lg_place`,
released when pytest ends, also after a failure; held by another client:
exit 3 at once), attaches the rig's emulators to the place's
`ncp`/`modem` ports and power-cycles the board for each test (hil/labgrid_dut.py).

Fixtures: `hub_image` (the board's image, built once per session), `hil_log`,
`rig`, `chub_dut` (powered on and ready) and `hub` (everything a scenario needs:
`hub.call(...)`, `hub.wait_until(...)`, `hub.client()`, `hub.expect(...)`,
`hub.rig`, `hub.dut`); for other teams' suites `chub_system`, `chub_hub`,
`chub_meter`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest

from chubcore.paths import MICROPYTHON_ENV

from .dut import SerialDut, UartBridge, UnixDut
from .log import DutLog
from .rig import Rig
from .system import DeviceRow, EmulatedSystem, HubControl, attach_peripherals

if TYPE_CHECKING:
    from .labgrid_dut import LabgridPlace


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("chub-hil", "HIL rig")
    # every option is namespaced: the plugin shares a venv with pytest-embedded (--port, `dut`) and labgrid (--lg-*)
    g.addoption("--chub-dut", choices=("unix", "serial", "labgrid"), default="unix", help="device-under-test backend")
    g.addoption("--chub-port", default=None, help="pyserial URL of the board (serial backend)")
    g.addoption("--chub-heap", default=None,
                help="MicroPython heap limit for the unix backend (default: boards/unix/board.json)")
    g.addoption("--chub-ncp-port", default=None,
                help="serial backend: the USB-serial adapter wired to the board's NCP UART")
    g.addoption("--chub-modem-port", default=None, help="serial backend: the adapter wired to the board's modem UART")
    g.addoption("--chub-board", default="unix",
                help="unix backend: the board to boot (unix32: the 32-bit MicroPython with the hub frozen in)")
    g.addoption("--chub-micropython", default=None, metavar="PATH",
                help=f"the micropython binary for every run of this session (as ${MICROPYTHON_ENV})")
    g.addoption("--chub-gsme-wake", type=float, default=2.0, metavar="SECONDS",
                help="chub_system: how often its GSME wakes (a real GSME: 1800)")


def _frozen_build(board: str) -> bool:
    from chubcore.build import board_spec

    spec = board_spec(board)
    return bool(spec.get("frozen") and spec.get("micropython"))


def pytest_configure(config: pytest.Config) -> None:
    """--chub-micropython, or a --chub-board with a MicroPython of its own (built
    now if its stamp is stale): the binary goes into $CHUB_MICROPYTHON, which
    every micropython run of the session (hil.mprun, tests/mp) reads."""
    import os

    exe = config.getoption("--chub-micropython", None)
    board = config.getoption("--chub-board", "unix")
    if exe:
        os.environ[MICROPYTHON_ENV] = str(Path(exe).resolve())
    elif board != "unix" and _frozen_build(board):
        from chubcore.mpbuild import build_micropython

        os.environ[MICROPYTHON_ENV] = str(build_micropython(board).binary)
    # a serial DUT with no port is a usage error at start-up, not a failure per test
    if config.getoption("--chub-dut") == "serial" and not config.getoption("--chub-port"):
        raise pytest.UsageError("--chub-dut serial needs --chub-port URL (the board's local port)")


@pytest.fixture(scope="session")
def hub_image(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The firmware image of --chub-board (default unix), built once per session."""
    board = request.config.getoption("--chub-board")
    if _frozen_build(board):
        # the image whose app tree is frozen into the binary (cached build)
        from chubcore.mpbuild import build_micropython

        return build_micropython(board).image
    from chubcore.build import build

    return build(board, out=tmp_path_factory.mktemp("image") / board).path


@pytest.fixture
def hil_log(tmp_path: Path) -> Iterator[DutLog]:
    """The test's DUT log (hil.log.DutLog: the hub's console and the rig's lines), tmp_path/dut.log."""
    log = DutLog(tmp_path / "dut.log")
    yield log
    log.close()


@pytest.fixture
def rig(hil_log: DutLog) -> Iterator[Rig]:
    """The rig (hil.rig.Rig): the hub's UARTs as TCP, its emulated peripherals, for one test."""
    r = Rig(hil_log).start()
    yield r
    r.stop()


LG_PLACE = pytest.StashKey["LabgridPlace"]()


def pytest_sessionstart(session: pytest.Session) -> None:
    """--chub-dut labgrid: acquire the place of the labgrid environment's target
    for the whole run (released when pytest ends, also after a failure). A
    place another client holds ends the run at once (exit 3), naming it."""
    config = session.config
    if config.getoption("--chub-dut") != "labgrid" or hasattr(config, "workerinput"):
        return
    try:
        from labgrid.pytestplugin.hooks import LABGRID_ENV_KEY
    except ImportError:
        raise pytest.UsageError("--chub-dut labgrid needs labgrid (a dev extra: pip install -e '.[dev]')") from None

    from .labgrid_dut import LabgridPlace, PlaceRefused

    # the Environment labgrid's plugin made of --lg-env / $LG_ENV (and
    # --lg-coordinator); not its `env` fixture, which wants the place
    # acquired before the run starts
    env = config.stash.get(LABGRID_ENV_KEY, None)
    if env is None:
        raise pytest.UsageError("--chub-dut labgrid needs labgrid's --lg-env FILE (or $LG_ENV)")
    try:
        place = LabgridPlace(env).acquire()
    except PlaceRefused as e:
        env.cleanup()
        pytest.exit(str(e), returncode=3)

    def release() -> None:
        try:
            place.release()
        finally:
            env.cleanup()

    config.add_cleanup(release)
    config.stash[LG_PLACE] = place


@pytest.fixture(scope="session")
def lg_place(request: pytest.FixtureRequest) -> LabgridPlace:
    """--chub-dut labgrid: the acquired place (pytest_sessionstart)."""
    place = request.config.stash.get(LG_PLACE, None)
    if place is None:
        raise pytest.UsageError("the labgrid place is acquired only with --chub-dut labgrid (and not in an xdist worker)")
    return place


@pytest.fixture
def chub_dut(request: pytest.FixtureRequest, rig: Rig, hil_log: DutLog, tmp_path: Path) -> Iterator[UnixDut | SerialDut]:
    """The device under test for one test, powered on and ready, on --chub-dut: unix (the
    emulated board booted from blank flash at --chub-heap), serial (the board at --chub-port,
    the rig's NCP/modem on --chub-ncp-port/--chub-modem-port) or labgrid (the place's board,
    power-cycled); its console and the rig's lines go to `hil_log`."""
    kind = request.config.getoption("--chub-dut")
    d: UnixDut | SerialDut
    if kind == "labgrid":
        from .labgrid_dut import LabgridDut, bridge_wires, stop_all

        place = request.getfixturevalue("lg_place")
        # the rig's emulated NCP / modem on the wires to the board's UARTs
        bridges = bridge_wires(place, rig, hil_log)
        request.addfinalizer(lambda: stop_all(bridges))
        d = LabgridDut(place, hil_log)
    elif kind == "serial":
        port = request.config.getoption("--chub-port")
        if not port:
            raise pytest.UsageError("--chub-dut serial needs --chub-port URL")
        d = SerialDut(port, hil_log)
        # the rig's emulated NCP / modem on the adapters wired to the board's UARTs
        bridges = [(u, request.config.getoption(f"--chub-{u}-port")) for u in ("ncp", "modem")]
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
        d = UnixDut(image, tmp_path / "board", rig, hil_log, heap=request.config.getoption("--chub-heap"))
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
        from chubcore.localport import LocalPortClient

        return LocalPortClient(self.dut.local_port_url, timeout=timeout)

    def expect(self, pattern: str, timeout: float = 10.0, after: int = 0):
        return self.log.expect(pattern, timeout=timeout, after=after)


@pytest.fixture
def hub(chub_dut: UnixDut | SerialDut, rig: Rig, hil_log: DutLog) -> Hub:
    """A fresh hub for one test, on --chub-dut (unix: booted from blank flash; serial: the board at --chub-port),
    with the emulated NCP (no demo devices) and modem: `.call`, `.devices()`, `.send_gbcs`,
    `.wait_until`, `.client()`, `.expect(pattern)` on the DUT log, `.rig`, `.dut`."""
    return Hub(chub_dut, rig, hil_log)


# --- for other teams' suites: the living system, typed helpers, the DUT log on failure ---

_LOG_KEY = "chub_dut_log"


@pytest.fixture(scope="session")
def chub_system(tmp_path_factory: pytest.TempPathFactory, hub_image: Path,
                request: pytest.FixtureRequest) -> Iterator[EmulatedSystem]:
    """The default emulated system, alive, for the whole session (hil.system.EmulatedSystem,
    living=True): the hub on the unix board with the demo HAN joined (ESME, GSME, IHD, PPMID,
    hil.han_setup.DEVICES), the ESME answering, counting and reporting to the DCC on the GSME's
    schedule, the GSME waking every
    --chub-gsme-wake seconds (default 2) to report to the GPF and collect buffered commands
    (heap --chub-heap, else 1024k on the unix board: hil.meters.living.LIVING_HEAP),
    the CHF and GPF holding the test DCC anchors, the head-end behind the emulated modem.
    `.call(cmd, **args)`, `.devices()` (named rows), `.send_gbcs(frame)`, `.wait_until(...)`,
    `.han` (the emulated devices), `.meters` (hil.meters.living), `.headend`, `.log`."""
    from .meters.living import LIVING_HEAP

    wake = request.config.getoption("--chub-gsme-wake")
    heap = request.config.getoption("--chub-heap") or (LIVING_HEAP if not _frozen_build(
        request.config.getoption("--chub-board")) else None)
    s = EmulatedSystem(tmp_path_factory.mktemp("chub_system") / "sys", image=hub_image, fresh=True, living=True,
                       gsme_wake_s=wake, heap=heap)
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def chub_hub(chub_system: EmulatedSystem, request: pytest.FixtureRequest) -> EmulatedSystem:
    """The session's living system for one test; its DUT log path and last
    lines are shown when the test fails."""
    request.node.stash[_LOG_STASH] = chub_system.log
    return chub_system


@pytest.fixture
def chub_meter(chub_hub: EmulatedSystem):  # noqa: ANN201 - a function returning a DeviceRow
    """`chub_meter("gsme")`: the Device Log row (hil.system.DeviceRow) of a
    demo device by name (esme, gsme, ihd, ppmid), waiting until it is joined."""
    from .han_setup import DEVICES

    def get(name: str, timeout: float = 20.0) -> DeviceRow:
        eui = DEVICES[name].eui
        return chub_hub.wait_until(lambda: next((r for r in chub_hub.devices()
                                                 if r.eui == eui and r.join_state == "joined"), None),
                                   timeout, f"{name} ({eui}) joined")

    return get


_LOG_STASH = pytest.StashKey[DutLog]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """On any failure of a test that used a hub (chub_hub, or hub/chub_dut
    through hil_log), the report gets a section with the DUT log's path and its last lines."""
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    log = item.stash.get(_LOG_STASH, None)
    if log is None:
        funcargs = getattr(item, "funcargs", {})
        log = funcargs.get("hil_log")
    if isinstance(log, DutLog):
        rep.sections.append(("chub DUT log", f"{log.path}\n--- last lines ---\n{log.tail(40)}"))
