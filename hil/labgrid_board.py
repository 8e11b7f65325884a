"""The emulated board as a labgrid bench: what a labgrid exporter exports.

`python -m hil.labgrid_board --exporter-config FILE GROUP [GROUP ...]` powers
nothing on: per GROUP it builds one emulated board (the unix port on a built
image, `hil.dut.UnixDut`, its own flash file) and serves its wires on
127.0.0.1 the way a bench's rig PC serves a real board's:

* `console`: the board's console/local port (the rig's local-port bridge),
  raw TCP;
* `ncp`, `modem`: the board's NCP and modem UARTs, each a raw TCP port whose
  one client is the far end of that UART (on the bench: the USB-serial
  adapter wired to it; the test side's rig attaches its NCP and SIM7600
  emulators there through `hil.dut.UartBridge`);
* `power`: the board's power switch, an HTTP endpoint in the shape of
  labgrid's `simplerest` power backend: GET `/power/1` boots the board on its
  kept flash, GET `/power/0` cuts its power (SIGKILL, as `dut.power_cut()`),
  GET `/power` answers `1` or `0`.

It writes FILE, a labgrid exporter configuration with one group per board
(`NetworkSerialPort` console/ncp/modem with `protocol: raw`, and a
`NetworkPowerPort` of model `simplerest`), prints one JSON line (the groups
and their ports) when everything listens, and runs until SIGINT/SIGTERM.
Then `labgrid-exporter FILE` exports the groups as any rig PC's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .dut import UnixDut
from .log import DutLog
from .rig import Rig

WIRES = ("ncp", "modem")


class Wire:
    """One of the board's peripheral UARTs as a raw TCP port. The board's end
    is its connection to the rig (`rig.attach(uart, wire.board)`), the far
    end the one client of the listening port (a newer client replaces an
    older one, as a re-plugged adapter would). Bytes either end sends while
    the other is absent are lost, as on an unwired UART."""

    def __init__(self, uart: str, log: DutLog):
        self.uart, self.log = uart, log
        self.port = 0
        self._board: asyncio.StreamWriter | None = None
        self._far: asyncio.StreamWriter | None = None

    async def listen(self) -> Wire:
        srv = await asyncio.start_server(self._far_end, "127.0.0.1", 0)
        self.port = srv.sockets[0].getsockname()[1]
        return self

    async def board(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._board = writer
        try:
            while data := await reader.read(4096):
                far = self._far
                if far is not None and not far.is_closing():
                    far.write(data)
        finally:
            if self._board is writer:
                self._board = None

    async def _far_end(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._far is not None:
            self._far.close()
        self._far = writer
        self.log.write("rig", f"{self.uart} wire: far end connected")
        try:
            while data := await reader.read(4096):
                b = self._board
                if b is not None and not b.is_closing():
                    b.write(data)
        except (ConnectionError, OSError):
            pass
        finally:
            if self._far is writer:
                self._far = None
            writer.close()
            self.log.write("rig", f"{self.uart} wire: far end gone")


class LabBoard:
    """One emulated board with its wires and power switch, powered off."""

    def __init__(self, group: str, image: Path, workdir: Path, heap: str | None = None):
        self.group = group
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = DutLog(self.workdir / "board.log")
        self.rig = Rig(self.log)
        self.dut = UnixDut(image, self.workdir, self.rig, self.log, heap=heap)
        self.wires: dict[str, Wire] = {}
        self._power_lock = threading.Lock()
        self._http: ThreadingHTTPServer | None = None

    def start(self) -> LabBoard:
        self.rig.start()
        for uart in WIRES:
            w = self.rig.call(Wire(uart, self.log).listen())
            self.rig.attach(uart, w.board)
            self.wires[uart] = w
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _power_handler(self))
        threading.Thread(target=self._http.serve_forever, name=f"power-{self.group}", daemon=True).start()
        return self

    @property
    def ports(self) -> dict[str, int]:
        assert self._http is not None
        return {"console": self.rig.bridge_port, **{u: w.port for u, w in self.wires.items()},
                "power": self._http.server_address[1]}

    def power(self, on: bool) -> None:
        """Switch the board's supply. Off returns once the rig has seen all of
        the board's connections close (a client then reaches the next boot)."""
        with self._power_lock:
            if on and not self.dut.alive:
                self.dut.start()
            elif not on and self.dut.alive:
                self.dut.power_cut()
                deadline = time.monotonic() + 5
                while any(self.rig.connected.values()) and time.monotonic() < deadline:
                    time.sleep(0.01)

    def exporter_group(self) -> dict:
        """This board's group of the exporter configuration."""
        p = self.ports
        group: dict = {
            name: {"cls": "NetworkSerialPort", "host": "127.0.0.1", "port": p[name], "protocol": "raw", "speed": 115200}
            for name in ("console", *WIRES)
        }
        group["power"] = {"cls": "NetworkPowerPort", "model": "simplerest",
                          "host": f"http://127.0.0.1:{p['power']}/power/{{value}}", "index": 0}
        return group

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        self.dut.stop()
        self.rig.stop()
        self.log.close()


def _power_handler(board: LabBoard) -> type[BaseHTTPRequestHandler]:
    class Power(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path.rstrip("/")
            if path in ("/power/0", "/power/1"):
                board.power(path.endswith("1"))
                body = path[-1]
            elif path == "/power":
                body = "1" if board.dut.alive else "0"
            else:
                self.send_error(404, "GET /power, /power/0 or /power/1")
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
            board.log.write("rig", "power switch: " + format % args)

    return Power


def exporter_config(boards: list[LabBoard]) -> str:
    """The labgrid exporter configuration for these boards (JSON is YAML)."""
    return json.dumps({b.group: b.exporter_group() for b in boards}, indent=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hil.labgrid_board", description=__doc__.splitlines()[0])
    ap.add_argument("groups", nargs="+", metavar="GROUP", help="one emulated board per exporter group")
    ap.add_argument("--exporter-config", required=True, type=Path, help="the exporter YAML to write")
    ap.add_argument("--workdir", type=Path, default=Path(".chub/labgrid"), help="boards' flash and logs: WORKDIR/GROUP")
    ap.add_argument("--image", type=Path, default=None, help="a built unix image (default: build one)")
    ap.add_argument("--heap", default=None)
    args = ap.parse_args(argv)
    image = args.image
    if image is not None and not (image / "main.py").is_file():
        print(f"error: {image} is not a built unix image (no main.py)", file=sys.stderr)
        return 2
    if image is None:
        from chubcore.build import build

        image = build("unix", out=args.workdir / "image").path
    boards: list[LabBoard] = []
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        for g in args.groups:
            boards.append(LabBoard(g, image, args.workdir / g, heap=args.heap).start())
        args.exporter_config.write_text(exporter_config(boards) + "\n")
        print(json.dumps({"exporter_config": str(args.exporter_config),
                          "boards": {b.group: b.ports for b in boards}}), flush=True)
        stop.wait()
    finally:
        for b in boards:
            b.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
