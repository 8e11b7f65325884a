# firmware/store under micropython: LittleFS2 over the file-backed block
# device in the cwd (a temp dir), remounted to prove what reached flash.
import gc
import os
import sys

import vfs
from blockdev import FileBlockDevice, PowerLost
from flashfs import IMG, ROOT, fresh, remount
from store import Store
from store.journal import Journal
from store.kv import KV
from store.kv import Settings

HEAP = "256k"


def raw_append(path, data):
    with open(path, "ab") as f:
        f.write(data)


def test_kv_round_trip_and_reopen():
    fresh()
    stats = {}
    kv = KV(ROOT, "cfg", stats)
    assert kv.get("a") is None and kv.get("a", 5) == 5 and len(kv) == 0
    kv.set("a", 1)
    kv.update({"b": "two", "c": [1, 2, {"d": None}]})
    kv.set("a", 3)
    assert kv.delete("b") and not kv.delete("b")
    assert sorted(kv.items()) == [("a", 3), ("c", [1, 2, {"d": None}])]
    writes = stats["kv_writes"]
    kv.update({"a": 3})  # no change, no flash write
    assert stats["kv_writes"] == writes == 4
    remount()
    kv2 = KV(ROOT, "cfg")
    assert kv2.get("a") == 3 and kv2.get("c") == [1, 2, {"d": None}] and "b" not in kv2
    assert os.listdir(ROOT) == ["cfg.kv"]


def test_cold_kv_reads_flash_and_holds_no_copy():
    # a store read at boot and on rare commands (keys, anchors, trust-anchor
    # cells) keeps nothing in RAM: every read comes from flash
    fresh()
    st = Store(ROOT)
    warm = st.kv("keys")  # a first holder that did not ask
    warm.set("a", "1" * 130)
    cold = st.kv("keys", keep=False)
    copies = st._home[2]  # the RAM copies of the Store's KVs
    assert copies["keys"] is None  # cold once any holder asks: for every holder
    assert warm.get("a") == "1" * 130
    assert cold.get("a") == "1" * 130 and "a" in cold and len(cold) == 1
    assert copies["keys"] is None
    # what another writer committed is what the next read sees
    KV(ROOT, "keys").set("b", 2)
    assert sorted(cold.keys()) == ["a", "b"] and dict(cold.items())["b"] == 2
    w = st.stats["kv_writes"]
    cold.update({"b": 2})  # no change, no flash write
    assert st.stats["kv_writes"] == w
    cold.update({"b": 3, "c": [1]})
    assert cold.delete("a") and not cold.delete("a")
    assert copies["keys"] is None and sorted(warm.keys()) == ["b", "c"]
    remount()
    assert sorted(KV(ROOT, "keys").items()) == [("b", 3), ("c", [1])]
    # a store asked cold first stays cold for a later holder
    st2 = Store(ROOT)
    st2.kv("keys", keep=False)
    assert st2._home[2]["keys"] is None and st2.kv("keys") is not None and st2._home[2]["keys"] is None
    assert st2.kv("keys").get("b") == 3


def test_replace_writes_a_whole_record_without_reading_the_old():
    # KV.replace (the Device Log's records): a dict, or a function that
    # writes the JSON object through the JsonOut it is given (twice: CRC,
    # then file); the old record is not read, a kept store replaced by a
    # function keeps no copy
    fresh()
    kv = KV(ROOT, "rec")
    kv.set("old", 1)
    kv.replace({"a": 1})
    assert dict(kv.items()) == {"a": 1} and kv._s[2]["rec"] == {"a": 1}
    calls = []

    def rec(out):
        calls.append(1)
        out.put(b'{"d": ')
        out.value({"x": [1, None, "ab"]}, 0)
        out.put(b"}")

    kv.replace(rec)
    assert len(calls) == 2 and kv._s[2]["rec"] is None
    assert dict(kv.items()) == {"d": {"x": [1, None, "ab"]}}
    remount()
    with open(ROOT + "/rec.kv", "rb") as f:
        assert f.read().endswith(b' {"d": {"x": [1, null, "ab"]}}\n')
    assert KV(ROOT, "rec").get("d") == {"x": [1, None, "ab"]}


