# CHF Device Log and event/security logs under micropython, on LittleFS2 over
# the file-backed block device in the cwd (a temp dir); remounts prove what
# reached flash.
import asyncio
import gc
import os

import vfs
from flashfs import ROOT
from flashfs import fresh as _fresh_fs
from flashfs import remount as _remount_fs
from chf.logs import EventLog, open_logs
from ids import EPOCH_2000, utc2000
from log import kind_of
from store import Store
import rigline

HEAP = "256k"


def fresh(blocks=64):
    _fresh_fs(blocks)
    return Store(ROOT + "/data")


def remount():
    _remount_fs()
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
    assert kind_of(raises(ValueError, log.append, 0x10000)) == "EventLogError"
    assert kind_of(raises(ValueError, log.append, 1, b"x" * 256)) == "EventLogError"
    assert kind_of(raises(ValueError, EventLog(st, "other").append, 1)) == "EventLogError"  # no clock, no t


# -- device log -----------------------------------------------------------------

from chf import device_log as DL  # noqa: E402
from han.install_code import add_crc, aes_mmo_hash, link_key  # noqa: E402

ESME = bytes.fromhex("00DB1234567890A0")
GSME = bytes.fromhex("00DB1234567890B0")
GPF_EUI = bytes.fromhex("00DB1234567890C0")
CODE = add_crc(b"0123456789ABCDEF")
CODE2 = add_crc(b"\x11" * 16)


class Clock:
    def __init__(self, t=1000):
        self.t = t

    def __call__(self):
        return self.t


def eui(i):
    return bytes((0, 0xDB, 0, 0, 0, 0, 0, i))


def test_add_get_remove_and_codes():
    st = fresh()
    clk = Clock()
    log = DL.DeviceLog(st, clk)
    changes = []
    log.on_change(lambda k, e: changes.append((k, e)))
    assert log.add(ESME, 1, CODE, 600) == (DL.OK, False)
    v = log.get(ESME)
    assert v["eui"] == "00DB1234567890A0" and v["type_name"] == "ESME"
    # the entry's 16 octets (CS14 / CCS07) are the install code, as in the RTDS backups
    assert v["key_hash"] == CODE[:16].hex()
    assert v["join_state"] == "join window open" and v["window_end"] == 1600
    assert v["key_state"] == "install code" and v["node_id"] is None and v["rssi"] is None
    # duplicate EUI: key ignored, success, flagged
    assert log.add(ESME, 1, CODE2, 600) == (DL.OK, True)
    assert log.get(ESME)["key_hash"] == v["key_hash"]
    # same EUI, other type: incompatible
    assert log.add("00:DB:12:34:56:78:90:A0", 0, CODE, 600) == (DL.INCOMPATIBLE, False)
    # CRC-invalid code: specific exception, nothing stored
    bad = bytearray(CODE2)
    bad[-1] ^= 1
    assert kind_of(raises(ValueError, log.add, GSME, 0, bytes(bad), 60)) == "InstallCodeCrcError"
    assert GSME not in log and len(log) == 1
    raises(DL.DeviceLogError, log.add, b"\x00" * 7, 0, CODE, 60)
    raises(DL.DeviceLogError, log.add, GSME, 7, CODE, 60)
    assert log.remove(GSME) == DL.INCOMPATIBLE
    assert log.remove(ESME) == DL.OK and ESME not in log
    assert log.historic() == [{"eui": "00DB1234567890A0", "key_hash": v["key_hash"], "type": 1,
                               "type_name": "ESME", "removed": 1000}]
    assert changes == [("add", "00DB1234567890A0"), ("duplicate", "00DB1234567890A0"),
                       ("remove", "00DB1234567890A0")]


def test_type_of_without_the_view():
    # the router asks only the device type of each routed message's recipient
    # (issue 15: routing cost on an MCU): no view dict built for it
    st = fresh()
    log = DL.DeviceLog(st, Clock())
    log.add(ESME, 1, CODE, 600)
    log.add(GSME, 0, CODE2, 600)
    assert log.type_of(ESME) == 1 and log.type_of("00db1234567890b0") == 0
    assert log.type_of(b"\x00" * 8) is None
    assert log.type_of(ESME) == log.get(ESME)["type"]
    gc.collect()
    gc.disable()
    try:
        a = gc.mem_alloc()
        log.type_of("00DB1234567890A0")
        n = gc.mem_alloc() - a
    finally:
        gc.enable()
    assert n <= 64, n  # the upper-cased EUI at most


