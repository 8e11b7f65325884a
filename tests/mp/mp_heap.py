# The hub's GC policy (supervisor.gc_policy) under MicroPython: the free heap
# stays in one piece while long-lived objects are made among garbage, as the
# hub makes its records among the garbage of messages and crypto.
import gc

import supervisor

HEAP = "128k"


def _workload(keep):
    # 400 small long-lived objects, each after 2 KB of garbage (800 KB made
    # in all: the free heap is walked through several times)
    for _ in range(400):
        junk = [bytearray(200) for _ in range(10)]
        keep.append(bytearray(16))
    del junk


def test_the_free_heap_stays_in_one_piece():
    supervisor.gc_policy()
    keep = []
    _workload(keep)
    gc.collect()
    free = gc.mem_free()
    # ~12 KB of long-lived objects; with collections only when the heap is
    # exhausted they lie spread over all of it, 2 KB apart, and a 16 KB
    # buffer fails with ~100 KB free
    big = bytearray(16 * 1024)
    assert len(keep) == 400 and len(big) == 16384, free
