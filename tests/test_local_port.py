"""Local port end to end: the firmware's `serve` under micropython on a real
TCP connection, driven by the CPython LocalPortClient (pyserial socket://),
plus CRC cross-checks and a hypothesis fuzz of the firmware parser and
server against an independent model of the framing rules."""

from __future__ import annotations

import binascii
import json
import random
import re
import select
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chubcore.localport import (
    BAD_ARGS,
    BAD_CRC,
    BAD_REQUEST,
    INTERNAL,
    MORE,
    NOT_AUTHORISED,
    OK,
    TOO_LONG,
    TRUNCATED,
    UNKNOWN_COMMAND,
    FrameDecoder,
    LocalPortClient,
    LocalPortError,
    LocalPortTimeout,
    encode_frame,
)
from mpy import mp, run_mp

TRUNC_MS = 300

HUB = r"""
import asyncio
import sys
import local_port as lp

W = None


async def dispatch(req):
    cmd = req["cmd"]
    if cmd == "echo":
        return {"echo": req.get("x"), "seq_seen": True}
    if cmd == "add":
        return {"sum": int(req["a"]) + int(req["b"])}
    if cmd == "boom":
        raise RuntimeError("kaboom")
    if cmd == "auth":
        raise lp.NotAuthorised("installer not authenticated")
    if cmd == "say":
        # text on the console before the answer, as the hub's log lines are
        W.write(bytes.fromhex(req["hex"]))
        await W.drain()
        return {"said": len(req["hex"]) // 2}
    if cmd == "sleep":
        await asyncio.sleep_ms(req["ms"])
        return {"slept": req["ms"]}
    raise KeyError(cmd)


async def main():
    global W
    r, W = await asyncio.open_connection("127.0.0.1", int(sys.argv[1]))
    fr = await lp.serve(r, W, dispatch, timeout_ms=int(sys.argv[2]))
    print("SERVE RETURNED frames=%d errors=%d" % (fr.frames, fr.errors))


asyncio.run(main())
"""


class Hub:
    """micropython running `serve` on a connection to us, as on the unix board
    (the hub connects out to the rig), and a bridge that exposes it to the
    client on a second loopback port; `inject` adds bytes on the hub->client
    side as if the hub had printed them."""

    def __init__(self, tmp: Path) -> None:
        self.hub_l = socket.create_server(("127.0.0.1", 0))
        self.cli_l = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self.cli_l.getsockname()[1]}"
        script = tmp / "hub.py"
        script.write_text(HUB)
        self.proc = mp("128k").popen([str(script), str(self.hub_l.getsockname()[1]), str(TRUNC_MS)],
                                     stdin=None, stderr=subprocess.STDOUT)
        self.hub_l.settimeout(10)
        self.hub, _ = self.hub_l.accept()
        self.client: socket.socket | None = None
        self.lock = threading.Lock()
        self.stop = False
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()
        self.output: str | None = None

    def _pump(self) -> None:
        while not self.stop:
            socks = [self.cli_l, self.hub] + ([self.client] if self.client else [])
            ready, _, _ = select.select(socks, [], [], 0.05)
            for s in ready:
                if s is self.cli_l:
                    c, _ = self.cli_l.accept()
                    with self.lock:
                        if self.client:
                            self.client.close()
                        self.client = c
                elif s is self.hub:
                    data = self.hub.recv(65536)
                    if not data:
                        return
                    with self.lock:
                        if self.client:
                            self.client.sendall(data)
                elif s is self.client:
                    data = s.recv(65536)
                    if not data:
                        with self.lock:
                            s.close()
                            self.client = None
                    else:
                        self.hub.sendall(data)

    def inject(self, data: bytes) -> None:
        with self.lock:
            assert self.client is not None
            self.client.sendall(data)

    def finish(self) -> str:
        """Hang up on the hub: serve must return; its output."""
        if self.output is not None:
            return self.output
        self.stop = True
        self.thread.join(5)
        self.hub.shutdown(socket.SHUT_RDWR)
        self.hub.close()
        try:
            out, _ = self.proc.communicate(timeout=10)
        finally:
            self.proc.kill()
            self.hub_l.close()
            self.cli_l.close()
            if self.client:
                self.client.close()
        self.output = out.decode(errors="replace")
        assert self.proc.returncode == 0, self.output
        return self.output


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    h = Hub(tmp_path)
    try:
        yield h
    finally:
        out = h.finish()
    # every test also proves the server survived whatever it was sent
    assert "SERVE RETURNED" in out, out


