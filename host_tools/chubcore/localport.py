"""Client for the hub's local port (docs/local-port.md).

The installer's laptop talks to the hub over its console: a TCP stream on the
emulated board (``socket://127.0.0.1:PORT``), the USB console on a real one
(``/dev/ttyUSB0``), or any other pyserial URL. The console also carries the
hub's log lines, so the client skips bytes outside frames (keeping the last
lines of that text in :attr:`LocalPortClient.console`) and resynchronises on
the next frame after any damage.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import os
import random
import re
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, NamedTuple

import serial

SOF = 0xC5
MAX_BODY = 4096

OK = 0
BAD_CRC = 1
TOO_LONG = 2
BAD_REQUEST = 3
UNKNOWN_COMMAND = 4
BAD_ARGS = 5
NOT_AUTHORISED = 6
INTERNAL = 7
TRUNCATED = 8
MORE = 9  # flow control: {"have": n}, seq 0 (not an answer)
# flow control: at most WINDOW bytes of a frame beyond what the hub
# acknowledged with MORE (an ESP32 console's receive ring holds 259 bytes)
WINDOW = 256
MALFORMED_RESPONSE = -1  # client side: a frame with a good CRC whose body is not a response

# The well-known installer credential of the emulated board (its factory
# credential, in the board config the rig writes) and of test hubs. Never on
# a real hub: `chub provision` gives each hub a random one.
TEST_INSTALLER_KEY = hashlib.sha256(b"chub test installer credential (emulated board only)").digest()

STATUS_NAMES = {
    OK: "ok",
    BAD_CRC: "bad CRC",
    TOO_LONG: "frame too long",
    BAD_REQUEST: "bad request",
    UNKNOWN_COMMAND: "unknown command",
    BAD_ARGS: "bad arguments",
    NOT_AUTHORISED: "not authorised",
    INTERNAL: "internal error",
    TRUNCATED: "truncated frame",
    MORE: "more",
    MALFORMED_RESPONSE: "malformed response",
}


class LocalPortError(Exception):
    """The hub answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        name = STATUS_NAMES.get(status, f"status {status}")
        # the hub's message may name the status already ("internal error: ...")
        super().__init__(message if message.startswith(name) else f"{name}: {message}")
        self.status = status
        self.message = message


class LocalPortTimeout(TimeoutError):
    """No answer from the hub in time."""


def _mac(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


def _qstr(s: str) -> str:
    t = s.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if c >= " " else f"\\u{ord(c):04x}" for c in t) + '"'


def _canon(v: Any, out: list[str], depth: int) -> None:
    if depth > 16:
        raise ValueError("request nested too deeply")
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, int):
        out.append(str(v))
    elif isinstance(v, str):
        out.append(_qstr(v))
    elif isinstance(v, list | tuple):
        out.append("[")
        for i, x in enumerate(v):
            if i:
                out.append(",")
            _canon(x, out, depth + 1)
        out.append("]")
    elif isinstance(v, dict):
        items = sorted((k, x) for k, x in v.items() if not (depth == 0 and k == "auth"))
        out.append("{")
        for i, (k, x) in enumerate(items):
            if not isinstance(k, str):
                raise ValueError("request keys must be strings")
            if i:
                out.append(",")
            out.append(_qstr(k) + ":")
            _canon(x, out, depth + 1)
        out.append("}")
    else:
        raise ValueError(f"a request cannot carry {type(v).__name__} (numbers must be integers)")


def canonical(req: dict[str, Any]) -> bytes:
    """The canonical form of a request that its installer tag covers: the
    object without "auth", keys sorted at every level, no spaces, strings as
    UTF-8 with only backslash, quote and control characters escaped
    (\\u00xx), integers in decimal (docs/local-port.md; the hub computes the
    same, firmware/local_auth.py `canonical`)."""
    out: list[str] = []
    _canon(req, out, 0)
    return "".join(out).encode()


