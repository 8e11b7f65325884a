# ASH (Asynchronous Serial Host) link layer between the host and the EmberZNet
# NCP (Silicon Labs UG101).  Two halves:
#   * a pure codec: CRC-16/CCITT-FALSE, byte stuffing, DATA randomisation,
#     control bytes, encode_frame() into a preallocated buffer and an
#     incremental Decoder (what only tests and tools use, stuffing a whole
#     buffer, decoding one frame, a Decoder's frames as a generator, is in
#     han.peer);
#   * the host-side protocol engine `Ash` (asyncio): reset handshake, DATA with
#     window 1, ack/nak numbering, retransmission with reTx, adaptive ack
#     timeout, duplicate suppression and NCP-reset detection.
import asyncio
import time

from micropython import const

from counters import Counters
import flag
from log import KindError

_FLAG = const(0x7E)
_ESC = const(0x7D)
_XON = const(0x11)
_XOFF = const(0x13)
_SUB = const(0x18)
_CANCEL = const(0x1A)

_RST = const(0xC0)
_RSTACK = const(0xC1)
_ERROR = const(0xC2)

# frame types returned by frame_type()
_T_DATA = const(0)
_T_ACK = const(1)
_T_NAK = const(2)
_T_RST = const(3)
_T_RSTACK = const(4)
_T_ERROR = const(5)

_MAX_DATA = const(128)  # UG101: DATA field 3..128 bytes
_MIN_DATA = const(3)
_SEED = const(0x42)
_LFSR = const(0xB8)
_VERSION = const(2)
# worst case wire size of one frame: every byte stuffed, plus the flag
_BUF_SIZE = const(2 * (1 + 128 + 2) + 1)
_RX_CHUNK = const(64)  # bytes asked of the reader at a time

# NCP reset / error codes (UG101 / EZSP)
_RESET_UNKNOWN = const(0x00)
_RESET_EXTERNAL = const(0x01)
_RESET_POWER_ON = const(0x02)
_RESET_WATCHDOG = const(0x03)
_RESET_ASSERT = const(0x06)
_RESET_BOOTLOADER = const(0x09)
_RESET_SOFTWARE = const(0x0B)
_ERROR_ACK_TIMEOUTS = const(0x51)


class AshError(KindError):
    """A malformed ASH frame, raised as AshError(kind, message); the kinds
    (the classes of before): AshCrcError, AshTooShort, AshTooLong (both
    once AshLengthError's), AshLengthError, AshControlError,
    AshEscapeError."""


class LinkFailure(Exception):
    """The ASH link is down (no RSTACK, or an unacknowledged DATA frame)."""


class NcpReset(Exception):
    """The NCP reset (unexpected RSTACK) or entered its failed state (ERROR).
    The EZSP layer must run ash.reset() and re-initialise the stack."""

    def __init__(self, code, error):
        super().__init__("NCP %s code 0x%02X" % ("ERROR" if error else "reset", code))
        self.code = code
        self.error = error


# ---------------------------------------------------------------- codec ----


