"""The HIL rig: listens for the DUT's UART connections on 127.0.0.1 and hosts
the emulated peripherals (NCP+HAN, modem+network, head-end) behind them.

The rig's asyncio loop runs in its own thread so that tests and the CLI can
stay synchronous; `rig.call(coro)` runs a coroutine on the rig's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any

from .log import DutLog

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
UART_NAMES = ("ncp", "modem", "local", "ctl")


class Rig:
    def __init__(self, log: DutLog):
        self.log = log
        self.handlers: dict[str, Handler] = {}
        self.ports: dict[str, int] = {}
        self.bridge_port = 0
        self.connected: dict[str, bool] = dict.fromkeys(UART_NAMES, False)
        self._open: dict[str, int] = dict.fromkeys(UART_NAMES, 0)  # connections per UART (a reboot overlaps)
        self.resets: list[str] = []
        self.wdt_feeds = 0  # the board's watchdog feeds (a unix board config with "watchdog_ms")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rig", daemon=True)
        self._servers: list[asyncio.AbstractServer] = []
        self._ctl_writer: asyncio.StreamWriter | None = None
        self._local: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._local_ready = asyncio.Event()
        self._reset_listeners: list[Callable[[str], None]] = []

    # --- life cycle -------------------------------------------------------
    def start(self) -> Rig:
        self._thread.start()
        self.call(self._start())
        return self

    async def _start(self) -> None:
        for name in UART_NAMES:
            srv = await asyncio.start_server(self._make_accept(name), "127.0.0.1", 0)
            self._servers.append(srv)
            self.ports[name] = srv.sockets[0].getsockname()[1]
        srv = await asyncio.start_server(self._bridge_client, "127.0.0.1", 0)
        self._servers.append(srv)
        self.bridge_port = srv.sockets[0].getsockname()[1]
        self.log.write("rig", f"listening: {json.dumps(self.ports)} local-port bridge {self.bridge_port}")

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self.call(self._stop(), timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    async def _stop(self) -> None:
        for srv in self._servers:
            srv.close()
        # a connection accepted just before the servers closed gets its
        # handler task only now: cancel until none is left, so no handler is
        # left half-run when the loop stops (it would end at garbage collection,
        # after the log is closed)
        for _ in range(5):
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if not tasks:
                break
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        fut: Future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(timeout)

    # --- what the DUT sees ------------------------------------------------
    @property
    def local_port_url(self) -> str:
        return f"socket://127.0.0.1:{self.bridge_port}"

    @property
    def local_peer(self) -> tuple[str, int] | None:
        """The DUT end (host, port) of the local-port connection the bridge
        serves now; None while no DUT is connected there."""
        local = self._local
        return None if local is None else local[1].get_extra_info("peername")

    def board_uarts(self) -> dict[str, int]:
        return dict(self.ports)

    def attach(self, uart: str, handler: Handler) -> None:
        """Put an emulated peripheral on a UART (e.g. the NCP emulator on "ncp")."""
        if uart not in ("ncp", "modem"):
            raise ValueError(f"peripherals attach to ncp or modem, not {uart!r}")
        self.handlers[uart] = handler

    def _make_accept(self, name: str) -> Handler:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._open[name] += 1
            self.connected[name] = True
            self.log.write("rig", f"DUT connected on {name}")
            try:
                if name == "ctl":
                    await self._ctl(reader, writer)
                elif name == "local":
                    await self._local_uart(reader, writer)
                else:
                    await self.handlers.get(name, self._idle(name))(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            except asyncio.CancelledError:
                # the rig is shutting down; ending quietly keeps asyncio's
                # stream callback from reporting the cancellation as an error
                return
            finally:
                self._open[name] -= 1
                self.connected[name] = self._open[name] > 0
                self.log.write("rig", f"DUT disconnected from {name}")
                writer.close()

        return accept

    def _idle(self, name: str) -> Handler:
        async def idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            # no emulator on this UART yet: swallow and count what the DUT sends
            total = 0
            while data := await reader.read(4096):
                total += len(data)
            self.log.write(name, f"{total} bytes received with no peripheral attached")

        return idle

    # --- the board's control line ----------------------------------------
    async def _ctl(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._ctl_writer = writer
        while line := await reader.readline():
            try:
                msg = json.loads(line)
            except ValueError:
                self.log.write("rig", f"bad control line {line!r}")
                continue
            if "wdt" in msg:
                self.wdt_feeds = msg["wdt"]
            if "reset" in msg:
                self.resets.append(msg["reset"])
                self.log.write("rig", f"DUT pulled the reset line of {msg['reset']}")
                for fn in self._reset_listeners:
                    fn(msg["reset"])
        self._ctl_writer = None

    def on_reset(self, fn: Callable[[str], None]) -> None:
        self._reset_listeners.append(fn)

    def send_ctl(self, msg: dict) -> None:
        async def send() -> None:
            if self._ctl_writer is None:
                raise RuntimeError("the DUT's control line is not connected")
            self._ctl_writer.write(json.dumps(msg).encode() + b"\n")
            await self._ctl_writer.drain()

        self.call(send())

    def set_rtc_offset(self, seconds: int) -> None:
        self.send_ctl({"rtc_offset": int(seconds)})

    def power_fail(self) -> None:
        self.send_ctl({"power_fail": True})

    # --- the local port: the DUT's console UART, bridged to a client ------
    async def _local_uart(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mine = (reader, writer)
        self._local = mine
        self._local_ready.set()
        try:
            await self._park(reader)
        finally:
            # a rebooted DUT may have connected again already: leave its
            # connection alone (clearing it here refused the next client)
            if self._local is mine:
                self._local = None
                self._local_ready.clear()

    async def _park(self, reader: asyncio.StreamReader) -> None:
        # the bridge reads from the DUT while a client is attached; otherwise
        # wait here until the DUT hangs up
        while not reader.at_eof():
            await asyncio.sleep(0.1)

    async def _bridge_client(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        local = None
        while local is None:
            try:
                await asyncio.wait_for(self._local_ready.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                self.log.write("rig", "local-port client refused: the DUT's local port is not connected")
                cwriter.close()
                return
            local = self._local
            if local is None or local[0].at_eof():
                # the connection of a DUT that just went down: wait for the next one
                local = None
                await asyncio.sleep(0.02)
        dreader, dwriter = local

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(4096):
                dst.write(data)
                await dst.drain()

        up = asyncio.create_task(pipe(creader, dwriter))
        down = asyncio.create_task(pipe(dreader, cwriter))
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        up.cancel()
        down.cancel()
        cwriter.close()
