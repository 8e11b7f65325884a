# The hub's protocol operations on an MCU-class CPU: frozen into the qemu
# port (MPS2_AN385, Cortex-M3) by `chub bench --mcu` (host_tools/chub/
# bench_mcu.py), run under `qemu-system-arm -icount shift=0`, where
# time.ticks_us() counts instructions / 1000. So every *_us figure the bench
# scripts print there is thousands of instructions (k-instructions) and every
# *_ms figure millions.
#
# The host sends, over the raw REPL:
#   import mcu_ops; mcu_ops.setup(); import mp_crypto   (and mp_gbcs, mp_han)
#   mcu_ops.zcl(); mcu_ops.route(FRAME_HEX, GSME_EUI, INSTALL_CODE_HEX)
# each printing one JSON line; "MCU-DONE" closes the run.
#
# setup(): `os` gets urandom (mcu_os), a LittleFS2 file system on the
# ramdisk module (a C block device over static RAM, cmod/ramdisk: as the
# ESP32's esp32.Partition is C) is mounted at /flash and made the working
# directory (the bench scripts keep their stores in the cwd).
import gc
import json
import sys
import time

RUNS = 9
# route(): messages put and taken. The buffer directory's metadata log grows
# with each and littlefs compacts it when its block is full (every ~18 puts
# and takes of this frame): a compaction costs ~0.3 M instructions more. 36
# runs hold two compactions; the median leaves them out, the mean spreads them.
ROUTE_RUNS = 36
DEV = None  # the ramdisk under /flash (setup)


def setup():
    global DEV
    import mcu_os

    sys.modules["os"] = mcu_os
    import os

    import ramdisk
    import vfs

    DEV = ramdisk.RamDisk()
    vfs.VfsLfs2.mkfs(DEV)
    vfs.mount(vfs.VfsLfs2(DEV), "/flash")  # LittleFS2 defaults, as the esp32 port's _boot.py mounts
    os.chdir("/flash")
    gc.collect()
    print(json.dumps({"mcu_heap_free_after_setup": gc.mem_free()}))


def _median(ts):
    ts.sort()
    return ts[len(ts) // 2]


def zcl():
    """A ZCL tunnel message: a 79-byte GBCS command split into TransferData
    frames for an 82-byte APS payload, each encoded, decoded and added to the
    reassembler (both ends of the tunnel, one message)."""
    from han import peer, tunnel

    msg = bytes((i * 29 + 3) & 0xFF for i in range(79))
    out = bytearray(96)
    r = tunnel.Reassembler(tunnel.DEFAULT_MESSAGE_SIZE)
    ts = []
    for _ in range(RUNS):
        t = time.ticks_us()
        tsn = 0
        for chunk in peer.fragments(msg, 82):
            out[:] = b""
            tunnel.encode_transfer_data(out, tsn, 7, chunk, True)
            tsn += 1
            _h, tid, data = peer.decode_transfer_data(out)
            peer.add(r, tid, data)
        got = r.take()
        ts.append(time.ticks_diff(time.ticks_us(), t))
        if bytes(got) != msg:
            raise AssertionError("tunnel round trip changed the message")
    print(json.dumps({"zcl_tunnel_msg_us": _median(ts)}))


def route(frame_hex, eui, code_hex):
    """The router's processing of one routed message: Router.route of a GSME
    command (RTDS GCS13a) into the GSME's persistent buffer, on the CHF, logs
    and Device Log as app.py wires them (no GPF, no WAN: the GSME path uses
    neither). Also the share of the frame parse and of the buffer put, and
    the mean over ROUTE_RUNS (compactions of the buffer's folder included)."""
    import asyncio
    from binascii import unhexlify

    from chf import gbcs_port
    from chf.device_log import DeviceLog
    from chf.logs import open_logs
    from gbcs import frame as gframe
    from route.router import Router
    from store import Store

    t2000 = 700000000
    st = Store("/flash/route")
    dl = DeviceLog(st, lambda: t2000, 16)
    ev, sec = open_logs(st, 40, utc=lambda: t2000)
    chf = gbcs_port.build(st, ev, sec, dl, lambda: t2000)
    router = Router(st, chf, chf.identity, dl, ev, sec, lambda: t2000)
    dl.add(unhexlify(eui), 0, unhexlify(code_hex), 60)
    data = unhexlify(frame_hex)

    eh = eui.upper()
    t_utc = t2000 + 946684800

    def med(fn):
        # instructions of fn() (thousands), median of RUNS, each after a collection
        ts = []
        for _ in range(RUNS):
            gc.collect()
            t = time.ticks_us()
            fn()
            ts.append(time.ticks_diff(time.ticks_us(), t))
        return _median(ts)

    async def main():
        ts, calls = [], []
        for _ in range(ROUTE_RUNS):
            gc.collect()
            c0 = DEV.counts()
            t = time.ticks_us()
            resp, alerts = await router.route(data)
            ts.append(time.ticks_diff(time.ticks_us(), t))
            calls.append(sum(DEV.counts()) - sum(c0))
            if resp is not None or alerts:
                raise AssertionError((resp, alerts))
            msg, _ = router.buffer.take(eh)  # emptied between runs, outside the count
            if msg is None or bytes(msg) != data:
                raise AssertionError("not buffered")
        return _median(ts), sum(ts) // len(ts), _median(calls)

    routed, mean, calls = asyncio.run(main())
    parse = med(lambda: gframe.parse(data))
    device = med(lambda: dl.type_of(eh))
    puts = []
    for _ in range(RUNS):
        gc.collect()
        t = time.ticks_us()
        router.buffer.put(eh, data, t_utc)
        puts.append(time.ticks_diff(time.ticks_us(), t))
        router.buffer.take(eh)
    print(json.dumps({"routed_msg_us": routed, "routed_msg_mean_us": mean, "routed_parse_us": parse, "routed_device_us": device,
                      "routed_buffer_put_us": _median(puts), "routed_blockdev_calls": calls,
                      "frame_bytes": len(data)}))
