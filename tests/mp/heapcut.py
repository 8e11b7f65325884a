# A heap cut into holes: for tests that a piece of work needs no block of
# its own size (the hub's floor is set by such blocks on a fragmented heap).
import gc


def cut(piece=400, most=2000):
    """Fill the heap with `piece`-byte blocks and free every other one: the
    free heap is holes of ~piece + 50 bytes. Returns what holds the rest
    (drop it to undo); raises AssertionError if a 1 KB block still fits."""
    gc.collect()
    hold = [None] * most
    n = 0
    try:
        while n < most:
            hold[n] = bytearray(piece)
            n += 1
    except MemoryError:
        pass
    for i in range(0, n, 2):
        hold[i] = None
    gc.collect()
    try:
        bytearray(1024)
        roomy = True
    except MemoryError:
        roomy = False
    assert not roomy, "the heap was not cut up"
    return hold
