# Local port: the installer's framed request/response protocol on the console
# UART (docs/local-port.md). Frame: SOF 0xC5 | body length u16 BE | body |
# CRC-16/CCITT-FALSE of the body, u16 BE. Request body: seq | JSON object with
# "cmd". Response body: seq | status | JSON object. Bytes outside frames (the
# console's own text, line noise) are ignored; after a bad frame the parser
# resynchronises on the next SOF, rescanning the bytes it already holds.
import asyncio
import json

try:
    from micropython import const
except ImportError:  # CPython (fuzzing only)
    def const(x):
        return x

from log import log, log_exc
from gbcs.gcm import ct_equal
from gbcs.p256 import hmac_sha256

SOF = const(0xC5)
MAX_BODY = const(4096)
# the reader's standing buffer: every request but a GBCS message fits it; a
# larger frame gets a buffer of its own size while it is read
SMALL = const(256)
TIMEOUT_MS = const(2000)
# flow control (docs/local-port.md): a client keeps at most WINDOW bytes of a
# frame beyond what the hub acknowledged (an ESP32's console ring holds 259);
# the hub acknowledges every ACK_EVERY bytes of a frame longer than WINDOW
WINDOW = const(256)
ACK_EVERY = const(128)

# status codes
OK = const(0)
BAD_CRC = const(1)
TOO_LONG = const(2)
BAD_REQUEST = const(3)
UNKNOWN_COMMAND = const(4)
BAD_ARGS = const(5)
NOT_AUTHORISED = const(6)
INTERNAL = const(7)
TRUNCATED = const(8)
MORE = const(9)  # seq 0, {"have": n}: n bytes of the frame being received are in

_SOF_B = b"\xc5"
_MESSAGES = {
    BAD_CRC: "bad CRC",
    TOO_LONG: "frame too long",
    TRUNCATED: "truncated frame",
}


class FrameError(ValueError):
    """A malformed frame; `status` is the local-port status code."""

    def __init__(self, status, msg):
        super().__init__(msg)
        self.status = status


class NotAuthorised(Exception):
    """Raised by a command handler when the installer is not authorised."""


def crc16(data, crc=0xFFFF):
    """CRC-16/CCITT-FALSE (poly 0x1021, no reflection); chain with `crc`."""
    for b in data:
        x = ((crc >> 8) ^ b) & 0xFF
        x ^= x >> 4
        crc = ((crc << 8) ^ (x << 12) ^ (x << 5) ^ x) & 0xFFFF
    return crc


def encode_frame(body):
    """One frame carrying `body` (bytes-like, at most MAX_BODY bytes)."""
    n = len(body)
    if n > MAX_BODY:
        raise FrameError(TOO_LONG, "body of %d bytes is over %d" % (n, MAX_BODY))
    crc = crc16(body)
    out = bytearray(n + 5)
    out[0] = SOF
    out[1] = n >> 8
    out[2] = n & 0xFF
    out[3 : 3 + n] = body
    out[3 + n] = crc >> 8
    out[4 + n] = crc & 0xFF
    return bytes(out)


def decode_frame(frame, max_body=MAX_BODY):
    """The body of one complete frame (no bytes before or after it)."""
    n = len(frame)
    if n < 5 or frame[0] != SOF:
        raise FrameError(TRUNCATED, "not a frame")
    size = (frame[1] << 8) | frame[2]
    if size > max_body:
        raise FrameError(TOO_LONG, "frame too long")
    if n != size + 5:
        raise FrameError(TRUNCATED, "frame length %d does not match header %d" % (n, size))
    mv = memoryview(frame)
    if crc16(mv[3 : 3 + size]) != (frame[n - 2] << 8) | frame[n - 1]:
        raise FrameError(BAD_CRC, "bad CRC")
    return mv[3 : 3 + size]


