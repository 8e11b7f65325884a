# Local port codec and server under MicroPython (docs/local-port.md).
import asyncio
import gc
import json

import heapcut
import local_auth as la
import local_port as lp
from local_frame import FrameError, decode_frame, encode_frame
from local_port import FrameReader, crc16

HEAP = "320k"  # 20% margin (CHUB_MP_HEAP_SCALE=0.8)


def frame(body):
    # built by hand from the spec, independently of encode_frame
    c = crc16(body)
    return bytes([0xC5, len(body) >> 8, len(body) & 0xFF]) + bytes(body) + bytes([c >> 8, c & 0xFF])


def events(reader, data, step=0):
    """Feed data (whole, or in chunks of `step`) and list the events."""
    out = []
    chunks = [data] if step == 0 else [data[i : i + step] for i in range(0, len(data), step)]
    if not chunks:
        chunks = [b""]
    for chunk in chunks:
        off = 0
        while True:
            off = reader.feed(chunk, off, len(chunk))
            if reader.event is None:
                break
            if reader.event == lp.OK:
                out.append(("F", bytes(reader.body)))
            else:
                out.append(("E", reader.event, reader.seq))
        assert off == len(chunk)
    return out


def test_crc_check_value():
    # the catalogued check value of CRC-16/CCITT-FALSE
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF
    assert crc16(b"6789", crc16(b"12345")) == 0x29B1
    assert crc16(memoryview(b"x123456789")[1:]) == 0x29B1
    assert crc16(bytearray(b"123456789")) == 0x29B1


def test_encode_frame_layout():
    body = b'\x07{"cmd":"status"}'
    f = encode_frame(body)
    assert isinstance(f, bytes)
    assert f[0] == 0xC5 and f[1] == 0 and f[2] == len(body)
    assert f[3:-2] == body
    assert (f[-2] << 8) | f[-1] == crc16(body)
    assert f == frame(body)
    big = bytes(300)
    f = encode_frame(big)
    assert f[1] == 1 and f[2] == 300 - 256 and len(f) == 305
    assert encode_frame(b"") == b"\xc5\x00\x00\xff\xff"
    assert len(encode_frame(bytes(4096))) == 4101
    try:
        encode_frame(bytes(4097))
        raise AssertionError("oversize accepted")
    except FrameError as e:
        assert e.status == lp.TOO_LONG


def test_decode_frame_and_errors():
    body = b'\x01{"cmd":"x"}'
    assert bytes(decode_frame(encode_frame(body))) == body
    f = bytearray(encode_frame(body))
    cases = []
    bad = bytearray(f)
    bad[5] ^= 0x01
    cases.append((bytes(bad), lp.BAD_CRC))
    bad = bytearray(f)
    bad[-1] ^= 0x80
    cases.append((bytes(bad), lp.BAD_CRC))
    cases.append((bytes(f[:-1]), lp.TRUNCATED))
    cases.append((bytes(f) + b"\x00", lp.TRUNCATED))
    cases.append((b"\xc5\x10\x01" + bytes(4099), lp.TOO_LONG))
    cases.append((b"\xc4" + bytes(f[1:]), lp.TRUNCATED))
    cases.append((b"", lp.TRUNCATED))
    for data, status in cases:
        try:
            decode_frame(data)
            raise AssertionError(repr(data))
        except FrameError as e:
            assert isinstance(e, ValueError)
            assert e.status == status, (data, e.status)


def test_reader_frames_split_any_way():
    bodies = [b'\x01{"cmd":"a"}', b"\x02" + b"x" * 700, b"\xc5\xc5\xc5", b"\x00", bytes(range(256))]
    stream = b"boot log line\r\n"
    for b in bodies:
        stream += frame(b) + b"123 hub some text\n"
    want = [("F", b) for b in bodies]
    for step in (0, 1, 2, 3, 7, 64, 1000):
        r = FrameReader()
        assert events(r, stream, step) == want, step
        assert r.frames == len(bodies) and r.errors == 0
        assert r.skipped == len(b"boot log line\r\n") + 5 * len(b"123 hub some text\n")
        assert not r.in_frame()