def test_full_log_and_configurable_capacity():
    st = fresh()
    log = DL.DeviceLog(st, Clock(), capacity=3)
    for i in range(3):
        assert log.add(eui(i), 1, CODE, 0)[0] == DL.OK
    assert log.add(eui(9), 1, CODE, 0) == (DL.FULL, False)
    assert log.add(eui(1), 1, CODE, 0) == (DL.OK, True)  # duplicate still fine when full
    big = DL.DeviceLog(fresh(), Clock(), capacity=20)
    for i in range(20):
        assert big.add(eui(i), 0, CODE, 0)[0] == DL.OK
    assert big.add(eui(99), 0, CODE, 0)[0] == DL.FULL and len(big) == 20


def test_historic_fifo_never_gpf():
    st = fresh()
    clk = Clock()
    log = DL.DeviceLog(st, clk, capacity=20)
    for i in range(17):
        log.add(eui(i), 0, CODE, 0)
    log.add(GPF_EUI, DL.GPF, CODE, 0)
    for i in range(17):
        clk.t = 2000 + i
        assert log.remove(eui(i)) == DL.OK
    assert log.remove(GPF_EUI) == DL.OK
    h = log.historic()
    assert len(h) == 15
    assert [x["eui"][-2:] for x in h] == [f"{i:02X}" for i in range(2, 17)]
    assert [x["removed"] for x in h] == list(range(2002, 2017))
    assert all(x["type"] != DL.GPF for x in h)
    # backup of both logs
    (t, xp, act), (t2, xp2, hist) = log.backup()
    assert act == [] and len(hist) == 15 and hist[0][0] == eui(2) and len(hist[0][1]) == 16


def test_restore_and_backup():
    st = fresh()
    clk = Clock(50)
    log = DL.DeviceLog(st, clk)
    log.add(ESME, 1, CODE, 60)
    changes = []
    log.on_change(lambda k, e: changes.append(k))
    xpan = bytes.fromhex("0011223344556677")
    h1, h2 = b"\xAA" * 16, b"\xBB" * 16
    assert log.restore(xpan, [(GSME, h1), (GPF_EUI, h2)]) == DL.OK
    assert ESME not in log and len(log) == 2 and changes == ["restore", "restore"]
    g = log.get(GSME)
    # the restored value is the install code: the entry has its link key back
    assert g["join_state"] == "restored" and g["key_state"] == "install code" and g["key_hash"] == "aa" * 16
    assert log.is_joined(GSME) and log.join_key(GSME) is None
    assert sorted(log.restored_keys()) == sorted([(DL.eui_hex(GSME), link_key(add_crc(h1))),
                                                  (DL.eui_hex(GPF_EUI), link_key(add_crc(h2)))])
    (t, xp, act), _ = log.backup()
    assert t == 50 and xp == xpan and sorted(act) == sorted([(GSME, h1), (GPF_EUI, h2)])
    assert log.restore(xpan, [(eui(i), h1) for i in range(17)]) == DL.FULL
    raises(DL.DeviceLogError, log.restore, b"\x00", [])
    st = remount()
    log2 = DL.DeviceLog(st, clk)
    assert log2.ext_pan_id == xpan and log2.get(GSME) == g


def test_persistence_across_reopen_and_stats_flush():
    st = fresh()
    clk = Clock(100)
    log = DL.DeviceLog(st, clk, stats_period=60)
    log.add(ESME, 1, CODE, 300)
    log.add(GSME, 0, CODE2, 300)
    log.remove(GSME)
    assert log.record_join(ESME, 0x1234)
    log.record_rx(ESME, -70, 200, 110)
    log.record_rx(ESME, -50, 240, 120)
    log.record_tx(ESME, True)
    log.record_tx(ESME, False)
    log.record_tx(ESME, True)
    v = log.get(ESME)
    assert v["rssi"] == (-70, -60, -50) and v["lqi"] == (200, 220, 240)
    assert v["last_comm"] == 120 and v["tx_ok"] == 2 and v["tx_fail"] == 1
    assert v["join_state"] == "joined" and v["node_id"] == 0x1234 and v["key_state"] == "established"
    assert log.eui_of(0x1234) == "00DB1234567890A0"
    writes = st.stats["kv_writes"]
    for i in range(50):  # within the period: RAM only
        log.record_rx(ESME, -60, 220, 130 + i)
    assert st.stats["kv_writes"] == writes
    clk.t = 170  # the period has passed: the next update flushes once
    log.record_rx(ESME, -55, 230, 170)
    assert st.stats["kv_writes"] == writes + 1
    log.record_tx(ESME, True)  # dirty again but within the period
    assert st.stats["kv_writes"] == writes + 1
    flushed = log.get(ESME)
    st = remount()
    log2 = DL.DeviceLog(st, clk)
    v2 = log2.get(ESME)
    assert v2["tx_ok"] == flushed["tx_ok"] - 1  # the unflushed tx is lost, by design
    v2["tx_ok"] = flushed["tx_ok"]
    # joined across the restart, but not heard since: it says so until heard
    assert v2["join_state"] == "not heard since start" and log2.is_joined(ESME)
    v2["join_state"] = flushed["join_state"]
    assert v2 == flushed
    assert [h["eui"] for h in log2.historic()] == ["00DB1234567890B0"]