def _alloc(fn):
    import gc

    gc.collect()
    before = gc.mem_alloc()
    gc.disable()
    r = fn()
    used = gc.mem_alloc() - before
    gc.enable()
    return used, r


def test_a_kv_record_is_written_and_read_without_a_second_copy():
    # a record of a few KB (the Device Log at capacity) is written as the
    # JSON text json.dumps makes and parsed from the file's bytes where they
    # lie: no second copy of the text at either end (on a fragmented heap
    # each copy is one more piece of that size the allocator must find)
    import json

    fresh()
    kv = KV(ROOT, "big")
    kv.set("d", {"%02d" % i: ["ab" * 60, i] for i in range(16)})
    new = {"%02d" % i: ["cd" * 60, i] for i in range(16)}
    text = json.dumps({"d": new})
    size = len(text)
    used, _ = _alloc(lambda: kv.set("d", new))
    # the text goes out in pieces, twice (its CRC, then the file: no block
    # of its size, test_a_kv_record_is_written_with_no_block_of_its_size):
    # a 256-byte buffer, a small object per string and per piece, the file's
    # own buffers (5.4 KB in pieces of at most 272 bytes for 2.2 KB of text
    # on the 64-bit port; as one text and its bytes 3.4 KB, with the
    # formatted copy 5.6 KB)
    assert used < 3 * size, (used, size)
    parse, _ = _alloc(lambda: json.loads(text))
    used, kv2 = _alloc(lambda: KV(ROOT, "big"))
    assert kv2.get("d") == new
    # the parsed record, one buffer of the file's size and the file's own
    # buffers (9.2 KB on the 64-bit port for 2.2 KB of text, 5.0 KB of it
    # the parse; read as text and sliced 13.6 KB)
    assert used < parse + size + 2560, (used, parse, size)


def test_a_kv_record_is_written_with_no_block_of_its_size():
    # the Device Log's record at capacity (~2.2 KB, written at every join)
    # is written in pieces: a heap with no free block near its size takes it
    # (a write failure before: its JSON text and that text's bytes, two
    # blocks of its size)
    import gc
    import json

    import heapcut

    fresh()
    kv = KV(ROOT, "big")
    kv.set("d", {})
    new = {"%02d" % i: ["cd" * 60, i, 'q"\\\n', None, True] for i in range(16)}
    hold = heapcut.cut()
    try:
        kv.set("d", new)
    finally:
        del hold
        gc.collect()
    text = json.dumps({"d": new})
    assert len(text) > 2000
    with open(ROOT + "/big.kv", "rb") as f:
        raw = f.read()
    import binascii

    assert raw == b"%08x " % (binascii.crc32(text.encode()) & 0xFFFFFFFF) + text.encode() + b"\n"
    remount()
    assert KV(ROOT, "big").get("d") == new


def test_settings_read_through_the_store():
    fresh()
    kv = KV(ROOT, "cfg")
    defaults = {"a": 1, "b": None, "c": "x"}
    s = Settings(defaults, kv)
    assert s["a"] == 1 and s.get("b", 5) is None and s.get("zz", 5) == 5 and "c" in s and "zz" not in s
    kv.update({"a": 2, "b": None, "extra": 3})  # a setting stored as None is None, not the default
    assert s["a"] == 2 and s["b"] is None and s["extra"] == 3 and "extra" in s
    assert dict(s.items()) == {"a": 2, "b": None, "c": "x", "extra": 3}
    assert defaults == {"a": 1, "b": None, "c": "x"}  # the defaults are not changed
    try:
        s["zz"]
        raise AssertionError("an unknown setting was found")
    except KeyError:
        pass


