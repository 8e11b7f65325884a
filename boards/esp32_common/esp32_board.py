# The ESP32 boards (ESP32-S3-DevKitC, ESP32-DevKitC): the same interface as
# boards/unix/board.py on machine.UART / Pin / RTC and esp32. The pin map is
# the board's board.json, stamped into the image as board_cfg.CONFIG by
# `chub build`; the hardware-free logic (map checks, LED patterns, epoch) is
# in board_map. Each board folder's board.py re-exports this module.
import asyncio
import os
import select
import sys
import time

import esp32
import machine
import micropython
from board_cfg import CONFIG
from board_map import Leds, check, unix_offset
from micropython import const

NAME = CONFIG["name"]
FLASH_ROOT = CONFIG.get("data_root", "/data")

_HOLD = b"chub:repl"
_rtc = machine.RTC()
# the installer asked for the console (chub flash, app update): this boot
# does not start the hub; app.main() returns and MicroPython runs its REPL
# (see release_console). The flag is cleared: the next reset boots the hub.
_held = _rtc.memory() == _HOLD
if _held:
    _rtc.memory(b"")

_used = check(CONFIG)  # a bad map stops the boot here, with the role and pin
_epoch = unix_offset(time.gmtime(0)[0])
_handlers = {}
_uarts = {}
_pins = {}
RIG = False  # no rig: the image carries no rig hooks

# the console (UART0 REPL): stdout goes into a 128-byte FIFO and the port
# busy-waits for room, so replies go out in pieces paced at the wire rate
_PIECE = const(64)
_PIECE_MS = const(6)  # 64 bytes at 115200 baud: 5.6 ms
# a UART write (uart_write_bytes) blocks while its TX ring buffer is full; with
# CTS held by the peer that is forever. The writer puts at most half the ring
# (the driver's item size) in it until txdone(), and gives up after _TX_STALL_MS.
_TX_STALL_MS = const(2000)
_TX_POLL_MS = const(3)


class _PowerFail:
    """board.power_fail: set() from the pin IRQ only sets a flag (asyncio's
    ThreadSafeFlag; Event.set is not allowed in an IRQ); `await wait()` (one
    waiter: the WAN's last gasp) and is_set() (the LEDs) as an Event's."""

    def __init__(self):
        self.state = False
        self._f = asyncio.ThreadSafeFlag()

    def is_set(self):
        return self.state

    def set(self):
        self.state = True
        self._f.set()

    async def wait(self):
        while not self.state:
            await self._f.wait()


power_fail = _PowerFail()


class _ConsoleReader:
    """The console's stdin for the local port. The port's readinto(buf) waits
    for the whole buffer (mp_hal_stdin_rx_chr per byte) while poll only
    promises one byte: readinto here awaits that byte, then takes more only
    while poll still says readable, and returns what it has."""

    def __init__(self, stdin):
        self.s = stdin
        self._sr = asyncio.StreamReader(stdin)
        self._one = bytearray(1)
        self._poll = select.poll()
        self._poll.register(stdin, select.POLLIN)

    def _ready(self):
        for _ in self._poll.ipoll(0):
            return True
        return False

    async def readinto(self, buf):
        one = self._one
        await self._sr.readinto(one)
        buf[0] = one[0]
        n = 1
        end = len(buf)
        s = self.s
        while n < end and self._ready():
            s.readinto(one)
            buf[n] = one[0]
            n += 1
        return n


class _ConsoleWriter:
    """write(buf) then `await drain()`: the bytes go to stdout _PIECE at a
    time, _PIECE_MS apart, so the loop never waits on the console FIFO."""

    def __init__(self, out):
        self.s = out
        self._q = []

    def write(self, buf):
        self._q.append(bytes(buf))

    async def drain(self):
        q = self._q
        while q:
            b = q.pop(0)
            mv = memoryview(b)
            for i in range(0, len(b), _PIECE):
                self.s.write(mv[i : i + _PIECE])
                await asyncio.sleep_ms(_PIECE_MS)

    def close(self):
        pass


