# The GSME command buffer (firmware/route/buffer.py) on the emulated flash:
# the power-cut sweep and the flash-cost figures.
#
#   micropython bench/mp_route.py clean FLASH
#   micropython bench/mp_route.py sweep FLASH FIRST STEP
#   micropython bench/mp_route.py figures FLASH
#
# (MICROPYPATH must cover firmware/ and boards/unix/.) `clean` formats a
# 64-block LittleFS2 image and runs the buffering workload (puts for two
# devices, GETs, a dropped queue, an expiry) printing one line per finished
# operation and "CLEAN <json>" with the block writes W after the format.
# `sweep` repeats the workload in this one process with the power cut at
# write n = FIRST, FIRST+STEP, ... <= W (the n-th block write after the
# format is torn, the device then fails every call), remounts the image
# like a power-up and prints "CUT <json>": the operations that returned
# before the cut, the one in flight, what the reopened buffer holds, and
# whether it still takes and hands out a message. tests/test_route_power_cut.py
# checks each against the rules (nothing acknowledged lost, nothing handed
# out twice). `figures` prints "FIGURES <json>": block writes and erases per
# buffered command in steady state, for the buffer and for the store's
# Journal doing the same job.
import json
import sys

import vfs
from blockdev import FileBlockDevice
from route.buffer import CommandBuffer

BLOCKS = 64
ROOT = "/flash"
A = "00DB1234567890A1"
B = "00DB1234567890B1"
SIZES = (60, 150, 230, 90, 300, 40)
STEPS = 16
EXPIRE_AT = 18  # the expiry check at step 13 runs at t = 18 (puts at step i expire at i + 8)
# RTDS GSME command sizes (TOM and others), bytes
RTDS_SIZES = (72, 88, 111, 161, 171, 180, 218, 408, 485, 529)


def payload(i, sizes=SIZES):
    # must match tests/test_route_power_cut.py:payload()
    n = sizes[i % len(sizes)]
    head = ("m%d|" % i).encode()
    return head + bytes((i * 7 + k) & 0xFF for k in range(n - len(head)))


def ident(msg):
    return int(bytes(msg[1 : bytes(msg).index(b"|")]).decode())


def _umount():
    try:
        vfs.umount(ROOT)
    except OSError:
        pass


class CountingDevice(FileBlockDevice):
    """Also counts the bytes programmed (a block write is at most 128)."""

    programmed = 0

    def writeblocks(self, block, buf, offset=None):
        self.programmed += len(buf)
        return FileBlockDevice.writeblocks(self, block, buf, offset)


def fresh(path, cls=FileBlockDevice):
    _umount()
    # a blank image every time (the device only re-blanks a wrong-sized file)
    with open(path, "wb") as f:
        for _ in range(BLOCKS):
            f.write(b"\xff" * 4096)
    dev = cls(path, BLOCKS)
    vfs.VfsLfs2.mkfs(dev)
    vfs.mount(vfs.VfsLfs2(dev), ROOT)
    return dev


def remount(path):
    _umount()
    dev = FileBlockDevice(path, BLOCKS)
    vfs.mount(vfs.VfsLfs2(dev), ROOT)
    return dev


def workload(done, bdev=None):
    """Append [op, ...] to done as each operation returns (and a
    "returned_after_cut" mark if one returned once the power was gone)."""

    def ok(rec):
        done.append(rec)
        if bdev is not None and bdev.dead:
            done.append(["returned_after_cut"])

    done.append(["begin", "open"])
    buf = CommandBuffer(ROOT + "/gbuf", capacity=32, expiry_s=8)
    ok(["open"])
    for i in range(STEPS):
        dev = B if i % 3 == 0 else A
        done.append(["begin", "put", dev, i])
        seq = buf.put(dev, payload(i), i)
        ok(["put", dev, i, seq])
        if i % 3 == 2:
            done.append(["begin", "take", A])
            msg, _left = buf.take(A)
            ok(["take", A, ident(msg) if msg is not None else None])
        if i == 9:
            done.append(["begin", "drop", B])
            ok(["drop", B, buf.drop(B)])
        if i == 13:
            done.append(["begin", "expire"])
            ok(["expire", [ident(m) for _e, m in buf.expire(EXPIRE_AT)]])
    return buf