def test_joined_entries_not_heard_since_start_until_heard():
    st = fresh()
    clk = Clock(100)
    log = DL.DeviceLog(st, clk)
    log.add(ESME, 1, CODE, 300)
    log.add(GSME, 0, CODE2, 300)
    log.record_join(ESME, 0x1234)
    log.record_join(GSME, 0x1235)
    assert log.get(ESME)["join_state"] == "joined" and log.not_heard() == []
    st.close()
    st = remount()
    log = DL.DeviceLog(st, clk)  # the hub started again
    for eui in (ESME, GSME):
        v = log.get(eui)
        assert v["join_state"] == DL.NOT_HEARD == "not heard since start", v
        assert log.is_joined(eui) and v["node_id"] is not None
    assert log.not_heard() == ["00DB1234567890A0", "00DB1234567890B0"]
    log.record_rx(ESME, -60, 200, 120)  # a frame from the ESME
    log.record_tx(GSME, False)  # an unacknowledged send is no sign of life
    assert log.get(ESME)["join_state"] == "joined" and log.get(GSME)["join_state"] == DL.NOT_HEARD
    log.record_tx(GSME, True)  # the GSME acknowledged a send
    assert log.get(GSME)["join_state"] == "joined" and log.not_heard() == []


def test_device_eui_and_install_code_match():
    st = fresh()
    log = DL.DeviceLog(st, Clock(100))
    for bad in ("FFFFFFFFFFFFFFFF", "0000000000000000", b"\xff" * 8):
        e = raises(DL.DeviceLogError, log.add, bad, 1, CODE, 300)
        assert "not a device address" in str(e), e
    assert len(log) == 0
    log.add(ESME, 1, CODE, 300)
    assert log.install_code_matches(ESME, CODE) is True
    assert log.install_code_matches(ESME, CODE2) is False
    assert log.install_code_matches(GSME, CODE) is None  # not in the log
    assert kind_of(raises(ValueError, log.install_code_matches, ESME, CODE[:-1] + b"\x00")) == "InstallCodeCrcError"


def test_join_window_timing():
    st = fresh()
    clk = Clock(1000)
    log = DL.DeviceLog(st, clk)
    key = aes_mmo_hash(CODE)
    log.add(ESME, 1, CODE, 100)
    assert log.join_key(ESME, 1000) == key and log.join_key(ESME, 1099) == key
    assert log.join_key(ESME, 1100) is None and log.join_key(ESME, 999) is None
    assert log.join_key(GSME, 1000) is None
    assert log.open_windows(1050) == [("00DB1234567890A0", 1100)]
    clk.t = 1100
    assert log.get(ESME)["join_state"] == "whitelisted"
    assert log.close_expired() == ["00DB1234567890A0"] and log.open_windows() == []
    assert log.open_join_window(ESME, 10) == DL.OK and log.join_key(ESME) == key
    assert log.open_join_window(GSME, 10) == DL.INCOMPATIBLE
    assert log.open_join_window(ESME, 0) == DL.OK and log.join_key(ESME) is None
    # joined: the window closes
    log.open_join_window(ESME, 10)
    log.record_join(ESME, 7)
    assert log.join_key(ESME) is None and log.is_joined(ESME)


def test_historic_key_first_half_rule():
    st = fresh()
    clk = Clock(0)
    log = DL.DeviceLog(st, clk)
    old_key = aes_mmo_hash(CODE)
    new_key = aes_mmo_hash(CODE2)
    log.add(ESME, 1, CODE, 0)
    log.remove(ESME)
    clk.t = 500
    assert log.add(ESME, 1, CODE2, 200) == (DL.OK, False)  # re-added from the historic log
    assert log.get(ESME)["historic_key"]
    assert log.join_key(ESME, 500) == old_key and log.join_key(ESME, 599) == old_key
    assert log.join_key(ESME, 600) == new_key and log.join_key(ESME, 699) == new_key
    assert log.join_key(ESME, 700) is None
    # a device never removed has no historic key: install code all the way
    log.add(GSME, 0, CODE, 200)
    assert log.join_key(GSME, 501) == aes_mmo_hash(CODE)
    # the rule survives a reboot
    st = remount()
    log2 = DL.DeviceLog(st, clk)
    assert log2.join_key(ESME, 550) == old_key and log2.join_key(ESME, 650) == new_key
    # the keys a device found on the NCP's network may hold (adopting a join
    # the hub never recorded): install code, and historic if re-added; at
    # any time, window open or not
    assert log2.link_keys(ESME) == (new_key, old_key)
    assert log2.link_keys(GSME) == (aes_mmo_hash(CODE),)
    assert log2.link_keys(eui(9)) == ()
    clk.t = 10000
    assert log2.join_key(ESME) is None and log2.link_keys(ESME) == (new_key, old_key)
    # a restored entry holds the link key of its restored install code
    log2.restore(bytes(8), [(ESME, bytes(16))])
    assert log2.link_keys(ESME) == (link_key(add_crc(bytes(16))),)
    log2.restore(bytes(8), [(ESME, b"")])
    assert log2.link_keys(ESME) == ()


