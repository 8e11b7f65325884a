# route/buffer.py's file pool under MicroPython on LittleFS2: files are
# reused (the pool does not grow with traffic), a taken message's leftover
# chunks never come back at reopen, a damaged message is discarded whole,
# files that are not ours are removed, sequence numbers keep growing.
import os

import flashfs
from route.buffer import CHUNK, CommandBuffer, chunk_count
from route.commands import in_hand, pool, queue  # the buffer's read-outs (loaded per call in the hub)

HEAP = "256k"
ROOT = flashfs.ROOT + "/data/gbuf"
A = "00DB1234567890A1"
B = "00db1234567890b1"


def _msg(i, n):
    return bytes(((i * 31 + k) & 0xFF) for k in range(n))


def _files():
    out = []
    for s in range(8):
        for ent in os.ilistdir(ROOT + "/%d" % s):
            out.append(ROOT + "/%d/%s" % (s, ent[0]))
    return out


def test_chunking_sizes():
    assert CHUNK <= 120  # inline in littlefs metadata (128-byte cache)
    assert chunk_count(1) == 1 and chunk_count(96) == 1 and chunk_count(97) == 2
    assert chunk_count(96 + 115) == 2 and chunk_count(96 + 116) == 3
    assert chunk_count(1200) == 11  # 96 + 10 x 115 >= 1200


def test_pool_is_reused():
    flashfs.fresh(64)
    os.mkdir(flashfs.ROOT + "/data")
    b = CommandBuffer(ROOT)
    sizes = (72, 529, 300, 1200, 40)
    for i in range(60):
        b.put(A, _msg(i, sizes[i % 5]), 0)
        if b.pending(A) > 3:
            m, _ = b.take(A)
            assert m == _msg(i - 3, sizes[(i - 3) % 5])
    total, free = pool(b)
    # at most 4 messages of at most 11 chunks were ever live at once
    assert total <= 4 * 11, total
    assert len(_files()) == total and total - free == sum(chunk_count(len(b.read(A, k))) for k in range(3))


def test_taken_and_damaged_messages_do_not_come_back():
    flashfs.fresh(64)
    os.mkdir(flashfs.ROOT + "/data")
    b = CommandBuffer(ROOT)
    s1 = b.put(A, _msg(1, 500), 0)
    b.put(B, _msg(2, 300), 0)
    b.put(A, _msg(3, 250), 0)
    m, left = b.take(A)
    assert m == _msg(1, 500) and left == 1
    # damage the B message's last chunk: it must be discarded whole
    victim = None
    for p in _files():
        with open(p, "rb") as f:
            d = f.read()
        if len(d) > 5 and d[4] == 2 and d[0] == 2:  # seq 2, chunk 2
            victim = p
    assert victim is not None
    with open(victim, "r+b") as f:
        f.seek(10)
        f.write(b"\x00\x01\x02")
    # files that are not the buffer's
    with open(ROOT + "/3/12.0", "wb") as f:
        f.write(b"old layout")
    os.mkdir(ROOT + "/5/x")
    with open(ROOT + "/0/65536", "wb") as f:  # past the u16 pool file numbers of the RAM index
        f.write(b"")
    flashfs.remount(64)
    b = CommandBuffer(ROOT)
    assert b.devices() == {A: 1}, b.devices()
    assert b.read(A) == _msg(3, 250)
    assert b.stats["discarded_at_open"] == 1
    assert b.next_seq > 3 and b.put(A, _msg(4, 10), 0) > 3
    names = [p.rsplit("/", 1)[1] for p in _files()]
    assert "12.0" not in names and "x" not in names and "65536" not in names
    assert s1 == 1


def test_put_after_reopen_uses_free_files_first():
    flashfs.fresh(64)
    os.mkdir(flashfs.ROOT + "/data")
    b = CommandBuffer(ROOT)
    for i in range(4):
        b.put(A, _msg(i, 400), 0)
    for _ in range(4):
        b.take(A)
    total = pool(b)[0]
    flashfs.remount(64)
    b = CommandBuffer(ROOT)
    assert pool(b) == (total, total) and len(b) == 0
    for i in range(4):
        b.put(A, _msg(10 + i, 400), 0)
    assert pool(b)[0] == total  # nothing new created
    assert [b.read(A, k) for k in range(4)] == [_msg(10 + i, 400) for i in range(4)]


def test_offer_stays_on_flash_until_confirmed():
    flashfs.fresh(64)
    os.mkdir(flashfs.ROOT + "/data")
    b = CommandBuffer(ROOT, expiry_s=10)
    b.put(A, _msg(1, 300), 0)
    b.put(A, _msg(2, 50), 5)
    m, left = b.offer(A)
    assert m == _msg(1, 300) and left == 1 and b.pending(A) == 2 and b.waiting(A) == 1
    assert b.offer(A)[0] == _msg(1, 300)  # offered again until confirmed
    # a power cut before the confirm: the message is still there, not in hand
    flashfs.remount(64)
    b = CommandBuffer(ROOT, expiry_s=10)
    assert b.pending(A) == 2 and in_hand(b, A) is None and not b.confirm(A)
    assert b.offer(A)[0] == _msg(1, 300)
    assert b.confirm(A) and not b.confirm(A)  # only once
    assert b.read(A) == _msg(2, 50)
    flashfs.remount(64)
    b = CommandBuffer(ROOT, expiry_s=10)
    assert queue(b, A)[0][2] == 50 and b.pending(A) == 1
    # a message in hand that expires is delivered, not "not retrieved"
    b.put(A, _msg(3, 20), 100)
    b.offer(A)
    assert b.expire(20) == [] and b.pending(A) == 1 and b.stats["delivered"] == 1
    assert in_hand(b, A) is None and b.read(A) == _msg(3, 20)
    # expire() of messages not handed out reports them
    assert [m for _e, m in b.expire(200)] == [_msg(3, 20)]
    # drop forgets the hand
    b.put(A, _msg(4, 20), 300)
    b.offer(A)
    assert b.drop(A) == 1 and in_hand(b, A) is None and not b.confirm(A)


