"""The SIM7600 emulator's core: the modem state the command
groups read and write, the UART session (line and payload framing, dispatch
through the command table) and the links' data path to the network.

A command group (general, sim, network, packet, sockets, clock, power) is a
table `COMMANDS: {name: handler}` of functions `handler(modem, kind, args)`
over a `ModemCore`; `hil.modem.sim7600` joins the groups into the emulator's
one table. Names are "+CMEE" for extended commands and the bare text ("",
"E0", "I", "&W") for basic ones. `kind` is the form of the command: ""
(action), "?" (read), "=?" (test) or "=" (set, `args` is the text after the
"="). A handler that raises ValueError or IndexError answers ERROR.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

from hil.modem.config import CME_TEXT, MAX_SEND, Link, Sim7600Config, framed

Handler = Callable[["ModemCore", str, str], Awaitable[None] | None]


class ModemCore:
    """State, output, UART session and link data path of one emulated modem.

    The command table is the class attribute COMMANDS, set by the emulator
    class. Tests read the state attributes below; they change it through the
    fault-injection API (hil.modem.faults) and AT commands.
    """

    COMMANDS: ClassVar[Mapping[str, Handler]] = {}

    def __init__(self, config: Sim7600Config | None = None) -> None:
        self.cfg = config or Sim7600Config()
        self._w: asyncio.StreamWriter | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.log: list[tuple[str, bytes]] = []  # ("<<"|">>", bytes) for debugging
        self.commands: list[str] = []  # every command line received
        self.resets = 0
        self._mid: list[str] = []  # URCs to put before the next reply's final result
        self.on_downlink: Callable[[int, bytes], None] | None = None  # fn(link, data) from the network
        self.on_uplink: Callable[[int, bytes], None] | None = None  # fn(link, data) the hub sends
        # the RTC runs on across reboots
        self._rtc_utc: float | None = None  # UTC at _rtc_mono; None = never set
        self.rtc_zone = 0  # quarter hours
        self._rtc_mono = time.monotonic()
        self.cert_files: dict[str, bytes] = {}  # AT+CCERTDOWN: the modem's file system keeps them across boots
        self.tls_errors: list[str] = []  # TLS handshakes and records the SSL sessions refused
        self._power_on_state()

    # ----------------------------------------------------------- state model
    def _power_on_state(self) -> None:
        c = self.cfg
        self.echo = True
        self.cmee = c.cmee
        self.cfun = 1
        self.silent = False  # answers nothing, takes no input
        self.sim = ("SIM PIN" if c.pin else "READY") if c.sim_present else "ABSENT"
        self.pin_left = 3
        self.net_stat = c.reg_stat  # what the network gives a ready SIM
        self.rssi = c.rssi
        self.regn = {"CREG": 0, "CGREG": 0, "CEREG": 0}  # URC mode per registration domain
        self.reg_reported = self.stat()  # the stat the registration URCs last gave
        self.cnmp = 2
        self.pdp: dict[int, tuple[str, str]] = {}  # cid -> (type, APN)
        self.pdp_active = False
        self.netopen = False
        self.rxget_mode = 0  # 0 push, 1 buffer
        self.cipsrip = 1
        self.ciphead = 1
        self.header_type = 0
        self.links: dict[int, Link] = {}
        # the SSL service (hil.modem.tls): started, AT+CCHSET, contexts, sessions
        self.cch_started = False
        self.cch_report = 0
        self.cch_recv_mode = 0
        self.ssl_ctx: dict[int, dict[str, str | int]] = {}
        self.cch_ctx: dict[int, int] = {}  # session -> SSL context
        self.cch: dict[int, Any] = {}  # session -> hil.modem.tls.TlsSession
        self.ctzu = 0
        self.ctzr = 0
        self._send: tuple[int, int] | None = None  # (link, bytes still to come) after the prompt
        self._sink: Callable[[bytes], Awaitable[None]] | None = None  # where that payload goes (None: link)
        self._send_data = b""
        self._send_var: int | None = None  # link of a send ended by Ctrl-Z
        self._inbuf = bytearray()
        self.fail_pdp_style: str | None = None  # see faults.fail_pdp
        self.socket_open_failures: list[int] = []  # errors the next AT+CIPOPENs report
        self.after_read: list[bytes] = []  # data that lands right behind the next AT+CIPRXGET=2
        self.boot_mono = time.monotonic()

    def stat(self) -> int:
        """The registration status the modem reports now (<stat> of +CREG)."""
        if self.cfun != 1 or self.sim != "READY":
            return 0
        return self.net_stat

    def registered(self) -> bool:
        return self.stat() in (1, 5)

    def clock_utc(self) -> float | None:
        """The RTC as UTC seconds; None when it was never set."""
        if self._rtc_utc is None:
            return None
        return self._rtc_utc + (time.monotonic() - self._rtc_mono)

    def set_clock(self, utc: float | None, zone_quarters: int = 0) -> None:
        """Set the modem RTC (None = never set)."""
        self._rtc_utc = utc
        self.rtc_zone = zone_quarters
        self._rtc_mono = time.monotonic()

    # ------------------------------------------------------------- output
    def write(self, data: bytes) -> None:
        """Bytes to the hub (nothing while silent or unconnected)."""
        if self._w is None or self.silent:
            return
        self.log.append(("<<", data))
        self._w.write(data)

    def urc(self, *lines: str | bytes) -> None:
        self.write(b"".join(framed(x) for x in lines))

    def urc_in_next_reply(self, line: str) -> None:
        """Put a URC between the information lines and the final result of the next reply."""
        self._mid.append(line)

    def reply(self, *lines: str | bytes, final: str = "OK") -> None:
        """Information lines, any URCs queued for the reply, then the final result."""
        out = b"".join(framed(x) for x in lines)
        out += b"".join(framed(x) for x in self._mid)
        self._mid.clear()
        if final:
            out += framed(final)
        self.write(out)

    def cme(self, code: int) -> None:
        """A +CME ERROR in the form AT+CMEE selects."""
        if self.cmee == 0:
            self.reply(final="ERROR")
        elif self.cmee == 1:
            self.reply(final=f"+CME ERROR: {code}")
        else:
            self.reply(final=f"+CME ERROR: {CME_TEXT.get(code, str(code))}")

    async def reply_open(self, result: Callable[[], Awaitable[str]]) -> None:
        """An open command's answer (AT+CIPOPEN, AT+CCHOPEN): OK at once and
        the result line as a URC when the connection is made
        (cfg.ok_before_result, as the SIM7600 does), or the result line in
        the reply itself."""
        if self.cfg.ok_before_result:
            self.reply()

            async def send_result() -> None:
                self.urc(await result())

            self.later(0, send_result)
        else:
            self.reply(await result())

    def later(self, delay: float, fn: Callable[[], Awaitable[None] | None]) -> None:
        """Run fn after delay seconds as a task of the emulator."""

        async def run() -> None:
            if delay:
                await asyncio.sleep(delay)
            r = fn()
            if r is not None:
                await r

        t = asyncio.ensure_future(run())
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------- session
    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Run the modem side of one UART connection until it closes."""
        self._w = writer
        if self.cfg.boot_on_connect:
            self.later(self.cfg.boot_delay, self._boot_urcs)
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                self.log.append((">>", data))
                self._inbuf += data
                await self._process()
        except OSError:  # the hub side went away
            pass
        finally:
            if self._w is writer:
                self._w = None
            writer.close()

    def _boot_urcs(self) -> None:
        lines = ["RDY"]
        if self.sim == "READY":
            lines += ["+CPIN: READY", "SMS DONE", "PB DONE"]
        elif self.sim == "SIM PIN":
            lines += ["+CPIN: SIM PIN"]
        self.urc(*lines)

    def reboot(self) -> None:
        """Links and SSL sessions closed, power-on state, boot URCs after cfg.boot_delay."""
        self.close_links()
        for s in self.cch.values():
            s.close(urc=False)
        self.resets += 1
        self._power_on_state()
        self.later(self.cfg.boot_delay, self._boot_urcs)

    def expect_payload(self, link: int, count: int | None,
                       sink: Callable[[bytes], Awaitable[None]] | None = None) -> None:
        """After the '>' prompt the hub's next `count` bytes (None: bytes up to
        Ctrl-Z; Esc cancels) go out on `link` (or to `sink(data)`: an SSL
        session, a certificate file) instead of being read as commands."""
        if count is None:
            self._send_var = link
        else:
            self._send = (link, count)
            self._send_data = b""
            self._sink = sink

    async def _process(self) -> None:
        buf = self._inbuf
        while buf:
            if self.silent:
                buf.clear()
                return
            if self._send is not None:
                link, need = self._send
                take = bytes(buf[:need])
                del buf[:need]
                need -= len(take)
                self._send_data += take
                if need:
                    self._send = (link, need)
                    return
                self._send = None
                sink, self._sink = self._sink, None
                if sink is not None:
                    await sink(self._send_data)
                else:
                    await self._finish_send(link, self._send_data)
                continue
            if self._send_var is not None:
                i = buf.find(b"\x1a")
                j = buf.find(b"\x1b")
                if j >= 0 and (i < 0 or j < i):
                    del buf[: j + 1]
                    self._send_var = None
                    self.reply()
                    continue
                if i < 0:
                    return
                data = bytes(buf[:i])
                del buf[: i + 1]
                link = self._send_var
                self._send_var = None
                await self._finish_send(link, data)
                continue
            i = min((k for k in (buf.find(b"\r"), buf.find(b"\n")) if k >= 0), default=-1)
            if i < 0:
                if len(buf) > 4096:
                    buf.clear()
                return
            raw = bytes(buf[:i])
            del buf[: i + 1]
            line = raw.strip()
            if not line:
                continue
            if self.echo:
                self.write(line + b"\r")
            await self._command(line.decode("latin-1"))

    async def _command(self, line: str) -> None:
        self.commands.append(line)
        up = line.upper()
        if not up.startswith("AT"):
            self.reply(final="ERROR")
            return
        body = line[2:]
        ub = up[2:]
        if not ub.startswith("+"):  # basic command: the whole text is its name
            name, kind, args = ub, "", ""
        else:
            k = 1
            while k < len(ub) and (ub[k].isalnum()):
                k += 1
            name = ub[:k]
            rest = body[k:]
            if rest == "?":
                kind, args = "?", ""
            elif rest == "=?":
                kind, args = "=?", ""
            elif rest.startswith("="):
                kind, args = "=", rest[1:]
            elif rest == "":
                kind, args = "", ""
            else:
                self.reply(final="ERROR")
                return
        fn = self.COMMANDS.get(name)
        if fn is None:
            self.reply(final="ERROR")
            return
        try:
            r = fn(self, kind, args)
            if r is not None:
                await r
        except (ValueError, IndexError):
            self.reply(final="ERROR")

    # ------------------------------------------------------------- link data path
    def open_link(self, n: int, lk: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The connection behind link n is up: start passing its data to the hub."""
        lk.writer = writer
        lk.open = True
        ph, pp = writer.get_extra_info("peername")[:2]
        lk.peer = f"{ph}:{pp}"
        lk.task = asyncio.ensure_future(self._link_rx(n, lk, reader))

    async def _link_rx(self, n: int, lk: Link, r: asyncio.StreamReader) -> None:
        try:
            while True:
                data = await r.read(4096)
                if not data:
                    break
                self.deliver(n, lk, data)
        except (OSError, asyncio.CancelledError):
            return
        if lk.open:  # the far end closed it
            lk.open = False
            if lk.writer:
                lk.writer.close()
            self.urc(f"+IPCLOSE: {n},1")

    def deliver(self, n: int, lk: Link, data: bytes) -> None:
        """Data from the network on link n: buffered with a +CIPRXGET: 1 URC, or pushed."""
        if self.on_downlink is not None:
            self.on_downlink(n, data)
        if self.rxget_mode == 1:
            was_empty = not lk.rx
            lk.rx += data
            if was_empty:
                self.urc(f"+CIPRXGET: 1,{n}")
            return
        for i in range(0, len(data), MAX_SEND):
            part = data[i:i + MAX_SEND]
            out = b""
            if self.cipsrip:
                out += framed(f"RECV FROM:{lk.peer}")
            if self.ciphead:
                out += framed(f"+RECEIVE,{n},{len(part)}" if self.header_type == 1 else f"+IPD{len(part)}")
            else:
                out += b"\r\n"
            self.write(out + part)

    async def _finish_send(self, link: int, data: bytes) -> None:
        if self.on_uplink is not None:
            self.on_uplink(link, data)
        lk = self.links.get(link)
        if lk is None or not lk.open or lk.writer is None:
            self.reply(final="+CIPERROR: 4")
            return
        lk.writer.write(data)
        await lk.writer.drain()
        self.reply()
        self.urc(f"+CIPSEND: {link},{len(data)},{len(data)}")

    def close_link(self, lk: Link) -> None:
        lk.open = False
        if lk.writer is not None:
            lk.writer.close()
        if lk.task is not None:
            lk.task.cancel()

    def close_links(self) -> None:
        for lk in self.links.values():
            if lk.open:
                self.close_link(lk)
        self.links.clear()

    async def close(self) -> None:
        """Close every link and stop the emulator's tasks."""
        self.close_links()
        for t in list(self._tasks):
            t.cancel()
