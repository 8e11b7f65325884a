"""Device-under-test backends: `unix` spawns the MicroPython unix port on a built
image (the emulated board); `serial` talks to a real board on any pyserial URL.
Both expose the hub's local port as a URL the client (`chub hht`) can open."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from .log import DutLog
from .mprun import BOARD_UNIX, Micropython, capture
from .rig import Rig

READY = r"hub READY"

FLASHBOOT = Path(__file__).with_name("unix_flashboot.py")


class UnixDut:
    """The emulated board: `micropython -X heapsize=HEAP main.py` on an image
    folder, or (from_flash=True, image None) booting what `chub flash` wrote
    into its flash file (hil/unix_flashboot.py).

    A frozen image (image.json "frozen", the unix32 board) boots as the device
    does: `micropython -m main` with MICROPYPATH=.frozen only, so only the
    code frozen into the binary runs (nothing in the image folder can shadow
    it; sys.path is ["", ".frozen"] and "" is the DUT's own workdir, which
    holds the board config and flash file only). Its binary is `exe`, else
    $CHUB_MICROPYTHON, else the one built beside the image
    (build/BOARD/micropython, chubcore.mpbuild); its heap defaults to the
    image's board's `default_heap`."""

    kind = "unix"

    def __init__(
        self,
        image: Path | None,
        workdir: Path,
        rig: Rig,
        log: DutLog,
        heap: str | None = None,
        flash_blocks: int = 256,
        from_flash: bool = False,
        exe: Path | str | None = None,
        frozen: bool | None = None,
    ):
        if image is None and not from_flash:
            raise ValueError("UnixDut needs an image folder unless it boots from flash")
        self.from_flash = from_flash
        self.image = Path(image) if image is not None else None
        self.workdir = Path(workdir)
        self.rig = rig
        self.log = log
        doc = image_doc(self.image) if self.image is not None else {}
        # frozen=None: as the image says; from flash, the caller says (the binary's code boots)
        self.frozen = bool(doc.get("frozen")) if frozen is None else frozen
        self.board = str(doc.get("board", "unix"))
        if heap is None:
            from chubcore.paths import default_heap

            heap = default_heap(self.board)
        self.heap = heap
        self.exe = exe if exe is not None else (dut_binary(self.image) if self.frozen and self.image else None)
        self.flash_blocks = flash_blocks
        # modules the board imports before the hub starts (the bench's heap
        # figures: with all code loaded first, the live heap above the code's
        # share is the data working set)
        self.preload: list[str] = []
        self.watchdog_ms = 0  # the board config's "watchdog_ms": the WDT stand-in (rig.wdt_feeds), 0: none
        self.flash_path = self.workdir / "flash.bin"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self._threads: list[threading.Thread] = []
        self.boots = 0

    @property
    def local_port_url(self) -> str:
        return self.rig.local_port_url

    def board_config(self, cut_after: int = 0) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        from chubcore.localport import TEST_INSTALLER_KEY

        cfg = {
            "flash": {"path": str(self.flash_path), "blocks": self.flash_blocks, "cut_after": cut_after},
            "uarts": self.rig.board_uarts(),
            "rtc_offset": 0,
            # the emulated board's factory installer credential (the well-known
            # test one): the local port's protected commands work after auth
            "installer_key": TEST_INSTALLER_KEY.hex(),
            # the flash boot ROM puts the binary's frozen code ahead of /flash/lib
            "frozen": self.frozen,
        }
        if self.preload:
            cfg["preload"] = self.preload
        if self.watchdog_ms:
            cfg["watchdog_ms"] = self.watchdog_ms
        path = self.workdir / "board.json"
        path.write_text(json.dumps(cfg, indent=1))
        return path

    def start(self, cut_after: int = 0) -> UnixDut:
        """Power the board on (boot main.py). With cut_after=N power fails at the Nth block write."""
        if self.alive:
            raise RuntimeError("the DUT is already running")
        env = {"CHUB_BOARD": str(self.board_config(cut_after))}
        if self.from_flash:
            # only the ROM (the block device driver) comes from the host; a
            # frozen binary brings its own
            path = [] if self.frozen else [BOARD_UNIX]
            mp = Micropython(path, heap=self.heap, env=env, cwd=self.workdir, exe=self.exe)
            args = [str(FLASHBOOT)]
        elif self.frozen:
            # the device's shape: the frozen main, nothing on the path but .frozen
            mp = Micropython([], heap=self.heap, env=env, cwd=self.workdir, exe=self.exe)
            args = ["-m", "main"]
        else:
            assert self.image is not None
            mp = Micropython([self.image], heap=self.heap, env=env, cwd=self.workdir, exe=self.exe)
            args = [str(self.image / "main.py")]
        self.log.write("rig", f"power on #{self.boots + 1}: {' '.join(mp.argv(args))}")
        self.started_at = time.monotonic()
        self.proc = mp.popen(args)
        self.boots += 1
        self._threads = capture(self.proc, self.log)
        return self

    def wait_ready(self, timeout: float = 20.0, after: int = 0) -> float:
        """Block until the hub logs READY; returns seconds since power-on.
        A hub that dies while booting fails at once, with the log's tail."""
        from .log import ExpectTimeout

        deadline = time.monotonic() + timeout
        while True:
            try:
                self.log.expect(READY, timeout=0.2, after=after)
                return time.monotonic() - self.started_at
            except ExpectTimeout:
                if not self.alive:
                    self._join()
                    raise ExpectTimeout(
                        f"the hub exited (code {self.returncode}) before READY\n"
                        f"--- last lines of {self.log.path} ---\n{self.log.tail()}"
                    ) from None
                if time.monotonic() > deadline:
                    raise

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def power_cut(self) -> None:
        """Lose power now: SIGKILL, no chance to flush anything."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
            self.log.write("rig", "power cut (SIGKILL)")
        self._join()

    def stop(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.log.write("rig", f"DUT stopped (exit {self.proc.returncode})")
        self._join()

    def _join(self) -> None:
        for t in self._threads:
            t.join(timeout=2)
        self._threads = []


def image_doc(image: Path) -> dict:
    """An image folder's image.json ({} when there is none)."""
    f = Path(image) / "image.json"
    return json.loads(f.read_text()) if f.exists() else {}