def test_in_frame_tracks_partial_frame():
    f = frame(b'\x01{"cmd":"a"}')
    r = FrameReader()
    assert events(r, b"text") == [] and not r.in_frame()
    assert events(r, f[:1]) == [] and r.in_frame()
    assert events(r, f[1:-1]) == [] and r.in_frame()
    assert events(r, f[-1:]) == [("F", f[3:-2])]
    assert not r.in_frame()


def test_bad_crc_reports_seq_and_resyncs():
    good = frame(b'\x09{"cmd":"b"}')
    bad = bytearray(frame(b'\x21{"cmd":"a"}'))
    bad[8] ^= 0x40
    for step in (0, 1, 5):
        r = FrameReader()
        assert events(r, bytes(bad) + good, step) == [("E", lp.BAD_CRC, 0x21), ("F", good[3:-2])]
    # empty body with a wrong CRC: no seq to echo
    r = FrameReader()
    assert events(r, b"\xc5\x00\x00\x12\x34" + good) == [("E", lp.BAD_CRC, 0), ("F", good[3:-2])]


def test_bad_crc_rescans_inside_the_bad_frame():
    # a stray SOF swallowed the start of a real frame: after the CRC fails,
    # the parser finds the real frame among the bytes it already holds
    good = frame(b'\x03{"cmd":"c"}')
    stray = b"\xc5\x00\x04"  # claims a 4-byte body: takes good[0:6] as body+CRC
    for step in (0, 1, 4):
        r = FrameReader()
        assert events(r, stray + good, step) == [("E", lp.BAD_CRC, 0xC5), ("F", good[3:-2])], step


def test_bytes_after_a_rescanned_frame_stay_in_play():
    # a stray header takes in a real frame and the start of the next one: after
    # the bad CRC the rescan delivers the real frame, then the next one
    a = frame(b'\x01{"cmd":"a"}')
    b = frame(b'\x02{"cmd":"b"}')
    stray = bytes([0xC5, 0, len(a) + 2])
    for step in (0, 1, 3):
        r = FrameReader()
        got = events(r, stray + a + b, step)
        assert got == [("E", lp.BAD_CRC, 0xC5), ("F", a[3:-2]), ("F", b[3:-2])], (step, got)
        assert not r.in_frame()


def test_oversize_resyncs_on_next_sof():
    good = frame(b'\x04{"cmd":"d"}')
    for step in (0, 1, 2):
        r = FrameReader()
        assert events(r, b"\xc5\xff\xff" + good, step) == [("E", lp.TOO_LONG, 0), ("F", good[3:-2])]
        r = FrameReader()
        # the real SOF is the stray header's second length byte
        assert events(r, b"\xc5\x20" + good, step) == [("E", lp.TOO_LONG, 0), ("F", good[3:-2])]
    r = FrameReader(max_body=16)
    assert events(r, frame(bytes(17)) + frame(bytes(16))) == [("E", lp.TOO_LONG, 0), ("F", bytes(16))]


def test_truncate_recovers_swallowed_frame():
    good = frame(b'\x05{"cmd":"e"}')
    r = FrameReader()
    # a stray header claims 64 bytes: the real frame is swallowed, nothing comes
    assert events(r, b"\xc5\x00\x40" + good) == []
    assert r.in_frame()
    r.truncate()
    assert r.event == lp.TRUNCATED and r.seq == 0
    assert events(r, b"") == [("F", good[3:-2])]
    r.truncate()  # not in a frame: nothing to report
    assert r.event is None


def test_reader_grows_for_a_large_frame_and_goes_back_to_its_small_buffer():
    # the standing buffer fits everyday requests; a larger frame's header
    # makes the reader take one of that frame's size, for that frame only
    bodies = [b'\x01{"cmd":"a"}', b"\x02" + b"y" * 3000, b"\x03", b"\x04" + b"z" * (lp.MAX_BODY - 1)]
    stream = b"".join(frame(b) for b in bodies)
    for step in (0, 7, 100, 1460):
        r = FrameReader(size=64)
        assert events(r, stream, step) == [("F", b) for b in bodies], step
        events(r, b"")  # the last frame is given up at the next feed
        assert len(r.buf) == 64 and r.grown == 2, (step, len(r.buf), r.grown)
    # a stray header that claims a large body swallows real frames: after the
    # caller's timeout the reader finds them among the bytes it holds
    good = frame(b'\x05{"cmd":"e"}')
    r = FrameReader(size=64)
    assert events(r, b"\xc5\x08\x00" + good * 8) == []
    r.truncate()
    assert r.event == lp.TRUNCATED
    assert events(r, b"") == [("F", good[3:-2])] * 8
    events(r, b"")
    assert len(r.buf) == 64


