# The hub's ZCL servers (han.zcl_servers) under MicroPython: the Time
# server's Read Attributes response against vectors/zigbee/vectors.json
# (zigpy-produced bytes), the Synchronized bit following the clock's
# validity, the ZCL 2000 epoch, Basic, and the error answers.
import json
import os

from han import peer
from han import zcl as Z
from han import zcl_clusters as ZC
from han import zcl_servers as S

HEAP = "1m"  # vectors.json is read whole
VEC_T = 770558400  # 2024-06-01T12:00:00Z in ZCL time (the vector's value)


class Clock:  # the contract of firmware/clock.py Clock: now() (unix), valid
    def __init__(self, now, valid):
        self._now = now
        self.valid = valid

    def now(self):
        return self._now


def _vec(name):
    with open(os.getenv("CHUB_VECTORS") + "/zigbee/vectors.json") as f:
        for fr in json.load(f)["zcl"]["frames"]:
            if fr["name"] == name:
                return bytes.fromhex(fr["frame"])
    raise AssertionError(name)


def _serve(server, frame):
    h, o = Z.parse_header(frame)
    return server.handle(h, frame[o:])


def test_time_read_matches_the_vector_when_synchronized():
    srv = S.AttributeServer(0x000A, Clock(VEC_T + S.UNIX_2000, True), lambda: 0)
    req = _vec("time_read_attributes_request")
    assert _serve(srv, req) == _vec("time_read_attributes_response")
    # the clock loses validity: Master only, same time
    srv.a = Clock(VEC_T + S.UNIX_2000, False)
    r = _serve(srv, req)
    h, recs = peer.zcl_decode(r)
    assert recs == [(0, 0, Z.T_UTC, VEC_T), (1, 0, Z.T_MAP8, ZC.TIME_STATUS_MASTER)], recs
    assert (h.tsn, h.direction, h.disable_default_response) == (0x06, 1, True)


def test_time_without_a_clock_uses_the_board_and_is_not_synchronized():
    srv = S.AttributeServer(0x000A, None, lambda: S.UNIX_2000 + 1234)
    h, recs = peer.zcl_decode(_serve(srv, b"\x00\x07\x00\x00\x00\x01\x00\x02\x00\x06\x00"))
    assert recs == [(0, 0, Z.T_UTC, 1234), (1, 0, Z.T_MAP8, 1), (2, 0, Z.T_INT32, 0), (6, 0, Z.T_UINT32, 1234)]
    # a board clock before 2000 (never set): UTCTime invalid
    srv = S.AttributeServer(0x000A, None, lambda: 5)
    h, recs = peer.zcl_decode(_serve(srv, b"\x00\x08\x00\x00\x00"))
    assert recs == [(0, 0, Z.T_UTC, 0xFFFFFFFF)]
    assert S.zcl_time(S.UNIX_2000) == 0 and S.zcl_time(None) == 0xFFFFFFFF
    assert S.zcl_time(S.UNIX_2000 + 10.75) == 10  # a clock with fractions of a second


def test_basic_and_unsupported_attributes():
    srv = S.AttributeServer(0x0000, b"1.2.3", lambda: 0x7450)
    r = _serve(srv, b"\x00\x10\x00" + b"\x00\x00\x04\x00\x02\x00\x00\x40\x34\x12")
    assert r == (b"\x18\x10\x01" + b"\x00\x00\x00\x20\x03" + b"\x04\x00\x00\x42\x09Open CHub"
                 + b"\x02\x00\x00\x20\x74" + b"\x00\x40\x00\x42\x051.2.3" + b"\x34\x12\x86"), r
    # the version as a str (the hub's: version.VERSION, no bytes copy held): the same frame
    assert _serve(S.AttributeServer(0x0000, "1.2.3", lambda: 0x7450),
                  b"\x00\x10\x00" + b"\x00\x00\x04\x00\x02\x00\x00\x40\x34\x12") == r


def test_errors_and_default_responses():
    srv = S.AttributeServer(0x000A, None, lambda: S.UNIX_2000)
    # odd attribute list: Default Response MALFORMED_COMMAND (even with DDR set)
    assert _serve(srv, b"\x10\x21\x00\x00") == b"\x18\x21\x0b\x00\x80"
    # a cluster-specific command: UNSUP_CLUSTER_COMMAND
    assert _serve(srv, b"\x01\x22\x05") == b"\x18\x22\x0b\x05\x81"
    # an unknown global command: UNSUP_GENERAL_COMMAND
    assert _serve(srv, b"\x00\x23\x11") == b"\x18\x23\x0b\x11\x82"
    # manufacturer-specific: UNSUP_MANUF_GENERAL_COMMAND, manufacturer code kept
    assert _serve(srv, b"\x04\x34\x12\x24\x00\x00\x00") == b"\x1c\x34\x12\x24\x0b\x00\x84"
    # write: READ_ONLY for a known attribute, UNSUPPORTED_ATTRIBUTE otherwise
    w = b"\x00\x25\x02" + b"\x00\x00\xe2\x01\x00\x00\x00" + b"\x99\x00\x20\x01"
    assert _serve(srv, w) == b"\x18\x25\x04\x88\x00\x00\x86\x99\x00"
    assert _serve(srv, b"\x00\x26\x05\x00\x00\xe2\x01\x00\x00\x00") is None  # no response
    # answers and reports are never answered
    assert _serve(srv, b"\x18\x27\x0a\x00\x00\x20\x03") is None
    assert _serve(srv, b"\x00\x28\x0b\x00\x00") is None
    assert S.default_rsp(Z.parse_header(b"\x10\x29\x00")[0], Z.SUCCESS) is None
    assert S.default_rsp(Z.parse_header(b"\x00\x29\x00")[0], Z.SUCCESS) == b"\x18\x29\x0b\x00\x00"
