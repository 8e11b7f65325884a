"""HIL: the real hub's local port, through the rig, shrugs off malformed input."""

from __future__ import annotations

import json
import os

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