def test_kv_leftover_tmp_is_dropped_when_state_exists():
    fresh()
    KV(ROOT, "cfg").set("k", "old")
    # a set() cut before its rename: the tmp holds a complete new state
    with open(ROOT + "/cfg.kv.tmp", "w") as f:
        f.write(open(ROOT + "/cfg.kv").read().replace("old", "new"))
    kv = KV(ROOT, "cfg")
    assert kv.get("k") == "old"
    assert "cfg.kv.tmp" not in os.listdir(ROOT)


def test_kv_first_state_recovered_from_complete_tmp_only():
    fresh()
    KV(ROOT, "a").set("k", 7)
    os.rename(ROOT + "/a.kv", ROOT + "/b.kv.tmp")
    stats = {}
    kv = KV(ROOT, "b", stats)
    assert kv.get("k") == 7 and stats["kv_recovered_tmp"] == 1
    assert "b.kv" in os.listdir(ROOT)
    # a half-written tmp (bad crc) is not taken
    with open(ROOT + "/c.kv.tmp", "w") as f:
        f.write('00000000 {"k": 1}\n')
    kv = KV(ROOT, "c")
    assert len(kv) == 0 and "c.kv.tmp" not in os.listdir(ROOT)


def test_kv_corrupt_file_is_set_aside():
    fresh()
    KV(ROOT, "cfg").set("k", "value")
    text = open(ROOT + "/cfg.kv").read()
    with open(ROOT + "/cfg.kv", "w") as f:
        f.write(text.replace("value", "valuf"))
    stats = {}
    kv = KV(ROOT, "cfg", stats)
    assert len(kv) == 0 and stats["kv_corrupt"] == 1
    assert "cfg.kv.bad" in os.listdir(ROOT)
    kv.set("k", 1)
    assert KV(ROOT, "cfg").get("k") == 1


def test_journal_round_trip_order_ack_reopen():
    fresh()
    j = Journal(ROOT, "q")
    seqs = [j.append(b"rec%d" % i * (i + 1)) for i in range(6)]
    assert seqs == [1, 2, 3, 4, 5, 6] and len(j) == 6
    assert j.ack(2) and j.ack(5) and not j.ack(5) and not j.ack(99)
    assert next(j.pending()) == (1, b"rec0")
    assert j.read(3) == b"rec2" * 3 and j.read(2) is None
    remount()
    j = Journal(ROOT, "q")
    assert [s for s, _ in j.pending()] == [1, 3, 4, 6]
    assert [p for _, p in j] == [b"rec0", b"rec2" * 3, b"rec3" * 4, b"rec5" * 6]
    assert j.ack_upto(4) == 3 and j.ack_upto(4) == 0
    assert j.append(b"x") == 7
    remount()
    j = Journal(ROOT, "q")
    assert list(j.pending()) == [(6, b"rec5" * 6), (7, b"x")]


def test_ack_while_iterating():
    fresh()
    j = Journal(ROOT, "q")
    for i in range(5):
        j.append(bytes([i]) * 10)
    got = []
    for seq, p in j.pending():
        got.append(p[0])
        j.ack(seq)
    assert got == [0, 1, 2, 3, 4] and len(j) == 0


def test_seq_monotonic_across_compaction_and_reopen():
    fresh()
    stats = {}
    j = Journal(ROOT, "q", compact_at=64, stats=stats)
    last = 0
    for round_ in range(4):
        for _i in range(10):
            s = j.append(b"p" * 40)
            assert s == last + 1
            last = s
            j.ack(s)
        assert len(j) == 0
        j.compact()
        j.close()
        if round_ % 2:
            remount()
        j = Journal(ROOT, "q", compact_at=64, stats=stats)
        assert j.next_seq == last + 1, (j.next_seq, last)
    # automatic ones while acking, plus the four explicit ones
    assert stats["compactions"] > 4, stats


