# Local port: the installer's framed request/response protocol on the console
# UART (docs/local-port.md). Frame: SOF 0xC5 | body length u16 BE | body |
# CRC-16/CCITT-FALSE of the body, u16 BE. Request body: seq | JSON object with
# "cmd". Response body: seq | status | JSON object. Bytes outside frames (the
# console's own text, line noise) are ignored; after a bad frame the parser
# resynchronises on the next SOF, rescanning the bytes it already holds.
import asyncio
import json
import time

try:
    from micropython import const
except ImportError:  # CPython (fuzzing only)
    def const(x):
        return x

import codes
from log import log, log_exc
from gbcs.gcm import ct_equal
from gbcs.p256 import hmac_sha256
from jsonout import JsonOut

SOF = const(0xC5)
MAX_BODY = const(4096)
# the reader's standing buffer: every request but a GBCS message fits it; a
# larger frame gets a buffer of its own size while it is read
_SMALL = const(256)
_TIMEOUT_MS = const(2000)  # deadline for a whole frame, from its SOF,
_MS_PER_BYTE = const(2)  # extended by this for each byte of it received (flow control waits)
# flow control (docs/local-port.md): a client keeps at most WINDOW bytes of a
# frame beyond what the hub acknowledged (an ESP32's console ring holds 259);
# the hub acknowledges every _ACK_EVERY bytes of a frame longer than WINDOW
WINDOW = const(256)
_ACK_EVERY = const(128)

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

    def __init__(self, max_body=MAX_BODY, size=_SMALL):
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


# ---- text and arguments -----------------------------------------------------

def _ticks():
    return time.ticks_ms() if hasattr(time, "ticks_ms") else int(time.monotonic() * 1000)


def _ticks_diff(a, b):
    return time.ticks_diff(a, b) if hasattr(time, "ticks_diff") else a - b


def utf8_strict(b):
    """True when b (bytes-like) is well-formed UTF-8: no overlong forms, no
    surrogates (U+D800-DFFF), nothing over U+10FFFF. MicroPython's own
    decoder accepts all three."""
    i = 0
    n = len(b)
    while i < n:
        c = b[i]
        if c < 0x80:
            i += 1
            continue
        lo = 0x80
        hi = 0xBF
        if 0xC2 <= c <= 0xDF:
            k = 1
        elif 0xE0 <= c <= 0xEF:
            k = 2
            if c == 0xE0:
                lo = 0xA0
            elif c == 0xED:
                hi = 0x9F
        elif 0xF0 <= c <= 0xF4:
            k = 3
            if c == 0xF0:
                lo = 0x90
            elif c == 0xF4:
                hi = 0x8F
        else:
            return False
        if i + k >= n:
            return False
        if not lo <= b[i + 1] <= hi:
            return False
        for j in range(i + 2, i + k + 1):
            if not 0x80 <= b[j] <= 0xBF:
                return False
        i += k + 1
    return True


def _strings_strict(v, depth=0):
    # every string in a parsed request is strict UTF-8 (JSON \u escapes can
    # make surrogates the byte check of the text did not see)
    if depth > 16:
        return False
    if isinstance(v, str):
        return len(v.encode()) == len(v) or utf8_strict(v.encode())
    if isinstance(v, dict):
        for k in v:
            if not _strings_strict(k, depth + 1) or not _strings_strict(v[k], depth + 1):
                return False
    elif isinstance(v, list):
        for x in v:
            if not _strings_strict(x, depth + 1):
                return False
    return True


def _qstr(s, out):
    # a string as its JSON text, in three pieces (no copy of a long value)
    t = s.replace("\\", "\\\\").replace('"', '\\"')
    for c in t:
        if c < " ":  # control characters as \u00XX
            t = "".join(c if c >= " " else "\\u%04x" % ord(c) for c in t)
            break
    out.append('"')
    out.append(t)
    out.append('"')


def _canon(v, out, depth):
    if depth > 16:
        raise ValueError("request nested too deeply")
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, int):
        out.append("%d" % v)
    elif isinstance(v, str):
        _qstr(v, out)
    elif isinstance(v, list):
        out.append("[")
        for i, x in enumerate(v):
            if i:
                out.append(",")
            _canon(x, out, depth + 1)
        out.append("]")
    elif isinstance(v, dict):
        out.append("{")
        first = True
        for k in sorted(v):
            if depth == 0 and k == "auth":
                continue
            if not first:
                out.append(",")
            first = False
            _qstr(k, out)
            out.append(":")
            _canon(v[k], out, depth + 1)
        out.append("}")
    else:
        raise ValueError("numbers in a request must be integers")


