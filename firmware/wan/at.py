# AT command channel for cellular modems.
# ATParser is the pure core: feed it the bytes the modem sent and it sorts
# them into the reply of the command in flight (info lines, final result,
# counted binary data) and unsolicited result codes (URCs, dispatched by
# prefix). ATChannel wraps it over an asyncio (reader, writer) pair and
# serialises commands with per-command timeouts.
from micropython import const
import asyncio

import flag
from log import KindException

_MAXLINE = const(256)
_MAXRAW = const(1500)
_LIMITS = const((_MAXLINE, _MAXRAW))  # a parser's longest line and raw block, unless a test asks for others
# ATParser._ls, the line state: a LF to skip (the line ended with CR), a
# line too long being dropped to its end
_LS_LF = const(1)
_LS_OVER = const(2)
# ATParser._need: what the command in flight still waits for (bits)
_N_FINAL = const(1)  # its final result (OK)
_N_DONE = const(2)  # its done line


class ATFormatError(ValueError):
    """A modem line whose fields do not have the expected form."""


# 3GPP 27.007 +CME ERROR codes with their verbose (AT+CMEE=2) texts
_CME = const((
    (3, b"operation not allowed"), (4, b"operation not supported"),
    (10, b"SIM not inserted"), (11, b"SIM PIN required"), (12, b"SIM PUK required"),
    (13, b"SIM failure"), (14, b"SIM busy"), (15, b"SIM wrong"), (16, b"incorrect password"),
    (17, b"SIM PIN2 required"), (18, b"SIM PUK2 required"), (30, b"no network service"),
    (31, b"network timeout"), (32, b"network not allowed - emergency calls only"),
    (100, b"unknown"), (103, b"Illegal MS"), (106, b"Illegal ME"),
    (107, b"GPRS services not allowed"), (111, b"PLMN not allowed"),
    (112, b"Location area not allowed"), (113, b"Roaming not allowed in this location area"),
    (132, b"service option not supported"), (133, b"requested service option not subscribed"),
    (134, b"service option temporarily out of order"), (148, b"unspecified GPRS error"),
    (149, b"PDP authentication failure"), (150, b"invalid mobile class"),
))


class ATError(KindException):
    """A command failed, raised as ATError(kind, cmd, line, lines=None); the
    kinds (the classes of before): ATError (ERROR, or a command-specific
    failure line), CmeError (+CME ERROR: <n> or its verbose text; .text,
    .code the 3GPP number, -1 unknown), CmsError (.code), IpError (+IP
    ERROR: <err_info> followed by ERROR; .info is the text, match by text),
    CipError (+CIPERROR: <err> of a failed AT+CIPSEND; .code: 2 not opened,
    4 closed, 8 busy), ATTimeout, ATClosed."""

    def __init__(self, kind, cmd, line, lines=None):
        super().__init__(kind, "%s -> %s" % (_s(cmd), _s(line)))
        self.cmd = cmd
        self.line = line
        self.lines = lines or []
        if kind == "CmeError":
            t = self.text = bytes(line[12:].strip())
            # the 3GPP number, given as such or as its verbose text (_CME)
            self.code = int(t) if t.isdigit() else -1
            if self.code < 0:
                t = t.lower()
                for code, name in _CME:
                    if name.lower() == t:
                        self.code = code
                        break
        elif kind == "CmsError" or kind == "CipError":
            t = line[12 if kind == "CmsError" else 10:].strip()
            self.code = int(t) if t.isdigit() else -1
        elif kind == "IpError":
            self.info = line[10:].strip()


def _s(b):
    if isinstance(b, (bytes, bytearray)):
        return repr(bytes(b))
    return str(b)


# URCs recognised even when no handler is registered (so they are not
# mistaken for replies or garbage)
_KNOWN_URCS = const((
    b"RDY", b"+CPIN:", b"SMS DONE", b"PB DONE", b"+CREG:", b"+CGREG:", b"+CEREG:",
    b"+CIPEVENT:", b"+IPCLOSE:", b"+CIPRXGET: 1,", b"RECV FROM:", b"+CTZV:", b"+CTZE:",
    b"*PSUTTZ:", b"DST:", b"*PSNWID:", b"+CMTI:", b"+CGEV:", b"+CNSMOD:", b"+CSQ:",
    b"CLOSED", b"*ATREADY:", b"+CGPS:", b"+CUSD:", b"+CLIENT:", b"+CPSI:",
    b"+CCHEVENT:", b"+CCH_PEER_CLOSED:", b"+CCH_RECV_CLOSED:", b"+CCH: ",
))


