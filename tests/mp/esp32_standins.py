# Stand-ins for what boards/esp32_common/esp32_board.py uses of the esp32
# port, behaving as that port's source does (../shared/micropython, commit
# 13303f8d29), so the board module runs under the unix port:
#
# - the console (shared/runtime/sys_stdio_mphal.c, ports/esp32/mphalport.c,
#   uart.c): bytes arrive at 115200 baud into a 260-byte ring (259 usable)
#   filled by the UART ISR whatever the VM does, and dropped when it is full;
#   poll says readable once ONE byte is there; sys.stdin.buffer.readinto(buf)
#   calls mp_hal_stdin_rx_chr once per byte of buf, so it waits for the whole
#   buffer (here: a Violation, the loop would stop); stdout writes go into a
#   128-byte TX FIFO and busy-wait for room (here: the time it would have
#   blocked is measured);
# - machine.UART (machine_uart.c): write() is uart_write_bytes, which blocks
#   once the TX ring buffer is full and CTS is not asserted (a Violation);
#   write-poll always says ready; txdone();
# - machine.soft_reset is sys.exit (SystemExit); machine.reset never returns
#   (HardReset here); RTC memory survives both; machine.WDT;
# - ticks that wrap at 2**30 ms, as on a 32-bit port (FakeTime).
#
# Import asyncio before install_time(): asyncio keeps the real clock.
import asyncio
import io
import json
import sys
import time

import micropython

VIOLATIONS = []  # what would have stopped the VM on the real board


class Violation(AssertionError):
    pass


def _violate(msg):
    VIOLATIONS.append(msg)
    raise Violation(msg)


class HardReset(BaseException):
    """machine.reset(): esp_restart, never returns."""


def _now_us():
    return time.ticks_us()


def _us(a, b):
    return time.ticks_diff(a, b)


_BYTE_US = 87  # one 10-bit character at 115200 baud


# ---- the console ------------------------------------------------------------

class Console:
    RING = 259  # ringbuf_t of 260 bytes holds 259

    def __init__(self):
        self.ring = bytearray()
        self.wire = []  # [arrival_us, byte] in order
        self.dropped = 0
        self.out = bytearray()  # what the hub wrote to stdout
        self.fifo = 0  # bytes in the 128-byte TX FIFO at fifo_t
        self.fifo_t = _now_us()
        self.max_block_us = 0
        self.stdin = _Stdin(self)
        self.stdout = _Stdout(self)

    def send(self, data):
        """The host writes data: it arrives one byte per 87 us from now (or
        after what is still on the wire)."""
        t = _now_us()
        if self.wire and _us(self.wire[-1][0], t) > 0:
            t = self.wire[-1][0]
        for b in data:
            t = time.ticks_add(t, _BYTE_US)
            self.wire.append([t, b])

    def isr(self):
        # the RX ISR: every byte whose time has come goes into the ring or is lost
        now = _now_us()
        w = self.wire
        i = 0
        while i < len(w) and _us(now, w[i][0]) >= 0:
            if len(self.ring) < self.RING:
                self.ring.append(w[i][1])
            else:
                self.dropped += 1
            i += 1
        if i:
            del w[:i]

    def take(self):
        """What the hub wrote since the last take()."""
        out = bytes(self.out)
        self.out = bytearray()
        return out


class _Stdin(io.IOBase):
    def __init__(self, c):
        self.c = c

    def readinto(self, buf):
        c = self.c
        c.isr()
        n = len(buf)
        if len(c.ring) < n:
            _violate("stdin.buffer.readinto(%d) with %d byte(s) in the ring: the esp32 port waits for the "
                     "whole buffer and the event loop with it" % (n, len(c.ring)))
        buf[:n] = c.ring[:n]
        c.ring[0:n] = b''
        return n

    def read(self, n):
        b = bytearray(n)
        self.readinto(b)
        return bytes(b)

    def ioctl(self, req, arg):
        if req == 3:  # MP_STREAM_POLL
            self.c.isr()
            r = 4 & arg  # POLLOUT: always
            if self.c.ring:
                r |= 1 & arg
            return r
        return -1