def canonical(req):
    """The canonical form of a request the installer's tag covers (bytes):
    the JSON object without its "auth" member, keys sorted at every level,
    no spaces, strings as UTF-8 with only \\ \" and control characters
    escaped (\\uXXXX, lower-case hex), integers in decimal; a float is refused
    (ValueError). docs/local-port.md; the client computes the same."""
    out = []
    _canon(req, out, 0)
    return "".join(out).encode()


def _need(req, name, default):
    v = req.get(name, default)
    if v is None:
        raise ValueError("'%s' is missing" % name)
    return v


def int_arg(req, name, lo, hi, default=None):
    """req[name] as an int in lo..hi (default when absent); ValueError else."""
    v = _need(req, name, default)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise ValueError("'%s' must be an integer %d..%d" % (name, lo, hi))
    return v


def str_arg(req, name, max_len, default=None):
    v = _need(req, name, default)
    if not isinstance(v, str) or len(v) > max_len:
        raise ValueError("'%s' must be a string of at most %d characters" % (name, max_len))
    return v


def hex_arg(req, name, max_bytes, default=None):
    """req[name], hex text (spaces and colons allowed), as bytes."""
    from binascii import unhexlify

    v = str_arg(req, name, 3 * max_bytes + 2, default)
    try:
        b = unhexlify(v.replace(" ", "").replace(":", ""))
    except ValueError:
        raise ValueError("'%s' is not hex" % name)
    if len(b) > max_bytes:
        raise ValueError("'%s' is over %d bytes" % (name, max_bytes))
    return b


def eui_arg(req, name="eui"):
    """req[name], an EUI-64 as hex text -> 16 upper-case hex digits."""
    from ids import eui_hex

    v = _need(req, name, None)
    if not isinstance(v, str):
        raise ValueError("'%s' must be an EUI-64 as hex text" % name)
    try:
        return eui_hex(v)
    except ValueError as e:
        raise ValueError("'%s': %s" % (name, e))


# ---- server ---------------------------------------------------------------

async def _reply(writer, seq, status, payload):
    # an error or flow-control reply (a short payload, bytes): header, body,
    # CRC, the body written as it is
    size = len(payload) + 2
    head = bytes((SOF, size >> 8, size & 0xFF, seq, status))
    crc = crc16(payload, crc16(head[3:]))
    writer.write(head)
    writer.write(payload)
    writer.write(bytes((crc >> 8, crc & 0xFF)))
    await writer.drain()


def _reply_obj(writer, seq, res, max_body):
    # a command's result (a dict) as an OK reply (the caller drains the
    # writer), its JSON text written in
    # pieces of at most jsonout.PIECE bytes (no block of the reply's size);
    # ValueError/TypeError when it is not JSON text in UTF-8, OverflowError
    # when too long. Both passes run with no wait between them: the result
    # cannot change.
    if not isinstance(res, dict):
        raise TypeError("not an object")
    out = JsonOut(utf8_strict, crc16, 0xFFFF)
    out.value(res, 0)
    size = out.total + 2
    if size > max_body:
        raise OverflowError("response of %d bytes is too long" % out.total)
    out.start(writer, bytes((SOF, size >> 8, size & 0xFF, seq, OK)), 3, size + 5)
    try:
        out.value(res, 0)
        out.finish()
    except MemoryError as e:
        # the frame is cut short: the client's request times out and is sent again
        log_exc("local", e)
        return
    if out.total != size - 2:  # cannot happen: the same result, encoded twice
        log("local", "reply of %d bytes announced as %d" % (out.total, size - 2))


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
        msg = "bad CRC" if status == BAD_CRC else "frame too long" if status == TOO_LONG else "truncated frame"
        log("local", msg)
        await _reply(writer, fr.seq, status, _error(msg))
        return
    body = fr.body
    if len(body) == 0:
        await _reply(writer, 0, BAD_REQUEST, _error("empty body"))
        return
    seq = body[0]
    # the request is parsed where it lies, in the frame's buffer (json takes
    # any buffer): no copy of its text, which may be 4 KB
    text = body[1:]
    try:
        if len(text) and max(text) > 0x7F and not utf8_strict(text):
            raise UnicodeError
        req = json.loads(text)
        if fr.buf.find(b"\\u", 4, 4 + len(text)) >= 0 and not _strings_strict(req):
            raise UnicodeError
    except UnicodeError:
        await _reply(writer, seq, BAD_REQUEST, _error("request is not well-formed UTF-8"))
        return
    except ValueError:
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
            _reply_obj(writer, seq, res, max_body)
            await writer.drain()
            return
        except OverflowError as e:
            payload = _error(str(e))
        except Exception as e:
            log_exc("local", e)
            payload = _error("internal error: bad result of %s: %s" % (cmd, e))
        status = INTERNAL
    await _reply(writer, seq, status, payload)


