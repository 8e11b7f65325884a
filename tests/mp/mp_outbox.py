# firmware/wan/outbox.py and link.py under micropython; the outbox on
# LittleFS2 over the file-backed block device, remounted to model power cuts.
import binascii
import os
import struct

import vfs
from blockdev import FileBlockDevice, PowerLost
from store import Store
from wan import link
from wan.local_commands import page
from wan.outbox import KIND_ALERT, NON_CRITICAL, Outbox, TxLog

HEAP = "256k"
ROOT = "/flash"
IMG = "flash.bin"


class Clock:
    def __init__(self):
        self.t = 1000

    def __call__(self):
        return self.t


def fresh(blocks=64, cut_after=0):
    try:
        os.remove(IMG)
    except OSError:
        pass
    dev = FileBlockDevice(IMG, blocks)
    vfs.VfsLfs2.mkfs(dev)
    vfs.mount(vfs.VfsLfs2(dev), ROOT)
    return dev


def remount(cut_after=0):
    try:
        vfs.umount(ROOT)
    except OSError:
        pass
    dev = FileBlockDevice(IMG, 64, cut_after)
    vfs.mount(vfs.VfsLfs2(dev), ROOT)
    return dev


def copy(src, dst):
    buf = bytearray(4096)
    with open(src, "rb") as a, open(dst, "wb") as b:
        while True:
            n = a.readinto(buf)
            if not n:
                break
            b.write(buf[:n])


def make(clock, cfg=None):
    st = Store(ROOT + "/data")
    tx = TxLog(st.ringlog("transactions", 20), lambda: 1700000000)
    return st, Outbox(st.journal("outbox"), cfg, tx, clock), tx


CFG = {"crit_retries": 2, "crit_backoff_ms": 100, "crit_backoff_max_ms": 300,
       "noncrit_retries": 1, "noncrit_backoff_ms": 1000, "noncrit_backoff_max_ms": 1000}


def test_retry_schedule_per_class():
    fresh()
    clk = Clock()
    st, ob, tx = make(clk, CFG)
    a = ob.add(b"crit")
    b = ob.add(b"alert", NON_CRITICAL, KIND_ALERT)
    assert ob.due() == [a, b]  # first sends
    sends = {a: [0], b: [0]}
    for step in range(1, 45):
        clk.t = 1000 + step * 50
        for s in ob.due():
            sends[s].append(step * 50)
    # critical: first send, resends after 100 and 200 ms more (2 retries),
    # exhausted 300 ms (the cap) after the last one; non-critical: one resend after 1000 ms
    assert sends[a] == [0, 100, 300], sends[a]
    assert sends[b] == [0, 1000], sends[b]
    ev = [e["event"] for e in page(tx, None, 1 << 30)]
    assert ev.count("exhausted") == 2, ev
    assert len(ob) == 2  # kept (default on_exhausted = keep)
    assert ob.due() == []  # parked until the next reconnect
    ob.reconnected()
    assert ob.due() == [a, b]
    st.close()


def test_drop_on_exhausted_and_ack():
    fresh()
    clk = Clock()
    cfg = dict(CFG)
    cfg["on_exhausted"] = "drop"
    st, ob, tx = make(clk, cfg)
    a = ob.add(b"one")
    b = ob.add(b"two")
    ob.due()
    assert ob.acked(b) is True
    assert ob.acked(b) is False  # duplicate ACK changes nothing
    for step in range(1, 20):
        clk.t += 100
        ob.due()
    assert len(ob) == 0
    ev = [(e["event"], e["id"]) for e in page(tx, None, 1 << 30)]
    assert ("ack", b) in ev and ("exhausted", a) in ev and ("dropped", a) in ev, ev
    try:
        ob.configure({"on_exhausted": "sometimes"})
        raise AssertionError("bad policy accepted")
    except ValueError:
        pass
    st.close()