class _UartWriter:
    """A UART's asyncio writer that cannot block the VM: write() queues,
    drain() hands the UART at most `room` bytes until txdone() says they
    left, waiting with asyncio sleeps, and raises OSError when nothing could
    be sent for _TX_STALL_MS (a missing NCP, or one holding CTS)."""

    def __init__(self, u, room, uid):
        self.s = u
        self._room = self._left = room
        self._uid = uid
        self._q = bytearray()

    def _send(self, buf):
        if self._left < self._room and self.s.txdone():
            self._left = self._room
        n = len(buf)
        if n > self._left:
            n = self._left
        if n:
            self.s.write(buf if n == len(buf) else memoryview(buf)[:n])
            self._left -= n
        return n

    def write(self, buf):
        q = self._q
        if q:
            q.extend(buf)
            return
        n = self._send(buf)
        if n < len(buf):
            q.extend(memoryview(buf)[n:])

    async def drain(self):
        q = self._q
        t0 = time.ticks_ms()
        while q:
            n = self._send(q)
            if n:
                q[0:n] = b""
                t0 = time.ticks_ms()
            elif time.ticks_diff(time.ticks_ms(), t0) >= _TX_STALL_MS:
                q[0:len(q)] = b""
                raise OSError("UART%d: nothing sent for %d ms (CTS not asserted: is the peer there?)"
                              % (self._uid, _TX_STALL_MS))
            else:
                await asyncio.sleep_ms(_TX_POLL_MS)

    def close(self):
        pass


leds = Leds(CONFIG["leds"])


def preload():
    pass  # frozen code: nothing to load before the hub starts


def config():
    return CONFIG


def _out(gpio, value=0):
    p = _pins.get(gpio)
    if p is None:
        p = machine.Pin(gpio, machine.Pin.OUT, value=value)
        _pins[gpio] = p
    return p


def mount():
    """The data folder on the LittleFS that MicroPython mounted at / (the app
    and the data share the vfs partition)."""
    try:
        os.mkdir(FLASH_ROOT)
    except OSError:
        pass  # already there
    return FLASH_ROOT


def flash_counters():
    # the vfs partition's driver keeps no counters on this board
    return {}


def partition():
    """Label and size of the running app partition (status, flashing checks)."""
    p = esp32.Partition(esp32.Partition.RUNNING)
    info = p.info()
    return {"label": info[4], "size": info[3]}


def utc():
    """RTC: UTC seconds since 1970-01-01 (whatever the port's epoch)."""
    return int(time.time()) + _epoch


def set_utc(t):
    tm = time.gmtime(int(t) - _epoch)
    # RTC.datetime: (year, month, day, weekday, hours, minutes, seconds, subseconds)
    machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6], tm[3], tm[4], tm[5], 0))


ticks_ms = time.ticks_ms


def _uart(name):
    u = CONFIG["uarts"][name]
    kw = {"baudrate": u.get("baud", 115200), "tx": u["tx"], "rx": u["rx"], "rxbuf": 2048, "txbuf": 1024}
    flow = 0
    if u.get("rts") is not None:
        kw["rts"] = u["rts"]
        flow |= machine.UART.RTS
    if u.get("cts") is not None:
        kw["cts"] = u["cts"]
        flow |= machine.UART.CTS
    if flow:
        kw["flow"] = flow
    return machine.UART(u["uart"], **kw)


def _console_streams():
    stream = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else sys.stdin
    out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else sys.stdout
    return stream, out


async def open_uart(name):
    """A UART as an asyncio (reader, writer) pair. "local" is the console
    (the USB-UART bridge): the local port shares it with the REPL's output.
    A UART is made once and kept; a job that opens it again must have
    stopped its old reader (two readers of one stream trip asyncio)."""
    if name == "local":
        # local-port frames are binary: a 0x03 byte must not interrupt the hub
        micropython.kbd_intr(-1)
        stream, out = _console_streams()
        return _ConsoleReader(stream), _ConsoleWriter(out)
    u = _uarts.get(name)
    if u is None:
        u = _uart(name)
        _uarts[name] = u
    return asyncio.StreamReader(u), _UartWriter(u, 512, CONFIG["uarts"][name]["uart"])  # 512: half the txbuf