@pytest.fixture
def client(hub: Hub) -> Iterator[LocalPortClient]:
    with LocalPortClient(hub.url, timeout=5.0) as c:
        yield c
        # still answering at the end of every test
        assert c.call("echo", x="last") == {"echo": "last", "seq_seen": True}


def raw_request(seq: int, obj: object) -> bytes:
    return encode_frame(bytes([seq]) + json.dumps(obj).encode())


def test_ok_and_many_calls(client: LocalPortClient) -> None:
    assert client.call("echo", x=1) == {"echo": 1, "seq_seen": True}
    rnd = random.Random(1)
    t0 = time.monotonic()
    for i in range(300):
        x = {"i": i, "s": "é✓" * rnd.randrange(5), "l": [rnd.random() > 0.5, None, -i]}
        assert client.call("echo", x=x)["echo"] == x
    rate = 300 / (time.monotonic() - t0)
    print(f"local port round trips over TCP: {rate:.0f}/s")
    assert client.call("add", a=2, b=40) == {"sum": 42}
    # bytes arguments travel as hex
    assert client.call("echo", x=b"\x00\xc5\xff")["echo"] == "00c5ff"
    big = "z" * 3900
    assert client.call("echo", x=big)["echo"] == big


def test_error_statuses_and_server_survives(client: LocalPortClient) -> None:
    cases = [
        (lambda: client.call("nope"), UNKNOWN_COMMAND, "nope"),
        (lambda: client.call("add", a="x", b=1), BAD_ARGS, ""),
        (lambda: client.call("add", a=[1], b=1), BAD_ARGS, ""),
        (lambda: client.call("auth"), NOT_AUTHORISED, "installer not authenticated"),
        (lambda: client.call("boom"), INTERNAL, "kaboom"),
        (lambda: client.call("add", a=1), INTERNAL, "KeyError"),  # a bug in a handler, not a bad command
    ]
    for fn, status, text in cases:
        with pytest.raises(LocalPortError) as ei:
            fn()
        assert ei.value.status == status, ei.value
        assert text in ei.value.message
        assert client.call("add", a=1, b=2) == {"sum": 3}
    with pytest.raises(ValueError):
        client.call("echo", x="y" * 5000)  # refused by the client: over 4096 bytes


def test_bad_crc(client: LocalPortClient) -> None:
    f = bytearray(raw_request(77, {"cmd": "echo"}))
    f[-1] ^= 0x01
    client.send_raw(bytes(f))
    r = client.read_response()
    assert (r.seq, r.status) == (77, BAD_CRC) and r.result == {"error": "bad CRC"}
    f = bytearray(raw_request(78, {"cmd": "echo", "x": 5}))
    f[10] ^= 0x20
    client.send_raw(bytes(f) + raw_request(79, {"cmd": "echo", "x": 6}))
    assert client.read_response().status == BAD_CRC
    r = client.read_response(79)
    assert (r.status, r.result["echo"]) == (OK, 6)


def test_oversize(client: LocalPortClient) -> None:
    client.send_raw(b"\xc5\x10\x01")  # 4097 bytes announced
    r = client.read_response()
    assert (r.seq, r.status) == (0, TOO_LONG)
    # a whole oversize frame: its body is then just bytes outside frames
    client.send_raw(b"\xc5\x13\x88" + b"A" * 5000 + b"\x00\x00")
    assert client.read_response().status == TOO_LONG


def test_bad_json(client: LocalPortClient) -> None:
    bodies = [b"\x21{not json", b"\x22[1,2]", b'\x23{"x":1}', b'\x24{"cmd":3}', b"\x25\xff\xfe{}", b"\x26"]
    for body in bodies:
        client.send_raw(encode_frame(body))
        r = client.read_response()
        assert (r.seq, r.status) == (body[0], BAD_REQUEST), body
        assert "error" in r.result
    client.send_raw(encode_frame(b""))
    assert client.read_response()[:2] == (0, BAD_REQUEST)


