"""SIM7600 modem emulator (dialect: vectors/modem/SIM7600.md).

Serves one hub over an asyncio (reader, writer) pair (the hub's modem UART);
`AT+CIPOPEN` opens real TCP connections on 127.0.0.1 to the port the hub asks
(optionally remapped), so the head-end emulator can listen there. Fault
injection methods model the transcripts of §9; every delay is configurable
and zero by default.
"""

from __future__ import annotations

import asyncio
import calendar
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

CME_TEXT = {
    3: "operation not allowed", 4: "operation not supported", 10: "SIM not inserted",
    11: "SIM PIN required", 12: "SIM PUK required", 13: "SIM failure", 14: "SIM busy",
    16: "incorrect password", 30: "no network service", 100: "unknown",
    148: "unspecified GPRS error", 149: "PDP authentication failure",
}
CNMP_MODES = (2, 9, 10, 13, 14, 19, 22, 38, 39, 48, 51, 54, 59, 60, 63, 67)
CNMP_LIST = "(2,9-10,13-14,19,22,38-39,48,51,54,59-60,63,67)"
MAX_SEND = 1500
NET_CLOSED = "+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY"


@dataclass
class Sim7600Config:
    revision: str = "LE20B04SIM7600G22"
    model: str = "SIMCOM_SIM7600G-H"
    iccid: str = "8944500000000000000F"
    imsi: str = "234500000000000"
    imei: str = "862636050029311"
    operator: str = "Operator"
    plmn: str = "234-50"
    tac: int = 0x1A2D
    cell: int = 27447574
    cpsi_tail: str = "301,EUTRAN-BAND20,6300,3,3,-105,-951,-652,12"
    ip: str = "10.64.12.34"
    rssi: int = 21
    reg_stat: int = 1  # what the network would give a ready SIM
    pin: str | None = None  # SIM locked with this PIN at boot
    sim_present: bool = True
    cmee: int = 0  # factory default not confirmed: the driver must set it
    connect_host: str = "127.0.0.1"
    port_map: dict[int, int] = field(default_factory=dict)
    boot_delay: float = 0.0
    netopen_delay: float = 0.0
    cipopen_delay: float = 0.0
    ok_before_result: bool = True  # OK then +CIPOPEN/+CIPCLOSE (S3 shows both orders)
    ipclose_on_drop: bool = True  # +IPCLOSE before +CIPEVENT on a network drop
    prompt: bytes = b"\r\n>"
    boot_on_connect: bool = True


@dataclass
class Link:
    host: str
    port: int
    writer: asyncio.StreamWriter | None = None
    task: asyncio.Task[None] | None = None
    rx: bytearray = field(default_factory=bytearray)
    open: bool = False
    peer: str = ""


def _framed(line: str | bytes) -> bytes:
    b = line.encode() if isinstance(line, str) else line
    return b"\r\n" + b + b"\r\n"


