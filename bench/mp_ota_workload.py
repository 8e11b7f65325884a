# The hub's OTA server (firmware/han/ota.py) on the emulated flash, driven
# line by line from stdin, for tests/test_ota_han.py (zigpy's OTA client
# against it), the power-cut sweep of a meter image transfer and the bench's
# ota_flash_bytes_per_image_byte / ota_heap_kb.
#
#   micropython bench/mp_ota_workload.py FLASH_FILE [CUT_AFTER]
#
# (MICROPYPATH must cover firmware/ and boards/unix/.) Mounts the 64-block
# LittleFS2 image FLASH_FILE (formatting a blank one) and builds
# OtaServer(Store("/flash/data")). Each stdin line is a JSON request, each
# answer one stdout line "R <json>":
#   {"op": "begin", slot, euis, size}        -> {}
#   {"op": "put", slot, offset, data (hex)}  -> {durable, st}
#   {"op": "durable", slot}                  -> {durable, st}
#   {"op": "zcl", eui, frame (hex)}          -> {frame (hex) | null, alerts: [[eui, version hex, code]]}
#   {"op": "status"}                          -> OtaServer.status()
#   {"op": "counters"}                        -> {writes, bytes, erases, heap_base, heap_peak, code}
# A refused request answers {"error": text}. With CUT_AFTER=n the n-th
# block write after the mount is torn: "POWERCUT w=<n>" and exit code 75.
import gc
import json
import sys
from binascii import hexlify, unhexlify

import vfs
from blockdev import FileBlockDevice, PowerLost

BLOCKS = 64
ROOT = "/flash"
CUT_EXIT = 75


class CountingDevice(FileBlockDevice):
    """The emulated flash, also counting the bytes programmed."""

    bytes_written = 0

    def writeblocks(self, block, buf, offset=None):
        self.bytes_written += len(buf)
        return super().writeblocks(block, buf, offset)


def on_cut(d):
    print("POWERCUT w=%d" % (d.writes - base))


def main():
    global base
    path = sys.argv[1]
    cut = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    dev = CountingDevice(path, BLOCKS)
    try:
        fs = vfs.VfsLfs2(dev)
    except OSError:
        vfs.VfsLfs2.mkfs(dev)
        fs = vfs.VfsLfs2(dev)
    vfs.mount(fs, ROOT)
    base = dev.writes
    erases0 = dev.erases
    if cut:
        dev.cut_after = base + cut
        dev.on_cut = on_cut
    from han import zcl as Z  # the hub has these loaded anyway
    from han import zcl_servers  # noqa: F401
    from log import log  # noqa: F401
    from store import Store

    gc.collect()
    code0 = gc.mem_alloc()
    from han import ota

    gc.collect()
    heap_base = gc.mem_alloc()  # heap_peak: what the OTA server holds above its code (state, stage, a block)
    code = heap_base - code0  # its bytecode (in the heap when run from source, as here)

    alerts = []
    srv = ota.OtaServer(Store(ROOT + "/data"), None, lambda: 946684800 + 86400,
                        lambda eh, v, code: alerts.append([eh, hexlify(v).decode(), code]))
    gc.collect()
    peak = gc.mem_alloc() - heap_base
    print("READY")
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        req = json.loads(line)
        op = req["op"]
        try:
            if op == "begin":
                srv.begin(req["slot"], req["euis"], req["size"])
                out = {}
            elif op == "put":
                d = srv.put(req["slot"], req["offset"], unhexlify(req["data"]))
                out = {"durable": d, "st": srv.meta(req["slot"])["st"]}
            elif op == "durable":
                m = srv.meta(req["slot"])
                out = {"durable": srv.durable(req["slot"]), "st": m["st"] if m else None}
            elif op == "zcl":
                alerts[:] = []
                f = unhexlify(req["frame"])
                h, o = Z.parse_header(f)
                r = srv.handle(req["eui"], h, memoryview(f)[o:])
                out = {"frame": hexlify(r).decode() if r is not None else None, "alerts": list(alerts)}
            elif op == "status":
                out = srv.status()
            elif op == "counters":
                out = {"writes": dev.writes - base, "bytes": dev.bytes_written, "erases": dev.erases - erases0,
                       "heap_base": heap_base, "code": code,
                       "heap_peak": peak}
            else:
                out = {"error": "unknown op"}
        except PowerLost:
            sys.exit(CUT_EXIT)
        except ValueError as e:  # OtaError, a refusal
            out = {"error": str(e)}
        print("R " + json.dumps(out))
        line = req = f = r = out = None  # the driver's own data is not the server's
        gc.collect()
        peak = max(peak, gc.mem_alloc() - heap_base)


base = 0
try:
    main()
except PowerLost:
    sys.exit(CUT_EXIT)