def test_a_reader_between_frames_holds_little():
    # the reader's standing buffer holds a frame's header only: a frame gets
    # a buffer of its own size while it is read (on main a standing 256-byte
    # buffer and a 17-slot attribute table: 116 words on a 32-bit board, 84
    # on a 64-bit one)
    import sys

    def two_frames(r):
        n = len(events(r, frame(b'\x01{"cmd":"status"}') + frame(b"\x02" + b"y" * 300)))
        events(r, b"")  # the last frame is given up at the next feed
        return n

    word = 8 if sys.maxsize > 2**32 else 4
    gc.collect()
    before = gc.mem_alloc()
    r = FrameReader()
    assert two_frames(r) == 2 and not r.in_frame()
    gc.collect()
    used = gc.mem_alloc() - before
    assert used <= 48 * word, used


def _held_by_serve(reader, ev, writer=None, wait_ms=5):
    # serve on `reader` as the local-port job runs it: the heap it holds
    # (after a collection) wait_ms after it starts; then ev is set (the
    # reader's EOF) and serve ends
    out = []

    async def main():
        await asyncio.sleep_ms(1)
        gc.collect()
        before = gc.mem_alloc()
        t = asyncio.create_task(lp.serve(reader, writer or _Sink(), dispatch))
        await asyncio.sleep_ms(wait_ms)
        gc.collect()
        out.append(gc.mem_alloc() - before)
        ev.set()
        await t

    asyncio.run(main())
    return out[0]