def test_truncated_frame_then_recovery(client: LocalPortClient) -> None:
    f = raw_request(40, {"cmd": "echo", "x": 1})
    t0 = time.monotonic()
    client.send_raw(f[:9])
    r = client.read_response(timeout=3)
    took = time.monotonic() - t0
    assert (r.seq, r.status) == (0, TRUNCATED)
    assert TRUNC_MS / 1000 * 0.9 < took < TRUNC_MS / 1000 + 1.5, took
    assert client.call("echo", x=2)["echo"] == 2
    # a stray header swallows the next request: the hub answers it after the
    # truncation timeout, having rescanned what it held
    client.send_raw(b"\xc5\x00\x90")
    assert client.call("echo", x=3, timeout=3)["echo"] == 3


def test_garbage_between_requests(client: LocalPortClient) -> None:
    rnd = random.Random(7)
    for i in range(30):
        junk = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 40)))
        client.send_raw(junk)
        assert client.call("echo", x=i)["echo"] == i
    client.send_raw(b"\r\n>>> import machine\r\n")
    assert client.call("echo", x="after text")["echo"] == "after text"


def test_console_text_is_skipped_and_kept(hub: Hub, client: LocalPortClient) -> None:
    seen: list[str] = []
    client.on_console = seen.append
    text = "1234 hub READY\r\n1240 ncp reset Łódź\n1250 modem +CSQ: 20,99\n"
    assert client.call("say", hex=text.encode().hex()) == {"said": len(text.encode())}
    assert client.console_text()[-3:] == ["1234 hub READY", "1240 ncp reset Łódź", "1250 modem +CSQ: 20,99"]
    assert seen == client.console_text()[-3:]
    # an unfinished line is kept too
    client.call("say", hex=b"partial line".hex())
    assert client.console_text()[-1] == "partial line"
    # binary noise with stray SOFs that announce plausible lengths in front
    # of the answer: the client finds the real frame without waiting them out
    hub.inject(b"\xc5\x00\x50noise\xc5\x00\x10")
    t0 = time.monotonic()
    assert client.call("echo", x="through noise")["echo"] == "through noise"
    assert time.monotonic() - t0 < 1.0
    # a frame in the middle of a console line
    client.call("say", hex=b"half a li".hex())
    hub.inject(b"ne\n")
    for _ in range(20):
        client.poll(0.1)
        if client.console_text()[-1].endswith("half a line"):
            break
    assert client.console_text()[-1].endswith("half a line")
    assert seen[-1] == client.console_text()[-1]


def test_timeout_then_late_answer_is_not_taken(client: LocalPortClient) -> None:
    with pytest.raises(LocalPortTimeout):
        client.call("sleep", ms=600, timeout=0.2)
    # the late answer to the abandoned request arrives first and is skipped
    assert client.call("echo", x="mine")["echo"] == "mine"


def test_no_hub_answer_times_out(tmp_path: Path) -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    with LocalPortClient(f"socket://127.0.0.1:{srv.getsockname()[1]}", timeout=0.3) as c:
        conn, _ = srv.accept()
        conn.sendall(encode_frame(b"\x00\x08" + json.dumps({"error": "truncated frame"}).encode()))
        t0 = time.monotonic()
        with pytest.raises(LocalPortTimeout, match="truncated frame"):
            c.call("status")
        assert time.monotonic() - t0 >= 0.29
        # what was sent is a well-formed request frame
        data = conn.recv(100)
        body = data[3:-2]
        assert data[0] == 0xC5 and int.from_bytes(data[1:3], "big") == len(body)
        assert binascii.crc_hqx(body, 0xFFFF) == int.from_bytes(data[-2:], "big")
        assert json.loads(body[1:]) == {"cmd": "status"} and 1 <= body[0] <= 255
        conn.close()
    srv.close()


def test_serve_returns_on_eof(hub: Hub) -> None:
    with LocalPortClient(hub.url) as c:
        assert c.call("echo", x=1)["echo"] == 1
    out = hub.finish()
    assert "SERVE RETURNED frames=1 errors=0" in out, out