def split_fields(line, prefix=b""):
    """Fields of '<prefix> a,"b,c",d' as bytes, quotes removed (commas inside quotes kept)."""
    if prefix:
        if not line.startswith(prefix):
            raise ATFormatError("expected %s" % _s(prefix))
        line = line[len(prefix):]
    out = []
    cur = bytearray()
    q = False
    for b in line:
        if b == 34:  # "
            q = not q
        elif b == 44 and not q:  # ,
            out.append(bytes(cur).strip())
            cur = bytearray()
        else:
            cur.append(b)
    if q:
        raise ATFormatError("unbalanced quote")
    out.append(bytes(cur).strip())
    return out


def to_int(b, base=10):
    try:
        if base == 16 and b[:2] in (b"0x", b"0X"):
            b = b[2:]
        if not b or b[0] in b" \t":
            raise ValueError
        return int(b, base)
    except (ValueError, TypeError):
        raise ATFormatError("not a number: %s" % _s(b))


def _raw_head(ln):
    # a counted binary block's header: (link, count) (-1 for a bad field), or
    # None when ln is none: "+CIPRXGET: 2,<link>,<n>,<rest>" (a TCP link's
    # read), "+CCHRECV: DATA,<session>,<n>" (the SSL channel's)
    if ln.startswith(b"+CIPRXGET: 2,"):
        f = ln[13:].split(b",")
        if len(f) != 3:
            return -1, -1
    elif ln.startswith(b"+CCHRECV: DATA,"):
        f = ln[15:].split(b",")
        if len(f) != 2:
            return -1, -1
    else:
        return None
    return _num(f[0]), _num(f[1])


def _num(b):
    # lenient int for headers: -1 when not all digits
    if not b or len(b) > 6 or not b.isdigit():
        return -1
    return int(b)


# Final result codes, one record each: (text, whole line (else a prefix),
# the error it raises (0: OK; 1 ATError, 2 CmeError, 3 CmsError, 4 CipError:
# the ATError's kind, _ERR_KINDS[n - 1]), counted as stray when it comes
# with no command in flight (else it goes on to the URC / garbage checks)).
# A constant tuple, in flash when frozen.
_ERR_KINDS = const(("ATError", "CmeError", "CmsError", "CipError"))
_F_TEXT = const(0)
_F_WHOLE = const(1)
_F_ERR = const(2)
_F_STRAY = const(3)
_FINALS = const((
    (b"OK", True, 0, True),
    (b"ERROR", True, 1, True),
    (b"+CME ERROR:", False, 2, True),
    (b"+CMS ERROR:", False, 3, False),
    (b"+CIPERROR:", False, 4, False),
))