def test_serve_waiting_for_a_request_holds_little():
    # the local-port job between requests: its task, serve's frame, the
    # 128-byte read buffer and the reader (its header buffer), awaiting the
    # stream's readinto itself (no wrapper coroutine frame); the stream's
    # own waiting frames are counted too. Main: 944 bytes on a 32-bit board,
    # 1504 on a 64-bit one (the standing 256-byte buffer, the _read frame);
    # with the header buffer alone 640 / 1152; then 576-592 / 1024-1056
    # with a 128-byte read buffer; now 464 / 928: a frame's bytes are read
    # into its own buffer, the read buffer (16 bytes) takes what comes
    # between frames
    import sys

    word = 8 if sys.maxsize > 2**32 else 4
    ev = asyncio.Event()

    class Idle:
        async def readinto(self, buf):
            await ev.wait()
            return 0

    out = [_held_by_serve(Idle(), ev)]
    print("serve waiting: %d bytes, %d words" % (out[0], out[0] // word))
    assert out[0] <= (464 if word == 4 else 928), out


def test_serve_after_a_large_frame_holds_no_view_of_it():
    # a 1.5 KB request read in pieces into its own buffer, answered: serve
    # then waits for the next request holding what it held before it (no
    # view of the frame's buffer left in its frame)
    import sys

    word = 8 if sys.maxsize > 2**32 else 4
    ev = asyncio.Event()
    big = req(6, {"cmd": "echo", "x": "y" * 1500})
    parts = [big[i : i + 100] for i in range(0, len(big), 100)]
    answered = []

    class Feed:
        async def readinto(self, buf):
            if parts:
                p = parts[0]
                k = min(len(p), len(buf))
                buf[0:k] = p[:k]
                if k < len(p):
                    parts[0] = p[k:]
                else:
                    parts.pop(0)
                return k
            await ev.wait()
            return 0

    class Count(_Sink):
        def write(self, b):
            answered.append(len(b))

    out = [_held_by_serve(Feed(), ev, Count(), 20)]
    assert sum(answered) > 1500 and not parts
    assert out[0] <= (512 if word == 4 else 1024), out


def test_serve_in_a_frame_holds_little_and_loads_no_wait_for():
    # a frame that has begun and waits for its next bytes: its deadline is
    # kept by a small task of serve's own (flag.wake_after, made for the
    # wait and gone after), not asyncio.wait_for (the asyncio.funcs module,
    # 0.34 KB of code held once loaded, its runner task and two frames).
    # Main (the module's import counted): 1328 bytes on a 32-bit board, 2496
    # on a 64-bit one; 768 / 1376 with the read buffer of 128 bytes, now
    # 624 / 1216
    import sys

    word = 8 if sys.maxsize > 2**32 else 4
    sys.modules.pop("asyncio.funcs", None)
    for name in ("wait_for", "wait_for_ms", "gather"):
        asyncio.__dict__.pop(name, None)
    ev = asyncio.Event()
    head = req(4, {"cmd": "echo"})[:6]

    class Slow:
        def __init__(self):
            self.n = 0

        async def readinto(self, buf):
            self.n += 1
            if self.n == 1:
                buf[0:6] = head
                return 6
            await ev.wait()
            return 0

    out = [_held_by_serve(Slow(), ev)]
    print("serve in a frame: %d bytes, %d words" % (out[0], out[0] // word))
    assert "asyncio.funcs" not in sys.modules
    assert out[0] <= (640 if word == 4 else 1248), out


def test_reader_allocates_little():
    r = FrameReader()
    chunk = bytearray(b"log\n" + frame(b'\x01{"cmd":"status"}') * 4)
    n = len(chunk)
    events(r, chunk)  # warm up
    gc.collect()
    before = gc.mem_alloc()
    gc.disable()
    for _ in range(50):
        off = 0
        while True:
            off = r.feed(chunk, off, n)
            if r.event is None:
                break
    used = gc.mem_alloc() - before
    gc.enable()
    print("bytes allocated per frame:", used / 200)
    # a frame's own buffer (its length, with the memoryviews over it) is
    # garbage once the frame is handled: 176 bytes a 23-byte frame on a
    # 32-bit board, 320 on a 64-bit one (80 / 160 with the standing 256-byte
    # buffer main held for the hub's life); no allocation per byte
    assert used / 200 < 360, used


def _run_now(coro):
    # a coroutine that never waits (the writer and the dispatch below do
    # not), run to its end without an event loop's own allocations
    try:
        coro.send(None)
    except StopIteration:
        return
    raise AssertionError("the coroutine waited")


class _Sink:
    def write(self, b):
        pass

    async def drain(self):
        pass


def test_a_large_request_is_parsed_where_it_lies():
    # a 3 KB request is parsed from the frame's own buffer: no copy of its
    # text first (on a fragmented heap every copy is one more 3 KB piece
    # the allocator must find; the hub's floor is set by such pieces)
    body = bytes([1]) + json.dumps({"cmd": "take", "x": "ab" * 1500}).encode()
    r = FrameReader()
    f = frame(body)
    assert r.feed(f, 0, len(f)) == len(f) and r.event == lp.OK
    got = []

    async def take(req):
        got.append(len(req["x"]))
        return {}

    gc.collect()
    before = gc.mem_alloc()
    gc.disable()
    _run_now(lp._handle(r, _Sink(), take, lp.MAX_BODY))
    used = gc.mem_alloc() - before
    gc.enable()
    assert got == [3000]
    # the parsed request's 3,000-character string and small objects (4.3 KB
    # on the 64-bit port); a copy of the text added another len(body) (7.4 KB)
    assert used < len(body) * 3 // 2, used


def test_a_request_tag_is_computed_without_copying_the_request():
    # the installer's tag covers the canonical request: its pieces go to
    # the hash one by one, not joined (and encoded) into two more copies
    req = {"cmd": "link_cert", "cert": "ab" * 1500, "anchor": "cd" * 400, "n": 5}
    key = bytes(range(32))
    from gbcs.p256 import hmac_sha256

    text = la.canonical(req)
    want = hmac_sha256(key, bytes((0, 0, 0, 9)), text)[:16]
    gc.collect()
    before = gc.mem_alloc()
    gc.disable()
    tag = la.request_tag(key, 9, req)
    used = gc.mem_alloc() - before
    gc.enable()
    assert tag == want
    # less than one copy of the canonical text (4.8 KB; 14 KB before: joined,
    # encoded, and each long value copied between its quotes)
    assert used < len(text), used


# ---- serve() on in-memory streams -----------------------------------------


class Reader:
    """Gives `parts` in order; an int part is a pause of that many ms."""

    def __init__(self, parts):
        self.parts = list(parts)

    async def read(self, n):
        while self.parts:
            p = self.parts[0]
            if isinstance(p, int):
                self.parts.pop(0)
                await asyncio.sleep_ms(p)
                continue
            if len(p) > n:
                self.parts[0] = p[n:]
                return p[:n]
            self.parts.pop(0)
            return p
        return b""


class Writer:
    def __init__(self):
        self.out = b""

    def write(self, b):
        self.out += bytes(b)

    async def drain(self):
        pass


async def dispatch(req):
    cmd = req["cmd"]
    if cmd == "echo":
        return {"echo": req.get("x")}
    if cmd == "bad":
        raise ValueError("x must be a number")
    if cmd == "boom":
        raise RuntimeError("broken")
    if cmd == "auth":
        raise lp.NotAuthorised("log in first")
    if cmd == "list":
        return [1]
    if cmd == "big":
        return {"x": "y" * 5000}
    raise KeyError(cmd)


def responses(out):
    res = []
    r = FrameReader()
    off = 0
    while True:
        off = r.feed(out, off, len(out))
        if r.event is None:
            break
        assert r.event == lp.OK, r.event
        b = r.body
        res.append((b[0], b[1], json.loads(bytes(b[2:]))))
    assert off == len(out) and r.skipped == 0 and not r.in_frame()
    return res


def req(seq, obj):
    return frame(bytes([seq]) + json.dumps(obj).encode())


def run_serve(parts, **kw):
    w = Writer()
    asyncio.run(lp.serve(Reader(parts), w, dispatch, **kw))
    return responses(w.out)


def test_serve_statuses():
    bad = bytearray(req(9, {"cmd": "echo"}))
    bad[6] ^= 1
    parts = [
        req(1, {"cmd": "echo", "x": [1, "a"]}),
        b"noise\r\n",
        req(2, {"cmd": "nope"}),
        req(3, {"cmd": "bad"}),
        req(4, {"cmd": "boom"}),
        req(5, {"cmd": "auth"}),
        bytes(bad),
        b"\xc5\x10\x01",
        frame(b"\x06{not json"),
        frame(b"\x07[1,2]"),
        frame(b'\x08{"x":1}'),
        frame(b'\x0a{"cmd":5}'),
        frame(b"\x0b\xff\xfe"),
        frame(b""),
        req(12, {"cmd": "list"}),
        req(13, {"cmd": "big"}),
        req(14, {"cmd": "echo", "x": "done"}),
    ]
    got = run_serve(parts)
    assert [(s, st) for s, st, _ in got] == [
        (1, 0), (2, 4), (3, 5), (4, 7), (5, 6), (9, 1), (0, 2),
        (6, 3), (7, 3), (8, 3), (10, 3), (11, 3), (0, 3), (12, 7), (13, 7), (14, 0),
    ], got
    assert got[0][2] == {"echo": [1, "a"]}
    assert got[1][2] == {"error": "unknown command: nope"}
    assert got[2][2] == {"error": "x must be a number"}
    assert "broken" in got[3][2]["error"]
    assert got[4][2] == {"error": "log in first"}
    assert got[-1][2] == {"echo": "done"}
    for _, st, obj in got[1:-1]:
        assert st != 0 and isinstance(obj["error"], str)


def test_a_reply_body_is_written_as_it_is_not_copied_into_a_frame():
    # a 3 KB reply must not cost 3 KB more for a frame buffer around it
    class Parts:
        def __init__(self):
            self.writes = []

        def write(self, b):
            self.writes.append(b)

        async def drain(self):
            pass

    body = json.dumps({"x": "z" * 3000}).encode()
    w = Parts()
    asyncio.run(lp._reply(w, 7, lp.OK, body))
    assert any(b is body for b in w.writes), [len(b) for b in w.writes]
    got = responses(b"".join(bytes(b) for b in w.writes))
    assert got == [(7, 0, {"x": "z" * 3000})]


class _Into:
    # a writer into a buffer made before the heap is cut up: it takes each
    # piece's bytes before returning (as the boards' writers do)
    def __init__(self, size):
        self.out = bytearray(size)
        self.n = 0
        self.writes = 0
        self.largest = 0

    def write(self, b):
        k = len(b)
        self.out[self.n : self.n + k] = b
        self.n += k
        self.writes += 1
        self.largest = max(self.largest, k)

    async def drain(self):
        pass


def test_a_reply_larger_than_the_largest_free_block_is_sent():
    # below the floor the hub's `status` and `device_log_list` replies
    # (1.2-1.9 KB) failed with MemoryError: each was built as one JSON text
    # (and its bytes, a second copy). A reply is written in pieces now, so
    # it needs no block of its size.
    res = {"rows": [{"eui": "%016X" % i, "n": i, "state": "joined", "ok": True, "x": None} for i in range(24)],
           "text": 'a "quoted" \\ line\n\t\x01 é ☃', "big": "ab" * 400, "t": (1, -2), 5: "five"}
    want = json.loads(json.dumps(res))
    f = frame(b'\x2a{"cmd": "status"}')
    r = FrameReader()
    assert r.feed(f, 0, len(f)) == len(f) and r.event == lp.OK
    w = _Into(4200)

    async def status(req):
        return res

    hold = heapcut.cut()
    try:
        _run_now(lp._handle(r, w, status, lp.MAX_BODY))
    finally:
        del hold
        gc.collect()
    got = responses(bytes(w.out[: w.n]))
    assert got == [(0x2A, lp.OK, want)], got[0][:2]
    assert w.n > 2000 and w.largest <= 256, (w.n, w.largest)


def test_a_reply_is_json_dumps_text():
    # the pieces make the text json.dumps makes (the client parses either;
    # the bytes on the wire stay as they were)
    for res in ({"a": 1, "b": [1, 2, {"c": None}], "d": False, "e": "x\"y\\z\r\n\t\x1f", "f": "é☃"},
                {"x": "y" * 700, "z": -12345678901, "w": (3,), "v": 1.5, 7: [], "e": {}}):
        w = Writer()
        f = frame(b'\x03{"cmd": "x"}')
        r = FrameReader()
        r.feed(f, 0, len(f))

        async def d(req, res=res):
            return res

        asyncio.run(lp._handle(r, w, d, lp.MAX_BODY))
        want = frame(bytes((3, lp.OK)) + json.dumps(res).encode())
        assert w.out == want, (w.out, want)


def test_a_reply_too_long_or_not_json_is_an_internal_error():
    for res, why in (({"x": "y" * 5000}, "too long"), ({"x": object()}, "bad result"),
                     ({"x": b"\xff"}, "UTF-8")):
        w = Writer()
        f = frame(b'\x05{"cmd": "x"}')
        r = FrameReader()
        r.feed(f, 0, len(f))

        async def d(req):
            return res

        asyncio.run(lp._handle(r, w, d, lp.MAX_BODY))
        got = responses(w.out)
        assert got[0][:2] == (5, 7) and why in got[0][2]["error"], got


def test_serve_byte_at_a_time():
    stream = b"".join(req(i, {"cmd": "echo", "x": i}) + b"\n" for i in range(1, 21))
    parts = [stream[i : i + 1] for i in range(len(stream))]
    got = run_serve(parts, chunk=1)
    assert got == [(i, 0, {"echo": i}) for i in range(1, 21)]


def test_serve_truncated_frame_then_recovers():
    f = req(3, {"cmd": "echo", "x": 3})
    parts = [
        req(1, {"cmd": "echo", "x": 1}),
        f[:7], 120,  # stops mid-frame for longer than the timeout
        req(2, {"cmd": "echo", "x": 2}),
        b"\xc5\x00\x50", f, 120,  # stray header swallows a whole request
        req(4, {"cmd": "echo", "x": 4}),
        f[:4],  # EOF mid-frame: serve just returns
    ]
    got = run_serve(parts, timeout_ms=50)
    assert got == [
        (1, 0, {"echo": 1}),
        (0, 8, {"error": "truncated frame"}),
        (2, 0, {"echo": 2}),
        (0, 8, {"error": "truncated frame"}),
        (3, 0, {"echo": 3}),
        (4, 0, {"echo": 4}),
    ], got
