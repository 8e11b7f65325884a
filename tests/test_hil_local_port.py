"""HIL: the real hub's local port, through the rig, shrugs off malformed input."""

from __future__ import annotations

import json
import os
import time

from chubcore.localport import LocalPortError, crc16, encode_frame


def test_bad_crc_gets_error_then_hub_still_answers(hub) -> None:
    with hub.client() as c:
        frame = bytearray(encode_frame(bytes([7]) + b'{"cmd":"status"}'))
        frame[-1] ^= 0xFF
        c.send_raw(bytes(frame))
        assert c.read_response(timeout=5).status == 1
        assert c.call("status")["board"]


def test_unknown_command_and_bad_json(hub) -> None:
    with hub.client() as c:
        try:
            c.call("no_such_command")
        except LocalPortError as e:
            assert e.status == 4
        else:
            raise AssertionError("unknown command accepted")
        body = bytes([9]) + b"{not json"
        c.send_raw(encode_frame(body))
        assert c.read_response(seq=9, timeout=5).status == 3
        assert c.call("status")["version"]


def test_random_garbage_never_kills_the_hub(hub) -> None:
    with hub.client() as c:
        for i in range(20):
            c.send_raw(os.urandom(64 + i * 13))
        # a valid request after the storm is still answered
        assert c.call("status", timeout=10)["jobs"]["local_port"]["state"] == "running"
    assert hub.dut.alive


def test_oversize_frame_rejected(hub) -> None:
    with hub.client() as c:
        body = bytes([3]) + json.dumps({"cmd": "status", "pad": "x" * 5000}).encode()
        c.send_raw(b"\xc5" + len(body).to_bytes(2, "big") + body + crc16(body).to_bytes(2, "big"))
        assert c.read_response(timeout=5).status == 2
        assert c.call("status")["board"]


def test_a_frame_in_pieces_or_cut_short_loads_no_wait_for(hub) -> None:
    # a frame's deadline (2 s from its SOF, + 2 ms a byte) is kept without
    # asyncio.wait_for: a frame that comes in two reads and one that stops
    # (answered TRUNCATED) leave asyncio.funcs (0.34 KB of code, held once
    # loaded) unloaded, and the port answers after both. Main loaded it with
    # the first frame that took a second read.
    with hub.client() as c:
        f = encode_frame(bytes([5]) + b'{"cmd":"status"}')
        c.send_raw(f[:6])
        time.sleep(0.3)
        c.send_raw(f[6:])
        assert c.read_response(seq=5, timeout=5).status == 0
        t0 = time.monotonic()
        c.send_raw(f[:6])
        r = c.read_response(timeout=10)
        assert r.status == 8 and r.seq == 0
        assert 1.5 < time.monotonic() - t0 < 5
        assert "asyncio.funcs" not in c.call("status", modules=True)["modules"]