def console_released():
    """True on the boot after release_console: the hub must not start."""
    return _held


def release_console():
    """Give the console back to the REPL (for mpremote): the flag in RTC
    memory, then a hard reset (machine.soft_reset is sys.exit, which a
    frozen main.py turns into another boot of the hub, and the watchdog,
    once started, survives a soft reset but not a hard one). The next boot
    sees the flag and app.main() returns to the REPL."""
    _rtc.memory(_HOLD)
    machine.reset()


def watchdog(timeout_ms=None):
    """The hardware watchdog (machine.WDT; it cannot be stopped once made):
    the supervisor feeds it while the hub's critical jobs make progress."""
    return machine.WDT(timeout=timeout_ms or CONFIG.get("watchdog_ms", 30000))


def on_control(key, fn):
    """Register fn(value) for a board event ("power_fail" on this board;
    called from the control task, never from the IRQ)."""
    _handlers[key] = fn


def set_leds(d):
    """The hub's LED patterns by name (firmware/leds.py); the control task
    drives the GPIOs from them every 50 ms."""
    leds.set(d)


async def _pulse(gpio, active_low, ms):
    p = _out(gpio, 1 if active_low else 0)
    p.value(0 if active_low else 1)
    await asyncio.sleep_ms(ms)
    p.value(1 if active_low else 0)


async def _reset(peripheral):
    u = CONFIG["uarts"][peripheral]
    await _pulse(u["reset"], u.get("reset_active_low", True), 100 if peripheral == "modem" else 20)
    if peripheral == "modem":
        await asyncio.sleep_ms(500)
        await power_on_modem()


def reset():
    """The board's reset (the hub's update switches images with it)."""
    machine.reset()


def hard_reset(peripheral):
    """Pull the reset line of "ncp" (EFR32 nRESET) or "modem" (SIM7600
    RESET, then PWRKEY to switch it on again). The pulses run in a task of
    their own (asyncio sleeps): this returns at once, the callers wait for
    the peripheral to come back (the modem's RDY, the NCP's settle time)."""
    asyncio.create_task(_reset(peripheral))


async def power_on_modem():
    # SIM7600: PWRKEY low for at least 500 ms switches it on (through the
    # board's NPN stage the GPIO drives high)
    u = CONFIG["uarts"]["modem"]
    await _pulse(u["pwrkey"], u.get("pwrkey_active_low", False), 600)


def _power_fail_irq(pin):
    # IRQ: a flag only (no asyncio queues, no allocation); the control task
    # calls the handlers
    power_fail.set()


def _setup():
    pf = CONFIG["power_fail"]
    pull = machine.Pin.PULL_UP if pf.get("pull") == "up" else (machine.Pin.PULL_DOWN if pf.get("pull") == "down" else None)
    pin = machine.Pin(pf["pin"], machine.Pin.IN, pull)
    trig = machine.Pin.IRQ_FALLING if pf.get("active_low", True) else machine.Pin.IRQ_RISING
    pin.irq(handler=_power_fail_irq, trigger=trig)
    u = CONFIG["uarts"]["ncp"]
    _out(u["reset"], 1 if u.get("reset_active_low", True) else 0)
    m = CONFIG["uarts"]["modem"]
    _out(m["reset"], 1 if m.get("reset_active_low", False) else 0)
    _out(m["pwrkey"], 1 if m.get("pwrkey_active_low", False) else 0)
    return pin, pf.get("active_low", True)


async def control_task():
    """The board's own wires: power-fail input, modem power-on, the status
    LEDs (refreshed every 50 ms from `leds`, which the hub sets through
    set_leds)."""
    pf_pin, active_low = _setup()
    await power_on_modem()
    told = False
    while True:
        failing = pf_pin.value() == (0 if active_low else 1)
        if failing and not power_fail.is_set():
            power_fail.set()
        if power_fail.is_set() and not told:
            told = True
            fn = _handlers.get("power_fail")
            if fn:
                fn(True)
        leds.on_battery = failing
        t = time.ticks_ms()
        for gpio, v in leds.levels(t):
            _out(gpio).value(v)
        await asyncio.sleep_ms(50)