def test_link_keys_of_codes_of_every_length_survive_a_restart():
    # an entry's link key: its install code's for a 16-byte code (derived
    # from the entry's 16 octets when asked, no copy in RAM), its own for a
    # code of another length (the 16 octets are its key's hash); on flash
    # as before, read back, and into the historic log on a remove
    st = fresh()
    clk = Clock(0)
    log = DL.DeviceLog(st, clk)
    short = add_crc(b"\x21" * 8)
    k1, k2 = link_key(CODE), link_key(short)
    assert log.add(ESME, 1, CODE, 600) == (DL.OK, False) and log.add(GSME, 0, short, 600) == (DL.OK, False)
    assert log.join_key(ESME, 1) == k1 and log.join_key(GSME, 1) == k2
    d = st.kv("devlog").get("d")
    assert d["00DB1234567890A0"][1] == k1.hex() and d["00DB1234567890A0"][2] == CODE[:16].hex()
    assert d["00DB1234567890B0"][1] == k2.hex() and d["00DB1234567890B0"][2] == aes_mmo_hash(k2).hex()
    st = remount()
    log2 = DL.DeviceLog(st, clk)
    assert log2.join_key(ESME, 2) == k1 and log2.join_key(GSME, 2) == k2
    assert log2.link_keys(ESME) == (k1,) and log2.link_keys(GSME) == (k2,)
    log2.record_join(ESME, 0x1234)
    d["00DB1234567890A0"][4:8] = [0x1234, 2, 0, 0]
    d["00DB1234567890A0"][3] = 2
    assert st.kv("devlog").get("d") == d
    # removed, re-added with another code: its old key for the first half
    assert log2.remove(GSME) == DL.OK
    assert log2.add(GSME, 0, CODE2, 100) == (DL.OK, False)
    assert log2.join_key(GSME, 2) == k2 and log2.join_key(GSME, 60) == link_key(CODE2)
    log3 = DL.DeviceLog(remount(), clk)
    assert log3.join_key(GSME, 2) == k2 and log3.join_key(GSME, 60) == link_key(CODE2)


def test_join_windows_held_only_while_open():
    # a window's start and end are held in RAM only while its entry's join
    # state is "join window open" (one table, none while no window is open;
    # on flash 0 and 0 otherwise); a remove that moves the last slot into
    # the freed one moves its window; windows survive a restart
    st = fresh()
    clk = Clock(1000)
    log = DL.DeviceLog(st, clk)
    e2, e3 = DL.eui_hex(eui(2)), DL.eui_hex(eui(3))
    assert log.add(eui(1), 1, CODE, 0) == (DL.OK, False) and log._w is None
    assert log.add(eui(2), 1, CODE, 100) == (DL.OK, False)  # 1000..1100
    assert log.add(eui(3), 0, CODE2, 300) == (DL.OK, False)  # 1000..1300
    assert log._w is not None
    assert log.remove(eui(1)) == DL.OK  # the last slot moves into the first
    assert sorted(log.open_windows(1050)) == [(e2, 1100), (e3, 1300)]
    clk.t = 1050
    assert log.join_key(eui(3)) == link_key(CODE2) and log.window_open(eui(2))
    log2 = DL.DeviceLog(remount(), clk)
    assert sorted(log2.open_windows()) == [(e2, 1100), (e3, 1300)] and log2.get(eui(3))["window_end"] == 1300
    assert log2.record_join(eui(3), 5) and log2._w is not None and log2.window_open(eui(2))
    assert log2.get(eui(3))["window_end"] is None and log2.open_windows() == [(e2, 1100)]
    clk.t = 1100
    assert log2.close_expired() == [e2] and log2._w is None and log2.open_windows() == []
    d = st.kv("devlog").get("d")
    assert d[e2][5:8] == [0, 0, 0] and d[e3][5:8] == [2, 0, 0], d
    assert log2.open_join_window(eui(2), 60) == DL.OK and log2.open_windows() == [(e2, 1160)]
    assert st.kv("devlog").get("d")[e2][5:8] == [1, 1100, 1160]
    assert log2.record_left(eui(2)) and log2._w is None and not log2.window_open(eui(2))