def test_torn_tail_is_discarded_and_counted():
    fresh()
    st = Store(ROOT + "/d")
    j = st.journal("q")
    for i in range(4):
        j.append(b"good%d" % i)
    path = ROOT + "/d/q.jnl"
    st.close()
    # a half record: a real header whose payload never fully landed
    whole = open(path, "rb").read()
    last = whole[-17:]  # header (12) + b"good3"
    raw_append(path, last[:14])
    st = Store(ROOT + "/d")
    j = st.journal("q")
    assert [p for _, p in j] == [b"good0", b"good1", b"good2", b"good3"]
    assert st.counters()["torn_records_discarded"] == 1
    # the garbage is gone from the file, so later records are not hidden
    assert j.append(b"after") == 5
    st.close()
    st = Store(ROOT + "/d")
    j = st.journal("q")
    assert [p for _, p in j][-1] == b"after"
    assert st.counters()["torn_records_discarded"] == 0


def test_corrupt_record_is_never_returned():
    fresh()
    j = Journal(ROOT, "q")
    for i in range(3):
        j.append(b"payload-%d" % i)
    j.close()
    data = bytearray(open(ROOT + "/q.jnl", "rb").read())
    data[-2] ^= 0x01  # flip a bit in the last record's payload
    with open(ROOT + "/q.jnl", "wb") as f:
        f.write(data)
    stats = {}
    j = Journal(ROOT, "q", stats=stats)
    assert [p for _, p in j] == [b"payload-0", b"payload-1"]
    assert stats["torn_records_discarded"] == 1
    # the lost seq is not reused only if it was durable; here it never was
    assert j.append(b"n") == 3
    # garbage with no valid header at all, e.g. a torn header
    j.close()
    raw_append(ROOT + "/q.jnl", b"\xc5\x02\x05")
    stats = {}
    j = Journal(ROOT, "q", stats=stats)
    assert [s for s, _ in j] == [1, 2, 3] and stats["torn_records_discarded"] == 1


def test_leftover_compaction_file_is_removed():
    fresh()
    j = Journal(ROOT, "q")
    j.append(b"one")
    j.append(b"two")
    j.close()
    with open(ROOT + "/q.jnl.new", "wb") as f:
        f.write(b"\xc5\x01\x00\x00")  # an unfinished compaction's copy
    j = Journal(ROOT, "q")
    assert [p for _, p in j] == [b"one", b"two"]
    assert sorted(os.listdir(ROOT)) == ["q.jnl"]


def test_a_cold_ring_log_holds_no_open_file():
    # the event and security logs are appended to now and then: their file
    # is opened for each operation, not held (a littlefs file and its cache)
    fresh()
    st = Store(ROOT)
    log = st.ringlog("events", 3, keep_open=False, compact_at=128)
    assert log._f is None
    for i in range(12):
        log.append(b"event %d" % i)
        assert log._f is None
    assert [p for _, p in log.pending()] == [b"event 9", b"event 10", b"event 11"]
    assert log._f is None and st.stats["compactions"] >= 1
    assert log.ack(12) and log._f is None  # "event 11"
    assert log.read(11) == b"event 10" and log._f is None
    remount()
    log = Store(ROOT).ringlog("events", 3, keep_open=False)
    assert [(s, p) for s, p in log] == [(10, b"event 9"), (11, b"event 10")] and log._f is None
    # a kept-open log is as before
    assert Store(ROOT).ringlog("other", 3)._f is not None


def test_capacity_bounded_log():
    fresh()
    stats = {}
    log = Journal(ROOT, "events", 3, compact_at=128, stats=stats)
    for i in range(10):
        log.append(b"event %d" % i)
    assert [p for _, p in log.pending()] == [b"event 7", b"event 8", b"event 9"]
    assert [s for s, _ in log] == [8, 9, 10]
    assert stats["journal_dropped"] == 7 and stats["compactions"] >= 1
    remount()
    log = Journal(ROOT, "events", 3, compact_at=128)
    assert [p for _, p in log] == [b"event 7", b"event 8", b"event 9"]
    log.ack(9)
    assert log.append(b"event 10") == 11
    assert [s for s, _ in log] == [8, 10, 11]
    remount()
    # a smaller capacity at reopen keeps the newest
    log = Journal(ROOT, "events", capacity=2)
    assert list(log) == [(10, b"event 9"), (11, b"event 10")]


