"""The default emulated system: one hub on the unix board plus the rig.

Used by `chub sim`, `chub bench` and the HIL test fixtures, so what a newcomer
sees first is exactly what the tests exercise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .dut import UnixDut
from .han_setup import attach as attach_han
from .log import DutLog
from .rig import Rig
from .wan_setup import attach as attach_wan
from .wan_setup import provision as provision_wan

if TYPE_CHECKING:
    from .meters.living import LivingMeters


def attach_peripherals(target: Any) -> None:
    """Put the emulated peripherals on `target.rig` (target also has `log` and
    `local_port_url`): the NCP emulator with its HAN on "ncp" (`target.han`;
    demo devices unless `target.han_demo` is False) and the SIM7600 emulator
    on "modem" with the head-end server behind it (`target.modem`,
    `target.headend`)."""
    target.han = attach_han(target)
    attach_wan(target)


T = TypeVar("T")


@dataclass(frozen=True)
class DeviceRow:
    """One CHF Device Log entry (local-port `device_log_list`, docs/device-log.md),
    by name. Times are the hub's (seconds since 2000-01-01 UTC)."""

    eui: str
    type: int
    key_state: str
    key_hash: str
    node_id: int | None
    join_state: str
    window_end: int | None
    rssi: list[int] | None
    lqi: list[int] | None
    last_comm: int | None
    tx_ok: int
    tx_fail: int


@dataclass(frozen=True)
class GbcsReply:
    """What `send_gbcs` gave back: the response (None: the command was
    buffered for the sleepy GSME) and the alerts, as bytes."""

    response: bytes | None
    alerts: list[bytes]

    @property
    def buffered(self) -> bool:
        return self.response is None


class HubControl:
    """What a test does to a running hub, whichever backend runs it (the
    emulated system, or the `hub` fixture on a unix or serial DUT): local-port
    commands (`call`) and polled waits whose failure names what was awaited
    and the DUT log (`wait_until`). A subclass gives `local_port_url` and `log`."""

    log: DutLog
    call_timeout = 30.0  # seconds a command may take (a busy CI machine slows the hub)
    # False: each call on a fresh connection. True: one connection kept open
    # (the installer session is opened once) and opened again after a reboot;
    # the rig's bridge serves other clients meanwhile, but the hub has one
    # installer session and the kept connection owns it: `drop_connection()`
    # before a test's own client authenticates (else that waits for it)
    keep_connection = False
    _kept: Any = None

    @property
    def local_port_url(self) -> str:
        raise NotImplementedError

    def call(self, cmd: str, timeout: float | None = None, **args: Any) -> dict[str, Any]:
        """One local-port command; the client opens an installer session
        itself when the command needs one. LocalPortError on an error status."""
        from chubcore.localport import LocalPortClient, LocalPortTimeout

        t = self.call_timeout if timeout is None else timeout
        if not self.keep_connection:
            with LocalPortClient(self.local_port_url, timeout=t) as c:
                return c.call(cmd, **args)
        for attempt in (1, 2):
            if self._kept is None:
                self._kept = LocalPortClient(self.local_port_url, timeout=t)
            try:
                return self._kept.call(cmd, **args)
            except (OSError, LocalPortTimeout):
                self.drop_connection()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def devices(self) -> list[DeviceRow]:
        """The CHF Device Log, every page, as named rows."""
        from chubcore.device_log import ROW

        first = self.call("device_log_list")
        rows = list(first["entries"])
        while len(rows) < first["total"]:
            page = self.call("device_log_list", offset=len(rows))["entries"]
            if not page:
                break
            rows += page
        return [DeviceRow(**dict(zip(ROW, r, strict=True))) for r in rows]

    def device(self, eui: str) -> DeviceRow:
        """One Device Log entry by EUI (KeyError naming the EUIs there)."""
        rows = {r.eui: r for r in self.devices()}
        if eui.upper() not in rows:
            raise KeyError(f"{eui} is not in the Device Log ({', '.join(rows) or 'empty'})")
        return rows[eui.upper()]

    def send_gbcs(self, frame: bytes, timeout: float | None = None) -> GbcsReply:
        """One protected GBCS command through the local port, as from the WAN."""
        r = self.call("send_gbcs", timeout=timeout, frame=frame.hex())
        resp = r.get("response")
        return GbcsReply(bytes.fromhex(resp) if resp else None, [bytes.fromhex(a) for a in r.get("alerts", [])])

    def expect(self, pattern: str, timeout: float = 10.0, after: int = 0) -> Any:
        """Wait for a console line of the hub (the DUT log, source "dut")
        matching the regex `pattern`, written after log cursor `after`
        (`self.log.position`); the re.Match. At `timeout` AssertionError
        naming the pattern, the log's path and its last lines."""
        return self.log.expect(pattern, timeout=timeout, after=after)

    def write(self, data: bytes) -> None:
        """Bytes to the hub's console/local port as a terminal would send
        them, on a connection of their own (the hub reads them as local-port
        input: e.g. a broken frame it must survive)."""
        import socket

        url = self.local_port_url
        if not url.startswith("socket://"):
            raise ValueError(f"write() needs a socket:// local port, not {url}")
        host, port = url[len("socket://"):].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(data)

    def drop_connection(self) -> None:
        """Close the kept connection, if one is open."""
        c, self._kept = self._kept, None
        if c is not None:
            try:
                c.close()
            except OSError:
                pass

    def wait_until(self, cond: Callable[[], T], timeout: float = 15.0,
                   what: str | Callable[[], str] = "the condition", interval: float = 0.05) -> T:
        """Poll `cond()` every `interval` seconds until it returns something
        true and return that; at `timeout` fail (AssertionError) naming `what`
        and the DUT log's path (`DutLog.wait_until`)."""
        return self.log.wait_until(cond, timeout, what, interval)