def dut_binary(image: Path | None) -> str | None:
    """The binary a frozen image boots on: $CHUB_MICROPYTHON when set, else the
    one built beside the image (build/BOARD/micropython), else None (the default)."""
    import os

    from chubcore.paths import MICROPYTHON_ENV

    if os.environ.get(MICROPYTHON_ENV) or image is None:
        return None
    from chubcore.mpbuild import frozen_binary

    exe = frozen_binary(image)
    return str(exe) if exe else None


class UartBridge:
    """One of a real board's peripheral UARTs (wired to a USB-serial adapter
    on the rig machine) joined to the rig's listening port for that UART, so
    the rig's emulator (NCP on "ncp", SIM7600 on "modem") serves the board
    exactly as it serves the emulated board's TCP connection."""

    def __init__(self, url: str, rig: Rig, uart: str, log: DutLog, baudrate: int = 115200, rtscts: bool = False):
        self.url, self.rig, self.uart, self.log = url, rig, uart, log
        self.baudrate, self.rtscts = baudrate, rtscts
        self._ser = None
        self._sock: socket.socket | None = None
        self._stop = threading.Event()

    def start(self) -> UartBridge:
        import serial

        try:
            self._ser = serial.serial_for_url(self.url, baudrate=self.baudrate, rtscts=self.rtscts, timeout=0.05)
        except (serial.SerialException, ValueError) as e:
            raise ConnectionError(f"cannot open the {self.uart} adapter {self.url}: {e}") from e
        self._sock = socket.create_connection(("127.0.0.1", self.rig.ports[self.uart]), timeout=5)
        self._sock.settimeout(None)
        threading.Thread(target=self._up, daemon=True).start()
        threading.Thread(target=self._down, daemon=True).start()
        self.log.write("rig", f"{self.uart} emulator bridged to {self.url}")
        return self

    def _up(self) -> None:  # board -> emulator
        while not self._stop.is_set():
            try:
                data = self._ser.read(4096)
                if data:
                    self._sock.sendall(data)  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001 - adapter unplugged or rig gone
                return

    def _down(self) -> None:  # emulator -> board
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)  # type: ignore[union-attr]
            except OSError:
                return
            if not data:
                return
            try:
                self._ser.write(data)
            except Exception:  # noqa: BLE001
                return

    def stop(self) -> None:
        self._stop.set()
        if self._sock:
            self._sock.close()
        if self._ser:
            self._ser.close()


