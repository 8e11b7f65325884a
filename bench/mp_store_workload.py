# Storage workload for the power-cut sweep and the flash-write figures.
#
#   micropython bench/mp_store_workload.py FLASH_FILE [CUT_AFTER] [--steps N]
#   micropython bench/mp_store_workload.py --check FLASH_FILE
#   micropython bench/mp_store_workload.py --figures FLASH_FILE
#
# (MICROPYPATH must cover firmware/ and boards/unix/.) The first form formats
# a fresh 64-block LittleFS2 image, then runs a deterministic mix of journal
# appends/acks, a bounded event log, KV updates and a compaction. Before each
# durable step it prints "BEGIN <op> ..." and, once the call has returned,
# the matching done line (APPENDED/ACKED/KV/COMPACTED); w=<n> is the block
# write count since the format. The last line is "RESULT <json>" with the
# device and store counters. With CUT_AFTER=n the n-th block write after the
# format is torn and the device dead: "POWERCUT w=<n>", and once PowerLost
# surfaces from the store, exit code 75 (the workload catches nothing else).
# --check remounts the image (never formats) and prints "CHECK <json>" with
# what the stores hold, then proves the file system still takes writes.
# --figures prints "FIGURES <json>": block writes/erases per queue append+ack
# in steady state, and per KV update (the numbers docs/storage.md quotes).
import json
import os
import sys

import vfs
from blockdev import FileBlockDevice, PowerLost
from store import Store

BLOCKS = 64
ROOT = "/flash"
DATA = ROOT + "/data"
EV_CAPACITY = 5
CUT_EXIT = 75
# small thresholds so that automatic compactions happen inside the sweep
Q_COMPACT_AT = 512
EV_COMPACT_AT = 256

dev = None


def payload(kind, i):
    # must match tests/test_power_cut_sweep.py:payload()
    n = 16 + (i * 13) % 48
    head = f"{kind}{i}|".encode()
    return head + bytes((i * 7 + k) & 0xFF for k in range(n))


def w():
    return f"w={dev.writes - base_writes}"


def on_cut(d):
    # the torn write has landed; from now on every device call raises
    # PowerLost, which must surface from the store call in progress
    print("POWERCUT", w())


def run(steps):
    st = Store(DATA)
    q = st.journal("outbox", compact_at=Q_COMPACT_AT)
    ev = st.ringlog("events", EV_CAPACITY, compact_at=EV_COMPACT_AT)
    cfg = st.kv("config")
    print("OPENED", w())
    pend = []
    for i in range(steps):
        print("BEGIN APPEND q", i, w())
        seq = q.append(payload("q", i))
        print("APPENDED q", seq, i, w())
        pend.append(seq)
        if i % 3 != 2 and len(pend) > 1:
            s = pend.pop(0)
            print("BEGIN ACK q", s, w())
            q.ack(s)
            print("ACKED q", s, w())
        if i % 2 == 0:
            print("BEGIN APPEND ev", i, w())
            seq = ev.append(payload("ev", i))
            print("APPENDED ev", seq, i, w())
        if i % 4 == 1:
            ch = {"n": i, "name": f"v{i}"}
            if i % 8 == 1:
                ch["tariff"] = [i, i + 1]
            js = json.dumps(ch)
            print("BEGIN KV", js, w())
            cfg.update(ch)
            print("KV", js, w())
        if i == steps // 2:
            print("BEGIN COMPACT q", w())
            q.compact()
            print("COMPACTED q", w())
    print("RESULT " + json.dumps({"device": dev.counters(), "writes_after_format": dev.writes - base_writes,
                                  "store": st.counters(), "q": q.info()}))


def dump(st):
    q = st.journal("outbox", compact_at=Q_COMPACT_AT)
    ev = st.ringlog("events", EV_CAPACITY, compact_at=EV_COMPACT_AT)
    cfg = st.kv("config")
    return {
        "q": [[s, p.hex()] for s, p in q.pending()],
        "q_next": q.next_seq,
        "ev": [[s, p.hex()] for s, p in ev.pending()],
        "ev_next": ev.next_seq,
        "kv": dict(cfg.items()),
        "counters": st.counters(),
    }


def check(path):
    global dev
    dev = FileBlockDevice(path, BLOCKS)
    out = {"mount": False}
    try:
        fs = vfs.VfsLfs2(dev)
        vfs.mount(fs, ROOT)
    except OSError as e:
        out["error"] = repr(e)
        print("CHECK " + json.dumps(out))
        return
    out["mount"] = True
    st = Store(DATA)
    out.update(dump(st))
    # the store must still take writes, and keep them across a reopen
    seq = st.journal("outbox").append(b"post-check")
    st.kv("config").set("post", seq)
    st.close()
    st2 = Store(DATA)
    q2 = st2.journal("outbox")
    out["post_seq"] = seq
    out["post_ok"] = q2.read(seq) == b"post-check" and st2.kv("config").get("post") == seq
    st2.close()
    vfs.umount(ROOT)
    print("CHECK " + json.dumps(out))


def figures(path):
    # flash cost of the hub's common cases, default thresholds
    global dev
    out = {}
    for name, size, backlog in (("queue64", 64, 4), ("queue200", 200, 4), ("queue64_backlog30", 64, 30)):
        _fresh(path)
        q = Store(DATA).journal("q")
        for _ in range(20):  # warm up to a steady state
            q.ack(q.append(bytes(size)))
        w0, e0 = dev.writes, dev.erases
        n = 200
        pend = []
        for i in range(n):
            pend.append(q.append(bytes([i & 0xFF]) * size))
            if len(pend) > backlog:
                q.ack(pend.pop(0))
        out[name] = {"payload": size, "pending": backlog, "writes_per_append_ack": (dev.writes - w0) / n,
                     "erases_per_append_ack": (dev.erases - e0) / n, "bytes_per_write": 128}
        q.close()
        vfs.umount(ROOT)
    _fresh(path)
    kv = Store(DATA).kv("config")
    w0, e0 = dev.writes, dev.erases
    for i in range(50):
        kv.update({"n": i, "name": f"meter-{i}", "tariff": [i, i + 1, i + 2]})
    out["kv_update"] = {"writes": (dev.writes - w0) / 50, "erases": (dev.erases - e0) / 50}
    vfs.umount(ROOT)
    print("FIGURES " + json.dumps(out))


def _fresh(path):
    global dev
    try:
        os.remove(path)
    except OSError:
        pass
    dev = FileBlockDevice(path, BLOCKS)
    vfs.VfsLfs2.mkfs(dev)
    vfs.mount(vfs.VfsLfs2(dev), ROOT)


def main(argv):
    global dev, base_writes
    if argv and argv[0] == "--check":
        check(argv[1])
        return
    if argv and argv[0] == "--figures":
        figures(argv[1])
        return
    path = argv[0]
    cut = 0
    steps = 24
    rest = argv[1:]
    if "--steps" in rest:
        k = rest.index("--steps")
        steps = int(rest[k + 1])
        rest = rest[:k] + rest[k + 2:]
    if rest:
        cut = int(rest[0])
    try:
        os.remove(path)  # always a fresh image
    except OSError:
        pass
    dev = FileBlockDevice(path, BLOCKS, 0, on_cut)
    vfs.VfsLfs2.mkfs(dev)
    vfs.mount(vfs.VfsLfs2(dev), ROOT)
    base_writes = dev.writes
    if cut:
        dev.cut_after = base_writes + cut
    try:
        run(steps)
    except PowerLost:
        print("EXIT power lost")
        sys.exit(CUT_EXIT)


base_writes = 0
main(sys.argv[1:])