def test_power_cut_keeps_unacked_exactly_once():
    fresh()
    clk = Clock()
    st, ob, _ = make(clk)
    ids = [ob.add(b"r%d" % i, he_id=100 + i) for i in range(5)]
    ob.acked(ids[1])
    ob.acked(ids[3])
    # power off without closing anything
    remount()
    st, ob, _ = make(clk)
    assert ob.due() == [ids[0], ids[2], ids[4]]
    assert ob.read(ids[2])[3] == b"r2" and ob.read(ids[2])[2] == 102
    assert sorted(ob.he_ids()) == [100, 102, 104]
    nxt = ob.add(b"new")
    assert nxt > ids[-1]  # frame ids never repeat
    st.close()


def test_power_cut_during_ack_sweep():
    # cut at every block write of an ack: after the remount the record is
    # either still pending (resent, the head-end drops it by id) or gone,
    # never corrupt, and the others are intact
    fresh()
    st, ob, _ = make(Clock())
    ids = [ob.add(b"m%d" % i) for i in range(3)]
    st.close()
    vfs.umount(ROOT)
    copy(IMG, "saved.bin")
    cut = 1
    outcomes = set()
    while True:
        copy("saved.bin", IMG)
        remount(cut_after=cut)
        st, ob, _ = make(Clock())
        try:
            ob.acked(ids[1])
            done = True
        except (PowerLost, OSError):
            done = False
        remount()
        st, ob, _ = make(Clock())
        left = ob.j.seqs()
        assert left in ([ids[0], ids[2]], ids), left
        assert ob.read(ids[0])[3] == b"m0" and ob.read(ids[2])[3] == b"m2"
        outcomes.add(len(left))
        st.close()
        vfs.umount(ROOT)
        if done:
            break
        cut += 1
    assert cut > 1 and 2 in outcomes


def test_link_codec_round_trip_and_errors():
    d = link.Decoder()
    f1 = link.hello(b"\x01\x02\x03\x04\x05\x06\x07\x08", "1.2.3", -71)
    f2 = link.encode(link.GBCS, 0xDEADBEEF, b"\xdd" * 300)
    f3 = link.ack(7, link.ACK_DUPLICATE)
    stream = f1 + f2 + f3
    got = []
    for i in range(0, len(stream), 7):
        d.feed(stream[i:i + 7])
        while True:
            fr = d.next()
            if fr is None:
                break
            got.append((fr[0], fr[1], bytes(fr[2])))
    assert [g[0] for g in got] == [link.HELLO, link.GBCS, link.ACK]
    # HELLO: EUI-64, signal (int8), version text (the head-end parses it; the hub does not)
    h = got[0][2]
    assert (h[:8], struct.unpack(">b", h[8:9])[0], str(h[9:], "utf-8")) == (b"\x01\x02\x03\x04\x05\x06\x07\x08", -71, "1.2.3")
    assert got[1][1] == 0xDEADBEEF and got[1][2] == b"\xdd" * 300
    assert link.parse_ack(got[2][2]) == link.ACK_DUPLICATE
    # layout checked independently: magic, type, id, length, crc32 of all before
    raw = link.encode(link.PING, 5)
    assert raw[:9] == b"CH\x06\x00\x00\x00\x05\x00\x00"
    assert struct.unpack(">I", raw[9:])[0] == binascii.crc32(raw[:9])
    bad = [(b"XX" + f3[2:], "BadMagic"), (f3[:2] + b"\x0b" + f3[3:], "BadType"),
           (f3[:-1] + bytes((f3[-1] ^ 1,)), "BadCrc"),
           (b"CH\x03\x00\x00\x00\x01\xff\xff", "TooLong")]
    for data, kind in bad:
        d = link.Decoder()
        d.feed(data)
        try:
            d.next()
            raise AssertionError("accepted %r" % data)
        except link.LinkError as e:
            assert e.args[0] == kind, repr(e)
    for p, fn in ((b"\x05", link.parse_ack),):
        try:
            fn(p)
            raise AssertionError("accepted")
        except link.LinkError as e:
            assert e.args[0] == "BadPayload", repr(e)