def test_write_failure_leaves_ram_state():
    st = fresh()
    log = DL.DeviceLog(st, Clock())
    log.add(ESME, 1, CODE, 0)
    vfs.umount(ROOT)  # the flash is gone: every write fails
    assert log.add(GSME, 0, CODE, 0) == (DL.WRITE_FAILURE, False)
    assert GSME not in log and log.remove(ESME) == DL.WRITE_FAILURE and ESME in log
    assert log.historic() == []



def test_a_write_failure_is_logged_with_its_cause():
    # a MemoryError or a flash error both refuse the change; the console says which
    st = fresh()
    dlog = DL.DeviceLog(st, Clock())
    lines = []
    real = DL.log
    DL.log = lambda source, msg: lines.append((source, msg))
    try:
        vfs.umount(ROOT)
        assert dlog.add(GSME, 0, CODE, 0) == (DL.WRITE_FAILURE, False)
    finally:
        DL.log = real
    assert lines and lines[0][0] == "device_log" and "OSError" in lines[0][1], lines


# -- trust centre scenario (driven by tests/test_trust_centre.py) -----------------

_rig = rigline.ask
_until = rigline.until


async def _tc():
    from codes import EV_JOIN_BAD_KEY, EV_JOIN_WINDOW_CLOSED, EV_UNKNOWN_JOIN
    from han.ash import Ash
    from han import network
    from han.ezsp import Ezsp
    from han.trust_centre import TrustCentre

    st = fresh()
    clk = Clock(10000)
    log = DL.DeviceLog(st, clk)
    ev, sec = open_logs(st)
    r, w = await asyncio.open_connection("127.0.0.1", int(os.getenv("NCP_PORT")))
    ez = Ezsp(Ash(r, w), desired=14)
    await ez.connect()
    await network.startup(ez)
    await network.form_network(ez)
    tc = TrustCentre(ez, log, sec)
    devs = {}
    for line in os.getenv("TC_DEVICES").split(";"):
        name, e, typ, code = line.split(",")
        devs[name] = bytes.fromhex(e)
        if typ != "-":
            assert log.add(devs[name], int(typ), add_crc(bytes.fromhex(code)), 60) == (DL.OK, False)
    assert len(log) == 4
    await tc.sync()
    assert _rig("permit") == "1"
    # three devices join with their install codes
    for name in ("esme", "gsme", "ihd"):
        assert _rig("join " + name) == "1", name
    await _until(lambda: all(log.is_joined(devs[n]) for n in ("esme", "gsme", "ihd")))
    assert log.get(devs["esme"])["node_id"] is not None and tc.stats["joined"] == 3
    # a fourth, not whitelisted: the NCP has no key and denies it
    assert _rig("join intruder") == "0"
    # (sum(r[3] for r in sec.rows()): a repeated refusal collapses into its entry's count)
    await _until(lambda: sum(r[3] for r in sec.rows()) == 1)
    assert sec.entries()[-1][1:] == (EV_UNKNOWN_JOIN, devs["intruder"])
    # the same intruder let through by an NCP holding a stale key: refused by
    # the firmware, never kept
    assert _rig("stale intruder") == "1"
    await _until(lambda: sum(r[3] for r in sec.rows()) == 2)
    assert sec.entries()[-1][1:] == (EV_UNKNOWN_JOIN, devs["intruder"]) and devs["intruder"] not in log
    await tc.sync()  # tries to remove it from the network
    assert tc.stats["refused"] == 2
    # a known device with the wrong install code
    assert _rig("join wrongkey") == "0"
    await _until(lambda: sum(r[3] for r in sec.rows()) == 3)
    assert sec.entries()[-1][1:] == (EV_JOIN_BAD_KEY, devs["wrongkey"]) and not log.is_joined(devs["wrongkey"])
    # its window closes: keys cleared, joining stopped, the join fails
    clk.t += 61
    await tc.sync()
    assert _rig("permit") == "0"
    assert _rig("keys") == "0"
    assert _rig("join late") == "0"
    assert not log.is_joined(devs["wrongkey"]) and log.get(devs["wrongkey"])["join_state"] == "whitelisted"
    # a window that closed in the log before the NCP heard of it: the NCP lets
    # the device in, the firmware refuses and logs it
    assert log.open_join_window(devs["wrongkey"], 30) == DL.OK
    await tc.sync()
    clk.t += 31
    assert _rig("join late") == "1"
    await _until(lambda: sum(r[3] for r in sec.rows()) == 4)
    assert sec.entries()[-1][1:] == (EV_JOIN_WINDOW_CLOSED, devs["wrongkey"])
    assert not log.is_joined(devs["wrongkey"])
    # a known, joined device rejoins
    assert _rig("rejoin esme") == "1"
    await _until(lambda: tc.stats["rejoined"] == 1)
    assert sum(r[3] for r in sec.rows()) == 4
    from han.commands import rotate_key

    await rotate_key(ez, sec, clk, 0)
    assert sum(r[3] for r in sec.rows()) == 5
    before = log.entries()
    ez.close()
    w.close()
    st.close()
    st = remount()
    log2 = DL.DeviceLog(st, clk)
    after = log2.entries()
    # the joined ones are kept joined, but not heard since this (re)start
    assert [e["join_state"] for e in after] == [DL.NOT_HEARD if e["join_state"] == "joined" else e["join_state"]
                                               for e in before]
    for e in after:
        e["join_state"] = "joined" if e["join_state"] == DL.NOT_HEARD else e["join_state"]
    assert after == before
    ev2, sec2 = open_logs(st)
    assert sum(r[3] for r in sec2.rows()) == 5 and len(sec2) == 4  # the intruder twice: one entry, count 2
    print("SCENARIO OK")