class SerialDut:
    """A real board on a pyserial URL (`/dev/ttyUSB0`, `socket://`, `rfc2217://`).

    The board's console is also its local port: the DUT owns the serial port,
    logs the console text it sees outside local-port frames, and bridges the
    port to a loopback TCP socket so that clients use the same `socket://` path
    as with the emulated board.
    """

    kind = "serial"

    def __init__(self, url: str, log: DutLog, baudrate: int = 115200):
        self.url = url
        self.log = log
        self.baudrate = baudrate
        self._ser = None
        self._srv: socket.socket | None = None
        self._client: socket.socket | None = None
        self._stop = threading.Event()
        self.started_at = 0.0
        self.bridge_port = 0

    @property
    def local_port_url(self) -> str:
        return f"socket://127.0.0.1:{self.bridge_port}"

    def start(self) -> SerialDut:
        import serial

        try:
            self._ser = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=0.05)
        except (serial.SerialException, ValueError) as e:
            raise ConnectionError(f"cannot open the board's port {self.url}: {e}") from e
        self._srv = socket.create_server(("127.0.0.1", 0))
        self.bridge_port = self._srv.getsockname()[1]
        self.started_at = time.monotonic()
        threading.Thread(target=self._from_board, daemon=True).start()
        threading.Thread(target=self._accept, daemon=True).start()
        self.log.write("rig", f"serial DUT on {self.url}, local port bridged to {self.local_port_url}")
        return self

    def _from_board(self) -> None:
        line = bytearray()
        while not self._stop.is_set():
            try:
                data = self._ser.read(4096)
            except Exception as e:  # noqa: BLE001 - the port went away
                self.log.write("rig", f"serial port error: {e}")
                return
            if not data:
                continue
            if self._client is not None:
                try:
                    self._client.sendall(data)
                except OSError:
                    self._client = None
            for b in data:
                if b == 0x0A:
                    text = bytes(c for c in line if 0x20 <= c < 0x7F or c == 0x09).decode()
                    if text:
                        self.log.write("dut", text)
                    line.clear()
                elif b != 0x0D:
                    line.append(b)

    def _accept(self) -> None:
        assert self._srv is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            self._client = conn
            try:
                while data := conn.recv(4096):
                    self._ser.write(data)
            except OSError:
                pass
            self._client = None
            conn.close()

    def wait_ready(self, timeout: float = 20.0, after: int = 0) -> float:
        """A board may have booted long ago: ready means its local port answers."""
        from chubcore.localport import LocalPortClient

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with LocalPortClient(self.local_port_url, timeout=2) as c:
                    c.call("status")
                return time.monotonic() - self.started_at
            except Exception as e:  # noqa: BLE001 - keep polling until the deadline
                last = e
                time.sleep(0.5)
        raise AssertionError(f"the board on {self.url} did not answer status within {timeout:g} s ({last})\n{self.log.tail()}")

    @property
    def alive(self) -> bool:
        return self._ser is not None and not self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        if self._srv:
            self._srv.close()
        if self._ser:
            self._ser.close()