def test_client_over_loop_url() -> None:
    # loop:// echoes what we send: our own request comes back as a frame
    # whose seq matches but which is not a response (its "status" is "{")
    with LocalPortClient("loop://", timeout=0.5) as c:
        with pytest.raises(LocalPortError):
            c.call("echo")


# ---- codec cross-checks -------------------------------------------------------


def test_crc_matches_binascii_under_micropython() -> None:
    rnd = random.Random(3)
    inputs = [b"", b"123456789"] + [rnd.randbytes(rnd.randrange(1, 300)) for _ in range(300)]
    code = (
        "import sys, binascii\nfrom local_frame import encode_frame\nfrom local_port import crc16\n"
        "for line in sys.stdin:\n"
        "    d = binascii.unhexlify(line.strip())\n"
        "    print('%04x' % crc16(d), binascii.hexlify(encode_frame(d)).decode())\n"
    )
    stdin = "".join(d.hex() + "\n" for d in inputs)
    r = run_mp(code=code, stdin=stdin.encode())
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().split()
    assert len(lines) == 2 * len(inputs)
    for d, crc, frame in zip(inputs, lines[0::2], lines[1::2], strict=True):
        assert int(crc, 16) == binascii.crc_hqx(d, 0xFFFF)
        assert bytes.fromhex(frame) == encode_frame(d)
    assert binascii.crc_hqx(b"123456789", 0xFFFF) == 0x29B1


def test_client_decoder_split_and_noise() -> None:
    frames = [bytes([i, 0]) + b'{"a":%d}' % i for i in range(1, 40)]
    stream = b"".join(b"log %d\n" % i + encode_frame(f) for i, f in enumerate(frames))
    for step in (1, 3, 17, len(stream)):
        dec = FrameDecoder()
        got = []
        text = b""
        for i in range(0, len(stream), step):
            for piece in dec.feed(stream[i : i + step]):
                if isinstance(piece, bytearray):
                    text += piece
                else:
                    got.append(piece)
        assert got == frames
        assert text == b"".join(b"log %d\n" % i for i in range(len(frames)))


# ---- fuzz: firmware parser and server vs a model of the framing rules ---------


def model(data: bytes, max_body: int, truncate_at_end: bool) -> list[list[object]]:
    """Events the framing rules give for a stream: a frame is SOF, length,
    body, CRC; after a bad frame the search restarts one byte after its SOF."""
    ev: list[list[object]] = []
    pos = 0
    while True:
        i = data.find(0xC5, pos)
        if i < 0:
            return ev
        size = int.from_bytes(data[i + 1 : i + 3], "big") if len(data) - i >= 3 else -1
        if size > max_body:
            ev.append(["E", TOO_LONG, 0])
            pos = i + 1
            continue
        if size < 0 or len(data) - i < size + 5:
            if not truncate_at_end:
                return ev
            ev.append(["E", TRUNCATED, 0])
            pos = i + 1
            continue
        body = data[i + 3 : i + 3 + size]
        if binascii.crc_hqx(body, 0xFFFF) != int.from_bytes(data[i + 3 + size : i + 5 + size], "big"):
            ev.append(["E", BAD_CRC, body[0] if body else 0])
            pos = i + 1
            continue
        ev.append(["F", body.hex()])
        pos = i + size + 5


FUZZ_MP = r"""
import sys, json, asyncio, binascii
import local_port as lp

class Reader:
    def __init__(self, data, step):
        self.data, self.step, self.pos = data, step, 0
    async def read(self, n):
        k = min(n, self.step)
        d = self.data[self.pos:self.pos + k]
        self.pos += len(d)
        return d

class Writer:
    def __init__(self):
        self.out = bytearray()
    def write(self, b):
        self.out += b
    async def drain(self):
        pass

async def dispatch(req):
    if req["cmd"] == "echo":
        return {"x": req.get("x")}
    raise KeyError(req["cmd"])

out = []
for c in json.load(open(sys.argv[1])):
    data = binascii.unhexlify(c["data"])
    step = c["step"]
    r = lp.FrameReader(c["max_body"])
    ev = []
    def take(chunk):
        off = 0
        while True:
            off = r.feed(chunk, off, len(chunk))
            if r.event is None:
                assert off == len(chunk)
                return
            if r.event == 0:
                ev.append(["F", binascii.hexlify(r.body).decode()])
            else:
                ev.append(["E", r.event, r.seq])
    for i in range(0, len(data), step):
        take(data[i:i + step])
    while r.in_frame():
        r.truncate()
        ev.append(["E", r.event, r.seq])
        take(b"")
    w = Writer()
    asyncio.run(lp.serve(Reader(data, step), w, dispatch, chunk=c["chunk"]))
    out.append({"events": ev, "skipped": r.skipped, "serve": binascii.hexlify(w.out).decode()})
print(json.dumps(out))
"""

