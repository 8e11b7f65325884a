# CHF Device Log and event/security logs under micropython, on LittleFS2 over
# the file-backed block device in the cwd (a temp dir); remounts prove what
# reached flash.
import os

import vfs
from blockdev import FileBlockDevice
from chf.logs import EPOCH_2000, EventLog, EventLogError, open_logs, utc2000
from store import Store

HEAP = "256k"
ROOT = "/flash"
IMG = "flash.bin"


def fresh(blocks=64):
    try:
        os.remove(IMG)
    except OSError:
        pass
    dev = FileBlockDevice(IMG, blocks)
    vfs.VfsLfs2.mkfs(dev)
    vfs.mount(vfs.VfsLfs2(dev), ROOT)
    return Store(ROOT + "/data")


def remount():
    vfs.umount(ROOT)
    dev = FileBlockDevice(IMG, 64)
    vfs.mount(vfs.VfsLfs2(dev), ROOT)
    return Store(ROOT + "/data")


def raises(exc, fn, *args):
    try:
        fn(*args)
    except exc as e:
        return e
    raise AssertionError("no " + exc.__name__)


# -- event / security logs ------------------------------------------------------

def test_utc2000():
    # 2000-01-01 is 10957 days after 1970-01-01
    assert EPOCH_2000 == 10957 * 86400
    assert utc2000(EPOCH_2000) == 0 and utc2000(EPOCH_2000 + 61) == 61


def test_eventlog_fifo_overwrite_and_persist():
    st = fresh()
    ev, sec = open_logs(st, capacity=5)
    assert ev.name == "event" and sec.name == "security" and len(ev) == 0
    for i in range(8):
        ev.append(0x100 + i, bytes([i]) * i, 1000 + i)
    sec.append(0x8FE0, b"\x01" * 8, 7)
    got = ev.entries()
    assert len(ev) == 5 and [e[0] for e in got] == [1003, 1004, 1005, 1006, 1007]
    assert got[0] == (1003, 0x103, b"\x03\x03\x03")
    assert [e[1] for e in ev.entries(1004, 1006)] == [0x104, 0x105, 0x106]
    assert ev.entries(t_from=1007) == [(1007, 0x107, b"\x07" * 7)]
    assert ev.entries(t_to=1003) == [got[0]]
    st.close()
    st = remount()
    ev2, sec2 = open_logs(st, capacity=5)
    assert ev2.entries() == got
    assert sec2.entries() == [(7, 0x8FE0, b"\x01" * 8)]
    ev2.append(1, b"", 2000)
    assert [e[0] for e in ev2.entries()] == [1004, 1005, 1006, 1007, 2000]


def test_eventlog_capacity_above_default_and_clock():
    st = fresh()
    clock = [5]
    log = EventLog(st, "event", capacity=60, utc=lambda: clock[0])
    for i in range(70):
        clock[0] = i
        log.append(i)
    assert len(log) == 60 and log.entries()[0] == (10, 10, b"")
    raises(EventLogError, log.append, 0x10000)
    raises(EventLogError, log.append, 1, b"x" * 256)
    raises(EventLogError, EventLog(st, "other").append, 1)  # no clock, no t