FLASHED = "flashed.json"  # written by `chub flash --board unix` beside the flash file


class EmulatedSystem(HubControl):
    """With no image, a workdir that `chub flash --board unix --port WORKDIR`
    flashed boots from its flash; otherwise the unix image is built.

    living=True (`chub sim`, the plugin's `chub_system`): the system lives on
    its own once ready: the GPF holds the test DCC anchors like the CHF, the
    ESME answers the hub's commands and the GSME wakes every `gsme_wake_s`
    seconds (hil.meters.living: default 1800, a real GSME's interval) to
    report its readings to the GPF's mirror and collect its buffered
    commands (`self.meters`)."""

    def __init__(self, workdir: Path, heap: str | None = None, image: Path | None = None, fresh: bool = False,
                 living: bool = False, gsme_wake_s: float | None = None, flash_blocks: int = 256):
        self.workdir = Path(workdir)
        self.flash_blocks = flash_blocks  # 4 KB blocks of the emulated flash
        self.heap = heap
        self.image = image
        self.fresh = fresh
        self.from_flash = False
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = DutLog(self.workdir / "dut.log")
        self.rig: Rig | None = None
        self.dut: UnixDut | None = None
        self.boot_to_ready_s: float | None = None
        self.living = living
        self.gsme_wake_s = gsme_wake_s
        self.meters: LivingMeters | None = None

    def start(self, ready_timeout: float = 30.0) -> EmulatedSystem:
        if self.fresh:
            from .han_setup import NVM_FILE

            # blank flash, and a blank NCP (its NVM file in the workdir)
            for name in ("flash.bin", FLASHED, NVM_FILE):
                (self.workdir / name).unlink(missing_ok=True)
        self.from_flash = self.image is None and (self.workdir / FLASHED).exists()
        if self.image is None and not self.from_flash:
            from chubcore.build import build

            self.image = build("unix", out=self.workdir / "image").path
        self.rig = Rig(self.log).start()
        self.dut = UnixDut(self.image, self.workdir, self.rig, self.log, heap=self.heap, from_flash=self.from_flash,
                           flash_blocks=self.flash_blocks)
        attach_peripherals(self)
        pos = self.log.position
        self.dut.start()
        try:
            self.boot_to_ready_s = self.dut.wait_ready(ready_timeout, after=pos)
        except BaseException:
            self.stop()
            raise
        he = provision_wan(self)  # the hub's keys to the head-end, test DCC anchors to the hub
        if self.living and he is not None:
            # the GPF's trust anchor cells too (a supplier command to the GPF is accepted like one to the CHF)
            self.call("provision_test_dcc", timeout=40, anchors=he.test_dcc_anchors(), device="gpf")
            self._first_gpf_read(he)
        self.han.after_ready()  # the demo HAN (chub sim): four devices added and joined
        if self.living:
            from .meters.living import GSME_WAKE_S, LivingMeters

            wake = GSME_WAKE_S if self.gsme_wake_s is None else self.gsme_wake_s
            acb = he.acb_ka.public_key() if he is not None else None  # the DCC the ESME reports to
            self.meters = LivingMeters(wake, acb_ka_pub=acb).start(self.han)
        return self

    def _first_gpf_read(self, he: Any) -> None:
        """The head-end's first read of the GPF (RTDS GCS13a, protected for
        this hub) while the heap is young: the GPF's use cases load now, not
        late on a fragmented heap (docs/proof.md, the eighth name pool)."""
        from chubcore.paths import vectors_dir

        rtds = vectors_dir() / "gbcs/rtds/4.1.1_GCS13a/GCS13a_4.1.1_SUCCESS_RELIABLE_GPF_COMMAND_GBCS.HEX"
        if rtds.exists():
            raw, _ = he.rebuild(bytes.fromhex(rtds.read_text()))
            self.call("send_gbcs", timeout=40, frame=raw.hex())

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

    @property
    def local_port_url(self) -> str:
        assert self.rig is not None
        return self.rig.local_port_url

    def stop(self) -> None:
        self.drop_connection()
        if self.meters is not None:
            self.meters.stop(self.han)
        if self.dut:
            self.dut.stop()
        if self.rig:
            self.rig.stop()
        self.log.close()

    def __enter__(self) -> EmulatedSystem:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
