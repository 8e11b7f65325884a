# HAN link timings under MicroPython (issue 3 figures):
#   MICROPYPATH=firmware:boards/unix .venv/bin/micropython bench/mp_han.py
# Prints one JSON line:
#   ash_frame_us      ASH encode (randomise, CRC, stuff into the preallocated
#                     buffer) + decode (Decoder.feed: unstuff, CRC check,
#                     derandomise) of one DATA frame carrying a 100-byte EZSP
#                     frame (a sendUnicast with a 79-byte message)
#   ezsp_overhead_us  the host's cost of one EZSP command/response through
#                     Ezsp.command(): sequence number, frame encode, pending
#                     entry and Flag, the response decoded and matched as the
#                     transport hands it over; the transport answers at once (no ASH,
#                     no UART), so this is the EZSP layer alone
# each the median of RUNS batches of BATCH operations.
import asyncio
import json
import time

from han import ash, peer
from han import ezsp_frames as F
from han.ezsp import Ezsp

RUNS = 11
BATCH = 50


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def ash_frame_us():
    msg = bytes((i * 37 + 11) & 0xFF for i in range(79))
    ez = F.encode_frame(13, 0x21, "sendUnicast", (0, 0x1234, (0x0109, 0x0704, 1, 1, 0x0160, 0, 0), 7, msg))
    assert len(ez) == 100, len(ez)
    buf = bytearray(peer.BUF_SIZE)
    dec = ash.Decoder()
    ctl = peer.data_control(3, 5, False)
    ts = []
    for _ in range(RUNS):
        t = time.ticks_us()
        for _ in range(BATCH):
            n = ash.encode_frame(buf, ctl, ez)
            i = 0
            while i < n:
                i = dec.feed(buf, i, n)
                if dec.event == peer.EV_FRAME:
                    break
            if dec.event != peer.EV_FRAME:
                raise AssertionError("decode failed: %r" % dec.event)
        ts.append(time.ticks_diff(time.ticks_us(), t) / BATCH)
    if bytes(dec.data()) != ez:
        raise AssertionError("round trip changed the frame")
    return median(ts)


class Instant:
    """An EZSP transport whose NCP answers every command at once (the
    answer handed to the host's on_frame as han.ash.Ash hands it)."""

    def __init__(self, ver):
        self.ver = ver
        self.rsp = {}
        self.on_frame = None

    async def send(self, frame):
        seq, _fc, fid, _pos = F.decode_header(self.ver, frame)
        name = F.name_of(self.ver, fid)
        self.on_frame(bytes((seq,)) + self.rsp[name])


async def _ezsp_us():
    ver = 13
    t = Instant(ver)
    # response bodies without the sequence byte (prepared once, outside the timing)
    t.rsp["version"] = bytes(F.encode_frame(ver, 0, "version", (13, 2, 0x7450), peer.FC_RESPONSE))[1:]
    t.rsp["sendUnicast"] = bytes(F.encode_frame(ver, 0, "sendUnicast", (0, 9), peer.FC_RESPONSE))[1:]
    ez = Ezsp(t, desired=13)
    t.on_frame = ez._frame
    ez.ver = ver
    msg = bytes(range(64))
    aps = (0x0109, 0x0704, 1, 1, 0x0160, 0, 0)
    ts = []
    for _ in range(RUNS):
        t0 = time.ticks_us()
        for _ in range(BATCH):
            r = await ez.command("sendUnicast", 0, 0x1234, aps, 7, msg)
        ts.append(time.ticks_diff(time.ticks_us(), t0) / BATCH)
        if r != (0, 9):
            raise AssertionError(r)
    ez.close()
    return median(ts)


def main():
    a = ash_frame_us()
    e = asyncio.run(_ezsp_us())
    print(json.dumps({"ash_frame_us": round(a, 1), "ezsp_overhead_us": round(e, 1)}))


main()