class FrameReader:
    """Incremental frame parser with a standing buffer of `size` bytes; a
    frame whose header announces more gets a buffer of its own length (at
    most max_body + 5) until it is given up (`grown` counts them).

    `feed(data, off, end)` consumes bytes of data[off:end] until one event is
    ready or the input runs out, and returns the new offset. `event` is then
    None (need more bytes), OK (a frame: `body` is a memoryview into the
    buffer, valid until the next feed), BAD_CRC or TOO_LONG (`seq` is the
    request's seq byte for a bad CRC, else 0). Call feed again (with the rest
    of the input, or none) until event is None: after an error the parser
    rescans the bytes it holds for the next SOF. `in_frame()` tells that a
    frame has started; `truncate()` gives it up (the caller's timeout)."""

    def __init__(self, max_body=MAX_BODY, size=SMALL):
        self.max_body = max_body
        self._small = bytearray(size)
        self._use(self._small)
        self.grown = 0
        self.n = 0  # bytes of the current candidate frame (buf[0] is SOF)
        self.event = None
        self.seq = 0
        self.body = None
        self.skipped = 0  # bytes ignored outside frames
        self.frames = 0
        self.errors = 0
        self._delivered = False
        self._used = 0

    def _use(self, buf):
        self.buf = buf
        self.mv = memoryview(buf)

    def in_frame(self):
        return self.n > 0 and not self._delivered

    def _drop(self, k):
        # discard buf[0:k]; keep what follows from its first SOF on (in the
        # standing buffer again when it fits)
        n = self.n
        i = self.buf.find(_SOF_B, k, n)
        small = self._small
        if i < 0:
            self.skipped += n - k
            self.n = 0
            if self.buf is not small:
                self._use(small)
            return
        self.skipped += i - k
        if self.buf is not small and n - i <= len(small):
            small[0 : n - i] = self.mv[i:n]
            self._use(small)
        else:
            self.mv[0 : n - i] = self.mv[i:n]
        self.n = n - i

    def _resync(self, status, seq):
        # give up the candidate at buf[0]; restart at the next SOF it holds
        self._drop(1)
        self.event = status
        self.seq = seq
        self.errors += 1

    def truncate(self):
        """The frame stopped arriving: report TRUNCATED and resynchronise."""
        if self.in_frame():
            self._resync(TRUNCATED, 0)
        else:
            self.event = None

    def feed(self, data, off=0, end=-1):
        if end < 0:
            end = len(data)
        self.event = None
        self.body = None
        if self._delivered:
            # bytes a rescan brought in after the frame stay in play
            self._delivered = False
            self._drop(self._used)
        buf = self.buf
        src = None
        while True:
            n = self.n
            if n == 0:
                i = data.find(_SOF_B, off, end)
                if i < 0:
                    self.skipped += end - off
                    return end
                self.skipped += i - off
                buf[0] = SOF
                self.n = 1
                off = i + 1
                continue
            if n < 3:
                need = 3
            else:
                size = (buf[1] << 8) | buf[2]
                if size > self.max_body:
                    self._resync(TOO_LONG, 0)
                    return off
                need = size + 5
                if need > len(buf) and n < need:
                    big = bytearray(need)
                    big[0:n] = self.mv[0:n]
                    self._use(big)
                    buf = big
                    self.grown += 1
            if n < need:
                k = end - off
                if k <= 0:
                    return off
                if k > need - n:
                    k = need - n
                if src is None:
                    src = memoryview(data)
                buf[n : n + k] = src[off : off + k]
                self.n = n + k
                off += k
                continue
            size = need - 5
            seq = buf[3] if size else 0
            if crc16(self.mv[3 : 3 + size]) != (buf[need - 2] << 8) | buf[need - 1]:
                self._resync(BAD_CRC, seq)
                return off
            self.body = self.mv[3 : 3 + size]
            self.seq = seq
            self.event = OK
            self.frames += 1
            self._delivered = True
            self._used = need
            return off


# ---- server ---------------------------------------------------------------

async def _reply(writer, seq, status, payload):
    # header, body, CRC: the body is written as it is, not copied into a
    # frame buffer (a reply may be 4 KB). The emulated board's socket has
    # TCP_NODELAY, so the three writes do not wait on each other.
    size = len(payload) + 2
    head = bytes((SOF, size >> 8, size & 0xFF, seq, status))
    crc = crc16(payload, crc16(head[3:]))
    writer.write(head)
    writer.write(payload)
    writer.write(bytes((crc >> 8, crc & 0xFF)))
    await writer.drain()


def _error(msg):
    return json.dumps({"error": msg}).encode()


async def _read(reader, buf, readinto):
    if readinto is not None:
        return await readinto(buf)
    data = await reader.read(len(buf))
    buf[0 : len(data)] = data
    return len(data)


