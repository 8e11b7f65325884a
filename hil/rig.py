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

from chubcore.localport import FrameDecoder, encode_frame

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
        # the local-port bridge (see _local_uart)
        self._clients: set[_Client] = set()
        self._line = asyncio.Lock()
        self._holder: _Client | None = None
        self._last_holder: _Client | None = None
        self._session_owner: _Client | None = None
        self._session_free = asyncio.Event()

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
        """Run `coro` on the rig's loop; its result. At `timeout` the coroutine
        is cancelled and TimeoutError names it (a concurrent future's own
        says nothing); a TimeoutError of the coroutine's own passes as it is."""
        name = getattr(coro, "__qualname__", repr(coro))
        fut: Future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout)
        except TimeoutError as e:
            if fut.done():
                raise
            fut.cancel()
            raise TimeoutError(f"rig: {name} not finished within {timeout} s") from e

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

    # --- the local port: the DUT's console UART, shared by the clients ----
    #
    # The DUT has one console UART; the bridge lets any number of clients use
    # it at once. A client's bytes go to the DUT as they are (malformed input
    # too), but one client at a time: a client holds the line from its first
    # byte until the DUT has answered every request frame it sent (matched by
    # seq) and it has sent nothing more for a moment, so whole request/answer
    # exchanges never interleave. The DUT's answer frames go to the client
    # holding the line (or the last one that held it: a late answer); its
    # console text goes to every client. The hub keeps one installer session:
    # a client that asks for one (auth_challenge) owns it until auth_end or it
    # disconnects, and another client's auth_challenge waits until then (a
    # second challenge would end the first client's session mid-command).
    async def _local_uart(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mine = (reader, writer)
        self._local = mine
        self._local_ready.set()
        dec = FrameDecoder()
        try:
            while data := await reader.read(4096):
                for piece in dec.feed(data):
                    if isinstance(piece, bytearray):
                        for c in list(self._clients):
                            if c.dut is mine:
                                c.send(bytes(piece))
                        continue
                    to = self._holder or self._last_holder
                    if to is not None and to.dut is mine:
                        to.send(encode_frame(piece))
                        to.answered(piece[0] if piece else 0)
        finally:
            # a rebooted DUT may have connected again already: leave its
            # connection alone (clearing it here refused the next client)
            if self._local is mine:
                self._local = None
                self._local_ready.clear()
            for c in list(self._clients):
                if c.dut is mine:
                    c.close()  # its DUT is gone: the client sees the port close

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
        c = _Client(local, cwriter)
        self._clients.add(c)
        reading = asyncio.create_task(self._client_reader(creader, c))
        try:
            await self._client_exchanges(c)
        finally:
            reading.cancel()
            self._clients.discard(c)
            if self._last_holder is c:
                self._last_holder = None
            self._release_session(c)
            c.close()

    async def _client_reader(self, creader: asyncio.StreamReader, c: _Client) -> None:
        try:
            while data := await creader.read(4096):
                c.inbox.put_nowait(data)
        except (ConnectionError, OSError):
            pass
        finally:
            c.inbox.put_nowait(None)

    async def _client_exchanges(self, c: _Client) -> None:
        """Forward the client's bytes, holding the line per exchange."""
        chunk = await c.inbox.get()
        cmds = c.parse(chunk) if chunk is not None else []
        while chunk is not None:
            if "auth_challenge" in cmds:
                await self._take_session(c)
            async with self._line:
                self._holder = c
                try:
                    while True:
                        if c.dut[1].is_closing():
                            return
                        c.dut[1].write(chunk)
                        await c.dut[1].drain()
                        if "auth_end" in cmds:
                            self._release_session(c)
                        chunk = await self._more(c)
                        if chunk is None or chunk is _RELEASE:
                            break
                        cmds = c.parse(chunk)
                        if "auth_challenge" in cmds and self._session_owner not in (None, c):
                            break  # give the line back while waiting for the session
                finally:
                    self._holder = None
                    self._last_holder = c
            if chunk is _RELEASE:
                chunk = await c.inbox.get()
                cmds = c.parse(chunk) if chunk is not None else []

    async def _more(self, c: _Client) -> bytes | None | object:
        """While holding the line: the client's next bytes if they come before
        the hold ends, None if it hung up, _RELEASE when the hold is over
        (every request answered, then a quiet moment; at most HOLD_MAX_S
        waiting for answers)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + HOLD_MAX_S
        while True:
            if c.pending:
                wait = until - loop.time()
                if wait <= 0:
                    self.log.write("rig", f"local-port client: no answer to seq {sorted(c.pending)} in "
                                          f"{HOLD_MAX_S:g} s; the line goes to the next client")
                    c.pending.clear()
                    return _RELEASE
                c.event.clear()
            else:
                # a frame still arriving (or a torn one the DUT times out): longer
                wait = QUIET_PARTIAL_S if c.decoder.buf else QUIET_S
            get = asyncio.ensure_future(c.inbox.get())
            waits: set[asyncio.Future[Any]] = {get}
            answered = asyncio.ensure_future(c.event.wait()) if c.pending else None
            if answered is not None:
                waits.add(answered)
            done, _ = await asyncio.wait(waits, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            if answered is not None:
                answered.cancel()
            if get in done:
                return get.result()
            get.cancel()  # an item put meanwhile stays in the queue
            if answered is None or answered not in done:
                if not c.pending:
                    return _RELEASE  # the quiet moment passed

    async def _take_session(self, c: _Client) -> None:
        while self._session_owner not in (None, c):
            self._session_free.clear()
            await self._session_free.wait()
        self._session_owner = c

    def _release_session(self, c: _Client) -> None:
        if self._session_owner is c:
            self._session_owner = None
            self._session_free.set()

    @property
    def local_clients(self) -> int:
        """Clients connected to the local-port bridge now."""
        return len(self._clients)


HOLD_MAX_S = 120.0  # the longest a client holds the line waiting for answers (a GBCS exchange takes up to ~60 s)
QUIET_S = 0.02  # after the last answer: the client's next request keeps the line if it comes this soon
QUIET_PARTIAL_S = 2.5  # a torn frame: the DUT answers it (status 8) after 2 s
_RELEASE = object()


class _Client:
    """One client of the local-port bridge."""

    def __init__(self, dut: tuple[asyncio.StreamReader, asyncio.StreamWriter], writer: asyncio.StreamWriter) -> None:
        self.dut = dut  # the DUT connection it was accepted on
        self.writer = writer
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.decoder = FrameDecoder()
        self.pending: set[int] = set()  # seqs of request frames not answered yet
        self.event = asyncio.Event()  # set when pending empties

    def parse(self, chunk: bytes) -> list[str]:
        """Note the request frames in these bytes (their seqs are awaited);
        -> their commands ("" when unreadable)."""
        cmds = []
        for piece in self.decoder.feed(chunk):
            if isinstance(piece, bytearray) or not piece:
                continue
            self.pending.add(piece[0])
            try:
                cmd = json.loads(piece[1:]).get("cmd", "")
            except (ValueError, AttributeError):
                cmd = ""
            cmds.append(cmd if isinstance(cmd, str) else "")
        return cmds

    def answered(self, seq: int) -> None:
        if seq in self.pending:
            self.pending.discard(seq)
            if not self.pending:
                self.event.set()

    def send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def close(self) -> None:
        self.writer.close()