def test_link_decoder_of_one_largest_frame_takes_back_to_back_frames_in_modem_chunks():
    # a frame split across chunks is held in a buffer of its own length (no
    # room for a modem chunk behind it): feed() takes what fits and says
    # where it stopped
    big = [link.encode(link.GBCS, i, bytes((i,)) * link.MAX_PAYLOAD) for i in range(1, 4)]
    stream = big[0] + link.ack(9, link.ACK_DONE) + big[1] + big[2]
    d = link.Decoder()
    got = []
    for i in range(0, len(stream), 1460):
        chunk = stream[i:i + 1460]
        off = 0
        while True:
            off = d.feed(chunk, off)
            while True:
                fr = d.next()
                if fr is None:
                    break
                got.append((fr[0], fr[1], bytes(fr[2])))
            if off >= len(chunk):
                break
    assert [(g[0], g[1]) for g in got] == [(link.GBCS, 1), (link.ACK, 9), (link.GBCS, 2), (link.GBCS, 3)]
    assert all(g[2] == bytes((g[1],)) * link.MAX_PAYLOAD for g in got if g[0] == link.GBCS)


def test_link_decoder_holds_a_split_frame_in_its_own_buffer_for_that_frame_only():
    # frames are read from the chunk itself; one a chunk ends inside of is
    # copied to a buffer of that frame's length, dropped once it is taken
    frames = [link.encode(link.GBCS, 1, b"a" * 20), link.encode(link.GBCS, 2, b"b" * 3000),
              link.ack(3, link.ACK_DONE), link.encode(link.GBCS, 4, b"c" * link.MAX_PAYLOAD),
              link.encode(link.PING, 5)]
    stream = b"".join(frames)
    d = link.Decoder()
    got = []
    for i in range(0, len(stream), 1460):
        chunk = stream[i:i + 1460]
        off = 0
        while off < len(chunk):
            was = off
            off = d.feed(chunk, off)
            took = 0
            while True:
                fr = d.next()
                if fr is None:
                    break
                took += 1
                got.append((fr[0], fr[1], bytes(fr[2])))
            assert off > was or took, "the decoder took nothing"
    assert [g[1] for g in got] == [1, 2, 3, 4, 5]
    assert got[1][2] == b"b" * 3000 and got[3][2] == b"c" * link.MAX_PAYLOAD
    assert d.buf is None
    # a frame over the protocol's limit is refused, not grown for
    d.feed(b"CH\x03\x00\x00\x00\x01\x10\x01")
    try:
        d.next()
        raise AssertionError("accepted a frame over MAX_PAYLOAD")
    except link.LinkError as e:
        assert e.args[0] == "TooLong", repr(e)


def test_seen_ids_ring():
    s = []
    assert link.seen_add(s, 1, 4) and not link.seen_add(s, 1, 4)
    for i in range(2, 7):
        link.seen_add(s, i, 4)
    assert 1 not in s and 6 in s and len(s) == 4


def test_scheduled_data_leaves_at_random_times_inside_the_window():
    from wan.outbox import KIND_SCHEDULED

    fresh()
    clk = Clock()
    cfg = dict(CFG)
    cfg["sched_window_ms"] = 1000
    st, ob, _ = make(clk, cfg)
    sched = [ob.add(b"s%d" % i, NON_CRITICAL, KIND_SCHEDULED) for i in range(20)]
    resp = ob.add(b"resp")
    # a response leaves at once; scheduled data waits its draw in [0, window)
    # (a draw of 0, 1 in 1000 per message, is due at once too)
    d0 = ob.due()
    assert resp in d0 and all(s == resp or s in sched for s in d0) and len(d0) <= 3, d0
    first = dict((s, 0) for s in d0 if s != resp)
    for s in first:
        ob.acked(s)
    wait = ob.next_due_ms()
    assert wait is not None and 0 <= wait < 1000
    for step in range(1, 105):
        clk.t = 1000 + step * 10
        for s in ob.due():
            if s != resp:  # (the response is resent on its own schedule)
                first.setdefault(s, step * 10)
        for s in list(first):
            ob.acked(s)  # the head-end takes each at once
    assert sorted(first) == sorted(sched), first
    times = sorted(first.values())
    assert times[0] >= 0 and times[-1] <= 1000, times
    assert len(set(times)) >= 8, times  # spread out, not one burst
    assert len(ob) == 1  # only the unacknowledged response
    # after a power cut a pending scheduled message is held again (new draw)
    x = ob.add(b"late", NON_CRITICAL, KIND_SCHEDULED)
    remount()
    clk.t = 1000
    st, ob, _ = make(clk, {"sched_window_ms": 1000, "noncrit_backoff_ms": 5000})
    draws = []
    ob._rand = lambda n: draws.append(n) or 500
    assert ob.due() == [resp] and draws == [1000]
    clk.t = 1499
    assert ob.due() == []
    clk.t = 1500
    assert ob.due() == [x]
    # a window of 0 sends scheduled data at once; a bad window is refused
    ob.configure({"sched_window_ms": 0})
    y = ob.add(b"now", NON_CRITICAL, KIND_SCHEDULED)
    assert ob.due() == [y]
    for bad in (-1, 1 << 30, "x"):
        try:
            ob.configure({"sched_window_ms": bad})
        except ValueError:
            continue
        raise AssertionError("window %r accepted" % (bad,))
    st.close()


