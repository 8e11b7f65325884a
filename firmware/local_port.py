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

import lazy
from flag import wake_after
from log import log, log_exc
from jsonout import JsonOut

# Parts used on request are loaded for it and dropped after (firmware/lazy.py):
# the installer's authentication and the strict check of \u-escaped strings
# (local_auth); the whole-frame codec for clients and tests is local_frame.
_SOF = const(0xC5)
MAX_BODY = const(4096)
# the reader's standing buffer: a frame's header (SOF, length) and the bytes
# a rescan keeps; a frame gets a buffer of its own size while it is read
# (one allocation a frame, given back once it is handled)
_SMALL = const(8)
_TIMEOUT_MS = const(2000)  # deadline for a whole frame, from its SOF,
_MS_PER_BYTE = const(2)  # extended by this for each byte of it received (flow control waits)
# flow control (docs/local-port.md): a client keeps at most _WINDOW bytes of a
# frame beyond what the hub acknowledged (an ESP32's console ring holds 259);
# the hub acknowledges every _ACK_EVERY bytes of a frame longer than _WINDOW
_WINDOW = const(256)
_ACK_EVERY = const(128)

# status codes (those nothing outside reads are private: no RAM)
OK = const(0)
BAD_CRC = const(1)
TOO_LONG = const(2)
_BAD_REQUEST = const(3)
_UNKNOWN_COMMAND = const(4)
_BAD_ARGS = const(5)
_NOT_AUTHORISED = const(6)
_INTERNAL = const(7)
TRUNCATED = const(8)
_MORE = const(9)  # seq 0, {"have": n}: n bytes of the frame being received are in

_SOF_B = const(b"\xc5")


class NotAuthorised(Exception):
    """Raised by a command handler when the installer is not authorised."""


def crc16(data, crc=0xFFFF):
    """CRC-16/CCITT-FALSE (poly 0x1021, no reflection); chain with `crc`."""
    for b in data:
        x = ((crc >> 8) ^ b) & 0xFF
        x ^= x >> 4
        crc = ((crc << 8) ^ (x << 12) ^ (x << 5) ^ x) & 0xFFFF
    return crc