def test_automatic_compaction_bounds_the_file():
    fresh()
    stats = {}
    j = Journal(ROOT, "q", compact_at=512, stats=stats)
    sizes = []
    for i in range(200):
        s = j.append(b"z" * 50)
        if i % 4:
            j.ack(s)
        sizes.append(os.stat(ROOT + "/q.jnl")[6])
    live = j.info()["live_bytes"]
    assert len(j) == 50 and live == 50 * 62
    # the file never holds more than the live records plus ~compact_at (or
    # live) of dead space
    assert max(sizes) <= 2 * live + 512 + 2 * 62, (max(sizes), live)
    assert stats["compactions"] >= 3
    remount()
    j = Journal(ROOT, "q")
    assert len(j) == 50 and all(p == b"z" * 50 for _, p in j)


def test_store_factories_and_counters():
    fresh()
    st = Store(ROOT + "/a/b")
    assert st.journal("q") is st.journal("q")
    st.kv("cfg")  # each holder its own KV object, one RAM copy: what one writes the other reads
    a, b = st.kv("cfg"), st.kv("cfg")
    a.set("x", 0)
    assert b.get("x") == 0
    st.kv("cfg").set("x", 1)
    st.kv("state").set("y", 2)
    q = st.journal("q")
    s = q.append(b"1")
    q.append(b"2")
    q.ack(s)
    st.ringlog("ev", 2).append(b"e")
    c = st.counters()
    assert c["kv_writes"] == 3 and c["journal_appends"] == 3 and c["journal_acks"] == 1
    assert c["journal_pending"] == 2 and c["torn_records_discarded"] == 0
    assert sorted(os.listdir(ROOT + "/a/b")) == ["cfg.kv", "ev.jnl", "q.jnl", "state.kv"]


def test_payload_limits():
    fresh()
    j = Journal(ROOT, "q")
    try:
        j.append(bytes(70000))
        raise AssertionError("too long accepted")
    except ValueError:
        pass
    big = bytes(range(256)) * 40  # spans blocks
    s = j.append(big)
    assert j.append(b"") == s + 1
    remount()
    j = Journal(ROOT, "q")
    assert list(j) == [(s, big), (s + 1, b"")]


def test_power_loss_surfaces_and_old_state_survives():
    dev = fresh()
    st = Store(ROOT + "/d")
    q = st.journal("q")
    kv = st.kv("cfg")
    q.append(b"kept")
    kv.set("v", 1)
    dev.cut_after = dev.writes + 1
    try:
        q.append(b"lost")
        raise AssertionError("append returned after the power was gone")
    except PowerLost:
        pass
    try:
        kv.set("v", 2)
        raise AssertionError("set returned after the power was gone")
    except PowerLost:
        pass
    dev._f.close()
    vfs.umount(ROOT)
    dev = FileBlockDevice(IMG, 64)
    vfs.mount(vfs.VfsLfs2(dev), ROOT)
    st = Store(ROOT + "/d")
    assert [p for _, p in st.journal("q")] == [b"kept"]
    assert st.kv("cfg").get("v") == 1


def test_block_writes_per_append():
    # the figure docs/storage.md quotes: a queue of 64-byte records acked
    # soon after they are written, default thresholds
    dev = fresh()
    st = Store(ROOT + "/d")
    q = st.journal("q")
    for _ in range(20):  # warm up to a steady state
        q.ack(q.append(bytes(64)))
    w0, e0 = dev.writes, dev.erases
    n = 200
    backlog = []
    for i in range(n):
        backlog.append(q.append(bytes([i & 0xFF]) * 64))
        if len(backlog) > 4:
            q.ack(backlog.pop(0))
    per = (dev.writes - w0) / n
    erases = (dev.erases - e0) / n
    print(f"block writes per append+ack: {per:.1f}, erases {erases:.2f}")
    assert per < 16 and erases < 3, (per, erases)


