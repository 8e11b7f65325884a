# The emulated board: the only module (with blockdev) that touches the host.
# UARTs are TCP connections to the rig on 127.0.0.1; flash is LittleFS2 on a
# file-backed block device; the RTC is host time plus an offset the rig sets
# over the board's control line (the emulated "wires": power-fail, resets).
import asyncio
import json
import os
import time

import vfs
from blockdev import FileBlockDevice

# gc and sys are imported where used (preload, control_task): a global each
# less in a dict this module holds for the hub's life

NAME = "unix"
FLASH_ROOT = "/flash"
release_console = None  # the local port is a TCP line of the rig, not a REPL console
RIG = True  # the hub adds the rig's local-port hooks (firmware/rig/hooks.py)

_cfg = None
_bdev = None
_rtc_offset = 0
_handlers = {}
power_fail = asyncio.Event()


def config():
    global _cfg, _rtc_offset
    if _cfg is None:
        path = os.getenv("CHUB_BOARD")
        if not path:
            raise OSError("CHUB_BOARD is not set: the emulated board needs its config file")
        with open(path) as f:
            _cfg = json.load(f)
        _rtc_offset = _cfg.get("rtc_offset", 0)
    return _cfg


def preload():
    """Import the modules the board config names ("preload", set by a rig
    through UnixDut.preload; the bench no longer does: the hub loads its
    features when first used) before the hub starts. asyncio's parts (Event,
    Lock, wait_for...) load on first use, as on the ESP32 board."""
    import gc

    cfg = config()
    for name in cfg.get("preload", ()):
        __import__(name)
    # the list itself is the rig's, not the hub's: it must not count as data
    cfg.pop("preload", None)
    gc.collect()  # what the imports left behind goes before the hub starts


def _power_lost(dev):
    # Power is gone: stop at once, like the real thing. Nothing after this runs.
    print("BOARD power-cut after block write", dev.writes)
    os.system("kill -9 %d" % _pid())


def _pid():
    with open("/proc/self/stat") as f:
        # /proc/self inside os.system's shell would be the shell; read ours now
        return int(f.read().split(" ", 1)[0])


def mount():
    """Mount the flash file system at FLASH_ROOT, formatting a blank part."""
    global _bdev
    if _bdev is not None:
        return FLASH_ROOT  # mounted already (the boot chooser mounts first)
    cfg = config()
    fl = cfg["flash"]
    # "timing": "spi_nor" (or $CHUB_FLASH_TIMING): the ESP32's flash times (blockdev.SPI_NOR)
    timing = fl.get("timing", os.getenv("CHUB_FLASH_TIMING") or None)
    _bdev = FileBlockDevice(fl["path"], fl.get("blocks", 256), fl.get("cut_after", 0), _power_lost, timing)
    try:
        fs = vfs.VfsLfs2(_bdev)
    except OSError:
        print("BOARD flash has no file system: formatting")
        vfs.VfsLfs2.mkfs(_bdev)
        fs = vfs.VfsLfs2(_bdev)
    vfs.mount(fs, FLASH_ROOT)
    return FLASH_ROOT


def flash_counters():
    if _bdev is None:
        return {"reads": 0, "writes": 0, "erases": 0}
    return _bdev.counters()


def utc():
    """RTC: UTC seconds since 1970-01-01."""
    return int(time.time()) + _rtc_offset


def set_utc(t):
    global _rtc_offset
    _rtc_offset = int(t) - int(time.time())


ticks_ms = time.ticks_ms


async def open_uart(name):
    """A UART as an asyncio (reader, writer) pair."""
    cfg = config()
    port = cfg["uarts"][name]
    r, w = await asyncio.open_connection("127.0.0.1", port)
    # A UART sends each byte when written: no Nagle delay on the emulated line
    # (it added ~40 ms per frame to every HAN and WAN round trip).
    w.s.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY: Linux values; MicroPython's socket module does not name them
    return r, w


class _Wdt:
    # the stand-in of machine.WDT: each feed is counted and told to the rig
    # on the control line ({"wdt": feeds}); the rig sees the feeds stop
    def __init__(self, timeout_ms):
        self.timeout_ms = timeout_ms
        self.feeds = 0

    def feed(self):
        self.feeds += 1
        _ctl_send({"wdt": self.feeds})


def watchdog(timeout_ms=None):
    """The watchdog stand-in when the rig's config asks for one
    ("watchdog_ms"), else None (no watchdog)."""
    ms = timeout_ms or config().get("watchdog_ms")
    return _Wdt(ms) if ms else None


def on_control(key, fn):
    """Register fn(value) for a control-line message from the rig."""
    _handlers[key] = fn


def reset():
    """The board's reset: on this board the process ends at once (the rig,
    or whoever started it, powers it up again)."""
    print("BOARD reset" if _bdev is None else "BOARD reset after block write %d" % _bdev.writes)
    os.system("kill -9 %d" % _pid())


def hard_reset(peripheral):
    # The reset pin of the NCP or modem; on this board the rig pulls it.
    _ctl_send({"reset": peripheral})


_ctl_writer = None
leds = {}  # the emulated status LEDs: what the hub last set


def set_leds(d):
    """The status LEDs (pattern names by LED, firmware/leds.py): kept in
    `leds` and reported to the rig on the control line as {"leds": d}."""
    global leds
    leds = d
    _ctl_send({"leds": d})


def _ctl_send(msg):
    if _ctl_writer is not None:
        _ctl_writer.write(json.dumps(msg).encode() + b"\n")


async def control_task():
    """The board's wires to the rig: RTC offset, power-fail, reset lines."""
    global _ctl_writer, _rtc_offset
    port = config()["uarts"].get("ctl")
    if not port:
        return
    reader, _ctl_writer = await asyncio.open_connection("127.0.0.1", port)
    if leds:
        set_leds(leds)  # set before the line was up (a plain call: the dict is not built in this frame)
    # While it waits for the next line this frame holds nothing of the last
    # one: the locals are cleared, and nothing of a line is left in the
    # slots of its value stack above the two the wait takes (every step of a
    # line uses two: the parser is called through a local, the handlers'
    # keys are popped from the dict, not iterated)
    loads = json.loads
    while True:
        line = msg = fn = None
        line = await reader.readline()
        if not line:
            # the rig went away: the board has lost its supply
            print("BOARD control line closed")
            import sys

            sys.exit(0)
        try:
            msg = loads(line)
        except ValueError:
            continue
        if "rtc_offset" in msg:
            _rtc_offset = int(msg["rtc_offset"])
        if msg.get("power_fail"):
            power_fail.set()
        while msg:
            line, fn = msg.popitem()  # line: the key
            if line in _handlers:
                _handlers[line](fn)