class FrameReader:
    """Incremental frame parser with a standing buffer of `size` bytes (a
    header); a frame whose header announces more gets a buffer of its own
    length (at most max_body + 5) until it is given up (`grown` counts
    them).

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
        self.buf = self._small = bytearray(size)
        self.grown = 0
        self.n = 0  # bytes of the current candidate frame (buf[0] is SOF)
        self.event = None
        self.seq = 0
        self.body = None
        self.skipped = 0  # bytes ignored outside frames
        self.frames = 0
        self.errors = 0
        self._used = 0  # the delivered frame's length (0: none delivered)

    def in_frame(self):
        return self.n > 0 and not self._used

    def space(self):
        """Where the current frame's next bytes go, in its own buffer (a
        memoryview; serve reads into it and adds what came to `n`), once
        its header is in (n >= 3, after a feed); else None."""
        n = self.n
        if n < 3 or self._used:
            return None
        b = self.buf
        return memoryview(b)[n : ((b[1] << 8) | b[2]) + 5]

    def _drop(self, k):
        # discard buf[0:k]; keep what follows from its first SOF on (in the
        # standing buffer again when it fits)
        n = self.n
        i = self.buf.find(_SOF_B, k, n)
        small = self._small
        if i < 0:
            self.skipped += n - k
            self.n = 0
            self.buf = small
            return
        self.skipped += i - k
        mv = memoryview(self.buf)
        if self.buf is not small and n - i <= len(small):
            small[0 : n - i] = mv[i:n]
            self.buf = small
        else:
            mv[0 : n - i] = mv[i:n]
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
        if self._used:
            # bytes a rescan brought in after the frame stay in play
            self._drop(self._used)
            self._used = 0
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
                buf[0] = _SOF
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
                    big[0:n] = memoryview(buf)[0:n]
                    self.buf = buf = big
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
            mv = memoryview(buf)
            if crc16(mv[3 : 3 + size]) != (buf[need - 2] << 8) | buf[need - 1]:
                self._resync(BAD_CRC, seq)
                return off
            self.body = mv[3 : 3 + size]
            self.seq = seq
            self.event = OK
            self.frames += 1
            self._used = need
            return off


# ---- text and arguments -----------------------------------------------------

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


# ---- server ---------------------------------------------------------------

async def _reply(writer, seq, status, payload):
    # an error or flow-control reply (a short payload, bytes): header, body,
    # CRC, the body written as it is
    size = len(payload) + 2
    head = bytes((_SOF, size >> 8, size & 0xFF, seq, status))
    crc = crc16(payload, crc16(head[3:]))
    writer.write(head)
    writer.write(payload)
    writer.write(bytes((crc >> 8, crc & 0xFF)))
    await writer.drain()


def _error(msg):
    return json.dumps({"error": msg}).encode()


async def _read(reader, buf):
    # a stream with read() only (no readinto)
    data = await reader.read(len(buf))
    buf[0 : len(data)] = data
    return len(data)


async def _handle(fr, writer, dispatch, max_body):
    status = fr.event
    if status != OK:
        msg = "bad CRC" if status == BAD_CRC else "frame too long" if status == TOO_LONG else "truncated frame"
        log("local", msg)
        await _reply(writer, fr.seq, status, _error(msg))
        return
    body = fr.body
    if len(body) == 0:
        await _reply(writer, 0, _BAD_REQUEST, _error("empty body"))
        return
    seq = body[0]
    # the request is parsed where it lies, in the frame's buffer (json takes
    # any buffer): no copy of its text, which may be 4 KB
    text = body[1:]
    try:
        if len(text) and max(text) > 0x7F and not utf8_strict(text):
            raise UnicodeError
        req = json.loads(text)
        if fr.buf.find(b"\\u", 4, 4 + len(text)) >= 0:
            try:
                ok = lazy.load("local_auth").strings_strict(req, utf8_strict)
            finally:
                lazy.drop("local_auth")
            if not ok:
                raise UnicodeError
    except UnicodeError:
        await _reply(writer, seq, _BAD_REQUEST, _error("request is not well-formed UTF-8"))
        return
    except ValueError:
        req = None
    cmd = req.get("cmd") if isinstance(req, dict) else None
    if not isinstance(cmd, str):
        await _reply(writer, seq, _BAD_REQUEST, _error("request is not a JSON object with a string 'cmd'"))
        return
    status = OK
    res = None
    try:
        res = await dispatch(req)
    except NotAuthorised as e:
        status, payload = _NOT_AUTHORISED, _error(str(e) or "not authorised")
    except KeyError as e:
        if e.args and e.args[0] == cmd:
            status, payload = _UNKNOWN_COMMAND, _error("unknown command: %s" % cmd)
        else:
            log_exc("local", e)
            status, payload = _INTERNAL, _error("internal error: KeyError %s" % e)
    except (ValueError, TypeError) as e:
        status, payload = _BAD_ARGS, _error(str(e) or type(e).__name__)
    except Exception as e:
        log_exc("local", e)
        status, payload = _INTERNAL, _error("internal error: %s %s" % (type(e).__name__, e))
    if status == OK:
        try:
            # the result (a dict) as an OK reply, its JSON text written in
            # pieces of at most jsonout.PIECE bytes (no block of the reply's
            # size); ValueError/TypeError when it is not JSON text in UTF-8,
            # OverflowError when too long. Both passes run with no wait
            # between them: the result cannot change.
            if not isinstance(res, dict):
                raise TypeError("not an object")
            out = JsonOut(utf8_strict, crc16, 0xFFFF)
            out.value(res, 0)
            size = out.total + 2
            if size > max_body:
                raise OverflowError("response of %d bytes is too long" % out.total)
            out.start(writer, bytes((_SOF, size >> 8, size & 0xFF, seq, OK)), 3, size + 5)
            try:
                out.value(res, 0)
                out.finish()
                if out.total != size - 2:  # cannot happen: the same result, encoded twice
                    log("local", "reply of %d bytes announced as %d" % (out.total, size - 2))
            except MemoryError as e:
                # the frame is cut short: the client's request times out and is sent again
                log_exc("local", e)
            await writer.drain()
            return
        except OverflowError as e:
            payload = _error(str(e))
        except Exception as e:
            log_exc("local", e)
            payload = _error("internal error: bad result of %s: %s" % (cmd, e))
        status = _INTERNAL
    await _reply(writer, seq, status, payload)


async def serve(reader, writer, dispatch, timeout_ms=_TIMEOUT_MS, max_body=MAX_BODY, chunk=16):
    """Answer requests on one connection, one at a time, until EOF. The
    bytes between frames and a frame's header are read `chunk` at a time;
    the rest of a frame straight into its own buffer (FrameReader.space).

    `dispatch(req) -> dict` is async: KeyError(cmd) = unknown command,
    ValueError/TypeError = bad arguments, NotAuthorised = not authorised,
    anything else = internal error (logged; the server keeps serving)."""
    fr = FrameReader(max_body)
    rbuf = bytearray(chunk)
    readinto = getattr(reader, "readinto", None)
    acked = 0
    started = 0  # ticks of the read that brought the current frame's SOF
    while True:
        got = 0  # the bytes read; -1: the frame's deadline passed
        into = rbuf
        if fr.in_frame():
            into = fr.space() or rbuf
            # the deadline is the whole frame's, extended only by the bytes
            # that came: a byte now and then does not hold the port (a
            # candidate rescanned from held bytes after an error keeps the
            # deadline of the bytes it came with). n: the ms left
            n = timeout_ms + fr.n * _MS_PER_BYTE - asyncio.ticks_diff(asyncio.ticks(), started)
            if n <= 0:
                got = -1
            else:
                # the deadline: a small task of its own wakes this read
                # (flag.wake_after: asyncio.TimeoutError), cancelled once the
                # read is back (asyncio.wait_for would load asyncio.funcs,
                # held once loaded, and run the read in a task and two
                # frames more)
                due = asyncio.create_task(wake_after(asyncio.current_task(), n))
                try:
                    got = await (readinto(into) if readinto else _read(reader, into))
                except asyncio.TimeoutError:
                    got = -1
                # (a read that raises ends serve: the task then wakes a
                # task that is done, which it leaves alone)
                due.cancel()
                due = None
        else:
            # the stream's readinto awaited as it is: no coroutine frame of ours waits on it
            got = await (readinto(rbuf) if readinto else _read(reader, rbuf))
            started = asyncio.ticks()
        if got < 0:
            got = 0
            fr.truncate()
            await _handle(fr, writer, dispatch, max_body)
        elif not got:
            return fr
        if into is not rbuf:
            fr.n += got  # read into the frame's own buffer: feed() takes it from there
            got = 0
        off = 0
        while True:
            off = fr.feed(rbuf, off, got)
            if fr.event is None:
                break
            if fr.event == OK:
                started = asyncio.ticks()  # a frame after it in the same read starts now
            await _handle(fr, writer, dispatch, max_body)
        # flow control: status _MORE for every _ACK_EVERY bytes of a frame
        # longer than _WINDOW
        n = fr.n
        if not fr.in_frame() or n < 3 or n < acked:
            acked = 0
        elif ((fr.buf[1] << 8) | fr.buf[2]) + 5 > _WINDOW and n - acked >= _ACK_EVERY:
            await _reply(writer, 0, _MORE, b'{"have":%d}' % n)
            acked = n


# ---- installer authentication (docs/local-port.md; local_auth) ---------------

class InstallerAuth:
    """InstallerAuth(get_key, rand, now_ms, security_log=None,
    event_log=None): the installer-authentication state the guard keeps
    (local_auth, loaded for a request, does the rest). get_key() -> the
    credential (32 bytes) or None when the hub has none (factory-blank: only
    the open and first-provisioning commands work); now_ms() milliseconds
    since boot, unbounded (mono.ms); the CHF's logs take the failures
    (security) and the sessions (event)."""

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
        self.wait_from = 0  # when the back-off started (now_ms)

    def end(self):
        self.session = None
        self.nonce = None


_AUTH_CMDS = const(("auth_challenge", "auth", "auth_end"))


class guard:
    """guard(dispatch, auth, open_cmds, first_cmds, known): a dispatch that
    lets `open_cmds` through, `first_cmds` too while the hub has no
    credential, and everything else only with a session tag. The auth
    commands themselves are served here. known: the commands the hub has (a
    container, e.g. hub.commands, or None); one not in it goes through to be
    answered as unknown. The installer's part is local_auth, loaded for a
    request that needs it and dropped after."""

    def __init__(self, dispatch, auth, open_cmds, first_cmds, known):
        self.dispatch = dispatch
        self.auth = auth
        self.open_cmds = open_cmds
        self.first_cmds = first_cmds
        self.known = known

    async def __call__(self, req):
        cmd = req.get("cmd")
        known = self.known
        if cmd not in _AUTH_CMDS and (cmd in self.open_cmds or (known is not None and cmd not in known)):
            return await self.dispatch(req)
        try:
            res, why = lazy.load("local_auth").guard(self, req, cmd)
        finally:
            lazy.drop("local_auth")
        if why is not None:
            raise NotAuthorised(why)
        if res is not None:
            return res
        return await self.dispatch(req)