def crc16(data, crc, start, end):
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection)."""
    if end < 0:
        end = len(data)
    for i in range(start, end):
        x = ((crc >> 8) ^ data[i]) & 0xFF
        x ^= x >> 4
        crc = ((crc << 8) ^ (x << 12) ^ (x << 5) ^ x) & 0xFFFF
    return crc


def randomise(buf, start, end):
    """XOR buf[start:end] in place with the ASH pseudo-random sequence
    (restarts at 0x42 for every frame); applying it twice restores the data."""
    if end < 0:
        end = len(buf)
    r = _SEED
    for i in range(start, end):
        buf[i] ^= r
        r = (r >> 1) ^ _LFSR if r & 1 else r >> 1


def is_reserved(b):
    return b == _FLAG or b == _ESC or b == _XON or b == _XOFF or b == _SUB or b == _CANCEL


def frame_type(c):
    """Frame type of a control byte; AshError (kind AshControlError) if it is not valid."""
    if c & 0x80 == 0:
        return _T_DATA
    if c & 0xE0 == 0x80:
        return _T_ACK
    if c & 0xE0 == 0xA0:
        return _T_NAK
    if c == _RST:
        return _T_RST
    if c == _RSTACK:
        return _T_RSTACK
    if c == _ERROR:
        return _T_ERROR
    raise AshError("AshControlError", "bad control byte 0x%02X" % c)


def encode_frame(buf, control, data=None, randomise_data=True):
    """Write one complete wire frame (stuffed, CRC, closing flag) for control
    byte + data into the preallocated buf; return its length.  DATA payloads
    are randomised unless randomise_data is False."""
    n = 0 if data is None else len(data)
    if control & 0x80 == 0 and not _MIN_DATA <= n <= _MAX_DATA:
        raise AshError("AshLengthError", "DATA payload of %d bytes (3..128)" % n)
    if control & 0x80 and n > 2:
        raise AshError("AshTooLong", "control frame with %d data bytes" % n)
    rnd = randomise_data and control & 0x80 == 0
    x = ((0xFFFF >> 8) ^ control) & 0xFF
    x ^= x >> 4
    crc = ((0xFFFF << 8) ^ (x << 12) ^ (x << 5) ^ x) & 0xFFFF
    o = 0
    if is_reserved(control):
        buf[o] = _ESC
        buf[o + 1] = control ^ 0x20
        o += 2
    else:
        buf[o] = control
        o += 1
    r = _SEED
    for i in range(n):
        b = data[i]
        if rnd:
            b ^= r
            r = (r >> 1) ^ _LFSR if r & 1 else r >> 1
        x = ((crc >> 8) ^ b) & 0xFF
        x ^= x >> 4
        crc = ((crc << 8) ^ (x << 12) ^ (x << 5) ^ x) & 0xFFFF
        if is_reserved(b):
            buf[o] = _ESC
            buf[o + 1] = b ^ 0x20
            o += 2
        else:
            buf[o] = b
            o += 1
    for b in (crc >> 8, crc & 0xFF):
        if is_reserved(b):
            buf[o] = _ESC
            buf[o + 1] = b ^ 0x20
            o += 2
        else:
            buf[o] = b
            o += 1
    buf[o] = _FLAG
    return o + 1


def check_frame(frame, n, max_data):
    """Validate an unstuffed frame (control + data + CRC) held in frame[:n];
    return its type.  DATA payloads are NOT derandomised here."""
    if n < 0:
        n = len(frame)
    if n < 3:
        raise AshError("AshTooShort", "frame of %d bytes is too short" % n)
    if n > max_data + 3:
        raise AshError("AshTooLong", "frame of %d bytes is too long" % n)
    crc = crc16(frame, 0xFFFF, 0, n - 2)
    if crc != (frame[n - 2] << 8) | frame[n - 1]:
        raise AshError("AshCrcError", "bad CRC %04X" % crc)
    t = frame_type(frame[0])
    d = n - 3
    if t == _T_DATA:
        if d < _MIN_DATA:
            raise AshError("AshTooShort", "DATA frame with %d data bytes" % d)
    elif t == _T_RSTACK or t == _T_ERROR:
        if d != 2:
            raise AshError("AshTooShort" if d < 2 else "AshTooLong", "RSTACK/ERROR with %d data bytes" % d)
        if frame[1] != _VERSION:
            raise AshError("AshControlError", "ASH version %d" % frame[1])
    elif d:
        raise AshError("AshTooLong", "ACK/NAK/RST with %d data bytes" % d)
    return t


# decoder events
_EV_NONE = const(0)
_EV_FRAME = const(1)
_E_CRC = const(-1)
_E_SHORT = const(-2)
_E_LONG = const(-3)
_E_CONTROL = const(-4)
_E_ESCAPE = const(-5)

# the kind of each error event, _E_CRC (-1) first
_KINDS = ("AshCrcError", "AshTooShort", "AshTooLong", "AshControlError", "AshEscapeError")


class Decoder:
    """Incremental ASH receiver.  feed(data, start, end) consumes bytes up to
    and including the end of the next frame (or error) and returns the index
    after the last byte consumed; `event` then says what happened:
    _EV_NONE (all bytes consumed, frame incomplete), _EV_FRAME (control byte in
    `control`, derandomised data in `data()`), or an E_* error code.
    CANCEL discards the partial frame, SUBSTITUTE discards up to the next
    flag, _XON/_XOFF are dropped.  Counters live in `cancelled`/`substituted`."""

    def __init__(self):
        self.buf = bytearray(_MAX_DATA + 3)
        self.n = 0
        self.flen = 0  # length of the last good frame (control+data+CRC)
        self.esc = False
        self.discard = False  # after SUBSTITUTE
        self.overflow = False
        self.bad_escape = False
        self.event = _EV_NONE
        self.control = 0
        self.error = ""
        self.cancelled = 0
        self.substituted = 0

    def reset(self):
        self.n = 0
        self.esc = self.discard = self.overflow = self.bad_escape = False

    def data(self):
        return memoryview(self.buf)[1 : self.flen - 2]

    def feed(self, data, start, end):
        if end < 0:
            end = len(data)
        self.event = _EV_NONE
        buf = self.buf
        cap = len(buf)
        i = start
        while i < end:
            b = data[i]
            i += 1
            if b == _FLAG:
                ev = self._end()
                if ev != _EV_NONE:
                    self.event = ev
                    return i
                continue
            if b == _CANCEL:
                if self.n or self.esc:
                    self.cancelled += 1
                self.reset()
                continue
            if self.discard:
                continue
            if b == _SUB:
                self.substituted += 1
                self.reset()
                self.discard = True
                continue
            if b == _XON or b == _XOFF:
                continue
            if self.esc:
                self.esc = False
                b ^= 0x20
                if not is_reserved(b):
                    self.bad_escape = True
            elif b == _ESC:
                self.esc = True
                continue
            if self.n < cap:
                buf[self.n] = b
                self.n += 1
            else:
                self.overflow = True
        return i

    def _end(self):
        n = self.n
        discard = self.discard
        overflow = self.overflow
        bad_esc = self.bad_escape or self.esc
        self.reset()
        if discard or (n == 0 and not overflow and not bad_esc):
            return _EV_NONE
        self.control = self.buf[0] if n else 0
        if overflow:
            self.error = "frame too long (buffer overflow)"
            return _E_LONG
        if bad_esc:
            self.error = "bad escape sequence"
            return _E_ESCAPE
        try:
            t = check_frame(self.buf, n, _MAX_DATA)
        except AshError as e:
            self.error = str(e)
            return -1 - _KINDS.index(e.args[0])
        self.flen = n
        if t == _T_DATA:
            randomise(self.buf, 1, n - 2)
        return _EV_FRAME

# --------------------------------------------------------------- engine ----


_STATS = const(("tx_data", "tx_retx", "tx_ack", "tx_nak", "tx_rst",
                "rx_data", "rx_dup", "rx_out_of_seq", "rx_ack", "rx_nak", "rx_rst", "rx_rstack", "rx_error",
                "crc_errors", "length_errors", "control_errors", "escape_errors", "cancelled", "substituted",
                "ncp_resets", "link_failures", "dropped"))


# Ash's settings: the argument's name, then the attribute's
_TIMING = const(("t_rx_ack_init", "t_init", "t_rx_ack_min", "t_min", "t_rx_ack_max", "t_max", "t_rstack", "t_rstack",
                 "max_tries", "max_tries", "reset_tries", "reset_tries", "rx_queue", "rx_queue_max",
                 "cancel_bytes", "cancel_bytes"))


class Ash:
    """Host side of ASH.  reader needs `async read(n)` (or readinto), writer
    needs `write(buf)` and `async drain()`.  ticks_ms is a monotonic clock in
    milliseconds.  All timing constants are in milliseconds."""

    t_min = 400
    t_max = 3200
    t_init = 1600
    t_rstack = 3200
    max_tries = 5
    reset_tries = 3
    rx_queue_max = 4
    cancel_bytes = 32
    # queue mode (no on_frame): recv()'s frames and its Flag, made by the
    # first frame queued or the first recv(); the hub's link (on_frame set)
    # has neither
    _queue = ()
    _rx_ev = None

    def __init__(self, reader, writer, ticks_ms=None, **timing):
        # timing: t_rx_ack_init, t_rx_ack_min, t_rx_ack_max, t_rstack (ms),
        # max_tries, reset_tries, rx_queue, cancel_bytes; the class
        # attributes hold the defaults, an instance only those it is given
        self.reader = reader
        self.writer = writer
        self.ticks_ms = ticks_ms or time.ticks_ms
        for name, v in timing.items():
            setattr(self, _TIMING[_TIMING.index(name) + 1], v)  # ValueError: not a setting
        self.t_rx_ack = self.t_init
        self.dec = Decoder()
        # every frame is encoded here: writer.write copies it (asyncio's
        # StreamWriter), so a control frame can be written while a DATA frame
        # awaits its ack
        self._tx = bytearray(_BUF_SIZE)
        self._lock = [False]  # flag.acquire/release
        self._acked = flag.Flag()  # one-shot flags with a timed wait (no helper task)
        self._rstack = None  # the expected RSTACK's, made while reset() waits for it
        # fn(frame bytes) for each EZSP frame as it is acknowledged, and
        # fn(exc) once with the failure that takes the link down (the EZSP
        # host's, han.ezsp); None: frames queue for recv()
        self.on_frame = None
        self._task = None
        self.connected = False
        self.failure = None  # NcpReset / LinkFailure that took the link down
        self.reset_code = None
        self._frm = 0  # next frame number we send
        self._ack = 0  # next frame number we expect from the NCP
        self._pending = -1  # frame number awaiting an ack, -1 if none
        self._nak = False  # our pending frame was NAKed
        self._rejecting = False
        self._sent_at = 0
        self.ncp_ready = True
        self.stats = Counters(_STATS)

    # -- public API --

    async def reset(self):
        """Cancel + RST, wait for RSTACK; return the NCP's reset code."""
        if self._task is None:
            self._task = asyncio.create_task(self._rx_loop())
        self.connected = False
        ev = self._rstack = flag.Flag()
        try:
            for _ in range(self.reset_tries):
                ev.clear()
                self.failure = None
                n = self.cancel_bytes
                for i in range(n):
                    self._tx[i] = _CANCEL
                self.writer.write(memoryview(self._tx)[:n])
                n = encode_frame(self._tx, _RST)
                self.writer.write(memoryview(self._tx)[:n])
                await self.writer.drain()
                self.stats["tx_rst"] += 1
                if await ev.wait_ms(self.t_rstack):
                    self._frm = 0
                    self._ack = 0
                    self._pending = -1
                    self._rejecting = False
                    if self._queue:
                        self._queue = []
                    self.t_rx_ack = self.t_init
                    self.failure = None
                    self.connected = True
                    return self.reset_code
        finally:
            self._rstack = None
        self.stats["link_failures"] += 1
        self.failure = LinkFailure("no RSTACK from the NCP")
        raise self.failure

    async def send(self, payload):
        """Send one EZSP frame; return once the NCP has acknowledged it."""
        await flag.acquire(self._lock)
        try:
            self._check()
            frm = self._frm
            self._pending = frm
            retx = False
            tries = 0
            while True:
                self._acked.clear()
                self._nak = False
                # DATA control byte: frame number, retransmission, ack number
                n = encode_frame(self._tx, ((frm & 7) << 4) | (8 if retx else 0) | (self._ack & 7), payload)
                self._sent_at = self.ticks_ms()
                self.writer.write(memoryview(self._tx)[:n])
                await self.writer.drain()
                self.stats["tx_retx" if retx else "tx_data"] += 1
                tries += 1
                ok = await self._acked.wait_ms(self.t_rx_ack)
                self._check()
                if ok and not self._nak:
                    self._frm = (frm + 1) & 7
                    self._pending = -1
                    return
                if not ok:
                    # ack timeout: back off
                    self.t_rx_ack = min(self.t_max, 2 * self.t_rx_ack)
                if tries >= self.max_tries:
                    self._pending = -1
                    self.stats["link_failures"] += 1
                    # _fail also wakes recv(): the EZSP layer must see the link go
                    self._fail(LinkFailure("DATA frame %d not acknowledged after %d tries" % (frm, tries)))
                    raise self.failure
                retx = True
        finally:
            flag.release(self._lock)

    async def recv(self):
        """Next EZSP frame from the NCP (bytes).  Raises NcpReset/LinkFailure."""
        if self._rx_ev is None:
            self._rx_ev = flag.Flag()  # one waiter
        while not self._queue:
            self._check()
            self._rx_ev.clear()
            await self._rx_ev.wait()
        if not self._queue:
            self._check()
        return self._queue.pop(0)

    def close(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.connected = False

    # -- internals --

    def _check(self):
        if self.failure is not None:
            raise self.failure
        if not self.connected:
            raise LinkFailure("ASH link not connected")

    async def _rx_loop(self):
        dec = self.dec
        st = self.stats
        while True:
            data = await self.reader.read(_RX_CHUNK)  # a new bytes each
            if not data:
                self._fail(LinkFailure("NCP stream closed"))
                return
            i = 0
            end = len(data)
            while i < end:
                i = dec.feed(data, i, end)
                ev = dec.event
                if ev == _EV_FRAME:
                    c = dec.control
                    t = frame_type(c)
                    if t == _T_RSTACK or t == _T_ERROR:
                        code = dec.buf[2]
                        self.reset_code = code
                        st["rx_rstack" if t == _T_RSTACK else "rx_error"] += 1
                        if t == _T_RSTACK and not self.connected and self.failure is None:
                            if self._rstack is not None:
                                self._rstack.set()  # expected: we asked for it
                        else:
                            st["ncp_resets"] += 1
                            self._fail(NcpReset(code, t == _T_ERROR))
                    elif t == _T_RST:
                        st["rx_rst"] += 1
                    elif not self.connected:
                        pass
                    elif t == _T_ACK:
                        st["rx_ack"] += 1
                        self.ncp_ready = not (c & 8)
                        self._handle_ack_num(c & 7)
                    elif t == _T_NAK:
                        st["rx_nak"] += 1
                        self.ncp_ready = not (c & 8)
                        if self._pending >= 0 and (c & 7) == self._pending:
                            self._nak = True
                            self._acked.set()
                        else:
                            self._handle_ack_num(c & 7)
                    else:  # DATA
                        frm = (c >> 4) & 7
                        self._handle_ack_num(c & 7)
                        if frm == self._ack:
                            self._rejecting = False
                            fn = self.on_frame
                            if fn is None and len(self._queue) >= self.rx_queue_max:
                                # no room: leave it unacknowledged (nRdy set); the NCP resends
                                st["dropped"] += 1
                            else:
                                self._ack = (frm + 1) & 7
                                st["rx_data"] += 1
                                if fn is not None:  # handed over at once: nothing queues
                                    fn(bytes(dec.data()))
                                else:
                                    if not self._queue:
                                        self._queue = []
                                    self._queue.append(bytes(dec.data()))
                                    if self._rx_ev is not None:
                                        self._rx_ev.set()
                            await self._send_ack()
                        elif c & 8 and frm == (self._ack - 1) & 7:
                            # retransmission of a frame we already have: re-ack, don't deliver
                            st["rx_dup"] += 1
                            await self._send_ack()
                        else:
                            st["rx_out_of_seq"] += 1
                            if not self._rejecting:
                                self._rejecting = True
                                await self._write_control(0xA0 | (self._ack & 7), "tx_nak")  # NAK
                elif ev == _E_CRC or ev == _E_SHORT or ev == _E_LONG:
                    st["crc_errors" if ev == _E_CRC else "length_errors"] += 1
                    # a corrupted frame: NAK once (reject condition) while connected
                    if self.connected and not self._rejecting and dec.control & 0x80 == 0:
                        self._rejecting = True
                        await self._write_control(0xA0 | (self._ack & 7), "tx_nak")  # NAK
                elif ev == _E_CONTROL:
                    st["control_errors"] += 1
                elif ev == _E_ESCAPE:
                    st["escape_errors"] += 1
            st["cancelled"] = dec.cancelled
            st["substituted"] = dec.substituted
            data = None  # not held while the next read waits

    def _fail(self, exc):
        self.failure = exc
        self.connected = False
        self._acked.set()
        if self._rx_ev is not None:
            self._rx_ev.set()
        if self.on_frame is not None:
            self.on_frame(exc)

    async def _write_control(self, control, stat):
        # an ACK or NAK, then its count (stats[stat]) once written
        n = encode_frame(self._tx, control)
        self.writer.write(memoryview(self._tx)[:n])
        await self.writer.drain()
        self.stats[stat] += 1

    def _send_ack(self):
        # an awaitable: the reader awaits _write_control's frame alone
        nrdy = len(self._queue) >= self.rx_queue_max
        return self._write_control(0x80 | (8 if nrdy else 0) | (self._ack & 7), "tx_ack")  # ACK

    def _handle_ack_num(self, ack_num):
        p = self._pending
        if p >= 0 and ack_num == (p + 1) & 7 and not self._acked.is_set():
            dt = time.ticks_diff(self.ticks_ms(), self._sent_at)
            t = (7 * self.t_rx_ack) // 8 + dt // 2
            self.t_rx_ack = max(self.t_min, min(self.t_max, t))
            self._acked.set()