async def serve(reader, writer, dispatch, timeout_ms=_TIMEOUT_MS, max_body=MAX_BODY, chunk=128):
    """Answer requests on one connection, one at a time, until EOF.

    `dispatch(req) -> dict` is async: KeyError(cmd) = unknown command,
    ValueError/TypeError = bad arguments, NotAuthorised = not authorised,
    anything else = internal error (logged; the server keeps serving)."""
    fr = FrameReader(max_body)
    rbuf = bytearray(chunk)
    readinto = getattr(reader, "readinto", None)
    acked = 0
    started = 0  # ticks of the read that brought the current frame's SOF
    while True:
        got = 0
        timed_out = False
        if fr.in_frame():
            # the deadline is the whole frame's, extended only by the bytes
            # that came: a byte now and then does not hold the port (a
            # candidate rescanned from held bytes after an error keeps the
            # deadline of the bytes it came with)
            left = timeout_ms + fr.n * _MS_PER_BYTE - _ticks_diff(_ticks(), started)
            if left <= 0:
                timed_out = True
            else:
                try:
                    got = await _wait_ms(_read(reader, rbuf, readinto), left)
                except asyncio.TimeoutError:
                    timed_out = True
        else:
            got = await _read(reader, rbuf, readinto)
            started = _ticks()
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
            if fr.event == OK:
                started = _ticks()  # a frame after it in the same read starts now
            await _handle(fr, writer, dispatch, max_body)
        acked = await _ack(fr, writer, acked)


async def _ack(fr, writer, acked):
    # status MORE for every _ACK_EVERY bytes of a frame longer than WINDOW
    n = fr.n
    if not fr.in_frame() or n < 3 or n < acked:
        return 0
    buf = fr.buf
    if ((buf[1] << 8) | buf[2]) + 5 > WINDOW and n - acked >= _ACK_EVERY:
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
# bytes of HMAC-SHA256(S, n as u32 BE | canonical(request)): the tag covers
# the command and every argument, so nothing a bystander saw on the line can
# be replayed or changed, and a later client without K gets nothing. A
# session ends after _SESSION_MS, after IDLE_MS without a request, at
# auth_end (tagged: only the session's holder ends it), at a successful new
# authentication or when the credential changes; a new challenge leaves it
# alone. A wrong credential, a bad or stale tag go to the security log
# (codes.EV_AUTH_FAILED); wrong credentials are slowed by a back-off that doubles
# with each one in a row (BACKOFF_MS .. BACKOFF_MAX_MS) and ends at a success.

_SESSION_MS = const(900000)
IDLE_MS = const(300000)
BACKOFF_MS = const(500)
BACKOFF_MAX_MS = const(30000)


def request_tag(session_key, n, req):
    """The tag of request `req` (a dict: cmd and arguments; its "auth" member
    is left out) with request number n."""
    # the canonical form's pieces (str: MicroPython's hashlib takes a str's
    # UTF-8 bytes as they are) go to the hash one by one: a request of a few
    # KB is not joined and encoded into two more copies of its size
    out = []
    _canon(req, out, 0)
    return hmac_sha256(session_key, bytes(((n >> 24) & 0xFF, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF)),
                       *out)[:16]


def backoff_ms(failures):
    """The wait after `failures` wrong credentials in a row."""
    if failures <= 0:
        return 0
    return min(BACKOFF_MS << min(failures - 1, 16), BACKOFF_MAX_MS)