def scenario_tc():
    asyncio.run(_tc())


def test_key_establishment_sets_the_key_state():
    # a completed CBKE (han.cbke) replaces the device's install-code link key:
    # the entry's key state says so, on flash; the 16 octets (the install
    # code) do not change, so no "key" change (CS14) is fired. A rejoin keeps
    # the state; a join inside an open window (the install-code key again)
    # sets it back to "established"
    st = fresh()
    clk = Clock()
    log = DL.DeviceLog(st, clk)
    ihd = eui(6)
    changes = []
    log.on_change(lambda k, e: changes.append(k))
    assert log.add(ihd, 6, CODE, 600)[0] == DL.OK
    assert log.record_key_established(ihd) is False  # not joined yet
    assert log.record_join(ihd, 0x1111)
    assert log.get(ihd)["key_state"] == "established"
    assert log.record_key_established(ihd) is True
    assert log.record_key_established(eui(7)) is False  # not in the log
    assert changes == ["add"]
    log = DL.DeviceLog(st, clk)  # reopened (a power cut)
    v = log.get(ihd)
    assert v["key_state"] == "key establishment" and v["key_hash"] == CODE[:16].hex()
    assert log.record_join(ihd, 0x2222)  # a rejoin: it still holds the CBKE key
    assert log.get(ihd)["key_state"] == "key establishment"
    assert log.open_join_window(ihd, 60) == DL.OK
    assert log.record_join(ihd, 0x3333)  # joined with its install-code key again
    assert log.get(ihd)["key_state"] == "established"


def test_a_joined_device_holds_little_ram():
    # What the log holds per joined device that has been heard and whose
    # statistics were written: its entry, its statistics (one list, the
    # devstats store cold: no second copy in RAM) and its EUI text once (the
    # entry's key; "heard" and the statistics share it, not a new string
    # each). Measured 834 -> 594 bytes a device on the 64-bit unix port,
    # 481 -> 345 on the 32-bit build; the entry a tuple, not a list (on flash
    # the same JSON array): 594 -> 530 and 345 -> 313; the bound in words
    # (8 and 4 bytes)
    import sys
    from binascii import unhexlify
    from chf.device_log import DeviceLog
    from han.install_code import add_crc

    W = 8 if sys.maxsize > 2**31 else 4
    st = fresh(128)
    t = [700000000]
    dl = DeviceLog(st, lambda: t[0])
    code = add_crc(unhexlify("0123456789ABCDEF0123456789ABCDEF"))
    dl.add(unhexlify("00DB1234567890FF"), 1, code, 60)  # the first: the stores' tables made
    n = 12
    euis = ["00DB12345678%04X" % i for i in range(n)]
    gc.collect()
    a = gc.mem_alloc()
    for i, eh in enumerate(euis):
        assert dl.add(unhexlify(eh), 1, code, 60) == (0, False)
        assert dl.record_join(eh.lower(), 0x1000 + i)
        assert dl.record_rx(unhexlify(eh), -60, 200, t[0])
        assert dl.record_tx(eh, True)
    t[0] += 1000
    assert dl.flush_stats()
    gc.collect()
    per = (gc.mem_alloc() - a) // n
    print("device log: %d bytes a joined device" % per)
    assert per <= 84 * W, per
    # what it keeps is all there, and on flash
    e = dl.get(euis[3])
    assert e["join_state"] == "joined" and e["node_id"] == 0x1003 and e["tx_ok"] == 1 and e["rssi"] == (-60, -60, -60)
    _remount_fs(128)
    dl2 = DeviceLog(Store(ROOT + "/data"), lambda: t[0])
    e = dl2.get(euis[3])
    assert e["node_id"] == 0x1003 and e["tx_ok"] == 1 and e["join_state"] == "not heard since start"


