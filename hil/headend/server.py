"""Head-end link server (docs/headend-link.md) on the rig's asyncio loop.

The hub reaches it through the modem emulator's real TCP connection, over
TLS when `tls` (a CPython server context: chubcore.pki.headend_context)
is given: a client certificate chaining to the hubs' CA is required, and the
HELLO's EUI-64 must be the one in that certificate; a connection that fails
either is refused (`refused` says why) and leaves the connected hub's link
alone. It answers
HELLO with HELLO_ACK (its time), sends GBCS commands rebuilt by `HeadEnd`
(hil/headend/gbcs.py) with link frame ids and resends them after a reconnect
until the hub ACKs them, ACKs the hub's GBCS frames, drops duplicates by id
and records everything it received. Its own frame codec (struct + zlib) is
written independently of the firmware's.

The management side (docs/headend-link.md, "Remote management"): `manage`
sends a MGMT request (JSON) and waits for the hub's MGMT_REPLY; `reports`
holds the hub's REPORT frames (installation, signal/health), each ACKed; a
small JSON-lines API on 127.0.0.1 (`start_api`, `api_port`) lets the test
DCC operator's `chub headend` use both from another process.

Synchronous helpers (`send_command`, `wait`, `disconnect`) are for test
threads; the `a*` coroutines run on the rig's loop.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .gbcs import Frame, HeadEnd, parse_frame

MAGIC = b"CH"
HELLO, HELLO_ACK, GBCS, ACK, TIME, PING, PONG, MGMT, MGMT_REPLY, REPORT = range(1, 11)
MAX_PAYLOAD = 4096
ACK_STATUS = {0: "done", 1: "duplicate", 2: "rejected"}


class LinkProtocolError(Exception):
    pass


def frame(ftype: int, fid: int, payload: bytes = b"") -> bytes:
    head = MAGIC + bytes([ftype]) + fid.to_bytes(4, "big") + len(payload).to_bytes(2, "big")
    return head + payload + zlib.crc32(head + payload).to_bytes(4, "big")


def split_frames(buf: bytearray) -> list[tuple[int, int, bytes]]:
    """Take every whole frame off the front of buf; raises LinkProtocolError."""
    out = []
    while len(buf) >= 2:
        if buf[:2] != MAGIC:
            raise LinkProtocolError(f"bad magic {bytes(buf[:2]).hex()}")
        if len(buf) < 9:
            break
        ftype = buf[2]
        fid = int.from_bytes(buf[3:7], "big")
        n = int.from_bytes(buf[7:9], "big")
        if not HELLO <= ftype <= REPORT:
            raise LinkProtocolError(f"unknown type {ftype}")
        if n > MAX_PAYLOAD:
            raise LinkProtocolError(f"length {n}")
        if len(buf) < 13 + n:
            break
        if zlib.crc32(bytes(buf[: 9 + n])) != int.from_bytes(buf[9 + n : 13 + n], "big"):
            raise LinkProtocolError("CRC mismatch")
        out.append((ftype, fid, bytes(buf[9 : 9 + n])))
        del buf[: 13 + n]
    return out


class _TlsStream:
    """The server side of TLS over a plain connection, through memory BIOs
    (asyncio's start_tls can lose a ClientHello that arrived first); reads
    and writes like the StreamReader/StreamWriter pair it wraps."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: ssl.SSLContext) -> None:
        self.r, self.w = reader, writer
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=True)

    async def _more(self) -> bool:
        self._flush()
        data = await self.r.read(16384)
        if not data:
            self.inc.write_eof()
            return False
        self.inc.write(data)
        return True

    def _flush(self) -> None:
        data = self.out.read()
        if data and not self.w.is_closing():
            self.w.write(data)

    async def handshake(self) -> None:
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                if not await self._more():
                    raise ConnectionError("closed in the TLS handshake") from None
        self._flush()

    def cert_eui(self) -> bytes:
        """The EUI-64 in the client's certificate."""
        from chubcore.pki import eui_from_certificate

        der = self.obj.getpeercert(binary_form=True)
        if not der:
            raise ValueError("no client certificate")
        eui = eui_from_certificate(der)
        if len(eui) != 8:
            raise ValueError("no EUI-64 in the client certificate")
        return eui

    async def read(self, n: int) -> bytes:
        while True:
            try:
                data = self.obj.read(n)
                self._flush()
                return data
            except ssl.SSLWantReadError:
                if not await self._more():
                    return b""
            except ssl.SSLZeroReturnError:
                return b""

    def write(self, data: bytes) -> None:
        self.obj.write(data)
        self._flush()

    async def drain(self) -> None:
        await self.w.drain()

    def is_closing(self) -> bool:
        return self.w.is_closing()

    def close(self) -> None:
        self.w.close()


