"""SSL commands (SIMCom SIM7500/SIM7600 AT manual, "AT Commands for SSL"):
certificates in the modem's file system (AT+CCERTDOWN, AT+CCERTLIST,
AT+CCERTDELE), SSL contexts (AT+CSSLCFG), the SSL service and its sessions
(AT+CCHSTART/STOP, AT+CCHSET, AT+CCHMODE, AT+CCHSSLCFG, AT+CCHCFG, AT+CCHOPEN,
AT+CCHSEND, AT+CCHRECV, AT+CCHCLOSE).

The emulator terminates TLS for real with CPython `ssl` (OpenSSL) over a real
TCP connection to 127.0.0.1, and checks what the modem's SSL context says it
checks: the server's chain to the context's `cacert` (authmode 1, 2), its own
certificate and key presented (authmode 2, 3), TLS 1.2 (sslversion 3, and 4
"all": the SIM7600 has no TLS 1.3), validity periods against the clock unless
`ignorelocaltime` is 1 (the host's clock here: the modem's own RTC is not
modelled in this check). It does not check the host name (the SSL context
has no such setting; `enableSNI` only sends it). The TLS records pass through
`TlsSession.wire_in`, so a test can inject bytes into the network side
(`push_to_link`) or capture it (`on_downlink`).

<err> codes of +CCHOPEN etc. (the manual's table): 0 ok, 4 peer closed, 8
invalid parameter, 9 network error, 11 state error, 13 DNS, 14 connect,
15 handshake, 19 certificates not set.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from hil.modem.config import MAX_SEND, framed, split_args
from hil.modem.core import Handler, ModemCore

NO_CHECK_TIME = 0x200000  # OpenSSL's X509_V_FLAG_NO_CHECK_TIME
MAX_CERT_FILE = 10240
CTX_KEYS = ("sslversion", "authmode", "ignorelocaltime", "negotiatetime", "cacert", "clientcert", "clientkey",
            "enableSNI")


class TlsSession:
    """One SSL session (AT+CCHOPEN=<n>): a TCP connection and an SSLObject
    over memory BIOs, so the emulator sees the TLS records on the wire."""

    def __init__(self, m: ModemCore, n: int, host: str, port: int) -> None:
        self.m = m
        self.n = n
        self.host = host
        self.port = port
        self.open = False
        self.rx = bytearray()  # plaintext received, not yet read (manual receive mode)
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.obj: ssl.SSLObject | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None
        self.error: str | None = None
        self.handshake_s: float | None = None  # TCP connect + TLS handshake, once open
        self.tls_s = 0.0  # time spent in the TLS layer on data (both ways), for the bench
        self.records = 0

    async def connect(self, ctx: ssl.SSLContext) -> int:
        m = self.m
        t0 = time.perf_counter()
        try:
            r, w = await asyncio.open_connection(m.cfg.connect_host, m.cfg.port_map.get(self.port, self.port))
        except OSError:
            return 14
        self.writer = w
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=False, server_hostname=None)
        try:
            while True:
                try:
                    self.obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    await self._flush()
                    data = await asyncio.wait_for(r.read(16384), 30)
                    if not data:
                        raise ssl.SSLError("the server closed the connection in the handshake") from None
                    self._tap(data)
                    self.inc.write(data)
            await self._flush()
        except (ssl.SSLError, OSError, TimeoutError) as e:
            self.error = f"handshake: {e}"
            m.tls_errors.append(self.error)
            with contextlib.suppress(OSError):
                await self._flush()
            w.close()
            return 15
        self.open = True
        self.handshake_s = time.perf_counter() - t0
        self.task = asyncio.ensure_future(self._rx(r))
        return 0

    def _tap(self, data: bytes) -> None:
        if self.m.on_downlink is not None:
            self.m.on_downlink(self.n, data)

    async def _flush(self) -> None:
        data = self.out.read()
        if data and self.writer is not None:
            self.writer.write(data)
            await self.writer.drain()

    async def _rx(self, r: asyncio.StreamReader) -> None:
        try:
            while self.open:
                data = await r.read(16384)
                if not data:
                    self.close("peer closed the connection")
                    return
                self._tap(data)
                self.wire_in(data)
        except (OSError, asyncio.CancelledError):
            return

    def wire_in(self, data: bytes) -> None:
        """Bytes from the network (or injected into it) for the TLS layer."""
        if not self.open or self.obj is None:
            return
        t0 = time.perf_counter()
        self.inc.write(data)
        got = bytearray()
        try:
            while True:
                chunk = self.obj.read(16384)
                if not chunk:  # close_notify
                    self._deliver(bytes(got))
                    self.close("close_notify")
                    return
                got += chunk
        except ssl.SSLWantReadError:
            self.tls_s += time.perf_counter() - t0
            self.records += 1
        except ssl.SSLError as e:  # a tampered, replayed or injected record: the session is over
            self.m.tls_errors.append(f"record: {e}")
            self._deliver(bytes(got))
            self.close(f"record: {e}")
            return
        self._deliver(bytes(got))

    def _deliver(self, data: bytes) -> None:
        if not data:
            return
        m = self.m
        if m.cch_recv_mode == 1:  # manual: buffered, announced once
            was_empty = not self.rx
            self.rx += data
            if was_empty:
                m.urc(f"+CCHEVENT: {self.n},RECV EVENT")
            return
        for i in range(0, len(data), MAX_SEND):
            part = data[i:i + MAX_SEND]
            m.write(framed(f"+CCHRECV: DATA,{self.n},{len(part)}") + part)

    async def send(self, data: bytes) -> bool:
        if not self.open or self.obj is None:
            return False
        try:
            t0 = time.perf_counter()
            self.obj.write(data)
            self.tls_s += time.perf_counter() - t0
            self.records += 1
            await self._flush()
        except (ssl.SSLError, OSError) as e:
            self.close(f"send: {e}")
            return False
        return True

    def close(self, why: str | None = None, urc: bool = True) -> None:
        """End the session (why: the far end or the network ended it: URC)."""
        was = self.open
        self.open = False
        if self.obj is not None and why is None:
            with contextlib.suppress(ssl.SSLError):
                self.obj.unwrap()  # our close_notify
        if self.writer is not None:
            data = self.out.read()
            with contextlib.suppress(OSError, RuntimeError):
                if data:
                    self.writer.write(data)
                self.writer.close()
        if self.task is not None:
            try:
                cur = asyncio.current_task()
            except RuntimeError:  # called from a test's thread, not the rig's loop
                cur = None
            if self.task is not cur:
                self.task.cancel()
        if was and why is not None:
            self.error = why
            if urc:
                self.m.urc(f"+CCH_PEER_CLOSED: {self.n}")


@contextlib.contextmanager
def _files(*parts: bytes) -> Iterator[list[str]]:
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for i, b in enumerate(parts):
            p = Path(d) / f"{i}.pem"
            p.write_bytes(b)
            paths.append(str(p))
        yield paths


def client_context(m: ModemCore, ctx_id: int) -> ssl.SSLContext | int:
    """The CPython context for SSL context ctx_id, or an <err> (19: a
    certificate file named there is missing or unusable)."""
    c = m.ssl_ctx.get(ctx_id, {})
    ver, auth = int(c.get("sslversion", 4)), int(c.get("authmode", 0))
    if ver not in (3, 4):
        return 8  # SSL 3.0 / TLS 1.0 / 1.1: not emulated
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if int(c.get("ignorelocaltime", 1)):
        ctx.verify_flags = ssl.VerifyFlags(ctx.verify_flags | NO_CHECK_TIME)
    try:
        if auth in (1, 2):
            ca = m.cert_files.get(str(c.get("cacert", "")))
            if ca is None:
                return 19
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cadata=ca.decode("latin-1"))
        else:
            ctx.verify_mode = ssl.CERT_NONE
        if auth in (2, 3):
            cert = m.cert_files.get(str(c.get("clientcert", "")))
            key = m.cert_files.get(str(c.get("clientkey", "")))
            if cert is None or key is None:
                return 19
            with _files(cert, key) as (cp, kp):
                ctx.load_cert_chain(cp, kp)
    except (ssl.SSLError, ValueError) as e:
        m.tls_errors.append(f"context {ctx_id}: {e}")
        return 19
    return ctx


# -- certificates in the modem's file system (kept across reboots)
def ccertdown(m: ModemCore, kind: str, args: str) -> None:
    a = split_args(args)
    name, n = a[0], int(a[1])
    if not name.lower().endswith((".pem", ".der")) or not 0 < n <= MAX_CERT_FILE or "/" in name:
        raise ValueError(args)

    async def store(data: bytes) -> None:
        m.cert_files[name] = data
        m.reply()

    m.expect_payload(-1, n, store)
    m.write(m.cfg.prompt)


def ccertlist(m: ModemCore, kind: str, args: str) -> None:
    m.reply(*(f'+CCERTLIST: "{name}"' for name in sorted(m.cert_files)))


def ccertdele(m: ModemCore, kind: str, args: str) -> None:
    name = split_args(args)[0]
    if m.cert_files.pop(name, None) is None:
        m.reply(final="ERROR")
    else:
        m.reply()


# -- SSL contexts (volatile: set again after a boot)
def csslcfg(m: ModemCore, kind: str, args: str) -> None:
    if kind != "=":
        m.reply(*(f'+CSSLCFG: {i},{",".join(str(c.get(k, "")) for k in CTX_KEYS)}'
                  for i, c in sorted(m.ssl_ctx.items())))
        return
    a = split_args(args)
    key, ctx_id = a[0], int(a[1])
    if key not in CTX_KEYS or not 0 <= ctx_id <= 9:
        raise ValueError(args)
    c = m.ssl_ctx.setdefault(ctx_id, {})
    if len(a) < 3:
        m.reply(f'+CSSLCFG: "{key}",{ctx_id},{c.get(key, "")}')
        return
    v: str | int = a[2] if key in ("cacert", "clientcert", "clientkey") else int(a[2])
    if key == "sslversion" and not 0 <= int(v) <= 4 or key == "authmode" and not 0 <= int(v) <= 3:
        raise ValueError(args)
    c[key] = v
    m.reply()


# -- the SSL service
def cchset(m: ModemCore, kind: str, args: str) -> None:
    if kind == "?":
        m.reply(f"+CCHSET: {m.cch_report},{m.cch_recv_mode}")
        return
    a = [int(x) for x in split_args(args)]
    if a[0] not in (0, 1) or len(a) > 1 and a[1] not in (0, 1):
        raise ValueError(args)
    m.cch_report = a[0]
    if len(a) > 1:
        m.cch_recv_mode = a[1]
    m.reply()


def cchmode(m: ModemCore, kind: str, args: str) -> None:
    if kind == "?":
        m.reply("+CCHMODE: 0")
    elif args.strip() != "0":
        m.reply(final="ERROR")  # transparent mode is not emulated
    else:
        m.reply()


def cchcfg(m: ModemCore, kind: str, args: str) -> None:
    """AT+CCHCFG="sendtimeout"|"sslctx",<session>,<value>: accepted; sslctx binds like AT+CCHSSLCFG."""
    a = split_args(args)
    if a[0] == "sslctx":
        m.cch_ctx[int(a[1])] = int(a[2])
    m.reply()


def cchsslcfg(m: ModemCore, kind: str, args: str) -> None:
    if kind == "?":
        m.reply(*(f"+CCHSSLCFG: {n},{c}" for n, c in sorted(m.cch_ctx.items())))
        return
    a = split_args(args)
    n, c = int(a[0]), int(a[1])
    if n not in (0, 1) or not 0 <= c <= 9:
        raise ValueError(args)
    m.cch_ctx[n] = c
    m.reply()


def _result(m: ModemCore, line: str) -> None:
    if m.cfg.ok_before_result:
        m.reply()
        m.urc(line)
    else:
        m.reply(line)


def cchstart(m: ModemCore, kind: str, args: str) -> None:
    if m.cch_started:
        m.reply(final="ERROR")  # already started
        return
    ok = m.registered() and m.fail_pdp_style is None
    m.cch_started = ok
    _result(m, f"+CCHSTART: {0 if ok else 9}")


def cchstop(m: ModemCore, kind: str, args: str) -> None:
    if not m.cch_started:
        m.reply(final="ERROR")
        return
    close_sessions(m, urc=False)
    m.cch_started = False
    _result(m, "+CCHSTOP: 0")


async def cchopen(m: ModemCore, kind: str, args: str) -> None:
    if kind == "?":
        m.reply(*(f'+CCHOPEN: {n},"{s.host}",{s.port},2' for n, s in sorted(m.cch.items()) if s.open))
        return
    a = split_args(args)
    n, host, port = int(a[0]), a[1], int(a[2])
    client_type = int(a[3]) if len(a) > 3 and a[3] else 2
    if n not in (0, 1) or client_type not in (1, 2) or not 0 < port < 65536:
        raise ValueError(args)
    if not m.cch_started or (n in m.cch and m.cch[n].open):
        m.reply(final="ERROR")
        return
    s = TlsSession(m, n, host, port)
    m.cch[n] = s

    async def connect() -> str:
        if host.endswith(".invalid"):
            return f"+CCHOPEN: {n},13"
        ctx = client_context(m, m.cch_ctx.get(n, 0))
        if isinstance(ctx, int):
            return f"+CCHOPEN: {n},{ctx}"
        if m.socket_open_failures:
            return f"+CCHOPEN: {n},{m.socket_open_failures.pop(0)}"
        if m.cfg.cipopen_delay:
            await asyncio.sleep(m.cfg.cipopen_delay)
        return f"+CCHOPEN: {n},{await s.connect(ctx)}"

    await m.reply_open(connect)


def cchsend(m: ModemCore, kind: str, args: str) -> None:
    a = split_args(args)
    n, count = int(a[0]), int(a[1])
    s = m.cch.get(n)
    if s is None or not s.open or not 0 < count <= 2048:
        m.reply(final="ERROR")
        return

    async def send(data: bytes) -> None:
        if m.on_uplink is not None:
            m.on_uplink(n, data)
        ok = await s.send(data)
        if not ok:
            m.reply(final="ERROR")
            return
        m.reply()
        if m.cch_report:
            m.urc(f"+CCHSEND: {n},0")

    m.expect_payload(n, count, send)
    m.write(m.cfg.prompt)


def cchrecv(m: ModemCore, kind: str, args: str) -> None:
    if kind == "?":
        m.reply("+CCHRECV: LEN," + ",".join(str(len(m.cch[i].rx) if i in m.cch else 0) for i in (0, 1)))
        return
    a = split_args(args)
    n = int(a[0])
    want = int(a[1]) if len(a) > 1 and a[1] else MAX_SEND
    s = m.cch.get(n)
    if s is None or (not s.open and not s.rx):
        m.reply(final="ERROR")
        return
    k = min(want, len(s.rx), MAX_SEND)
    out = b""
    if k:
        out = framed(f"+CCHRECV: DATA,{n},{k}") + bytes(s.rx[:k])
        del s.rx[:k]
    m.write(out + framed(f"+CCHRECV: {n},0") + framed("OK"))


def cchclose(m: ModemCore, kind: str, args: str) -> None:
    n = int(split_args(args)[0])
    s = m.cch.get(n)
    if s is None or not s.open:
        m.reply(final="ERROR")
        return
    s.close()
    _result(m, f"+CCHCLOSE: {n},0")


def close_sessions(m: ModemCore, urc: bool) -> None:
    """Every SSL session ends (+CCH_PEER_CLOSED for each open one when urc)."""
    for s in m.cch.values():
        if s.open:
            s.close("closed" if urc else None, urc=urc)
    m.cch.clear()


COMMANDS: dict[str, Handler] = {
    "+CCERTDOWN": ccertdown, "+CCERTLIST": ccertlist, "+CCERTDELE": ccertdele, "+CSSLCFG": csslcfg,
    "+CCHSET": cchset, "+CCHMODE": cchmode, "+CCHCFG": cchcfg, "+CCHSSLCFG": cchsslcfg,
    "+CCHSTART": cchstart, "+CCHSTOP": cchstop, "+CCHOPEN": cchopen, "+CCHSEND": cchsend,
    "+CCHRECV": cchrecv, "+CCHCLOSE": cchclose,
}