class ATParser:
    """Pure AT line parser. begin() a command, feed() bytes; when .finished
    the reply is in .result (None = OK, or an ATError), .lines, .data."""

    def __init__(self, maxline=_MAXLINE, maxraw=_MAXRAW):
        # a line that ends in the chunk it began in is read from the chunk
        # itself: no standing line buffer. One split across chunks is kept
        # as its bytes so far (_part, a bytearray of at most maxline, made
        # for that line); a longer one is dropped to its end (_ls _LS_OVER)
        # and counted as garbled. _lim: (maxline, maxraw)
        self._lim = _LIMITS if maxline == _MAXLINE and maxraw == _MAXRAW else (maxline, maxraw)
        self._part = None
        self._ls = 0
        # a raw data block (+CIPRXGET) is read into a buffer of its announced
        # size (_raw, _rawn bytes of it in so far), which is then handed
        # over: no standing buffer, no second copy. _rawlink: its link, None
        # for the command's own
        self._raw = None
        self._rawn = 0
        self._rawlink = -1
        self._urc = ()  # (prefix, fn) pairs (on)
        self.on_data = None  # fn(link, memoryview) for pushed socket data (copy it)
        self.notify = None  # fn() called when the command finishes or prompts
        self.garbled = 0
        self.urcs = 0
        self.stray = 0
        # the command in flight (begin): its reply's lines, result and data
        # are the caller's once it ends (end: none kept here)
        self.cmd = None
        self.finished = True
        self.result = None
        self.lines = None
        self.data = None
        self.prompt = None  # False: a '>' prompt is wanted; True: it came
        self.prefix = None
        self.done = None
        self._need = 0  # _N_FINAL | _N_DONE: what it still waits for
        self.done_err = False
        self._iperr = None

    def on(self, prefix, fn):
        """Register fn(line) for URCs starting with prefix, bytes or a tuple
        of them (first match wins)."""
        self._urc += ((prefix, fn),)

    def begin(self, cmd, prefix=None, done=None, prompt=False):
        """cmd: the command bytes (no CR). prefix: info lines that belong to
        it. done: a line the command must also produce (+NETOPEN: etc., either
        side of OK). prompt: wait for '>' before the data is sent."""
        self.cmd = bytes(cmd)
        self.prefix = prefix
        self.done = done
        self.prompt = False if prompt else None
        self.finished = False
        self.result = None
        self.lines = None  # a list once a line of it came (_line)
        self.data = None
        self._need = _N_FINAL if done is None else _N_FINAL | _N_DONE
        self.done_err = False
        self._iperr = None

    def end(self):
        """Drop the command; late lines of it count as stray."""
        self.cmd = None
        self.finished = True
        self.prompt = None
        # taken (or raised) by ATChannel.cmd: no standing copy of the block,
        # the lines or the error
        self.data = self.lines = self.result = None

    def abort(self, exc):
        if self.cmd is not None and not self.finished:
            self.result = exc
            self._finish()

    def _finish(self):
        self.finished = True
        if self.notify:
            self.notify()

    def feed(self, buf):
        mv = memoryview(buf)
        n = len(mv)
        i = 0
        s = 0  # where the line being read begins in this chunk
        while i < n:
            if self._ls == _LS_LF:
                self._ls = 0
                if mv[i] == 10:
                    i += 1
                    s = i
                    continue
            raw = self._raw
            if raw is not None:
                k = len(raw) - self._rawn
                if k > n - i:
                    k = n - i
                raw[self._rawn:self._rawn + k] = mv[i:i + k]
                self._rawn += k
                i += k
                s = i
                if self._rawn == len(raw):  # the block is whole
                    self._raw = None
                    self._rawn = 0
                    if self._rawlink is None:
                        if self.cmd is not None:
                            self.data = raw  # a bytearray of exactly the block
                    elif self.on_data:
                        self.on_data(self._rawlink, memoryview(raw))
                raw = None
                continue
            b = mv[i]
            i += 1
            if b == 10 or b == 13:
                over = self._ls == _LS_OVER
                self._ls = _LS_LF if b == 13 else 0
                part = self._part
                self._part = None
                if over or (i - 1 - s) + (len(part) if part else 0) > self._lim[0]:
                    self.garbled += 1
                elif i - 1 > s or part:
                    if part:
                        part.extend(mv[s:i - 1])
                        ln = bytes(part).strip()
                    else:
                        ln = bytes(mv[s:i - 1]).strip()
                    if ln:
                        self._line_done(ln)
                s = i
                continue
            if b == 62 and i - 1 == s and not self._part and self._ls != _LS_OVER and self.prompt is False \
                    and not self.finished:
                self.prompt = True
                s = i
                if self.notify:
                    self.notify()
                continue
        # a line not ended in this chunk: its bytes so far are kept
        if s < n and self._raw is None and self._ls != _LS_OVER:
            part = self._part
            if (n - s) + (len(part) if part else 0) > self._lim[0]:
                self._part = None
                self._ls = _LS_OVER  # dropped to its end
            elif part:
                part.extend(mv[s:n])  # in place: no new object per chunk
            else:
                self._part = bytearray(mv[s:n])

    def _start_raw(self, link, count, for_cmd):
        if count <= 0:
            if for_cmd:
                self.data = b""
            return
        self._raw = bytearray(count)
        self._rawn = 0
        self._rawlink = None if for_cmd else link

    def _line(self, ln):
        # a line of the command's reply (the list made for its first)
        if self.lines is None:
            self.lines = [ln]
        else:
            self.lines.append(ln)

    def _line_done(self, ln):
        c = self.cmd
        for f in _FINALS:  # the final result record ln matches (f None: none)
            t = f[_F_TEXT]
            if ln == t if f[_F_WHOLE] else ln.startswith(t):
                break
        else:
            f = None
        if c is not None and not self.finished:
            if ln == c:  # echo (ATE1)
                return
            if f is not None:
                err = f[_F_ERR]
                if not err:  # OK: finished once the done line is in too
                    self._need &= _N_DONE
                    if not self._need:
                        self._finish()
                    return
                err = _ERR_KINDS[err - 1]
                if err == "ATError" and self._iperr is not None:
                    err, ln = "IpError", self._iperr  # ERROR after +IP ERROR: <info>
                self.result = ATError(err, c, ln, self.lines)
                self._finish()
                return
            if ln.startswith(b"+IP ERROR:"):  # its ERROR follows
                self._iperr = ln
                return
            d = self.done
            if d is not None and self._need & _N_DONE and ln.startswith(d):
                self._line(ln)
                self._need &= _N_FINAL
                if not self._need:
                    self._finish()
                elif not ln.endswith(b",0") and not ln.endswith(b" 0"):
                    self.done_err = True  # failure code: OK/ERROR may not follow
                    if self.notify:
                        self.notify()
                return
            p = self.prefix
            if p is not None and ln.startswith(p):
                self._line(ln)
                h = _raw_head(ln)
                if h is not None:
                    if 0 <= h[1] <= self._lim[1]:
                        self._start_raw(h[0], h[1], True)
                        return
                    self.result = ATError("ATError", c, ln, self.lines)  # a block larger than the parser takes
                    self._finish()
                return
        elif f is not None and f[_F_STRAY]:
            self.stray += 1
            return
        # pushed socket data: +RECEIVE,<link>,<len> / +IPD<len>, then raw bytes
        if ln.startswith(b"+RECEIVE,"):
            f = ln[9:].split(b",")
            if len(f) == 2:
                link, cnt = _num(f[0]), _num(f[1])
                if link >= 0 and 0 < cnt <= self._lim[1]:
                    self.urcs += 1
                    self._start_raw(link, cnt, for_cmd=False)
                    return
            self.garbled += 1
            return
        if ln.startswith(b"+CCHRECV: DATA,"):  # the SSL channel's automatic receive mode
            h = _raw_head(ln)
            if h[0] >= 0 and 0 < h[1] <= self._lim[1]:
                self.urcs += 1
                self._start_raw(h[0], h[1], False)
            else:
                self.garbled += 1
            return
        if ln.startswith(b"+IPD"):
            cnt = _num(ln[4:])
            if 0 < cnt <= self._lim[1]:
                self.urcs += 1
                self._start_raw(-1, cnt, for_cmd=False)
            else:
                self.garbled += 1
            return
        for p, fn in self._urc:
            if ln.startswith(p):
                self.urcs += 1
                try:
                    fn(ln)
                except ValueError:
                    self.garbled += 1
                return
        for p in _KNOWN_URCS:
            if ln.startswith(p):
                self.urcs += 1
                return
        if c is not None and not self.finished and self.prefix is None:
            self._line(ln)  # bare information line (AT+CIMI, AT+CGSN)
            return
        self.garbled += 1