@dataclass
class Hello:
    eui: bytes
    version: str
    signal_dbm: int | None
    at: float


@dataclass
class Received:
    id: int
    raw: bytes
    frame: Frame | None
    error: str | None = None
    copies: int = 1
    connection: int = 0  # which connection (1, 2, ...) first carried it
    times: list[float] = field(default_factory=list)  # time.monotonic() of each copy


@dataclass
class Reply:
    link_id: int
    command: bytes
    command_frame: Frame
    response: bytes
    frame: Frame
    ack_status: str | None = None
    sent_at: float = 0.0  # time.perf_counter() when the command was written (or queued for the link)
    answered_at: float = 0.0  # time.perf_counter() when its response arrived

    @property
    def round_trip(self) -> float:
        """Seconds from sending the command to its response (the ACK not waited for)."""
        return self.answered_at - self.sent_at


@dataclass
class Report:
    id: int
    body: dict
    at: float  # time.monotonic() when it arrived
    utc: float  # time.time() when it arrived
    connection: int = 0
    eui: bytes = b""  # the hub's (its connection's HELLO)


class ManageError(Exception):
    """The hub refused a management request: `status` (the local port's
    numbers) and its reason."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(f"status {status}: {error}")
        self.status = status
        self.error = error


@dataclass
class _Pending:
    link_id: int
    raw: bytes
    cmd: Frame | None  # None: a raw frame (send_raw)
    fut: asyncio.Future
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    ack_status: str | None = None


def _result(fut: Any, timeout: float, what: str) -> Any:
    """A concurrent future's result; a TimeoutError naming `what` when the
    head-end's loop has not finished it in `timeout` s (the future's own says
    nothing)."""
    try:
        return fut.result(timeout)
    except TimeoutError as e:
        if fut.done():  # the coroutine's own TimeoutError, with its message
            raise
        fut.cancel()
        raise TimeoutError(f"head-end: {what} not finished by its loop within {timeout} s") from e


class HeadEndServer:
    def __init__(self, headend: HeadEnd | None = None, host: str = "127.0.0.1",
                 tls: ssl.SSLContext | None = None) -> None:
        self.headend = headend
        self.host = host
        self.tls = tls
        self.refused: list[str] = []  # connections refused (TLS handshake, certificate/HELLO mismatch)
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.hellos: list[Hello] = []
        self.received: list[Received] = []  # the hub's frames, each id once
        self.by_id: dict[int, Received] = {}
        self.duplicates = 0
        self.errors: list[str] = []
        self.ack_hub_frames = True  # False: hold ACKs (the hub must resend)
        # fault hook: called with a command's id when the hub ACKs it; the rest
        # of that connection's input is then ignored (the hook cuts the link)
        self.on_command_acked: Callable[[int], None] | None = None
        self.time_offset = 0  # added to the host time sent in HELLO_ACK/TIME
        self._server: asyncio.AbstractServer | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._next_id = 1
        self._cmds: dict[int, _Pending] = {}  # link id -> pending command
        self._mgmt: dict[int, asyncio.Future] = {}  # MGMT id -> the reply's future
        self.reports: list[Report] = []  # the hub's REPORT frames, each (hub, id) once
        self._report_ids: set[tuple[bytes, int]] = set()
        # a fleet (hil/fleet.py): every hub keeps its connection; a HELLO does
        # not replace the one hub's link, and commands/manage are not used
        self.multi_hub = False
        self._eui_of: dict[object, bytes] = {}
        self.api_port = 0
        self._api: asyncio.AbstractServer | None = None
        self._by_counter: dict[int, _Pending] = {}
        self.connections = 0

    # --- life cycle ---------------------------------------------------------
    async def start(self) -> int:
        self.loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._client, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._api:
            self._api.close()
        if self._server:
            self._server.close()
        if self._writer:
            self._writer.close()

    @property
    def connected(self) -> bool:
        return self._writer is not None and self.hellos != [] and not self._writer.is_closing()

    # --- one connection -----------------------------------------------------
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cert_eui = None
        if self.tls is not None:
            tls = _TlsStream(reader, writer, self.tls)
            try:
                await asyncio.wait_for(tls.handshake(), 30)
                cert_eui = tls.cert_eui()
            except (ssl.SSLError, OSError, ValueError, TimeoutError) as e:
                self.refused.append(f"TLS: {type(e).__name__}: {e}")
                writer.close()
                return
            reader = writer = tls  # type: ignore[assignment]
        buf = bytearray()
        hello = False
        try:
            while data := await reader.read(4096):
                buf += data
                for ftype, fid, p in split_frames(buf):
                    if ftype == HELLO:
                        if cert_eui is not None and p[:8] != cert_eui:
                            self.refused.append(f"HELLO from {p[:8].hex()} over {cert_eui.hex()}'s certificate")
                            raise LinkProtocolError("HELLO EUI-64 is not the certificate's")
                        self._hello(p)
                        self._eui_of[writer] = bytes(p[:8])
                        if self.multi_hub:
                            hello = True
                            writer.write(frame(HELLO_ACK, 0, self._now().to_bytes(4, "big")))
                            continue
                        if not hello:  # this connection is the hub's link now
                            if self._writer is not None and self._writer is not writer:
                                self._writer.close()
                            self._writer = writer
                            self.connections += 1
                        hello = True
                        writer.write(frame(HELLO_ACK, 0, self._now().to_bytes(4, "big")))
                        for pc in self._cmds.values():  # resend what the hub has not ACKed
                            if not pc.acked.is_set():
                                writer.write(frame(GBCS, pc.link_id, pc.raw))
                    elif not hello:
                        raise LinkProtocolError(f"frame type {ftype} before HELLO")
                    elif self._frame(writer, ftype, fid, p):
                        return  # the fault hook cut the link here: ignore the rest
                await writer.drain()
        except (LinkProtocolError, ValueError) as e:
            self.errors.append(str(e))
        except ssl.SSLError as e:  # a tampered or replayed record: the connection is over
            self.errors.append(f"TLS: {e}")
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._eui_of.pop(writer, None)
            if self._writer is writer:
                self._writer = None
            writer.close()

    def _now(self) -> int:
        return int(time.time()) + self.time_offset

    def _hello(self, p: bytes) -> None:
        if len(p) < 9:
            raise LinkProtocolError("short HELLO")
        s = struct.unpack(">b", p[8:9])[0]
        self.hellos.append(Hello(p[:8], p[9:].decode(), None if s == 127 else s, time.monotonic()))

    def _frame(self, w: asyncio.StreamWriter, ftype: int, fid: int, p: bytes) -> bool:
        if ftype == GBCS:
            if fid in self.by_id:
                self.duplicates += 1
                self.by_id[fid].copies += 1
                self.by_id[fid].times.append(time.monotonic())
            else:
                rec = Received(fid, p, None, connection=self.connections, times=[time.monotonic()])
                try:
                    rec.frame = parse_frame(p)
                except Exception as e:  # noqa: BLE001 - record, do not crash the link
                    rec.error = f"{type(e).__name__}: {e}"
                self.by_id[fid] = rec
                self.received.append(rec)
                if rec.frame is not None and rec.frame.cra == 2:
                    pc = self._by_counter.get(rec.frame.counter)
                    if pc is not None and not pc.fut.done():
                        pc.fut.set_result(rec)
            if self.ack_hub_frames:
                w.write(frame(ACK, fid, b"\x00"))
        elif ftype == ACK:
            pc = self._cmds.get(fid)
            if pc is not None and not pc.acked.is_set():
                pc.ack_status = ACK_STATUS.get(p[0] if p else -1, "?")
                pc.acked.set()
                if self.on_command_acked:
                    self.on_command_acked(fid)
                    return True
        elif ftype == REPORT:
            eui = self._eui_of.get(w, b"")
            if (eui, fid) not in self._report_ids:
                self._report_ids.add((eui, fid))
                try:
                    body = json.loads(p)
                except ValueError as e:
                    body = {"error": f"not JSON: {e}"}
                self.reports.append(Report(fid, body, time.monotonic(), time.time(), self.connections, eui))
            else:
                self.duplicates += 1
            if self.ack_hub_frames:
                w.write(frame(ACK, fid, b"\x00"))
        elif ftype == MGMT_REPLY:
            fut = self._mgmt.pop(fid, None)
            if fut is not None and not fut.done():
                try:
                    fut.set_result(json.loads(p))
                except ValueError as e:
                    fut.set_exception(LinkProtocolError(f"MGMT_REPLY is not JSON: {e}"))
        elif ftype == PING:
            w.write(frame(PONG, fid))
        elif ftype == PONG:
            pass
        else:
            raise LinkProtocolError(f"unexpected frame type {ftype} from the hub")
        return False

    # --- API for tests ------------------------------------------------------
    def _build(self, cmd: bytes | str | Path, rebuild: bool) -> tuple[bytes, Frame]:
        if isinstance(cmd, (str, Path)):
            cmd = bytes.fromhex(Path(cmd).read_text().strip())
        if rebuild:
            if self.headend is None:
                raise RuntimeError("no HeadEnd keys yet (the hub was not provisioned)")
            return self.headend.rebuild(cmd)
        return cmd, parse_frame(cmd)

    async def asend_command(self, cmd: bytes | str | Path, timeout: float = 10.0, rebuild: bool = True) -> Reply:
        raw, f = self._build(cmd, rebuild)
        fid = self._next_id
        self._next_id += 1
        pc = _Pending(fid, raw, f, asyncio.get_running_loop().create_future())
        self._cmds[fid] = pc
        self._by_counter[f.counter] = pc
        sent_at = time.perf_counter()
        if self._writer is not None and self.hellos:
            self._writer.write(frame(GBCS, fid, raw))
        try:
            rec: Received = await asyncio.wait_for(pc.fut, timeout)
            answered_at = time.perf_counter()
            await asyncio.wait_for(pc.acked.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(f"head-end: {self._what(pc)} within {timeout} s") from None
        if rebuild:
            assert self.headend is not None
            verified = self.headend.verify(rec.raw, f)
        else:
            verified = rec.frame
        assert verified is not None
        return Reply(fid, raw, f, rec.raw, verified, pc.ack_status, sent_at, answered_at)

    def _what(self, pc: _Pending) -> str:
        """What a pending command still lacks, for a TimeoutError's message:
        the command (message code, counter, link id), whether the hub ACKed
        it or answered it, and the link (connected, how many connections)."""
        cmd = (f"GBCS command 0x{int.from_bytes(pc.cmd.other_info[:2], 'big'):04X} counter {pc.cmd.counter}"
               if pc.cmd is not None and len(pc.cmd.other_info) >= 2 else "GBCS frame")
        # wait_for cancels the future it gave up on
        state = ("answered, not ACKed" if pc.fut.done() and not pc.fut.cancelled() else
                 f"{'ACKed' if pc.acked.is_set() else 'not ACKed'}, no response")
        link = "connected" if self.connected else "no hub connected"
        return f"{cmd} (link id {pc.link_id}): {state} ({link}, {self.connections} connections so far)"

    def send_command(self, cmd: bytes | str | Path, timeout: float = 10.0, rebuild: bool = True) -> Reply:
        """Send one GBCS command to the hub; its verified response (HeadEndError
        on a bad MAC, TimeoutError naming the command and what it lacks when
        none arrives in time). rebuild=False sends the frame as it is and
        returns the response unverified."""
        assert self.loop is not None
        fut = asyncio.run_coroutine_threadsafe(self.asend_command(cmd, timeout, rebuild), self.loop)
        return _result(fut, timeout * 2 + 5, "send_command")

    async def asend_raw(self, payload: bytes, timeout: float = 10.0) -> str | None:
        """Send any bytes as one GBCS link frame; -> the hub's ACK status."""
        fid = self._next_id
        self._next_id += 1
        pc = _Pending(fid, payload, None, asyncio.get_running_loop().create_future())
        self._cmds[fid] = pc
        if self._writer is not None and self.hellos:
            self._writer.write(frame(GBCS, fid, payload))
        try:
            await asyncio.wait_for(pc.acked.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(f"head-end: {self._what(pc)} within {timeout} s") from None
        return pc.ack_status

    def send_raw(self, payload: bytes, timeout: float = 10.0) -> str | None:
        """Thread-side asend_raw: e.g. a malformed GBCS frame the hub must refuse."""
        assert self.loop is not None
        return _result(asyncio.run_coroutine_threadsafe(self.asend_raw(payload, timeout), self.loop), timeout + 5,
                       "send_raw")

    async def amanage(self, req: dict, timeout: float = 10.0) -> dict:
        """One management request ({cmd, ...}) to the connected hub -> its
        result; ManageError when the hub refuses it (status and reason),
        TimeoutError without a reply (also when no hub is connected)."""
        fid = self._next_id
        self._next_id += 1
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._mgmt[fid] = fut
        try:
            if self._writer is None or not self.hellos:
                raise TimeoutError("no hub connected")
            self._writer.write(frame(MGMT, fid, json.dumps(req).encode()))
            try:
                reply = await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                raise TimeoutError(f"no reply to management request {req.get('cmd')!r} (id {fid}) within "
                                   f"{timeout} s ({'connected' if self.connected else 'no hub connected'})") from None
        finally:
            self._mgmt.pop(fid, None)
        if reply.get("status") != 0:
            raise ManageError(int(reply.get("status", -1)), str(reply.get("error")))
        return reply["result"]

    def manage(self, req: dict, timeout: float = 10.0) -> dict:
        """Thread-side amanage."""
        assert self.loop is not None
        return _result(asyncio.run_coroutine_threadsafe(self.amanage(req, timeout), self.loop), timeout + 5,
                       f"manage {req.get('cmd')!r}")

    # --- the operator's API (chub headend) ----------------------------------
    async def start_api(self) -> int:
        """JSON lines on 127.0.0.1: {"op": "manage", "req": {...}, "timeout"?}
        -> {"ok": true, "result"} or {"ok": false, "status"?, "error"};
        {"op": "reports"} -> the reports; {"op": "hub"} -> connected, HELLOs."""
        self._api = await asyncio.start_server(self._api_client, "127.0.0.1", 0)
        self.api_port = self._api.sockets[0].getsockname()[1]
        return self.api_port

    async def _api_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(json.dumps(await self._api_op(line)).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _api_op(self, line: bytes) -> dict:
        try:
            q = json.loads(line)
            op = q["op"]
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": "a JSON object with 'op' expected"}
        if op == "manage":
            req = q.get("req")
            if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
                return {"ok": False, "error": "'req' must be an object with a string 'cmd'"}
            t0 = time.perf_counter()
            try:
                res = await self.amanage(req, float(q.get("timeout", 10.0)))
            except ManageError as e:
                return {"ok": False, "status": e.status, "error": e.error}
            except TimeoutError as e:
                return {"ok": False, "error": f"no reply from the hub: {e or 'timeout'}"}
            return {"ok": True, "result": res, "round_trip_ms": round((time.perf_counter() - t0) * 1000, 2)}
        if op == "reports":
            return {"ok": True, "result": [{"id": r.id, "utc": r.utc, **r.body} for r in self.reports]}
        if op == "hub":
            return {"ok": True, "result": {"connected": self.connected, "hellos": [
                {"eui": h.eui.hex(), "version": h.version, "signal_dbm": h.signal_dbm} for h in self.hellos]}}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def send_time(self, utc: int | None = None) -> None:
        def go() -> None:
            if self._writer is not None:
                self._writer.write(frame(TIME, 0, (utc if utc is not None else self._now()).to_bytes(4, "big")))

        assert self.loop is not None
        self.loop.call_soon_threadsafe(go)

    def disconnect(self) -> None:
        """Drop the link from the head-end side."""

        def go() -> None:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

        assert self.loop is not None
        self.loop.call_soon_threadsafe(go)

    def wait(self, pred: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise TimeoutError(f"head-end: no {what} within {timeout} s")
            time.sleep(0.02)

    def wait_hello(self, count: int = 1, timeout: float = 20.0) -> Hello:
        self.wait(lambda: len(self.hellos) >= count and self._writer is not None, timeout, f"HELLO #{count}")
        return self.hellos[count - 1]
