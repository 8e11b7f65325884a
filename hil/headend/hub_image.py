"""The head-end's side of CS05a / CS06 for the hub's own image
(docs/firmware-update.md): the OTA Upgrade Image (chubcore.hubimage.ota_wrap)
in pieces, each a MAC'd GBCS command to the CHF with a DLMS action on the
Image transfer object (class 18, 0-0:44.0.0.255): method 2 {offset, bytes}
(the response says the offset the hub wants next; the last piece's result
says whether the whole verified), and CS06's
method 4 {Manufacturer Image Hash, activation UTC}.

The meters' images (CS05b ESME/GSME, CS05c PPMID; docs/ota-han.md) go the
same way to the hub's HAN OTA image store: project-local message codes
0x7F06 / 0x7F07, Image transfer objects 0-0:44.0.1.255 / 0-0:44.0.2.255,
method 2 {offset, bytes, the target devices' EUIs}: `send_meter_image`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future

from chubcore.dcc import ACB

from .gbcs import RTDS_CHF, Frame, HeadEndError, _enclen, decode_access_response
from .server import HeadEndServer

MC_CS05A = 0x7F05  # project-local (firmware/chf/usecases.py)
MC_CS06 = 0x0012
OBIS = bytes([0, 0, 44, 0, 0, 255])
PIECE = 3800  # bytes of image per command: the GBCS frame stays under the link's 4096
MC_CS05B, MC_CS05C = 0x7F06, 0x7F07  # project-local (firmware/chf/usecases.py)
OBIS_METER_IMAGE = {MC_CS05B: bytes([0, 0, 44, 0, 1, 255]), MC_CS05C: bytes([0, 0, 44, 0, 2, 255])}


def octets(b: bytes) -> bytes:
    return b"\x09" + _enclen(len(b)) + b


def u32(v: int) -> bytes:
    return b"\x06" + v.to_bytes(4, "big")


def precommand(mc: int, method: int, data: bytes, obis: bytes = OBIS) -> bytes:
    """The unprotected command to the CHF (the head-end's rebuild puts in the
    hub's CHF for the RTDS one, a fresh counter and the MAC)."""
    payload = (b"\xd9" + bytes(4) + b"\x00" + b"\x01" + b"\x03" + (18).to_bytes(2, "big") + obis + bytes([method])
               + b"\x01" + data)
    f = Frame(cra=1, counter=0, originator=ACB, recipient=RTDS_CHF, date_time=None,
              other_info=mc.to_bytes(2, "big"), payload=payload, signature=None)
    return f.header_and_payload() + b"\x00"


def _result(reply) -> tuple[int, object]:
    r = decode_access_response(reply.frame.payload)
    return r.results[0][1], (r.data[0] if r.data else None)


def send_image(server: HeadEndServer, ota: bytes, piece: int = PIECE,
               progress: Callable[[int, int], None] | None = None, timeout: float = 30.0) -> None:
    """CS05a: the OTA image from where the hub says it is (the last piece verifies it).
    HeadEndError when the hub refuses it."""
    off = 0
    first = True
    while off < len(ota) or first:
        first = False
        data = b"\x02\x02" + u32(off) + octets(ota[off:off + piece])
        code, val = _result(server.send_command(precommand(MC_CS05A, 2, data), timeout))
        if code != 0:
            raise HeadEndError(f"CS05a piece at {off} refused (result {code})")
        nxt = val[1] if isinstance(val, tuple) else val
        if not isinstance(nxt, int) or nxt <= off and off < len(ota):
            raise HeadEndError(f"the hub stopped taking the image at {off} ({val!r})")
        off = nxt
        if progress:
            progress(off, len(ota))


def meter_piece(mc: int, off: int, piece: bytes, euis: list[str]) -> bytes:
    """One CS05b/CS05c command: {offset, bytes, the targets' EUIs (8 bytes each)}."""
    targets = b"".join(bytes.fromhex(e) for e in euis)
    return precommand(mc, 2, b"\x02\x03" + u32(off) + octets(piece) + octets(targets), OBIS_METER_IMAGE[mc])


def send_meter_image(server: HeadEndServer, mc: int, ota: bytes, euis: list[str], piece: int = PIECE,
                     start: int = 0, stop: int | None = None, timeout: float = 30.0) -> int:
    """CS05b (mc MC_CS05B, ESME or GSME targets) / CS05c (MC_CS05C, PPMID):
    the OTA image in pieces from `start`, going on from the offset the hub
    answers, until it has `stop` bytes (default all); -> the hub's last
    answer. HeadEndError when the hub refuses a piece."""
    off, end = start, len(ota) if stop is None else stop
    stuck = False
    while True:
        code, val = _result(server.send_command(meter_piece(mc, off, ota[off:off + piece], euis), timeout))
        if code != 0:
            raise HeadEndError(f"CS05 piece at {off} refused (result {code})")
        if not isinstance(val, tuple) or not isinstance(val[1], int):
            raise HeadEndError(f"CS05 answer {val!r} is not an offset")
        if val[1] >= end:
            return val[1]
        if val[1] == off and stuck:
            raise HeadEndError(f"the hub stopped taking the image at {off}")
        stuck = val[1] == off
        off = val[1]


def activate(server: HeadEndServer, ota: bytes, at: int = 0, timeout: float = 30.0) -> int:
    """CS06: activate the image whose Manufacturer Image Hash ends `ota` at UTC `at`; the result code.
    For an activation now (the hub resets) activate_start / activate_result."""
    return activate_result(activate_start(server, ota, at, timeout), timeout)


def activate_start(server: HeadEndServer, ota: bytes, at: int = 0, timeout: float = 60.0) -> Future:
    """CS06 sent, not awaited: the reply's future (activate_result). An
    activation now resets the hub, and on a busy machine the reset can come
    before the response leaves the hub: it waits in the hub's outbox and goes
    after the next boot, so the caller powers the hub on again, then takes
    the result (waiting for it first, the hub never powered on, was the bare
    TimeoutError of a CI run of the whole bench)."""
    assert server.loop is not None
    data = b"\x02\x02" + octets(ota[-32:]) + u32(at)
    return asyncio.run_coroutine_threadsafe(server.asend_command(precommand(MC_CS06, 4, data), timeout),
                                            server.loop)


def activate_result(fut: Future, timeout: float = 60.0) -> int:
    """The result code of activate_start's CS06 (its response within `timeout` s of the call)."""
    try:
        reply = fut.result(timeout + 5)
    except TimeoutError as e:
        if fut.done():
            raise
        raise TimeoutError(f"head-end: CS06 not finished within {timeout + 5} s") from e
    code, _ = _result(reply)
    return code
