"""Hostile-input generation for the hub's byte parsers (ASH, EZSP, ZCL, ZSE
tunnel, AT lines, head-end link, local port), shared by
tests/test_fuzz_parsers.py and `chub bench` (fuzz_inputs, fuzz_crashes).

Seeds are valid inputs from independent encoders (the rig's ASH, bellows'
EZSP command table, hand-written ZCL/tunnel frames, the head-end server's link
codec, the host client's local-port framing, SIM7600 dialogue text); mutants
come from a seeded `random.Random`. `run_batch` runs bench/mp_fuzz_parsers.py
under micropython: per input "ok", the parser's own ValueError subclass, or
"CRASH". CORPUS (bench/fuzz_corpus/<parser>/) is the kept corpus: replayed by
`chub bench` and, in CI, by tests/mp/mp_fuzz.py.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

from chubcore.paths import BENCH, BOARDS, FIRMWARE

MP_PATH = [BENCH, FIRMWARE, BOARDS / "unix"]

CORPUS = BENCH / "fuzz_corpus"
PARSERS = ("ash", "ezsp", "zcl", "tunnel", "at", "link", "local_port")
ALLOWED = {
    "ash": {"AshError", "AshCrcError", "AshLengthError", "AshTooShort", "AshTooLong", "AshControlError",
            "AshEscapeError"},
    "ezsp": {"EzspError", "EzspTruncated", "EzspUnknownFrame", "EzspVersionError", "EzspFrameError"},
    "zcl": {"ZclError", "ZclTruncated", "ZclTypeError", "ZclValueError"},
    "tunnel": {"TunnelError", "TunnelOverflow", "NoSuchTunnel", "ZclError", "ZclTruncated", "ZclTypeError",
               "ZclValueError"},
    "at": {"ATFormatError"},
    "link": {"LinkError", "BadMagic", "BadType", "TooLong", "BadCrc", "BadPayload"},
    "local_port": {"FrameError"},
}
for _v in ALLOWED.values():
    _v.add("ok")

# totals over this session's runs (read by the bench and the report)
TALLY = {"inputs": 0, "crashes": 0}


# ---- seeds: valid inputs from independent encoders -----------------------------

def _ash_seeds(rnd: random.Random) -> list[bytes]:
    from hil.ncp import ash

    out = [ash.build(0xC0), ash.build(ash.RSTACK, bytes((2, ash.RESET_SOFTWARE))),
           ash.build(ash.ERROR, bytes((2, ash.ERROR_EXCEEDED_MAX_ACK_TIMEOUTS)))]
    for ack in range(8):
        out.append(ash.build(0x80 | ack))  # ACK
        out.append(ash.build(0xA0 | ack))  # NAK
    for i in range(24):
        data = ash.randomise(rnd.randbytes(rnd.randint(3, 60)))
        out.append(ash.build(((i & 7) << 4) | (i * 3 & 7), data))
    return out


def _ezsp_seeds(rnd: random.Random) -> list[bytes]:
    from bellows.ezsp.v13 import commands

    # the commands the hub uses (named in its frame table); the rest of
    # bellows' table is unknown to it and only reaches EzspUnknownFrame
    used = (FIRMWARE / "han" / "ezsp_frames.py").read_text()
    out = []
    for name, (fid, req, rsp) in commands.COMMANDS.items():
        if f'"{name}"' not in used:
            continue
        for fc, schema in ((0x00, req), (0x80, rsp)):
            # long enough for any fixed schema; the decoder takes what it needs
            params = rnd.randbytes(8 * (len(schema) if isinstance(schema, dict) else 1) + 40)
            out.append(bytes((rnd.randrange(256), fc, 0x01)) + struct.pack("<H", fid) + params)
    return out


def _zcl_seeds(rnd: random.Random) -> list[bytes]:
    tsn = rnd.randrange(256)
    return [
        bytes((0x00, tsn, 0x00)) + struct.pack("<3H", 0, 4, 5),  # read attributes
        bytes((0x18, tsn, 0x01)) + bytes.fromhex("0000 00 20 03 0400 00 42 05 41424344 45 0500 86"),
        bytes((0x18, tsn, 0x0A)) + bytes.fromhex("0000 25 010203040506"),  # report, uint48
        bytes((0x18, tsn, 0x0A)) + bytes.fromhex("0000 20 03 0100 21 3412 0200 23 78563412"),
        bytes((0x00, tsn, 0x06)) + bytes.fromhex("00 0000 25 0100 1000 01000000000000"),
        bytes((0x18, tsn, 0x07)) + bytes.fromhex("00"),  # configure reporting rsp: success
        bytes((0x18, tsn, 0x0B)) + bytes.fromhex("0A00"),  # default response
        bytes((0x18, tsn, 0x04)) + bytes.fromhex("86 0000"),  # write rsp, failure record
        bytes((0x04, 0x5E, 0x10, tsn, 0x00)) + struct.pack("<H", 1),  # manufacturer-specific
        bytes((0x09, tsn, 0x01)) + bytes.fromhex("0100"),  # request mirror rsp
        bytes((0x01, tsn, 0x00)) + bytes.fromhex("02 0000 00 0005"),  # request tunnel
        bytes((0x09, tsn, 0x00)) + bytes.fromhex("0100 00 0005"),  # request tunnel rsp
        bytes((0x19, tsn, 0x02)) + bytes.fromhex("0100 01"),  # transfer data error
    ]


def _tunnel_seeds(rnd: random.Random) -> list[bytes]:
    out = []
    for fc, cmd in ((0x01, 0x01), (0x19, 0x01), (0x11, 0x02), (0x01, 0x02)):
        tid = rnd.randrange(4)
        for data in (b"\x01", b"\x02\x00", b"\x02\x03" + rnd.randbytes(20), b"\x03" + rnd.randbytes(40)):
            out.append(bytes((fc, rnd.randrange(256), cmd)) + struct.pack("<H", tid) + data)
    return out


_AT_LINES = [
    b"+CSQ: 21,99", b"+CREG: 0,1", b"+CGREG: 2,5,\"1A2B\",\"01C3D4E5\",7", b"+CEREG: 1,\"00A1\",\"0001B2C3\",7",
    b"+CPSI: LTE,Online,234-15,0x1A2B,27449090,301,EUTRAN-BAND20,6300,5,5,-94,-1021,-760,11",
    b"+CCLK: \"26/11/22,02:13:05+00\"", b"+CTZV: +4,0", b"*PSUTTZ: 26/11/22,02:13:05\",\"+00\",0",
    b"+CPIN: READY", b"+CPIN: SIM PIN", b"RDY", b"PB DONE", b"+IPCLOSE: 0,1", b"+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY",
    b"+CIPRXGET: 1,0", b"+NETOPEN: 0", b"+CIPOPEN: 0,0", b"+CME ERROR: 10", b"+CME ERROR: SIM not inserted",
    b"+IP ERROR: Network is already opened", b"ERROR", b"OK", b"+CIPERROR: 4",
]


def _at_seeds(rnd: random.Random) -> list[bytes]:
    out = []
    for _ in range(30):
        lines = rnd.sample(_AT_LINES, rnd.randint(1, 4))
        text = b"".join(b"\r\n" + ln + b"\r\n" for ln in lines)
        k = rnd.randint(1, 40)
        out.append(text + b"\r\n+CIPRXGET: 2,0,%d,0\r\n" % k + rnd.randbytes(k) + b"\r\nOK\r\n")
        out.append(b"\r\n+RECEIVE,0,%d\r\n" % k + rnd.randbytes(k) + text)
        out.append(b"\r\n+IPD%d\r\n" % k + rnd.randbytes(k) + b"\r\n+NETOPEN: 0\r\n\r\nOK\r\n")
    return out


def _link_seeds(rnd: random.Random) -> list[bytes]:
    from hil.headend.server import frame

    out = []
    for _ in range(20):
        fs = [frame(1, rnd.randrange(2**32), bytes(8) + b"\xb9" + b"1.0.0"),
              frame(2, 1, struct.pack(">I", 1795000000)), frame(3, rnd.randrange(100), rnd.randbytes(rnd.randint(0, 300))),
              frame(4, rnd.randrange(100), bytes((rnd.randrange(3),))), frame(5, 2, struct.pack(">I", 1795000000)),
              frame(6, 3), frame(7, 3)]
        out.append(b"".join(rnd.sample(fs, rnd.randint(1, 4))))
    return out


def _local_seeds(rnd: random.Random) -> list[bytes]:
    import json

    from chubcore.localport import encode_frame

    reqs = [{"cmd": "status"}, {"cmd": "echo", "args": [1, "x", None]}, {"cmd": "int", "v": "12"},
            {"cmd": "int", "v": "x"}, {"cmd": "nope"}, {"cmd": 3}, [1, 2], "text"]
    out = []
    for _ in range(20):
        frames = [encode_frame(bytes((rnd.randrange(256),)) + json.dumps(r).encode())
                  for r in rnd.sample(reqs, rnd.randint(1, 3))]
        out.append(rnd.choice((b"", b"boot text\r\n")) + b"".join(frames))
    return out


SEEDS = {"ash": _ash_seeds, "ezsp": _ezsp_seeds, "zcl": _zcl_seeds, "tunnel": _tunnel_seeds,
         "at": _at_seeds, "link": _link_seeds, "local_port": _local_seeds}

INTERESTING = (0x00, 0x01, 0x02, 0x0A, 0x0D, 0x1A, 0x20, 0x2C, 0x30, 0x7D, 0x7E, 0x7F, 0x80, 0xC0, 0xFF)


def mutate(data: bytes, rnd: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.randint(1, 5)):
        if not b:
            b = bytearray(rnd.randbytes(rnd.randint(1, 40)))
            continue
        i = rnd.randrange(len(b))
        op = rnd.randrange(7)
        if op == 0:
            b[i] ^= 1 << rnd.randrange(8)
        elif op == 1:
            del b[i:]
        elif op == 2:
            b[i:i] = rnd.randbytes(rnd.randint(1, 8))
        elif op == 3:
            del b[i : i + rnd.randint(1, 8)]
        elif op == 4:
            b[i] = rnd.choice(INTERESTING)
        elif op == 5:
            j = rnd.randrange(len(b))
            b[i:i] = b[j : j + rnd.randint(1, 24)]
        else:  # a length field made huge or zero
            b[i : i + 2] = rnd.choice((b"\xff\xff", b"\x00\x00", b"\x10\x00", b"\x00\x10"))
    return bytes(b)


def run_batch(parser: str, inputs: list[bytes], tmp: Path) -> list[str]:
    from ..mprun import Micropython

    path = tmp / f"{parser}.txt"
    path.write_text("".join(b.hex() + "\n" for b in inputs))
    r = Micropython(MP_PATH, heap="512k", cwd=tmp).run(
        code=f"import mp_fuzz_parsers as m; m.fuzz({parser!r}, {str(path)!r})", timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    # parsers may log; results are the "R " lines
    out = [ln[2:] for ln in r.stdout.splitlines() if ln.startswith("R ")]
    assert len(out) == len(inputs), (len(out), len(inputs), r.stdout[-2000:], r.stderr[-2000:])
    return out


# Crashes found and reported to the owner, not yet fixed: (parser, result
# prefix). They still count in TALLY["crashes"]; test_known_crashes pins them.
KNOWN: dict[tuple[str, str], str] = {
    # ("at", "CRASH UnicodeError"): wan/sim7600.parse_cpsi on a non-ASCII +CPSI
    # reply - found by this fuzzer, fixed in the driver; kept as a regression test
}


def _known(parser: str, res: str) -> bool:
    return any(p == parser and res.startswith(k) for p, k in KNOWN)


def crashes_of(parser: str, inputs: list[bytes], results: list[str]) -> list[tuple[str, str]]:
    bad = [(b.hex(), res) for b, res in zip(inputs, results, strict=True) if res not in ALLOWED[parser]]
    TALLY["known"] = TALLY.get("known", 0) + sum(1 for _, res in bad if _known(parser, res))
    TALLY["inputs"] += len(inputs)
    TALLY["crashes"] += len(bad)
    return bad


def make_inputs(parser: str, seed: int, n: int) -> list[bytes]:
    rnd = random.Random(seed)
    seeds = SEEDS[parser](rnd)
    out = list(seeds)
    while len(out) < n:
        if rnd.random() < 0.1:
            out.append(rnd.randbytes(rnd.randint(0, 200)))
        else:
            out.append(mutate(rnd.choice(seeds), rnd))
    return out[:n]