class Sim7600Emulator:
    def __init__(self, config: Sim7600Config | None = None) -> None:
        self.cfg = config or Sim7600Config()
        self._w: asyncio.StreamWriter | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.log: list[tuple[str, bytes]] = []  # ("<<"|">>", bytes) for debugging
        self.commands: list[str] = []
        self.resets = 0
        self._mid: list[str] = []
        self._power_on_state()

    # ----------------------------------------------------------- state model
    def _power_on_state(self) -> None:
        c = self.cfg
        self.echo = True
        self.cmee = c.cmee
        self.cfun = 1
        self.silent = False
        self.sim = ("SIM PIN" if c.pin else "READY") if c.sim_present else "ABSENT"
        self.pin_left = 3
        self.net_stat = c.reg_stat
        self.rssi = c.rssi
        self.regn = {"CREG": 0, "CGREG": 0, "CEREG": 0}
        self._reported = self._stat()
        self.cnmp = 2
        self.pdp: dict[int, tuple[str, str]] = {}
        self.pdp_active = False
        self.netopen = False
        self.rxget_mode = 0
        self.cipsrip = 1
        self.ciphead = 1
        self.header_type = 0
        self.links: dict[int, Link] = {}
        self.ctzu = 0
        self.ctzr = 0
        self._send: tuple[int, int] | None = None  # (link, count) after the prompt
        self._send_var: int | None = None
        self._inbuf = bytearray()
        self.fail_pdp_style: str | None = None
        self._sock_fail: list[int] = []
        self._after_read: list[bytes] = []
        if not hasattr(self, "_rtc_utc"):
            self._rtc_utc: float | None = None  # UTC at _rtc_mono; None = never set
            self._rtc_zone = 0
            self._rtc_mono = time.monotonic()
        self._boot_mono = time.monotonic()

    def _stat(self) -> int:
        if self.cfun != 1 or self.sim != "READY":
            return 0
        return self.net_stat

    def _registered(self) -> bool:
        return self._stat() in (1, 5)

    # ------------------------------------------------------------- output
    def _write(self, data: bytes) -> None:
        if self._w is None or self.silent:
            return
        self.log.append(("<<", data))
        self._w.write(data)

    def urc(self, *lines: str | bytes) -> None:
        self._write(b"".join(_framed(x) for x in lines))

    def _reply(self, *lines: str | bytes, final: str = "OK") -> None:
        out = b"".join(_framed(x) for x in lines)
        out += b"".join(_framed(x) for x in self._mid)
        self._mid.clear()
        if final:
            out += _framed(final)
        self._write(out)

    def _cme(self, code: int) -> None:
        if self.cmee == 0:
            self._reply(final="ERROR")
        elif self.cmee == 1:
            self._reply(final=f"+CME ERROR: {code}")
        else:
            self._reply(final=f"+CME ERROR: {CME_TEXT.get(code, str(code))}")

    def _later(self, delay: float, fn: Callable[[], Awaitable[None] | None]) -> None:
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
            self._later(self.cfg.boot_delay, self._boot_urcs)
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
                await self._finish_send(link, self._send_data)
                continue
            if self._send_var is not None:
                i = buf.find(b"\x1a")
                j = buf.find(b"\x1b")
                if j >= 0 and (i < 0 or j < i):
                    del buf[: j + 1]
                    self._send_var = None
                    self._reply()
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
                self._write(line + b"\r")
            await self._command(line.decode("latin-1"))

    # ------------------------------------------------------------- commands
    async def _command(self, line: str) -> None:
        self.commands.append(line)
        up = line.upper()
        if not up.startswith("AT"):
            self._reply(final="ERROR")
            return
        body = line[2:]
        ub = up[2:]
        if ub == "":
            self._reply()
            return
        if ub in ("E0", "E1"):
            self.echo = ub == "E1"
            self._reply()
            return
        if ub in ("&W", "&W0", "Z", "Z0"):
            self._reply()
            return
        if ub == "I":
            c = self.cfg
            self._reply("Manufacturer: SIMCOM INCORPORATED", f"Model: {c.model}", f"Revision: {c.revision}",
                        "QCN:", f"IMEI: {c.imei}", "MEID:", "+GCAP: +CGSM", "DeviceInfo: 173,170")
            return
        if not ub.startswith("+"):
            self._reply(final="ERROR")
            return
        name = ""
        k = 1
        while k < len(ub) and (ub[k].isalnum()):
            k += 1
        name = ub[1:k]
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
            self._reply(final="ERROR")
            return
        fn = getattr(self, f"_at_{name.lower()}", None)
        if fn is None:
            self._reply(final="ERROR")
            return
        try:
            r = fn(kind, args)
            if r is not None:
                await r
        except (ValueError, IndexError):
            self._reply(final="ERROR")

    @staticmethod
    def _args(args: str) -> list[str]:
        out: list[str] = []
        cur = ""
        q = False
        for ch in args:
            if ch == '"':
                q = not q
            elif ch == "," and not q:
                out.append(cur.strip())
                cur = ""
            else:
                cur += ch
        out.append(cur.strip())
        return out

    # -- general
    def _at_cmee(self, kind: str, args: str) -> None:
        if kind == "=" and args in ("0", "1", "2"):
            self.cmee = int(args)
            self._reply()
        elif kind == "?":
            self._reply(f"+CMEE: {self.cmee}")
        else:
            self._reply(final="ERROR")

    def _at_cgmr(self, kind: str, args: str) -> None:
        self._reply(f"+CGMR: {self.cfg.revision}")

    def _at_cgmi(self, kind: str, args: str) -> None:
        self._reply("SIMCOM INCORPORATED")

    def _at_cgmm(self, kind: str, args: str) -> None:
        self._reply(self.cfg.model)

    def _at_cgsn(self, kind: str, args: str) -> None:
        self._reply(self.cfg.imei)

    _at_gsn = _at_cgsn

    def _at_simei(self, kind: str, args: str) -> None:
        self._reply(f"+SIMEI: {self.cfg.imei}")

    def _sim_gate(self) -> bool:
        if self.sim == "ABSENT":
            self._cme(10)
            return False
        if self.sim == "SIM PIN":
            self._cme(11)
            return False
        if self.sim == "SIM PUK":
            self._cme(12)
            return False
        return True

    def _at_cimi(self, kind: str, args: str) -> None:
        if self._sim_gate():
            self._reply(self.cfg.imsi)

    def _at_ciccid(self, kind: str, args: str) -> None:
        if self.sim == "ABSENT":
            self._cme(10)
        else:
            self._reply(f"+ICCID: {self.cfg.iccid}")

    def _at_ipr(self, kind: str, args: str) -> None:
        self._reply("+IPR: 115200") if kind == "?" else self._reply()

    def _at_cfun(self, kind: str, args: str) -> None:
        if kind == "?":
            self._reply(f"+CFUN: {self.cfun}")
            return
        a = self._args(args)
        fun = int(a[0])
        if fun == 1 and len(a) > 1 and a[1] == "1" or fun == 6:
            self._reply()
            self._reboot()
            return
        if fun not in (0, 1, 4, 5, 7):
            raise ValueError(fun)
        self._reply()
        self.cfun = fun
        self._reg_changed()

    def _at_creset(self, kind: str, args: str) -> None:
        self._reply()
        self._reboot()

    def _at_cpof(self, kind: str, args: str) -> None:
        self._reply()
        self._close_links()
        self.silent = True

    def _reboot(self) -> None:
        self._close_links()
        self.resets += 1
        self._power_on_state()
        self._later(self.cfg.boot_delay, self._boot_urcs)

    # -- SIM
    def _at_cpin(self, kind: str, args: str) -> None:
        if kind == "?":
            if self.sim == "ABSENT":
                self._cme(10)
            else:
                self._reply(f"+CPIN: {self.sim}")
            return
        if kind != "=":
            raise ValueError
        pin = self._args(args)[0]
        if self.sim == "ABSENT":
            self._cme(10)
            return
        if self.sim == "SIM PIN" and pin == self.cfg.pin:
            self.sim = "READY"
            self.pin_left = 3
            self._reply()
            self.urc("+CPIN: READY", "SMS DONE", "PB DONE")
            self._reg_changed()
            return
        # wrong PIN, or a PIN sent to an unlocked SIM: counts as a wrong attempt
        self.pin_left -= 1
        if self.pin_left <= 0:
            self.sim = "SIM PUK"
        self._cme(16)

    def _at_spic(self, kind: str, args: str) -> None:
        self._reply(f"+SPIC: {self.pin_left},10,3,10")

    # -- network
    def _at_csq(self, kind: str, args: str) -> None:
        if kind == "=?":
            self._reply("+CSQ: (0-31,99),(0-7,99)")
        else:
            self._reply(f"+CSQ: {self.rssi if self.cfun == 1 else 99},99")

    def _loc(self) -> str:
        return f'"{self.cfg.tac:04X}","{self.cfg.cell:08X}"'

    def _reg_cmd(self, dom: str, kind: str, args: str) -> None:
        if kind == "?":
            n = self.regn[dom]
            s = self._stat()
            loc = "," + self._loc() if n == 2 and s in (1, 5) else ""
            self._reply(f"+{dom}: {n},{s}{loc}")
        elif kind == "=" and args in ("0", "1", "2"):
            self.regn[dom] = int(args)
            self._reply()
        elif kind == "=?":
            self._reply(f"+{dom}: (0-2)")
        else:
            self._reply(final="ERROR")

    def _at_creg(self, kind: str, args: str) -> None:
        self._reg_cmd("CREG", kind, args)

    def _at_cgreg(self, kind: str, args: str) -> None:
        self._reg_cmd("CGREG", kind, args)

    def _at_cereg(self, kind: str, args: str) -> None:
        self._reg_cmd("CEREG", kind, args)

    def _reg_changed(self) -> None:
        s = self._stat()
        if s == self._reported:
            return
        self._reported = s
        lines = []
        for dom in ("CREG", "CGREG", "CEREG"):
            n = self.regn[dom]
            if n == 1 or (n == 2 and s not in (1, 5)):
                lines.append(f"+{dom}: {s}")
            elif n == 2:
                lines.append(f"+{dom}: {s},{self._loc()}")
        if lines:
            self.urc(*lines)

    def _at_cops(self, kind: str, args: str) -> None:
        if kind == "?":
            if self.sim == "ABSENT":
                self._cme(30)
            elif self._registered():
                self._reply(f'+COPS: 0,0,"{self.cfg.operator}",7')
            else:
                self._reply("+COPS: 0")
        else:
            self._reply()

    def _at_cpsi(self, kind: str, args: str) -> None:
        if self._registered():
            c = self.cfg
            self._reply(f"+CPSI: LTE,Online,{c.plmn},0x{c.tac:04X},{c.cell},{c.cpsi_tail}")
        else:
            self._reply("+CPSI: NO SERVICE,Online")

    def _at_cnsmod(self, kind: str, args: str) -> None:
        self._reply(f"+CNSMOD: 0,{8 if self._registered() else 0}")

    def _at_cnmp(self, kind: str, args: str) -> None:
        if kind == "?":
            self._reply(f"+CNMP: {self.cnmp}")
        elif kind == "=?":
            self._reply(f"+CNMP: {CNMP_LIST}")
        elif kind == "=" and args.isdigit() and int(args) in CNMP_MODES:
            self.cnmp = int(args)
            self._reply()
        else:
            self._reply(final="ERROR")

    # -- PDP
    def _at_cgdcont(self, kind: str, args: str) -> None:
        if kind == "?":
            self._reply(*(f'+CGDCONT: {cid},"{t}","{apn}","0.0.0.0",0,0,0,0'
                          for cid, (t, apn) in sorted(self.pdp.items())))
        elif kind == "=":
            a = self._args(args)
            cid = int(a[0])
            if not 1 <= cid <= 15:
                raise ValueError(cid)
            self.pdp[cid] = (a[1] if len(a) > 1 else "IP", a[2] if len(a) > 2 else "")
            self._reply()
        else:
            self._reply('+CGDCONT: (1-15),"IP",,,(0-2),(0-1),(0-1),(0-2)')

    def _at_cgatt(self, kind: str, args: str) -> None:
        self._reply(f"+CGATT: {int(self._registered())}") if kind == "?" else self._reply()

    def _at_cgact(self, kind: str, args: str) -> None:
        if kind == "?":
            self._reply(f"+CGACT: 1,{int(self.pdp_active)}")
            return
        a = self._args(args)
        if a[0] == "1" and (self.fail_pdp_style or not self._registered()):
            self._cme(149 if self.fail_pdp_style else 30)
            return
        self.pdp_active = a[0] == "1"
        self._reply()

    def _at_cgpaddr(self, kind: str, args: str) -> None:
        self._reply(f"+CGPADDR: 1,{self.cfg.ip if self.pdp_active or self.netopen else '0.0.0.0'}")

    # -- TCP/IP configuration
    def _store(self, kind: str) -> None:
        self._reply() if kind == "=" else self._reply(final="ERROR")

    def _at_cipmode(self, kind: str, args: str) -> None:
        if kind == "=" and args != "0":
            self._reply(final="ERROR")  # transparent mode is not emulated
        else:
            self._store(kind)

    def _at_cipsendmode(self, kind: str, args: str) -> None:
        self._store(kind)

    def _at_ciptimeout(self, kind: str, args: str) -> None:
        self._store(kind)

    def _at_cipccfg(self, kind: str, args: str) -> None:
        if kind == "=":
            a = self._args(args)
            if len(a) >= 5 and a[4]:
                self.header_type = int(a[4])
        self._store(kind)

    def _at_ciphead(self, kind: str, args: str) -> None:
        self.ciphead = int(args) if kind == "=" else self.ciphead
        self._store(kind)

    def _at_cipsrip(self, kind: str, args: str) -> None:
        self.cipsrip = int(args) if kind == "=" else self.cipsrip
        self._store(kind)

    # -- network library
    def _at_netopen(self, kind: str, args: str) -> None:
        if kind == "?":
            self._reply(f"+NETOPEN: {int(self.netopen)}")
            return
        if self.netopen:
            self._reply("+IP ERROR: Network is already opened", final="ERROR")
            return
        if self.fail_pdp_style == "error":
            self._reply(final="ERROR")
            return
        self._reply()

        def result() -> None:
            ok = self._registered() and self.fail_pdp_style is None
            self.netopen = ok
            self.urc(f"+NETOPEN: {0 if ok else 1}")

        self._later(self.cfg.netopen_delay, result)

    def _at_netclose(self, kind: str, args: str) -> None:
        if not self.netopen:
            self._reply("+NETCLOSE: 2", final="ERROR")
            return
        self._close_links()
        self.netopen = False
        self._reply()
        self.urc("+NETCLOSE: 0")

    def _at_ipaddr(self, kind: str, args: str) -> None:
        if self.netopen:
            self._reply(f"+IPADDR: {self.cfg.ip}")
        else:
            self._reply("+IP ERROR: Network not opened", final="ERROR")

    # -- sockets
    async def _at_cipopen(self, kind: str, args: str) -> None:
        if kind == "?":
            lines = []
            for n in range(10):
                lk = self.links.get(n)
                lines.append(f'+CIPOPEN: {n},"TCP","{lk.host}",{lk.port},-1' if lk and lk.open
                             else f"+CIPOPEN: {n}")
            self._reply(*lines)
            return
        a = self._args(args)
        link = int(a[0])
        if not 0 <= link <= 9 or len(a) < 4:
            raise ValueError(args)
        if a[1].upper() != "TCP":
            self._reply(f"+CIPOPEN: {link},4", final="ERROR")
            return
        host, port = a[2], int(a[3])
        if not self.netopen:
            self._reply(f"+CIPOPEN: {link},2", final="ERROR")
            return
        if link in self.links and self.links[link].open:
            self._reply(f"+CIPOPEN: {link},4", final="ERROR")
            return
        lk = Link(host, port)
        self.links[link] = lk

        async def connect() -> str:
            if self._sock_fail:
                return f"+CIPOPEN: {link},{self._sock_fail.pop(0)}"
            if host.endswith(".invalid"):
                return f"+CIPOPEN: {link},11"
            if self.cfg.cipopen_delay:
                await asyncio.sleep(self.cfg.cipopen_delay)
            try:
                r, w = await asyncio.open_connection(self.cfg.connect_host, self.cfg.port_map.get(port, port))
            except OSError:
                return f"+CIPOPEN: {link},10"
            lk.writer = w
            lk.open = True
            ph, pp = w.get_extra_info("peername")[:2]
            lk.peer = f"{ph}:{pp}"
            lk.task = asyncio.ensure_future(self._link_rx(link, lk, r))
            return f"+CIPOPEN: {link},0"

        if self.cfg.ok_before_result:
            self._reply()

            async def later() -> None:
                self.urc(await connect())

            self._later(0, later)
        else:
            self._reply(await connect())

    async def _link_rx(self, n: int, lk: Link, r: asyncio.StreamReader) -> None:
        try:
            while True:
                data = await r.read(4096)
                if not data:
                    break
                self._deliver(n, lk, data)
        except (OSError, asyncio.CancelledError):
            return
        if lk.open:  # the far end closed it
            lk.open = False
            if lk.writer:
                lk.writer.close()
            self.urc(f"+IPCLOSE: {n},1")

    def _deliver(self, n: int, lk: Link, data: bytes) -> None:
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
                out += _framed(f"RECV FROM:{lk.peer}")
            if self.ciphead:
                out += _framed(f"+RECEIVE,{n},{len(part)}" if self.header_type == 1 else f"+IPD{len(part)}")
            else:
                out += b"\r\n"
            self._write(out + part)

    def _at_cipsend(self, kind: str, args: str) -> None:
        a = self._args(args)
        link = int(a[0])
        lk = self.links.get(link)
        if not self.netopen:
            self._reply(final="+CIPERROR: 2")
            return
        if lk is None or not lk.open:
            self._reply(final="+CIPERROR: 4")
            return
        if len(a) > 1 and a[1] == "":
            self._send_var = link
        else:
            n = int(a[1])
            if not 0 < n <= MAX_SEND:
                raise ValueError(n)
            self._send = (link, n)
            self._send_data = b""
        self._write(self.cfg.prompt)

    async def _finish_send(self, link: int, data: bytes) -> None:
        lk = self.links.get(link)
        if lk is None or not lk.open or lk.writer is None:
            self._reply(final="+CIPERROR: 4")
            return
        lk.writer.write(data)
        await lk.writer.drain()
        self._reply()
        self.urc(f"+CIPSEND: {link},{len(data)},{len(data)}")

    def _at_ciprxget(self, kind: str, args: str) -> None:
        if kind == "?":
            self._reply(f"+CIPRXGET: {self.rxget_mode}")
            return
        a = self._args(args)
        mode = int(a[0])
        if mode in (0, 1) and len(a) == 1:
            self.rxget_mode = mode
            self._reply()
            return
        link = int(a[1])
        lk = self.links.get(link)
        if mode == 4:
            self._reply(f"+CIPRXGET: 4,{link},{len(lk.rx) if lk else 0}")
            return
        if mode not in (2, 3):
            raise ValueError(mode)
        if lk is None or not lk.rx:
            self._reply("+IP ERROR: No data", final="ERROR")
            return
        want = int(a[2]) if len(a) > 2 and a[2] else MAX_SEND
        k = min(want, len(lk.rx), MAX_SEND if mode == 2 else MAX_SEND // 2)
        data = bytes(lk.rx[:k])
        del lk.rx[:k]
        head = _framed(f"+CIPRXGET: {mode},{link},{k},{len(lk.rx)}")
        body = data if mode == 2 else _framed(data.hex().upper())
        self._write(head + body + _framed(b"OK"))
        after = self._after_read.pop(0) if self._after_read else None
        if after is not None:  # more data lands right behind the reply: its URC follows the OK at once
            self._deliver(link, lk, after)

    async def _at_cipclose(self, kind: str, args: str) -> None:
        if kind == "?":
            flags = ",".join("1" if (n in self.links and self.links[n].open) else "0" for n in range(10))
            self._reply(f"+CIPCLOSE: {flags}")
            return
        link = int(self._args(args)[0])
        lk = self.links.get(link)
        if lk is None or not lk.open:
            self._reply(f"+CIPCLOSE: {link},4", final="ERROR")
            return
        self._close_link(lk)
        if self.cfg.ok_before_result:
            self._reply()
            self.urc(f"+CIPCLOSE: {link},0")
        else:
            self._reply(f"+CIPCLOSE: {link},0")

    def _close_link(self, lk: Link) -> None:
        lk.open = False
        if lk.writer is not None:
            lk.writer.close()
        if lk.task is not None:
            lk.task.cancel()

    def _close_links(self) -> None:
        for lk in self.links.values():
            if lk.open:
                self._close_link(lk)
        self.links.clear()

    # -- time
    def _at_ctzu(self, kind: str, args: str) -> None:
        self.ctzu = int(args) if kind == "=" else self.ctzu
        self._reply(f"+CTZU: {self.ctzu}") if kind == "?" else self._reply()

    def _at_ctzr(self, kind: str, args: str) -> None:
        self.ctzr = int(args) if kind == "=" else self.ctzr
        self._reply(f"+CTZR: {self.ctzr}") if kind == "?" else self._reply()

    def clock_utc(self) -> float | None:
        if self._rtc_utc is None:
            return None
        return self._rtc_utc + (time.monotonic() - self._rtc_mono)

    @staticmethod
    def _fmt_local(utc: float, zone: int) -> str:
        t = time.gmtime(int(utc) + zone * 900)
        return f"{t.tm_year % 100:02d}/{t.tm_mon:02d}/{t.tm_mday:02d},{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"

    def _at_cclk(self, kind: str, args: str) -> None:
        if kind == "?":
            utc = self.clock_utc()
            if utc is None:  # never set: GPS epoch plus uptime, no zone (SIM7600G-H log)
                up = int(time.monotonic() - self._boot_mono)
                self._reply(f'+CCLK: "{self._fmt_local(315964800 + up, 0)}"')
                return
            z = self._rtc_zone
            self._reply(f'+CCLK: "{self._fmt_local(utc, z)}{"+" if z >= 0 else "-"}{abs(z):02d}"')
            return
        v = self._args(args)[0]
        local = calendar.timegm(time.strptime("20" + v[:17], "%Y/%m/%d,%H:%M:%S"))
        zone = int(v[17:]) if len(v) > 17 else 0
        self.set_clock(local - zone * 900, zone)
        self._reply()

    # ------------------------------------------------------------- fault injection & knobs
    def set_clock(self, utc: float | None, zone_quarters: int = 0) -> None:
        """Set the modem RTC (None = never set)."""
        self._rtc_utc = utc
        self._rtc_zone = zone_quarters
        self._rtc_mono = time.monotonic()

    def network_time(self, utc: float, zone_quarters: int = 0, dst: int = 0, style: str = "ctzv") -> None:
        """NITZ from the network: updates the RTC when AT+CTZU=1; reports per AT+CTZR
        (or as *PSUTTZ with style="psuttz")."""
        if self.ctzu:
            self.set_clock(utc, zone_quarters)
        z = f"{'+' if zone_quarters >= 0 else '-'}{abs(zone_quarters):02d}"
        t = time.gmtime(int(utc))
        if style == "psuttz":
            self.urc(f'*PSUTTZ: {t.tm_year},{t.tm_mon},{t.tm_mday},{t.tm_hour},{t.tm_min},{t.tm_sec},"{z}",{dst}')
        elif self.ctzr == 1:
            self.urc(f"+CTZV: {z},{self._fmt_local(utc, 0)},{dst}")
        elif self.ctzr == 2:
            self.urc(f'+CTZE: "{z}",{dst},"{time.strftime("%Y/%m/%d,%H:%M:%S", t)}"')

    def remove_sim(self, urc: bool = False) -> None:
        self.cfg.sim_present = False
        self.sim = "ABSENT"
        if urc:
            self.urc("+CPIN: SIM REMOVED")
        self._reg_changed()

    def insert_sim(self) -> None:
        self.cfg.sim_present = True
        self.sim = "SIM PIN" if self.cfg.pin else "READY"
        self._reg_changed()

    def require_pin(self, pin: str) -> None:
        """Lock the SIM with this PIN (now and at every boot)."""
        self.cfg.pin = pin
        if self.sim != "ABSENT":
            self.sim = "SIM PIN"
        self._reg_changed()

    def set_registration(self, stat: int) -> None:
        self.net_stat = stat
        self._reg_changed()

    def deny_registration(self) -> None:
        self.set_registration(3)

    def lose_registration(self, stat: int = 2) -> None:
        self.set_registration(stat)

    def regain_registration(self, stat: int = 1) -> None:
        self.set_registration(stat)

    def set_csq(self, rssi: int) -> None:
        self.rssi = rssi

    def fail_pdp(self, style: str | None = "urc") -> None:
        """PDP activation fails: "urc" -> OK then +NETOPEN: 1; "error" -> ERROR; None heals."""
        self.fail_pdp_style = style

    def fail_socket_open(self, err: int = 10, times: int = 1) -> None:
        self._sock_fail += [err] * times

    def data_after_read(self, data: bytes) -> None:
        """Race: the next buffered read (AT+CIPRXGET=2) empties the link and
        `data` arrives just behind it, so "+CIPRXGET: 1,<link>" follows the
        read's OK in the same burst."""
        self._after_read.append(bytes(data))

    def remote_close(self, link: int = 0) -> None:
        lk = self.links.get(link)
        if lk and lk.open:
            self._close_link(lk)
            self.urc(f"+IPCLOSE: {link},1")

    def drop_network(self) -> None:
        """Coverage/PDP lost: links die; the library stays marked open (AT+NETOPEN? says 1)."""
        lines = []
        for n, lk in sorted(self.links.items()):
            if lk.open:
                self._close_link(lk)
                lines.append(f"+IPCLOSE: {n},1")
        lines = (lines + [NET_CLOSED]) if self.cfg.ipclose_on_drop else [NET_CLOSED]
        self.links.clear()
        self.urc(*lines)

    def go_silent(self) -> None:
        """The modem stops answering until hw_reset()."""
        self.silent = True

    def hw_reset(self) -> None:
        """The reset line / a power cycle: reboot and emit the boot URCs."""
        self.silent = False
        self._reboot()

    def garble(self, lines: list[bytes] | None = None) -> None:
        for ln in lines or [b"\x00\xff#!%", b"+C\xfe\xfeRE", b"x" * 300]:
            self._write(_framed(ln))

    def inject_urc(self, line: str, mid_response: bool = False) -> None:
        """Send a URC now, or between the information lines and the final result
        of the next reply (as real modems may)."""
        if mid_response:
            self._mid.append(line)
        else:
            self.urc(line)

    def push_to_link(self, link: int, data: bytes) -> None:
        """Deliver data on a link as if it came from the network."""
        lk = self.links[link]
        self._deliver(link, lk, data)

    async def close(self) -> None:
        self._close_links()
        for t in list(self._tasks):
            t.cancel()
