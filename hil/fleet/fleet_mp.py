# MicroPython: N emulated hubs' link ends in one process, for the fleet
# check (hil/fleet/__init__.py). Each hub is an asyncio task with its own
# TCP connection to one head-end and uses the firmware's own code: the link
# codec (wan.link: HELLO, REPORT, the decoder for HELLO_ACK and ACK) and the
# send-window scheduling (wan.window.next_send, the code the report job
# runs). It sends one health report at its time in the next window and
# waits for the head-end's ACK.
# argv: port n start_s period_s length_ms
import asyncio
import json
import sys
import time

from wan import link
from wan.window import next_send

PORT, N, START_S, PERIOD_S, LENGTH_MS = (int(a) for a in sys.argv[1:6])


def now_ms():
    return time.time_ns() // 1000000


async def read_frame(r, dec):
    while True:
        fr = dec.next()
        if fr is not None:
            return fr[0], fr[1], bytes(fr[2])
        data = await r.read(256)
        if not data:
            raise OSError("head-end closed")
        dec.feed(data)


async def hub(i, out):
    eui = bytes((0x00, 0xDB, 0x12, 0x34, 0x56, 0xF0, i >> 8, i & 0xFF))
    r, w = await asyncio.open_connection("127.0.0.1", PORT)
    dec = link.Decoder()
    w.write(link.hello(eui, "fleet", -71))
    await w.drain()
    ft, _, _ = await read_frame(r, dec)
    if ft != link.HELLO_ACK:
        raise OSError("no HELLO_ACK")
    t, k = next_send(now_ms(), eui, START_S, PERIOD_S, LENGTH_MS)
    await asyncio.sleep_ms(t - now_ms())
    sent = now_ms()
    w.write(link.encode(link.REPORT, 1, json.dumps({"t": "health", "k": k, "due_ms": t}).encode()))
    await w.drain()
    ft, fid, _ = await read_frame(r, dec)
    if ft != link.ACK or fid != 1:
        raise OSError("no ACK")
    out.append((i, t, sent))
    w.close()


async def main():
    out = []
    await asyncio.gather(*[hub(i, out) for i in range(N)])
    print("FLEET " + json.dumps({"hubs": len(out), "late_ms": max(s - t for _, t, s in out)}))


asyncio.run(main())