async def _wait_ms(aw, ms):
    if hasattr(asyncio, "wait_for_ms"):
        return await asyncio.wait_for_ms(aw, ms)
    return await asyncio.wait_for(aw, ms / 1000)


async def _handle(fr, writer, dispatch, max_body):
    status = fr.event
    if status != OK:
        msg = _MESSAGES[status]
        log("local", msg)
        await _reply(writer, fr.seq, status, _error(msg))
        return
    body = fr.body
    if len(body) == 0:
        await _reply(writer, 0, BAD_REQUEST, _error("empty body"))
        return
    seq = body[0]
    try:
        req = json.loads(str(body[1:], "utf-8"))
    except ValueError:  # includes UnicodeError
        req = None
    cmd = req.get("cmd") if isinstance(req, dict) else None
    if not isinstance(cmd, str):
        await _reply(writer, seq, BAD_REQUEST, _error("request is not a JSON object with a string 'cmd'"))
        return
    status = OK
    res = None
    try:
        res = await dispatch(req)
    except NotAuthorised as e:
        status, payload = NOT_AUTHORISED, _error(str(e) or "not authorised")
    except KeyError as e:
        if e.args and e.args[0] == cmd:
            status, payload = UNKNOWN_COMMAND, _error("unknown command: %s" % cmd)
        else:
            log_exc("local", e)
            status, payload = INTERNAL, _error("internal error: KeyError %s" % e)
    except (ValueError, TypeError) as e:
        status, payload = BAD_ARGS, _error(str(e) or type(e).__name__)
    except Exception as e:
        log_exc("local", e)
        status, payload = INTERNAL, _error("internal error: %s %s" % (type(e).__name__, e))
    if status == OK:
        try:
            if not isinstance(res, dict):
                raise TypeError("not an object")
            payload = json.dumps(res).encode()
        except Exception as e:
            log_exc("local", e)
            status, payload = INTERNAL, _error("internal error: bad result of %s: %s" % (cmd, e))
    if len(payload) + 2 > max_body:
        status, payload = INTERNAL, _error("response of %d bytes is too long" % len(payload))
    await _reply(writer, seq, status, payload)


async def serve(reader, writer, dispatch, timeout_ms=TIMEOUT_MS, max_body=MAX_BODY, chunk=128):
    """Answer requests on one connection, one at a time, until EOF.

    `dispatch(req) -> dict` is async: KeyError(cmd) = unknown command,
    ValueError/TypeError = bad arguments, NotAuthorised = not authorised,
    anything else = internal error (logged; the server keeps serving)."""
    fr = FrameReader(max_body)
    rbuf = bytearray(chunk)
    readinto = getattr(reader, "readinto", None)
    acked = 0
    while True:
        got = 0
        timed_out = False
        if fr.in_frame():
            try:
                got = await _wait_ms(_read(reader, rbuf, readinto), timeout_ms)
            except asyncio.TimeoutError:
                timed_out = True
        else:
            got = await _read(reader, rbuf, readinto)
        if timed_out:
            fr.truncate()
            await _handle(fr, writer, dispatch, max_body)
        elif not got:
            return fr
        off = 0
        while True:
            off = fr.feed(rbuf, off, got)
            if fr.event is None:
                break
            await _handle(fr, writer, dispatch, max_body)
        acked = await _ack(fr, writer, acked)


async def _ack(fr, writer, acked):
    # status MORE for every ACK_EVERY bytes of a frame longer than WINDOW
    n = fr.n
    if not fr.in_frame() or n < 3 or n < acked:
        return 0
    buf = fr.buf
    if ((buf[1] << 8) | buf[2]) + 5 > WINDOW and n - acked >= ACK_EVERY:
        await _reply(writer, 0, MORE, b'{"have":%d}' % n)
        return n
    return acked


# ---- installer authentication (docs/local-port.md) --------------------------
# Challenge-response with the installer credential K (32 bytes, written at
# provisioning; the emulated board has a factory test credential). The hub
# answers auth_challenge with a fresh nonce N; the client proves K with
# auth {mac: HMAC-SHA256(K, "chub-auth" | N)}; both then hold the session key
# S = HMAC-SHA256(K, "chub-session" | N). Every protected request carries
# "auth": [n, tag] with n > the last n of the session and tag = the first 16
# bytes of HMAC-SHA256(S, n as u32 BE | cmd), so nothing a bystander saw on
# the line can be replayed, and a later client without K gets nothing. A
# session ends after _SESSION_S, after IDLE_S without a request, at auth_end,
# at a new challenge or when the credential changes.