# -- the store's share of the hub's heap (issue 15, branch storeboot) ----------

W = 8 if sys.maxsize > 2**31 else 4
# the store's parts used rarely: a journal's opening scan and repair, its
# compaction (loaded for them and dropped after)
RARE = ("store.jfix",)


def test_a_kv_holds_little_ram():
    # the hub holds ~29 KV stores for its life: a third of them cold (no RAM
    # copy), most of the warm ones empty (no file yet). Each costs its object
    # and its entry in the Store's table.
    fresh()
    st = Store(ROOT)
    st.kv("w").set("a", 1)
    st.kv("c", keep=False)
    names = ["k%d" % i for i in range(24)]
    held = [None] * 24

    def make():
        for i in range(24):
            held[i] = st.kv(names[i], keep=i % 2 == 0)

    gc.collect()
    before = gc.mem_alloc()
    make()
    gc.collect()
    used = gc.mem_alloc() - before
    # main e16d9ba: 32-bit 1568 bytes (65 a KV), 64-bit 3136 (131); branch
    # storeboot 992 (41) / 1984 (83): a KV object holds its name and the
    # Store's shared part, the RAM copies are in one table
    assert used <= 24 * 11 * W, (used, 24 * 11 * W)
    # what they read is what is on flash, warm or cold
    held[0].set("x", 1)
    held[1].set("x", 2)
    assert st.kv(names[0]).get("x") == 1 and st.kv(names[1], keep=False).get("x") == 2
    remount()
    st = Store(ROOT)
    assert st.kv(names[0]).get("x") == 1 and st.kv(names[1]).get("x") == 2 and len(st.kv(names[2])) == 0


def test_the_store_holds_few_functions_and_no_rare_code_at_rest():
    from mp_wan_boot import _made

    fresh()
    st = Store(ROOT + "/d")
    q = st.journal("q")
    lg = st.ringlog("ev", 3, keep_open=False)
    for _ in range(5):
        lg.append(b"x")
        q.ack(q.append(b"y"))
    q.compact()
    raw_append(ROOT + "/d/q.jnl", b"\xc5torn")
    st2 = Store(ROOT + "/d")
    assert len(st2.journal("q")) == 0 and len(st2.ringlog("ev", 3)) == 3
    for n in RARE:
        assert n not in sys.modules, n
    rows = [(n,) + _made(sys.modules[n]) for n in ("store", "store.kv", "store.journal")]
    fns, classes, names = (sum(r[i] for r in rows) for i in (1, 2, 3))
    # main e16d9ba: 58 functions and methods (a class attribute counts as
    # one: a slot), 4 classes, 38 globals; branch storeboot: 50 / 4 / 39 (a
    # journal's opening, scan and compaction are store.jfix); 52 / 4 / 38
    # with the index's push and a record's length read from its header
    assert fns <= 52 and classes <= 4 and names <= 39, (fns, classes, names, rows)


def test_on_a_frozen_build_the_store_costs_at_most_its_bound():
    # census row `store` (with store.kv, store.journal): 2.56 KB on main e16d9ba
    import jsonout  # noqa: F401 - what the store imports, loaded before the baseline
    import lazy  # noqa: F401
    import log  # noqa: F401

    for n in ("store", "store.kv", "store.journal") + RARE:
        sys.modules.pop(n, None)
    gc.collect()
    before = gc.mem_alloc()
    import store

    gc.collect()
    cost = gc.mem_alloc() - before
    if store.__file__.startswith("/"):
        return  # from source: not frozen, the code itself is on the heap
    # 32-bit frozen: 2640 bytes on main e16d9ba, 2240 on branch storeboot,
    # 2272 with the journal index's push and a record's length read from
    # its header
    assert cost <= 576 * W, (cost, 576 * W)