def _reopened(t, euis):
    # (bytes held, DeviceLog) of the log read from flash after a remount,
    # every device heard again (measured from a second opening: the first
    # frees what the log before it still held)
    from chf.device_log import DeviceLog

    _remount_fs(128)
    st = Store(ROOT + "/data")
    st.kv("devlog")
    st.kv("devstats", keep=False)
    DeviceLog(st, lambda: t[0])
    gc.collect()
    a = gc.mem_alloc()
    dl = DeviceLog(st, lambda: t[0])
    for e in euis:
        dl.record_rx(e, -60, 200, t[0])  # heard again
    gc.collect()
    return gc.mem_alloc() - a, dl


def test_the_log_at_capacity_holds_little_ram():
    # issue 15 item 3 (the heap on the device's shape): all the Device Log
    # holds at capacity, 16 joined devices heard, with statistics written,
    # one re-added from the Historic log, its stores' RAM copies included.
    # Each entry a tuple of hex texts and its statistics a list, the store
    # keeping the parsed record: 5504 bytes on the 32-bit build, 9344 on the
    # 64-bit port. One table of packed slots (keys as bytes, text made when
    # a view or the store asks), the stores cold: 2368 and 2976, the EUI
    # texts (48 and 64 bytes each) included. Branch devpk: no link key in a
    # slot (an entry's link key is its install code's, derived when asked)
    # and no window (held only while open): 72 -> 48 bytes a slot; the
    # log's KVs made for a read or a write, its defaults class attributes
    # (14 -> 10 attributes), the listeners a tuple: 2448 -> 1904 and 3168
    # -> 2464. The bound in words (4 and 8 bytes) for what is made of
    # pointers, bytes for the table.
    # The modules the log loads for a use (the install code's, its on-flash
    # form's) stay loaded here, loaded before: from source (the 64-bit
    # port) their bytecode is in the heap, and a stale pointer to a dropped
    # one (the collector is conservative) would count it.
    import sys
    from binascii import unhexlify
    import lazy
    from chf.device_log import DeviceLog
    from han.install_code import add_crc

    W = 8 if sys.maxsize > 2**31 else 4
    st = fresh(128)
    t = [700000000]
    code = add_crc(unhexlify("0123456789ABCDEF0123456789ABCDEF"))
    euis = [unhexlify("00DB12345678%04X" % i) for i in range(16)]
    st.kv("devlog")  # the stores' objects are the Store's (made before, measured in neither)
    st.kv("devstats", keep=False)
    real = lazy.drop
    lazy.drop = lambda name, collect=True: False
    try:
        lazy.load("chf.devlog_store")
        lazy.load("han.install_code")
        gc.collect()
        a = gc.mem_alloc()
        dl = DeviceLog(st, lambda: t[0])
        dl.add(euis[0], 1, code, 60)
        dl.remove(euis[0])
        for i, e in enumerate(euis):
            assert dl.add(e, i % 7, code, 600) == (0, False)
            assert dl.record_join(e, 0x1000 + i)
            assert dl.record_rx(e, -60 - i, 200, t[0])
            assert dl.record_tx(e, True)
        t[0] += 1000
        assert dl.flush_stats() and len(dl) == 16 and dl.get(euis[0])["historic_key"]
        gc.collect()
        held = gc.mem_alloc() - a
        print("device log at capacity: %d bytes" % held)
        assert held <= 1040 + 16 * 14 * W, held
        before = dl.entries()
        dl = None
        held, dl = _reopened(t, euis)
    finally:
        lazy.drop = real
    print("read from flash: %d bytes" % held)
    assert held <= 1040 + 16 * 14 * W, held
    after = dl.entries()
    for b, x in zip(before, after):  # one more frame each since
        b["rssi"], b["last_comm"] = x["rssi"], x["last_comm"]
    assert after == before, [(b, x) for b, x in zip(before, after) if b != x][:1]
    assert dl.historic()[0]["eui"] == "00DB123456780000"