# what ATChannel.cmd waits for: the '>' prompt, the end (or a failure
# line), the failure line's ERROR
_W_PROMPT = const(0)
_W_DONE = const(1)
_W_END = const(2)


class ATChannel:
    """Serialised AT commands over an asyncio (reader, writer) pair."""

    def __init__(self, reader, writer, timeout_ms=2000, grace_ms=300, parser=None):
        self.r = reader
        self.w = writer
        self.timeout_ms = timeout_ms
        self.grace_ms = grace_ms
        self.p = parser or ATParser()
        self._ev = flag.Flag()  # a timed wait without a helper task
        self.p.notify = self._ev.set
        self._lock = [False]  # flag.acquire/release
        # the reader task: None before start, False once closed (stopped,
        # or the UART ended)
        self._task = None

    def start(self):
        if self._task is None:
            self._task = asyncio.create_task(self._rx())

    def stop(self):
        """End the reader task: it leaves the stream's poll queue, so a new
        channel on the same UART can read (one reader per stream)."""
        t = self._task
        self._task = False
        if t:
            t.cancel()

    async def _rx(self):
        r = self.r
        while True:
            b = await r.read(256)
            if not b:
                self._task = False
                self.p.abort(ATError("ATClosed", b"", b"UART closed"))
                return
            self.p.feed(b)
            b = None  # the chunk is not held while the next read waits

    async def cmd(self, text, prefix=None, timeout_ms=None, done=None, data=None, raw=False):
        """Send one command; return its info lines (bytes) or raise ATError.
        data: bytes sent after the modem's '>' prompt (AT+CIPSEND). raw:
        return (lines, the counted binary block or None) (cmd_data)."""
        if isinstance(text, str):
            text = text.encode()
        if isinstance(prefix, str):
            prefix = prefix.encode()
        if isinstance(done, str):
            done = done.encode()
        await flag.acquire(self._lock)
        try:
            if self._task is False:
                raise ATError("ATClosed", text, b"UART closed")
            p = self.p
            p.begin(text, prefix, done, data is not None)
            deadline = asyncio.ticks_add(asyncio.ticks(), self.timeout_ms if timeout_ms is None else timeout_ms)
            try:
                w = self.w
                w.write(text + b"\r")
                # asyncio's StreamWriter writes at once when it can: its drain
                # (a coroutine frame more) only when bytes were left behind;
                # the waits below yield anyway
                if getattr(w, "out_buf", 1):
                    await w.drain()
                # the waits in this one frame (no nested coroutine, no
                # closure per wait): for the prompt (data to send), for the
                # end or a failure line, then for the failure's ERROR
                wait = _W_DONE if data is None else _W_PROMPT
                while True:
                    if not (p.finished or (p.prompt if wait == _W_PROMPT else wait == _W_DONE and p.done_err)):
                        left = asyncio.ticks_diff(deadline, asyncio.ticks())
                        if left > 0:
                            # the parser runs in the reader task: nothing
                            # changes between the check above and this wait
                            self._ev.clear()
                            await self._ev.wait_ms(left)
                            continue
                        if wait == _W_PROMPT:
                            raise ATError("ATTimeout", text, b"no prompt")
                        if wait == _W_DONE:
                            raise ATError("ATTimeout", text, b"timeout")
                        break  # the failure line's grace is over
                    if wait == _W_PROMPT:
                        if not p.finished:
                            w.write(data)
                            data = None  # the caller holds it; this frame does not
                            if getattr(w, "out_buf", 1):
                                await w.drain()
                        wait = _W_DONE
                    elif wait == _W_DONE and not p.finished:
                        # a failure line (e.g. +CIPOPEN: 0,4): give its ERROR a moment
                        g = asyncio.ticks_add(asyncio.ticks(), self.grace_ms)
                        if asyncio.ticks_diff(g, deadline) < 0:
                            deadline = g
                        wait = _W_END
                    else:
                        break
                if p.result is not None:
                    raise p.result
                # the lines (a command with none: the empty tuple, no list
                # made) and the data are the caller's: p.end() drops the
                # parser's references
                if raw:
                    return p.lines or (), p.data
                return p.lines or ()
            finally:
                p.end()
        finally:
            flag.release(self._lock)

    def cmd_data(self, text, prefix, timeout_ms=None, done=None):
        """A command whose reply carries counted binary data (AT+CIPRXGET=2,
        AT+CCHRECV): cmd's coroutine itself (no frame of its own around it),
        -> (lines, data); the data is the caller's, not kept here."""
        return self.cmd(text, prefix, timeout_ms, done, None, True)
