# The hub's side of bench/heapdump/peak.py (measurement only, never in an
# image): preloaded with heapdump_mp, it answers the control line's
# {"heappeak": "0xADDR:LENGTH:BYTES"} with a task that collects and reads the
# live heap every few ms and, the first time it holds BYTES or more, dumps
# it at once (heapdump_mp._dump: ids, map, the pool's bytes) while every
# other task stands where it awaited: the heap at the hub's peak.
import asyncio
import gc

import board
from heapdump_mp import _dump


async def _watch(where, limit):
    while gc.mem_alloc() < limit:
        await asyncio.sleep_ms(2)
        gc.collect()
    print("HD peak", gc.mem_alloc())
    _dump(where)


def _arm(arg):
    a, n, limit = arg.split(":")
    asyncio.create_task(_watch(a + ":" + n, int(limit)))


board.on_control("heappeak", _arm)