def test_a_bad_record_on_flash_is_refused_and_said():
    # every boundary validates: an entry, a historic entry or statistics on
    # flash that the log cannot hold (bad hex, a number out of range, not a
    # list) is left out at start, with a console line; the rest is loaded
    st = fresh()
    log = DL.DeviceLog(st, Clock(100))
    log.add(ESME, 1, CODE, 300)
    log.add(GSME, 0, CODE2, 300)
    log.record_rx(ESME, -60, 200, 100)
    log.remove(GSME)
    log.flush_stats()
    kv = st.kv("devlog")
    d = dict(kv.get("d"))
    good = d["00DB1234567890A0"]
    d["00DB1234567890B1"] = [1, "zz" * 16, "", 1, None, 0, 0, 0, None]  # not hex
    d["00DB1234567890B2"] = [9] + list(good[1:])  # no such type
    d["00DB1234567890B3"] = list(good[:4]) + [0x10000] + list(good[5:])  # node id out of range
    d["00db1234567890b4"] = list(good)  # not the log's EUI form
    d["00DB1234567890B5"] = "joined"
    h = list(kv.get("h")) + [["00DB1234567890C0", "00" * 16, None, 1, -5]]
    kv.update({"d": d, "h": h})
    st.kv("devstats").set("00DB1234567890A0", [1, 2, 3])
    lines = []
    real = DL.log
    DL.log = lambda source, msg: lines.append((source, msg))
    io = DL.lazy.load(DL._IO)
    real_io = io.log
    io.log = DL.log
    real_drop = DL.lazy.drop
    DL.lazy.drop = lambda name, collect=True: False  # the patched module stays the one used
    try:
        log2 = DL.DeviceLog(st, Clock(100))
    finally:
        DL.log = real
        io.log = real_io
        DL.lazy.drop = real_drop
    assert len(log2) == 1 and log2.get(ESME)["key_hash"] == CODE[:16].hex()
    assert log2.get(ESME)["rssi"] is None  # its statistics were not 10 numbers
    assert [x["eui"] for x in log2.historic()] == ["00DB1234567890B0"]
    assert len(lines) == 7 and all(s == "device_log" for s, m in lines), lines
    for eh in ("00DB1234567890B1", "00DB1234567890B2", "00DB1234567890B3", "00db1234567890b4",
               "00DB1234567890B5", "00DB1234567890A0"):
        assert any(eh in m for s, m in lines), (eh, lines)


def test_a_bad_value_is_refused_not_stored():
    # an RSSI or LQI the statistics cannot hold (int8, uint8), a node id
    # that is none (16 bits): refused (False, a console line), nothing kept
    st = fresh()
    log = DL.DeviceLog(st, Clock(100))
    log.add(ESME, 1, CODE, 300)
    assert log.record_rx(ESME, -129, 200, 100) is False and log.record_rx(ESME, -60, 256, 100) is False
    assert log.get(ESME)["rssi"] is None
    assert log.record_join(ESME, 0x10000) is False and log.record_join(ESME, None) is False
    assert log.get(ESME)["node_id"] is None and not log.is_joined(ESME)
    assert log.record_rx(ESME, -128, 255, 100) and log.get(ESME)["rssi"] == (-128, -128, -128)
    assert log.record_join(ESME, 0xFFFF) and log.eui_of(0xFFFF) == "00DB1234567890A0"


def test_the_trust_centre_over_a_full_log_holds_little():
    # What the trust centre holds for the hub's life over the Device Log at
    # capacity (16 devices joined): its attributes, its statistics, the node
    # id of each joined device (to remove a device from the network once it
    # left the log) and the two handlers it registers. Its time is the
    # log's (branch hanws: no utc attribute of its own, 13 -> 12 attributes,
    # its attribute table 17 -> 12 slots). Measured 512 -> 464 bytes on the
    # 32-bit build, 1024 -> 928 on the 64-bit unix port; the bound in words
    # (8 and 4 bytes)
    import sys
    from binascii import unhexlify
    from chf.device_log import DeviceLog
    from han.trust_centre import TrustCentre

    class Ez:  # the EZSP host's handler table, as han.ezsp keeps it
        def __init__(self):
            self.handlers = {}

        def on(self, name, fn):
            self.handlers[name] = fn

    W = 8 if sys.maxsize > 2**31 else 4
    st = fresh(128)
    t = [700000000]
    dl = DeviceLog(st, lambda: t[0])
    for i in range(16):
        eh = "00DB12345678%04X" % i
        assert dl.add(unhexlify(eh), 1, CODE, 60) == (0, False)
        assert dl.record_join(eh, 0x1000 + i)
    ez = Ez()
    ez.on("trustCenterJoinHandler", None)
    dl.on_change(None)  # the listeners' tuple of one: the trust centre's makes one of two the same size
    gc.collect()
    a = gc.mem_alloc()
    tc = TrustCentre(ez, dl, None)
    gc.collect()
    held = gc.mem_alloc() - a
    print("trust centre: %d bytes over 16 joined devices" % held)
    assert len(tc._nodes) == 16
    assert held <= 120 * W, held