def test_a_journal_holds_little_ram_a_record():
    # the transaction log keeps 100 records, the event and security logs 41
    # each, the outbox up to its limit: the index costs what a record needs
    # (seq and offset, 2 bytes each: a record's length is in its header on
    # flash) and little more
    fresh()
    st = Store(ROOT)
    st.journal("first")  # what the first journal opened makes once (module tables)
    gc.collect()
    before = gc.mem_alloc()
    lg = st.ringlog("transactions", 100)
    for i in range(130):
        lg.append(b"t%d" % i)
    gc.collect()
    used = gc.mem_alloc() - before
    assert len(lg) == 100 and lg.seqs()[0] == 31
    # main e16d9ba: 32-bit 1488 bytes, 64-bit 1760 (three arrays, 13
    # attributes); branch storeboot 1456 / 1696 (two arrays, 9 attributes);
    # 816 / 1024 with one array of 2-byte items (2026-12-08)
    print("journal of 100: %d bytes" % used)
    assert used <= 608 + 64 * W, (used, 608 + 64 * W)


def test_an_index_past_two_bytes_widens_and_narrows_again_at_compaction():
    # The index keeps (seq - its base, file offset) in 2-byte items while
    # they fit. A file past 64 KB and a live span past 65,535 sequence
    # numbers widen it to 4-byte items, every record still found; the
    # compaction that rewrites the file narrows it again
    from store.journal import put

    fresh(64)
    st = Store(ROOT)
    q = st.journal("big")
    big = bytes(range(256)) * 4
    seqs = [q.append(big[: 1000 + i]) for i in range(70)]
    assert q._end > 0x10000 and len(q) == 70
    assert not _narrow(q)
    assert [q.read(s) for s in seqs] == [big[: 1000 + i] for i in range(70)]
    assert q.ack(seqs[68]) and not q.ack(seqs[68]) and q.ack_upto(seqs[2]) == 3
    assert q.seqs() == seqs[3:68] + [seqs[69]] and q.read(seqs[69]) == big[:1069]
    q.ack_upto(seqs[66])
    q.compact()
    assert q.seqs() == [seqs[67], seqs[69]] and q.read(seqs[67]) == big[:1067]
    assert q._recs[0] == 0 and _narrow(q)
    # a live span of 70,000 sequence numbers, read back from flash
    with open(ROOT + "/span.jnl", "wb") as f:
        put(f, 1, 5, None)  # BASE
        put(f, 2, 5, b"old")
        put(f, 2, 70005, b"new")
    lg = Store(ROOT).journal("span")
    assert lg.seqs() == [5, 70005] and lg.read(5) == b"old" and lg.read(70005) == b"new"
    assert not _narrow(lg)
    assert lg.append(b"next") == 70006 and lg.read(70006) == b"next"
    assert lg.ack(70005) and lg.seqs() == [5, 70006] and lg.info()["live_bytes"] == 2 * 12 + 7
    remount()
    lg = Store(ROOT).journal("span")
    assert lg.seqs() == [5, 70006] and lg.read(5) == b"old" and lg.next_seq == 70007


def _narrow(j):
    # journal j's index is of 2-byte items (an empty slice of another item
    # size is refused)
    from array import array

    try:
        j._recs[0:0] = array("H")
    except ValueError:
        return False
    return True


def test_a_record_whose_header_is_no_longer_there_is_refused_not_read():
    # a record's length comes from its header on flash when it is read: a
    # header that is not a record header (here its magic byte overwritten
    # after the index was built) is refused with JournalError, never taken
    # for a length
    from log import KindError

    fresh()
    st = Store(ROOT)
    q = st.journal("q")
    s1 = q.append(b"first")
    s2 = q.append(b"second")
    with open(ROOT + "/q.jnl", "r+b") as f:
        f.seek(q._recs[3])  # record s2's header
        f.write(b"\x00")
    q.close()
    assert q.read(s1) == b"first"
    try:
        q.read(s2)
        raise AssertionError("a record without its header was read")
    except KindError as e:
        assert repr(e).startswith("JournalError"), repr(e)