class InstallerAuth:
    """InstallerAuth(get_key, rand, now_ms, security_log=None,
    event_log=None): get_key() -> the credential (32 bytes) or None when the
    hub has none (factory-blank: only the open and first-provisioning
    commands work); now_ms() milliseconds since boot, unbounded (mono.ms); the
    CHF's logs take the failures (security) and the sessions (event)."""

    def __init__(self, get_key, rand, now_ms, security_log=None, event_log=None):
        self.get_key = get_key
        self.rand = rand
        self.now_ms = now_ms
        self.security_log = security_log
        self.event_log = event_log
        self.nonce = None
        self.session = None  # [key, last n, started, last used, credential]
        self.failures = 0  # wrong credentials in a row (the back-off)
        self.failed = 0  # wrong credentials, bad and stale tags since boot
        self.slowed = 0  # answers refused unheard during a back-off
        self._wait_from = 0

    def _log(self, lg, code, data):
        if lg is not None:
            try:
                lg.append(code, data)
            except Exception as e:  # no clock yet, flash trouble: the console has it
                log("local", "auth event 0x%04X not logged: %r" % (code, e))

    def _fail(self, why):
        self.failed += 1
        self._log(self.security_log, codes.EV_AUTH_FAILED, why)

    def backoff_left_ms(self):
        left = backoff_ms(self.failures) - (self.now_ms() - self._wait_from)
        return left if left > 0 else 0

    def challenge(self):
        self.nonce = bytes(self.rand(16))
        return self.nonce

    def answer(self, mac):
        nonce, self.nonce = self.nonce, None  # one try per challenge
        key = self.get_key()
        if key is None:
            raise NotAuthorised("the hub has no installer credential: provision it first")
        if nonce is None:
            raise NotAuthorised("no challenge: call auth_challenge first")
        left = self.backoff_left_ms()
        if left:
            self.slowed += 1
            raise NotAuthorised("too many wrong credentials: wait %d ms" % left)
        if not ct_equal(hmac_sha256(key, b"chub-auth", nonce), mac):
            self.failures += 1
            self._wait_from = self.now_ms()
            self._fail(b"credential")
            raise NotAuthorised("wrong installer credential")
        self.failures = 0
        t = self.now_ms()
        self.session = [hmac_sha256(key, b"chub-session", nonce), 0, t, t, key]
        self._log(self.event_log, codes.EV_LOCAL_PORT_SESSION, b"")
        return _SESSION_MS // 1000

    def end(self):
        self.session = None
        self.nonce = None

    def check(self, req, cmd):
        """Raise NotAuthorised unless req carries a fresh tag of this session."""
        s = self.session
        if s is None:
            raise NotAuthorised("%s needs an authenticated installer (auth_challenge, auth)" % cmd)
        t = self.now_ms()
        if t - s[2] > _SESSION_MS or t - s[3] > IDLE_MS or s[4] != self.get_key():
            self.session = None
            raise NotAuthorised("the installer session has expired: authenticate again")
        a = req.get("auth")
        if not isinstance(a, list) or len(a) != 2 or not isinstance(a[0], int) or not isinstance(a[1], str):
            raise NotAuthorised("%s needs an installer session tag" % cmd)
        n = a[0]
        if isinstance(n, bool) or n > 0xFFFFFFFF:
            raise NotAuthorised("bad request number")
        if n <= s[1]:
            self._fail(b"stale")
            raise NotAuthorised("stale request number")
        try:
            tag = bytes.fromhex(a[1])
        except ValueError:
            tag = b""
        if not ct_equal(request_tag(s[0], n, req), tag):
            self._fail(b"tag")
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
            mac = hex_arg(req, "mac", 32)
            return {"ttl_s": auth.answer(mac)}
        if cmd == "auth_end":
            if auth.session is None:
                return {"ended": False}
            auth.check(req, cmd)  # only the session's holder ends it
            auth.end()
            return {"ended": True}
        known = self.known
        if cmd in self.open_cmds or (known is not None and cmd not in known):
            return await self.dispatch(req)
        if not (cmd in self.first_cmds and auth.get_key() is None):
            auth.check(req, cmd)
        return await self.dispatch(req)
