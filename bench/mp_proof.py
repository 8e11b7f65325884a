# CH cost of one routed message under MicroPython: the real Hub (every
# feature installed, on the emulated board's flash), a GSME in the CHF Device
# Log, and a GSME command (RTDS GCS13a) routed by hub.router.route into the GSME's
# persistent command buffer - what the hub does with a remote-party message
# for a sleepy meter. The jobs do not run (no UART traffic): only the routing.
#   micropython bench/mp_proof.py FRAME_HEX GSME_EUI INSTALL_CODE_HEX
# Prints FIGURES {"routed_msg_us", "routed_msg_alloc_bytes", "frame_bytes", "runs"}
# (medians over the runs; allocation counted with the GC held off).
import asyncio
import binascii
import gc
import json
import sys
import time

RUNS = 15


async def main():
    import app

    frame = binascii.unhexlify(sys.argv[1])
    eui = sys.argv[2]
    code = sys.argv[3]
    hub = app.Hub()
    r = await hub.run_command("device_log_add", {"eui": eui, "type": 0, "install_code": code, "join_timeout": 60})
    assert r["code"] == 0, r
    ts = []
    allocs = []
    for _ in range(RUNS):
        gc.collect()
        gc.disable()
        a = gc.mem_alloc()
        t = time.ticks_us()
        resp, alerts = await hub.router.route(frame)
        dt = time.ticks_diff(time.ticks_us(), t)
        allocs.append(gc.mem_alloc() - a)
        gc.enable()
        ts.append(dt)
        assert resp is None and not alerts, (resp, alerts)
        msg, _ = hub.router.buffer.take(eui)  # emptied between runs, outside the timing
        assert msg is not None and bytes(msg) == frame
    ts.sort()
    allocs.sort()
    print("FIGURES " + json.dumps({"routed_msg_us": ts[len(ts) // 2], "routed_msg_alloc_bytes": allocs[len(allocs) // 2],
                                    "frame_bytes": len(frame), "runs": RUNS}))


asyncio.run(main())