_SESSION_S = const(900)
IDLE_S = const(300)


def request_tag(session_key, n, cmd):
    return hmac_sha256(session_key, bytes(((n >> 24) & 0xFF, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF)),
                       cmd.encode())[:16]


class InstallerAuth:
    """InstallerAuth(get_key, rand, now_s): get_key() -> the credential (32
    bytes) or None when the hub has none (factory-blank: only the open and
    first-provisioning commands work)."""

    def __init__(self, get_key, rand, now_s):
        self.get_key = get_key
        self.rand = rand
        self.now_s = now_s
        self.nonce = None
        self.session = None  # [key, last n, started, last used, credential]
        self.failures = 0

    def challenge(self):
        self.session = None
        self.nonce = bytes(self.rand(16))
        return self.nonce

    def answer(self, mac):
        nonce, self.nonce = self.nonce, None  # one try per challenge
        key = self.get_key()
        if key is None:
            raise NotAuthorised("the hub has no installer credential: provision it first")
        if nonce is None:
            raise NotAuthorised("no challenge: call auth_challenge first")
        if not ct_equal(hmac_sha256(key, b"chub-auth", nonce), mac):
            self.failures += 1
            raise NotAuthorised("wrong installer credential")
        t = self.now_s()
        self.session = [hmac_sha256(key, b"chub-session", nonce), 0, t, t, key]
        return _SESSION_S

    def end(self):
        self.session = None
        self.nonce = None

    def check(self, req, cmd):
        """Raise NotAuthorised unless req carries a fresh tag of this session."""
        s = self.session
        if s is None:
            raise NotAuthorised("%s needs an authenticated installer (auth_challenge, auth)" % cmd)
        t = self.now_s()
        if t - s[2] > _SESSION_S or t - s[3] > IDLE_S or s[4] != self.get_key():
            self.session = None
            raise NotAuthorised("the installer session has expired: authenticate again")
        a = req.get("auth")
        if not isinstance(a, list) or len(a) != 2 or not isinstance(a[0], int) or not isinstance(a[1], str):
            raise NotAuthorised("%s needs an installer session tag" % cmd)
        n = a[0]
        if n <= s[1] or n > 0xFFFFFFFF:
            raise NotAuthorised("stale request number")
        try:
            tag = bytes.fromhex(a[1])
        except ValueError:
            raise NotAuthorised("bad session tag")
        if not ct_equal(request_tag(s[0], n, cmd), tag):
            raise NotAuthorised("bad session tag")
        s[1] = n
        s[3] = t


def guard(dispatch, auth, open_cmds, first_cmds=(), known=None):
    """A dispatch that lets `open_cmds` through, `first_cmds` too while the
    hub has no credential, and everything else only with a session tag. The
    auth commands themselves are served here. known: the commands the hub
    has (a container, e.g. hub.commands); one not in it goes through to be
    answered as unknown."""

    return _Guard(dispatch, auth, open_cmds, first_cmds, known)


class _Guard:
    # the guarded dispatch (guard() makes it)
    def __init__(self, dispatch, auth, open_cmds, first_cmds, known):
        self.dispatch = dispatch
        self.auth = auth
        self.open_cmds = open_cmds
        self.first_cmds = first_cmds
        self.known = known

    async def __call__(self, req):
        auth = self.auth
        cmd = req.get("cmd")
        if cmd == "auth_challenge":
            key = auth.get_key()
            return {"nonce": auth.challenge().hex(), "credential": key is not None}
        if cmd == "auth":
            mac = req.get("mac")
            if not isinstance(mac, str):
                raise ValueError("'mac' must be a hex string")
            try:
                mac = bytes.fromhex(mac)
            except ValueError:
                raise ValueError("'mac' is not hex")
            return {"ttl_s": auth.answer(mac)}
        if cmd == "auth_end":
            auth.end()
            return {}
        known = self.known
        if cmd in self.open_cmds or (known is not None and cmd not in known):
            return await self.dispatch(req)
        if not (cmd in self.first_cmds and auth.get_key() is None):
            auth.check(req, cmd)
        return await self.dispatch(req)