def request_tag(session_key: bytes, n: int, req: dict[str, Any]) -> bytes:
    """The per-request tag of an installer session: it covers the request
    number, the command and every argument (docs/local-port.md)."""
    return _mac(session_key, n.to_bytes(4, "big"), canonical(req))[:16]


def installer_key_for(chf_eui: str | None) -> bytes:
    """The installer credential the laptop holds for a hub: the one
    `chub provision` recorded for its CHF EUI-64, else $CHUB_INSTALLER_KEY
    (hex), else the emulated board's test credential."""
    if chf_eui:
        from .records import ProvisionDB

        key = ProvisionDB.lookup_credential(chf_eui)
        if key is not None:
            return key
    env = os.environ.get("CHUB_INSTALLER_KEY")
    if env:
        return bytes.fromhex(env)
    return TEST_INSTALLER_KEY


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (binascii's CRC-CCITT with init 0xFFFF)."""
    return binascii.crc_hqx(data, crc)


def encode_frame(body: bytes) -> bytes:
    if len(body) > MAX_BODY:
        raise ValueError(f"frame body of {len(body)} bytes is over {MAX_BODY}")
    return bytes([SOF]) + len(body).to_bytes(2, "big") + body + crc16(body).to_bytes(2, "big")


class Response(NamedTuple):
    seq: int
    status: int
    result: dict[str, Any]


class FrameDecoder:
    """Splits a byte stream into frame bodies and text (everything else).

    A candidate frame that is still incomplete is given up as soon as a later
    SOF in the buffer starts a complete frame with a good CRC, so a stray SOF
    byte in the console text cannot hold back a real response."""

    def __init__(self, max_body: int = MAX_BODY) -> None:
        self.max_body = max_body
        self.buf = bytearray()

    def _frame_at(self, i: int) -> int:
        """Length of a good frame at buf[i], 0 if it needs more bytes, -1 if bad."""
        buf = self.buf
        if len(buf) - i < 3:
            return 0
        size = int.from_bytes(buf[i + 1 : i + 3], "big")
        if size > self.max_body:
            return -1
        if len(buf) - i < size + 5:
            return 0
        body = bytes(buf[i + 3 : i + 3 + size])
        if crc16(body) != int.from_bytes(buf[i + 3 + size : i + 5 + size], "big"):
            return -1
        return size + 5

    def feed(self, data: bytes) -> list[bytes | bytearray]:
        """Add data; return, in order, text pieces (bytearray) and frame bodies (bytes)."""
        self.buf += data
        out: list[bytes | bytearray] = []
        buf = self.buf
        pos = 0
        text_start = 0
        while True:
            i = buf.find(SOF, pos)
            if i < 0:
                pos = len(buf)
                break
            n = self._frame_at(i)
            if n < 0:
                pos = i + 1
                continue
            if n == 0:
                # incomplete: wait, unless a later SOF holds a complete good frame
                j = buf.find(SOF, i + 1)
                while j >= 0 and self._frame_at(j) <= 0:
                    j = buf.find(SOF, j + 1)
                if j < 0:
                    pos = i
                    break
                pos = j
                continue
            if i > text_start:
                out.append(bytearray(buf[text_start:i]))
            out.append(bytes(buf[i + 3 : i + n - 2]))
            pos = text_start = i + n
        if pos > text_start:
            out.append(bytearray(buf[text_start:pos]))
        del buf[:pos]
        return out


def _jsonable(v: Any) -> Any:
    return v.hex() if isinstance(v, bytes | bytearray | memoryview) else v


class LocalPortClient:
    """Request/response client: ``LocalPortClient(url).call("status")``.

    ``url`` is any pyserial URL (``socket://HOST:PORT``, ``/dev/ttyUSB0``,
    ``rfc2217://...``, ``loop://``); real serial ports run at ``baudrate``.
    Bytes arguments are sent as hex strings. ``console`` keeps the last
    ``console_lines`` lines of text the hub printed between frames;
    ``on_console`` (if given) sees each complete line as it arrives."""

    def __init__(
        self,
        url: str,
        timeout: float = 5.0,
        *,
        baudrate: int = 115200,
        console_lines: int = 200,
        on_console: Callable[[str], None] | None = None,
        credential: bytes | bool | None = None,
    ) -> None:
        self.url = url
        # None: authenticate when the hub asks, with installer_key_for(hub);
        # bytes: with this credential; False: never (see what a stranger sees)
        self.credential = credential
        self._session: bytes | None = None
        self._n = 0
        self.timeout = timeout
        self.on_console = on_console
        self.console: deque[str] = deque(maxlen=console_lines)
        self._partial = bytearray()
        self._decoder = FrameDecoder()
        self._responses: deque[Response] = deque()
        self._have = 0  # bytes of the frame being sent that the hub acknowledged (MORE)
        # a fresh random start: a reconnecting client does not take an old
        # connection's late answers for its own (seq 0 is never used)
        self._seq = random.randrange(1, 256)
        self._ser = serial.serial_for_url(url, baudrate=baudrate, timeout=timeout, do_not_open=True)
        self._ser.open()

    # -- context manager ----------------------------------------------------
    def __enter__(self) -> LocalPortClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._ser.is_open:
            self.end_session()
            self._ser.close()

    # -- requests -----------------------------------------------------------
    def next_seq(self) -> int:
        self._seq = self._seq % 255 + 1
        return self._seq

    def call(self, cmd: str, timeout: float | None = None, **args: Any) -> dict[str, Any]:
        """Send one request and return its result; raise LocalPortError on an
        error status, LocalPortTimeout if no answer comes within timeout.
        A request the hub refuses as not authorised is sent again once after
        authenticating (unless credential=False)."""
        resp = self._request(cmd, args, timeout)
        if resp.status == NOT_AUTHORISED and self.credential is not False and cmd not in ("auth", "auth_challenge"):
            self.authenticate()
            resp = self._request(cmd, args, timeout)
        if resp.status != OK:
            raise LocalPortError(resp.status, str(resp.result.get("error", resp.result)))
        return resp.result

    def _request(self, cmd: str, args: dict[str, Any], timeout: float | None) -> Response:
        req = {"cmd": cmd}
        req.update({k: _jsonable(v) for k, v in args.items()})
        if self._session is not None and cmd not in ("auth", "auth_challenge") and "auth" not in req:
            self._n += 1
            req["auth"] = [self._n, request_tag(self._session, self._n, req).hex()]
        seq = self.next_seq()
        # UTF-8 as it is (no \u escapes: a character outside the BMP would
        # become a surrogate pair, which the hub refuses)
        body = bytes([seq]) + json.dumps(req, separators=(",", ":"), ensure_ascii=False).encode()
        self.send_frame(encode_frame(body), timeout)
        return self.read_response(seq, timeout)

    def send_frame(self, frame: bytes, timeout: float | None = None) -> None:
        """Write one frame with flow control: at most WINDOW bytes beyond
        what the hub acknowledged (status MORE); LocalPortTimeout when it
        stops acknowledging."""
        self._have = 0
        sent = min(len(frame), WINDOW)
        self.send_raw(frame[:sent])
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while sent < len(frame):
            if sent < self._have + WINDOW:
                end = min(len(frame), self._have + WINDOW)
                self.send_raw(frame[sent:end])
                sent = end
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise LocalPortTimeout(f"the hub on {self.url} stopped taking the request at byte {self._have}")
            self.poll(min(left, 0.5))

    def authenticate(self, credential: bytes | None = None) -> None:
        """Open an installer session: challenge, HMAC answer, session key."""
        self._session = None
        key = credential or (self.credential if isinstance(self.credential, bytes) else None)
        if key is None:
            try:
                eui = self.call("identity")["chf"]["eui"]
            except (LocalPortError, KeyError, TypeError):
                eui = None
            key = installer_key_for(eui)
        for attempt in (1, 2):
            ch = self.call("auth_challenge")
            if not ch.get("credential"):
                raise LocalPortError(NOT_AUTHORISED, "the hub has no installer credential yet: run `chub provision`")
            nonce = bytes.fromhex(ch["nonce"])
            try:
                self.call("auth", mac=_mac(key, b"chub-auth", nonce).hex())
                break
            except LocalPortError as e:
                # the hub's back-off after wrong credentials: "... wait N ms"; wait once
                m = re.search(r"wait (\d+) ms", e.message)
                if attempt == 2 or e.status != NOT_AUTHORISED or m is None or int(m.group(1)) > 30000:
                    raise
                time.sleep(int(m.group(1)) / 1000 + 0.05)
        self._session = _mac(key, b"chub-session", nonce)
        self._n = 0

    def end_session(self) -> None:
        """End the installer session (auth_end carries the session's tag:
        only its holder can end it)."""
        if self._session is not None:
            try:
                self._request("auth_end", {}, 0.5)
            except (LocalPortError, TimeoutError, OSError):
                pass
            self._session = None

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (a frame from encode_frame, or anything)."""
        self._ser.write(data)
        self._ser.flush()

    def read_response(self, seq: int | None = None, timeout: float | None = None) -> Response:
        """The next response with this seq (any response if seq is None).

        Responses with another seq are dropped. A frame-level error the hub
        could not tie to a request (seq 0) while waiting for seq is reported
        if nothing else comes: LocalPortTimeout then names it."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        unmatched: Response | None = None
        while True:
            while self._responses:
                r = self._responses.popleft()
                if seq is None or r.seq == seq:
                    return r
                if r.seq == 0 and r.status != OK:
                    unmatched = r
            left = deadline - time.monotonic()
            if left <= 0:
                msg = f"no answer from the hub on {self.url}"
                if seq is not None:
                    msg += f" to request {seq}"
                if unmatched is not None:
                    msg += f" (the hub reported: {unmatched.result.get('error', unmatched.status)})"
                raise LocalPortTimeout(msg)
            self.poll(left)

    def poll(self, timeout: float = 0.0) -> None:
        """Read what the hub has sent (waiting up to timeout for the first
        byte): console text goes to `console`, responses are kept for
        read_response."""
        self._ser.timeout = timeout
        data = self._ser.read(1)
        if data:
            self._ser.timeout = 0
            data += self._ser.read(65536)
            self._absorb(data)

    # -- input --------------------------------------------------------------
    def _absorb(self, data: bytes) -> None:
        for piece in self._decoder.feed(data):
            if isinstance(piece, bytearray):
                self._text(piece)
            elif len(piece) >= 2:
                r = self._response(piece)
                if r.status == MORE and r.seq == 0:
                    self._have = max(self._have, int(r.result.get("have", 0)))
                else:
                    self._responses.append(r)
            else:
                self._text(bytearray(b"<short frame>\n"))

    @staticmethod
    def _response(body: bytes) -> Response:
        try:
            result = json.loads(body[2:].decode())
        except ValueError:
            result = None
        if not isinstance(result, dict):
            return Response(body[0], MALFORMED_RESPONSE, {"error": f"not a JSON object: {body[2:80]!r}"})
        return Response(body[0], body[1], result)

    def _text(self, piece: bytearray) -> None:
        self._partial += piece
        while True:
            i = self._partial.find(b"\n")
            if i < 0:
                break
            line = self._partial[:i].rstrip(b"\r").decode("utf-8", "replace")
            del self._partial[: i + 1]
            self.console.append(line)
            if self.on_console is not None:
                self.on_console(line)
        if len(self._partial) > 4096:  # a runaway line without newline
            self.console.append(self._partial.decode("utf-8", "replace"))
            self._partial.clear()

    def console_text(self) -> list[str]:
        """The last lines of console text, with any unfinished line last."""
        lines = list(self.console)
        if self._partial:
            lines.append(self._partial.decode("utf-8", "replace"))
        return lines
