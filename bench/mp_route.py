# The GSME command buffer (firmware/route/buffer.py) on the emulated flash:
# the power-cut sweep and the flash-cost figures.
#
#   micropython bench/mp_route.py clean FLASH
#   micropython bench/mp_route.py sweep FLASH FIRST STEP
#   micropython bench/mp_route.py figures FLASH
#
# (MICROPYPATH must cover firmware/ and boards/unix/.) `clean` formats a
# 64-block LittleFS2 image and runs the buffering workload (puts for two
# devices; the GSME's GETs, each confirming the message handed out before
# and offering the next, which a model GSME executes once per counter; its
# PUTs, confirming too; a dropped queue; an expiry) printing one line per
# finished operation and "CLEAN <json>" with the block writes W after the
# format (W counts the cut points: block writes and the hand-outs of GET
# answers to the radio). `sweep` repeats the workload in this one process
# with the power cut at point n = FIRST, FIRST+STEP, ... <= W (the n-th
# block write after the format is torn, or the hand-out never reaches the
# GSME; the device then fails every call), remounts the image
# like a power-up and prints "CUT <json>": the operations that returned
# before the cut (with the GSME's executions and refusals), the one in
# flight, what the reopened buffer holds, what the GSME executes or refuses
# when it then GETs both queues empty, and whether the buffer still takes
# and hands out a message. tests/test_route_power_cut.py checks each
# against the rules (nothing acknowledged lost, nothing executed twice).
# `sweep ... at_most_once` runs the old design (removed before the hand-out). `figures` prints "FIGURES <json>": block writes and erases per
# buffered command in steady state, for the buffer and for the store's
# Journal doing the same job.
import json
import sys

import vfs
from blockdev import FileBlockDevice, PowerLost
from route.buffer import CommandBuffer
from route.commands import queue

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


class SweepDevice(FileBlockDevice):
    """Counts the radio hand-outs as cut points too: point() is the moment
    the hub's answer to a GET goes to the radio (after the flash work of
    that GET, before the GSME has it)."""

    handouts = 0

    def point(self):
        self._check()
        self.writes += 1
        self.handouts += 1
        if self.cut_after and self.writes >= self.cut_after:
            self.dead = True
            raise PowerLost(5)


def fresh(path, cls=SweepDevice):
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


class Gsme:
    """The meter, outside the hub's flash (a power cut of the hub leaves it
    as it is): it executes a command once per GBCS originator counter (here
    the payload's number) and refuses one it has executed already."""

    def __init__(self):
        self.seen = set()

    def execute(self, i, out):
        if i in self.seen:
            out.append(["refused", i])
        else:
            self.seen.add(i)
            out.append(["exec", i])


def gsme_get(buf, dev, gsme, done, ok, bdev=None, at_most_once=False):
    # the GSME's GET as the router serves it: the message in hand (if any)
    # is confirmed, the next one offered, handed to the radio; the GSME
    # then executes it. at_most_once: the old design (removed from flash
    # before the hand-out), to show the sweep catches its loss.
    done.append(["begin", "get", dev])
    if at_most_once:
        msg, _left = buf.take(dev)
    else:
        buf.confirm(dev)
        msg, _left = buf.offer(dev)
    if bdev is not None and msg is not None:
        bdev.point()  # the hand-out: a cut here means the GSME never got it
    i = ident(msg) if msg is not None else None
    ok(["get", dev, i])
    if i is not None:
        gsme.execute(i, done)


def workload(done, bdev=None, gsme=None, at_most_once=False):
    """Append [op, ...] to done as each operation returns (and a
    "returned_after_cut" mark if one returned once the power was gone)."""

    def ok(rec):
        done.append(rec)
        if bdev is not None and bdev.dead:
            done.append(["returned_after_cut"])

    gsme = gsme if gsme is not None else Gsme()
    done.append(["begin", "open"])
    buf = CommandBuffer(ROOT + "/gbuf", capacity=32, expiry_s=8)
    ok(["open"])
    for i in range(STEPS):
        dev = B if i % 3 == 0 else A
        done.append(["begin", "put", dev, i])
        seq = buf.put(dev, payload(i), i)
        ok(["put", dev, i, seq])
        if i % 3 == 2:
            gsme_get(buf, A, gsme, done, ok, bdev, at_most_once)
            if i % 6 == 2:
                # the GSME PUTs its response: the message in hand is confirmed
                done.append(["begin", "put_rsp", A])
                buf.confirm(A)
                ok(["put_rsp", A])
        if i == 9:
            done.append(["begin", "drop", B])
            ok(["drop", B, buf.drop(B)])
        if i == 13:
            done.append(["begin", "expire"])
            ok(["expire", [ident(m) for _e, m in buf.expire(EXPIRE_AT)]])
    return buf


def image(gsme=None):
    """What the reopened buffer holds, then the GSME GETs until both queues
    are empty (with what it remembers from before the cut)."""
    buf = CommandBuffer(ROOT + "/gbuf")
    out = {}
    for eh in (A, B):
        out[eh] = [[seq, buf.read(eh, k).hex()] for k, (seq, _e, _n) in enumerate(queue(buf, eh))]
    after = []
    gsme = gsme if gsme is not None else Gsme()
    for eh in (A, B):
        while True:
            buf.confirm(eh)
            m, _ = buf.offer(eh)
            if m is None:
                break
            gsme.execute(ident(m), after)
    # the reopened buffer still takes and hands out a message
    seq = buf.put(A, b"post", 100)
    got = None
    while True:
        m, _ = buf.take(A)
        if m is None:
            break
        got = m
    return out, after, got == b"post" and seq > 0


def clean(path):
    dev = fresh(path)
    w0 = dev.writes
    done = []
    workload(done, dev)
    for d in done:
        print("OP", json.dumps(d))
    # writes: the cut points (block writes and hand-outs)
    print("CLEAN", json.dumps({"writes": dev.writes - w0, "handouts": dev.handouts, "erases": dev.erases}))


def sweep(path, first, step, at_most_once=False):
    n = first
    while True:
        dev = fresh(path)
        w0 = dev.writes
        dev.cut_after = w0 + n
        done = []
        finished = False
        err = None
        gsme = Gsme()
        try:
            workload(done, dev, gsme, at_most_once)
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
            img, after, post_ok = image(gsme)
        except Exception as e:  # noqa: BLE001 - reported to the checker
            img, after, post_ok = None, None, "reopen failed: %r" % (e,)
        print("CUT", json.dumps({"n": n, "dead": dev.dead, "finished": finished, "err": err, "ops": ops,
                                 "inflight": inflight, "image": img, "after": after, "post_ok": post_ok}))
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
                        q.offer(A)  # the GSME GETs it ...
                        q.confirm(A)  # ... and its next GET or PUT confirms it
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
        sweep(path, int(sys.argv[3]), int(sys.argv[4]), len(sys.argv) > 5 and sys.argv[5] == "at_most_once")
    elif mode == "figures":
        figures(path)
    else:
        raise SystemExit("unknown mode " + mode)


main()