def image():
    buf = CommandBuffer(ROOT + "/gbuf")
    out = {}
    for eh in (A, B):
        out[eh] = [[seq, buf.read(eh, k).hex()] for k, (seq, _e, _n) in enumerate(buf.queue(eh))]
    # the reopened buffer still takes and hands out a message
    seq = buf.put(A, b"post", 100)
    got = None
    while True:
        m, _ = buf.take(A)
        if m is None:
            break
        got = m
    return out, got == b"post" and seq > 0


def clean(path):
    dev = fresh(path)
    w0 = dev.writes
    done = []
    workload(done)
    for d in done:
        print("OP", json.dumps(d))
    print("CLEAN", json.dumps({"writes": dev.writes - w0, "erases": dev.erases}))


def sweep(path, first, step):
    n = first
    while True:
        dev = fresh(path)
        w0 = dev.writes
        dev.cut_after = w0 + n
        done = []
        finished = False
        err = None
        try:
            workload(done, dev)
            finished = True
        except OSError as e:
            err = repr(e)
        if finished and not dev.dead:
            print("END", n)  # the cut is beyond the workload's last write
            return
        inflight = done[-1] if done and done[-1][0] == "begin" else None
        ops = [d for d in done if d[0] != "begin"]
        remount(path)
        try:
            img, post_ok = image()
        except Exception as e:  # noqa: BLE001 - reported to the checker
            img, post_ok = None, "reopen failed: %r" % (e,)
        print("CUT", json.dumps({"n": n, "dead": dev.dead, "finished": finished, "err": err,
                                 "ops": ops, "inflight": inflight, "image": img, "post_ok": post_ok}))
        n += step


def figures(path):
    import time

    from store import Store

    out = {}
    for kind in ("buffer", "journal"):
        dev = fresh(path, CountingDevice)
        if kind == "buffer":
            q = CommandBuffer(ROOT + "/gbuf")
        else:
            q = Store(ROOT + "/data").journal("gbuf")
        pend = []
        nbytes = 0
        # warm up, then measure 200 commands with a backlog of up to 3
        for rnd in (0, 1):
            w0, e0, p0, nbytes, count = dev.writes, dev.erases, dev.programmed, 0, 0
            t0 = time.ticks_us()
            for i in range(40 if rnd == 0 else 200):
                m = payload(i, RTDS_SIZES)
                if kind == "buffer":
                    q.put(A, m, 0)
                else:
                    pend.append(q.append(m))
                nbytes += len(m)
                count += 1
                if (kind == "buffer" and q.pending(A) > 3) or (kind == "journal" and len(pend) > 3):
                    if kind == "buffer":
                        q.take(A)
                    else:
                        q.read(pend[0])
                        q.ack(pend.pop(0))
        us = time.ticks_diff(time.ticks_us(), t0)
        w, e, pb = dev.writes - w0, dev.erases - e0, dev.programmed - p0
        out[kind] = {"messages": count, "payload_bytes": nbytes, "block_writes": w, "block_erases": e,
                     "programmed_bytes": pb, "writes_per_message": w / count, "erases_per_message": e / count,
                     "erase_bytes_per_byte": e * 4096 / nbytes, "write_bytes_per_byte": w * 4096 / nbytes,
                     "program_bytes_per_byte": pb / nbytes, "ms_per_message": us / 1000 / count}
    print("FIGURES", json.dumps(out))


def main():
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "clean":
        clean(path)
    elif mode == "sweep":
        sweep(path, int(sys.argv[3]), int(sys.argv[4]))
    elif mode == "figures":
        figures(path)
    else:
        raise SystemExit("unknown mode " + mode)


main()