request_st = st.builds(
    lambda seq, cmd, x: bytes([seq]) + json.dumps({"cmd": cmd, "x": x}).encode(),
    st.integers(0, 255),
    st.sampled_from(["echo", "other"]),
    st.one_of(st.integers(), st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)),
)
piece_st = st.one_of(
    st.binary(max_size=40),
    request_st.map(encode_frame),
    st.tuples(request_st, st.integers(0, 200), st.integers(1, 255)).map(
        lambda t: (lambda f: f[: t[1] % len(f)] + bytes([f[t[1] % len(f)] ^ t[2]]) + f[t[1] % len(f) + 1 :])(
            encode_frame(t[0])
        )
    ),
    st.tuples(st.integers(0, 255), st.integers(0, 255)).map(lambda t: bytes([0xC5, *t])),
    st.binary(max_size=70).map(encode_frame),
)
case_st = st.fixed_dictionaries(
    {
        "data": st.lists(piece_st, max_size=8).map(b"".join),
        "step": st.integers(1, 300),
        "chunk": st.integers(1, 200),
        "max_body": st.sampled_from([64, 4096]),
    }
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(case_st, min_size=1, max_size=25))
def test_fuzz_parser_and_server_against_model(cases: list[dict[str, object]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "cases.json"
        p.write_text(json.dumps([{**c, "data": c["data"].hex()} for c in cases]))  # type: ignore[union-attr]
        script = Path(tmp) / "fuzz.py"
        script.write_text(FUZZ_MP)
        r = run_mp([str(script), str(p)], heap="256k")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    results = json.loads(r.stdout.strip().splitlines()[-1])
    for c, res in zip(cases, results, strict=True):
        data: bytes = c["data"]  # type: ignore[assignment]
        assert res["events"] == model(data, c["max_body"], True), c  # type: ignore[arg-type]
        # the server at the default size: one answer per event, in order
        want = model(data, 4096, False)
        dec = FrameDecoder()
        # flow-control acknowledgements (status MORE, seq 0) are not answers
        answers = [a for a in dec.feed(bytes.fromhex(res["serve"])) if a[:2] != bytes((0, MORE))]
        assert all(isinstance(a, bytes) for a in answers)
        assert len(answers) == len(want), (c, answers, want)
        for a, w in zip(answers, want, strict=True):
            seq, status = a[0], a[1]
            assert isinstance(json.loads(a[2:]), dict)
            if w[0] == "E":
                assert [status, seq] == w[1:]
                continue
            body = bytes.fromhex(w[1])  # type: ignore[arg-type]
            try:
                text = body[1:].decode()
                req = json.loads(text)
                # strict UTF-8 in: a \\u escape of a surrogate, even a pair, is
                # refused (MicroPython would make it two surrogates); send UTF-8
                if re.search(r"(?:^|[^\\])(?:\\\\)*\\u[dD][89a-fA-F][0-9a-fA-F]{2}", text):
                    req = None
            except ValueError:
                req = None
            if isinstance(req, dict) and isinstance(req.get("cmd"), str):
                assert (seq, status) == (body[0], OK if req["cmd"] == "echo" else UNKNOWN_COMMAND)
            else:
                # MicroPython's JSON parser may be laxer than CPython's: never an internal error
                assert status in (OK, BAD_REQUEST, UNKNOWN_COMMAND) and seq == (body[0] if body else 0)


def test_an_error_names_its_status_once() -> None:
    # the hub's message may start with the status's own name already
    e = LocalPortError(INTERNAL, "internal error: KeyError 'x'")
    assert str(e) == "internal error: KeyError 'x'"
    assert str(LocalPortError(BAD_ARGS, "eui: want 16 hex digits")) == "bad arguments: eui: want 16 hex digits"