def test_prioritised_message_leaves_first():
    fresh()
    clk = Clock()
    st, ob, _ = make(clk, CFG)
    a = ob.add(b"a")
    b = ob.add(b"b")
    gasp = ob.add(b"last gasp", kind=KIND_ALERT)
    ob.prioritise(gasp)
    assert ob.due() == [gasp, a, b]
    ob.acked(gasp)
    clk.t += 100
    assert ob.due() == [a, b]  # resends; the acked one is gone from the front
    st.close()


def test_transaction_log_pages_cover_everything_once():
    fresh()
    st = Store(ROOT + "/data")
    tx = TxLog(st.ringlog("transactions", 20), lambda: 1700000000)
    for i in range(30):  # the ring keeps the newest 20
        tx.add("ack", i, "d%d" % i)
    assert len(tx) == 20
    got = []
    before = None
    while True:
        pg = page(tx, before, room=300)
        if not pg:
            break
        assert 0 < len(pg) < 20
        got = pg + got
        before = pg[0]["seq"]
    assert [e["id"] for e in got] == list(range(10, 30)), [e["id"] for e in got]
    assert got == page(tx, None, 1 << 30) and got[-1]["event"] == "ack" and got[-1]["detail"] == "d29"
    st.close()


def test_an_outbox_holds_its_messages_tries_and_little_else():
    # what the outbox holds beside its journal, built as wan.service builds
    # it (every WAN setting given: it keeps the retry policy's that differ
    # from their defaults, none here) and with three messages in flight:
    # their tries only. No copy of the policy, no empty containers for
    # parked, held or prioritised messages. Measured on the 32-bit build
    # 384 -> 224 bytes (64-bit 768 -> 448), the tries' 144 (208) included
    import gc
    import sys

    from wan import settings

    W = 8 if sys.maxsize > 2**31 else 4
    fresh()
    clk = Clock()
    st = Store(ROOT + "/data")
    tx = TxLog(st.ringlog("transactions", 20), lambda: 1700000000)
    j = st.journal("outbox")
    cfg = settings.defaults()
    ids = []
    for i in range(3):
        ids.append(j.append(b"\x01\x00\x00\x00\x00\x00r%d" % i))
    gc.collect()
    a = gc.mem_alloc()
    ob = Outbox(j, cfg, tx, clk)
    assert ob.due() == ids
    gc.collect()
    held = gc.mem_alloc() - a
    print("outbox: %d bytes" % held)
    assert held <= 56 * W, held
    # the policy in effect is the settings': a setting given is used
    clk.t += 10000
    assert ob.due() == ids  # crit_backoff_ms 10000: the first resend
    ob.configure({"crit_backoff_ms": 20000})  # the second resend: 2 x 20000 after the first
    clk.t += 39999
    assert ob.due() == []
    clk.t += 1
    assert ob.due() == ids
    # a bad value is refused and not kept (main kept it in its copy, then raised)
    for bad in ({"on_exhausted": "sometimes"}, {"sched_window_ms": -1}):
        try:
            ob.configure(bad)
            raise AssertionError("took %r" % bad)
        except ValueError:
            pass
    assert ob.setting("on_exhausted") == "keep" and ob.setting("sched_window_ms") == 1800000
    assert ob.setting("crit_backoff_ms") == 20000
    st.close()