def _counting_open(log):
    # route.buffer's own `open` (a module global ahead of the builtin): the
    # paths it opens, in order
    import builtins

    def op(path, mode="r"):
        log.append(path)
        return builtins.open(path, mode)

    return op


def test_the_gsme_cycle_of_a_one_chunk_message_opens_one_file():
    # put -> offer -> confirm of a message of one chunk: the chunk 0 file's
    # handle is kept open, so the put (the router's processing of a routed
    # message) and the offer walk no directories; only the confirm
    # (emptying the file) opens it again. The on-flash content is the same
    # as with a fresh open each time (an empty file when free).
    import route.buffer as rb

    flashfs.fresh(64)
    os.mkdir(flashfs.ROOT + "/data")
    b = CommandBuffer(ROOT)
    b.put(A, _msg(0, 79), 0)
    assert b.take(A)[0] == _msg(0, 79)
    log = []
    rb.open = _counting_open(log)
    try:
        for i, n in enumerate((79, 40, 96, 12)):
            del log[:]
            b.put(A, _msg(i, n), 0)
            assert log == [], log
            m, left = b.offer(A)
            assert m == _msg(i, n) and left == 0 and log == [], log
            assert b.confirm(A) and len(log) == 1, log
        # the free file is empty, as before: chunk 0 of a taken message
        assert [os.stat(p)[6] for p in _files()] == [0]
        b.put(A, _msg(7, 30), 0)
        b.put(A, _msg(8, 200), 0)  # the handle's file is in use: the others are opened
        assert len(log) == 1 + 2, log
    finally:
        del rb.open
    sizes = sorted(os.stat(p)[6] for p in _files())
    assert sizes == [24 + 30, 5 + 104, 24 + 96], sizes
    flashfs.remount(64)
    b = CommandBuffer(ROOT)
    assert b.read(A) == _msg(7, 30) and b.read(A, 1) == _msg(8, 200) and b.stats["discarded_at_open"] == 0


def test_a_queued_command_holds_little_ram():
    # The RAM index of a device's queue: one bytearray of packed records
    # (u32 seq, u32 expiry, u8 chunk count, a u16 pool file per chunk), no
    # object per message. Measured on the 32-bit build: 100 bytes a
    # one-chunk message with a list of four per message, 36 with a bytes
    # record each (52 for two chunks), 12 and 14 with a u16 length, 11 and
    # 13 with the chunk count in its place (the length read from chunk 0's
    # header with the message)
    import gc

    flashfs.fresh(128)
    os.mkdir(flashfs.ROOT + "/data")
    b = CommandBuffer(ROOT)
    now = 1_765_000_000  # UTC Unix seconds: past 2^30
    n = 24
    for eh, size, bound in ((A, 72, 11), (B, 150, 13)):  # one chunk, two chunks
        b.put(eh, _msg(0, size), now)
        gc.collect()
        a = gc.mem_alloc()
        for i in range(1, n + 1):
            b.put(eh, _msg(i, size), now)
        gc.collect()
        per = (gc.mem_alloc() - a) // n
        print("buffer: %d bytes a queued message of %d bytes" % (per, size))
        assert per <= bound, per
    # and the index still serves the queue
    assert b.pending(A) == n + 1 and queue(b, A)[1] == (2, now + 86400, 72)
    assert queue(b, B)[2] == (n + 4, now + 86400, 150) and b.devices() == {A: n + 1, B.upper(): n + 1}
    assert b.next_expiry() == now + 86400 and len(b) == 2 * n + 2
    assert b.read(B, 3) == _msg(3, 150) and b.read(B, n + 1) is None
    for i in range(n + 1):
        msg, left = b.take(A)
        assert bytes(msg) == _msg(i, 72) and left == n - i
    assert b.pending(A) == 0 and b.devices() == {B.upper(): n + 1}
    # a message from the middle of a queue expires: the rest keep their order
    b.put(A, _msg(90, 30), now, expiry_s=5)
    b.put(A, _msg(91, 300), now, expiry_s=1)
    b.put(A, _msg(92, 40), now, expiry_s=5)
    assert b.next_expiry() == now + 1
    assert b.expire(now + 1) == [(A, _msg(91, 300))]
    assert [q[0] for q in queue(b, A)] == [b.head(A), b.head(A) + 2] and b.read(A, 1) == _msg(92, 40)
    flashfs.remount(128)
    b = CommandBuffer(ROOT)
    assert b.devices() == {A: 2, B.upper(): n + 1} and b.read(B, n) == _msg(n, 150)


def test_the_pool_stops_at_the_u16_file_numbers():
    # the RAM index holds pool file numbers as u16: a put that would need
    # file 65536 is refused (BufferFull), nothing of it kept, the free files
    # it took given back
    from route.buffer import BufferError

    flashfs.fresh(64)
    os.mkdir(flashfs.ROOT + "/data")
    b = CommandBuffer(ROOT)
    b.put(A, _msg(0, 40), 0)
    b.take(A)
    total, free = pool(b)
    b._pool = 0x10000  # as if files 0 .. 65535 were made
    try:
        b.put(A, _msg(1, 300), 0)  # 3 chunks: the one free file, then none
        raise AssertionError("accepted")
    except BufferError as e:
        assert e.args[0] == "BufferFull", e.args
    assert pool(b)[1] == free and b.pending(A) == 0
    b._pool = total
    b.put(A, _msg(2, 300), 0)
    assert b.read(A) == _msg(2, 300)
