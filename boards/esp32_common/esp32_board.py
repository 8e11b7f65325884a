# The ESP32 boards (ESP32-S3-DevKitC, ESP32-DevKitC): the same interface as
# boards/unix/board.py on machine.UART / Pin / RTC and esp32. The pin map is
# the board's board.json, stamped into the image as board_cfg.CONFIG by
# `chub build`; the hardware-free logic (map checks, LED patterns, epoch) is
# in board_map. Each board folder's board.py re-exports this module.
import asyncio
import gc
import os
import sys
import time

import esp32
import machine
import micropython
from board_cfg import CONFIG
from board_map import Leds, check, unix_offset

NAME = CONFIG["name"]
FLASH_ROOT = CONFIG.get("data_root", "/data")
UARTS = ("ncp", "modem", "local")

_rtc = machine.RTC()
if _rtc.memory() == b"chub:repl":
    # the installer asked for the console (chub flash, app update): this boot
    # stops here, at the REPL, instead of starting the hub
    _rtc.memory(b"")
    raise SystemExit("chub: console released for flashing")

_used = check(CONFIG)  # a bad map stops the boot here, with the role and pin
_epoch = unix_offset(time.gmtime(0)[0])
_handlers = {}
_uarts = {}
_pins = {}
power_fail = asyncio.Event()
RIG = False  # no rig: the image carries no rig hooks


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


def ticks_ms():
    return time.ticks_ms()


def heap():
    gc.collect()
    return gc.mem_free(), gc.mem_alloc()


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


async def open_uart(name):
    """A UART as an asyncio (reader, writer) pair. "local" is the console
    (the USB-UART bridge): the local port shares it with the REPL's output."""
    if name == "local":
        # local-port frames are binary: a 0x03 byte must not interrupt the hub
        micropython.kbd_intr(-1)
        stream = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else sys.stdin
        out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else sys.stdout
        return asyncio.StreamReader(stream), asyncio.StreamWriter(out, {})
    u = _uarts.get(name)
    if u is None:
        u = _uart(name)
        _uarts[name] = u
    return asyncio.StreamReader(u), asyncio.StreamWriter(u, {})


def release_console():
    """Give the console back to the REPL (for mpremote): soft reset into a
    boot that stops before the hub starts (see the RTC memory check above)."""
    _rtc.memory(b"chub:repl")
    micropython.kbd_intr(3)
    machine.soft_reset()


def on_control(key, fn):
    """Register fn(value) for a board event ("power_fail" on this board)."""
    _handlers[key] = fn


def set_leds(d):
    """The hub's LED patterns by name (firmware/leds.py); the control task
    drives the GPIOs from them every 50 ms."""
    leds.set(d)


def _pulse(gpio, active_low, ms):
    p = _out(gpio, 1 if active_low else 0)
    p.value(0 if active_low else 1)
    time.sleep_ms(ms)
    p.value(1 if active_low else 0)


def hard_reset(peripheral):
    """Pull the reset line of "ncp" (EFR32 nRESET) or "modem" (SIM7600
    RESET, then PWRKEY to switch it on again)."""
    u = CONFIG["uarts"][peripheral]
    _pulse(u["reset"], u.get("reset_active_low", True), 100 if peripheral == "modem" else 20)
    if peripheral == "modem":
        time.sleep_ms(500)
        power_on_modem()


def power_on_modem():
    # SIM7600: PWRKEY low for at least 500 ms switches it on (through the
    # board's NPN stage the GPIO drives high)
    u = CONFIG["uarts"]["modem"]
    _pulse(u["pwrkey"], u.get("pwrkey_active_low", False), 600)


def _power_fail_irq(pin):
    power_fail.set()
    fn = _handlers.get("power_fail")
    if fn:
        fn(True)


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
    power_on_modem()
    while True:
        failing = pf_pin.value() == (0 if active_low else 1)
        if failing and not power_fail.is_set():
            _power_fail_irq(pf_pin)
        leds.on_battery = failing
        t = time.ticks_ms()
        for gpio, v in leds.levels(t):
            _out(gpio).value(v)
        await asyncio.sleep_ms(50)