class _Stdout(io.IOBase):
    FIFO = 128

    def __init__(self, c):
        self.c = c

    def write(self, buf):
        c = self.c
        now = _now_us()
        c.fifo = max(0, c.fifo - _us(now, c.fifo_t) // _BYTE_US)
        c.fifo_t = now
        n = len(buf)
        over = c.fifo + n - self.FIFO
        if over > 0:
            # uart_stdout_tx_strn waits until the FIFO takes the rest
            c.max_block_us = max(c.max_block_us, over * _BYTE_US)
            c.fifo = self.FIFO
        else:
            c.fifo += n
        c.out += buf
        return n

    def ioctl(self, req, arg):
        if req == 3:
            return 4 & arg
        return -1


# ---- machine ------------------------------------------------------------------

class _Machine:
    pass


class RTC:
    mem = b""  # RTC_NOINIT memory: survives soft and hard resets

    def memory(self, data=None):
        if data is None:
            return RTC.mem
        RTC.mem = bytes(data)

    def datetime(self, dt=None):
        return (2026, 1, 1, 3, 0, 0, 0, 0)


class Pin:
    IN = 1
    OUT = 3
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 2
    IRQ_RISING = 1
    pins = {}

    def __init__(self, gpio, mode=-1, pull=-1, value=None):
        self.gpio = gpio
        # an input idles high (the power-fail line while the supply is good)
        self.level = 1 if (value or mode == Pin.IN) else 0
        self.history = []  # (ticks_ms, level)
        self.handler = None
        Pin.pins[gpio] = self

    def value(self, v=None):
        if v is None:
            return self.level
        self.level = 1 if v else 0
        self.history.append((time.ticks_ms(), self.level))

    def irq(self, handler=None, trigger=0, hard=False):
        self.handler = handler


class UART(io.IOBase):
    RTS = 1
    CTS = 2
    made = {}  # uart id -> how many times it was constructed

    def __init__(self, uid, baudrate=115200, tx=None, rx=None, rts=None, cts=None, flow=0, rxbuf=256,
                 txbuf=256, **kw):
        self.uid = uid
        self.txbuf = txbuf
        self.flow = flow
        self.cts = True  # the peer lets us send
        self.tx = bytearray()  # in the TX ring buffer, not yet on the wire
        self.tx_t = _now_us()
        self.sent = bytearray()
        self.rx = bytearray()
        UART.made[uid] = UART.made.get(uid, 0) + 1

    def _drain(self):
        now = _now_us()
        if self.cts or not (self.flow & UART.CTS):
            n = min(len(self.tx), _us(now, self.tx_t) // _BYTE_US)
            self.sent += self.tx[:n]
            self.tx[0:n] = b''
        self.tx_t = now

    def write(self, buf):
        self._drain()
        # uart_write_bytes copies into the ring buffer (items of at most half
        # of it, each with a header) and blocks, without a timeout, for room
        if len(self.tx) + len(buf) > self.txbuf // 2 and self.flow & UART.CTS and not self.cts:
            _violate("UART%d.write(%d bytes) with %d waiting and CTS not asserted: uart_write_bytes blocks the VM"
                     % (self.uid, len(buf), len(self.tx)))
        self.tx += buf
        return len(buf)

    def txdone(self):
        self._drain()
        return not self.tx

    def feed(self, data):
        """The peer sends data (it lands in the RX buffer)."""
        self.rx += data

    def any(self):
        return len(self.rx)

    def readinto(self, buf):
        n = min(len(buf), len(self.rx))
        if not n:
            return None
        buf[:n] = self.rx[:n]
        self.rx[0:n] = b''
        return n

    def read(self, n=-1):
        if not self.rx:
            return None
        n = len(self.rx) if n < 0 else min(n, len(self.rx))
        b = bytes(self.rx[:n])
        self.rx[0:n] = b''
        return b

    def ioctl(self, req, arg):
        if req == 3:
            r = 4 & arg  # "FIXME: uart_tx_any_room": always writable
            if self.rx:
                r |= 1 & arg
            return r
        return -1


class WDT:
    made = []

    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.feeds = []
        WDT.made.append(self)

    def feed(self):
        self.feeds.append(time.ticks_ms())


def _soft_reset():
    raise SystemExit  # ports/esp32/modmachine.c: soft_reset is sys.exit


def _reset():
    raise HardReset()


class _Partition:
    RUNNING = 1

    def __init__(self, which):
        pass

    def info(self):
        return (0, 0, 0x10000, 0x1F0000, "factory", False)


def machine_module():
    m = _Machine()
    m.RTC = RTC
    m.Pin = Pin
    m.UART = UART
    m.WDT = WDT
    m.soft_reset = _soft_reset
    m.reset = _reset
    return m


def install(board_name):
    """machine, esp32 and board_cfg stand-ins in sys.modules; the board folder
    on sys.path. -> the board config."""
    root = None
    for p in sys.path:
        if p.endswith("tests/mp"):
            root = p[: -len("tests/mp")]
    for sub in ("boards/esp32_common", "boards/" + board_name):
        if root + sub not in sys.path:
            sys.path.append(root + sub)
    with open(root + "boards/" + board_name + "/board.json") as f:
        cfg = json.load(f)
    sys.modules["machine"] = machine_module()
    e = _Machine()
    e.Partition = _Partition
    sys.modules["esp32"] = e
    bc = _Machine()
    bc.CONFIG = cfg
    sys.modules["board_cfg"] = bc
    return cfg


def boot(console=None):
    """Import the board module as a (re)boot does; its console is `console`."""
    sys.modules.pop("esp32_board", None)
    import esp32_board

    if console is not None:
        esp32_board._console_streams = lambda: (console.stdin, console.stdout)
    return esp32_board


def irq(pin):
    """Run a pin's IRQ handler as the esp32 port would: between any two
    bytecodes, so it must not touch asyncio's queues (here: they raise) nor
    allocate (the heap is locked)."""
    core = asyncio.core
    q = core._task_queue

    class _Forbidden:
        def __getattr__(self, name):
            _violate("the IRQ handler touched asyncio's task queue (%s)" % name)

    core._task_queue = _Forbidden()
    p = Pin.pins[pin]
    p.level = 0 if p.level else 1  # the edge
    micropython.heap_lock()
    try:
        p.handler(p)
    finally:
        micropython.heap_unlock()
        core._task_queue = q


# ---- ticks that wrap at 2**30 ms ---------------------------------------------

class FakeTime:
    """The time module of a 32-bit port: ticks_ms wraps at 2**30. The test
    moves the clock with advance(ms)."""

    PERIOD = 1 << 30

    def __init__(self, start):
        self.t = start % self.PERIOD

    def ticks_ms(self):
        return self.t

    def ticks_diff(self, a, b):
        half = self.PERIOD >> 1
        return ((a - b + half) & (self.PERIOD - 1)) - half

    def ticks_add(self, a, d):
        return (a + d) % self.PERIOD

    def advance(self, ms):
        self.t = (self.t + ms) % self.PERIOD

    def time(self):
        return time.time()

    def gmtime(self, t=None):
        return time.gmtime(t)

    def sleep_ms(self, ms):
        self.advance(ms)


def install_time(start):
    ft = FakeTime(start)
    sys.modules["time"] = ft
    return ft
