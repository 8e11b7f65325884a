"""The emulated GSME's own meter data and its mirror reporting (ZSE Metering
mirror): RequestMirror, ConfigureMirror, attribute reports for Metering,
Prepayment and Price, daily readings, and PublishPrepaySnapshot.

Pure ZCL frame builders (no radio): the GSME emulator sends these frames to
the hub over the HAN; tests may hand them to the coordinator's ZCL servers.

`GsmeData.rtds()` is the data set the DCC RTDS 4.5.0 GPF responses show
(divisor 1000, summation 12345, tiers 1000..4000, credit 2 500 000 ...).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

METERING = 0x0702
PREPAYMENT = 0x0705
PRICE = 0x0700

T_MAP8, T_UINT16, T_UINT24, T_UINT32, T_UINT48, T_INT32, T_ENUM8, T_UTC = (
    0x18,
    0x21,
    0x22,
    0x23,
    0x25,
    0x2B,
    0x30,
    0xE2,
)
_SIZES = {T_MAP8: 1, T_UINT16: 2, T_UINT24: 3, T_UINT32: 4, T_UINT48: 6, T_INT32: 4, T_ENUM8: 1, T_UTC: 4}
EPOCH_2000 = 946684800
DAY = 86400

# Metering attribute ids
SUMMATION = 0x0000
BILL_TO_DATE = 0x0A00
READING_SNAPSHOT_TIME = 0x0007
UNIT = 0x0300
MULTIPLIER = 0x0301
DIVISOR = 0x0302
TIER = (0x0100, 0x0102, 0x0104, 0x0106)
BLOCK = (0x0700, 0x0701, 0x0702, 0x0703)


def t2000(y: int, m: int, d: int, hh: int = 0) -> int:
    import calendar

    return calendar.timegm((y, m, d, hh, 0, 0)) - EPOCH_2000


def encode_value(t: int, v: int) -> bytes:
    n = _SIZES[t]
    if v < 0:
        v += 1 << (8 * n)
    return v.to_bytes(n, "little")


def zcl(fc: int, seq: int, cmd: int, payload: bytes = b"") -> bytes:
    return bytes((fc, seq, cmd)) + payload


def records(items: list[tuple[int, int, int]]) -> bytes:
    return b"".join(struct.pack("<HB", a, t) + encode_value(t, v) for a, t, v in items)


@dataclass
class GsmeData:
    metering: dict[int, tuple[int, int]] = field(default_factory=dict)
    prepayment: dict[int, tuple[int, int]] = field(default_factory=dict)
    price: dict[int, tuple[int, int]] = field(default_factory=dict)
    daily: list[int] = field(default_factory=list)  # consumption per day
    daily_start: int = 0  # t2000 of the first day
    snapshots: list[tuple[int, bytes]] = field(default_factory=list)  # (t2000, sub-payload)
    seq: int = 0

    @classmethod
    def rtds(cls) -> GsmeData:
        d = cls()
        d.metering = {
            DIVISOR: (T_UINT24, 1000),
            MULTIPLIER: (T_UINT24, 1),
            UNIT: (T_ENUM8, 1),
            SUMMATION: (T_UINT48, 12345),
            BILL_TO_DATE: (T_UINT32, 3500000),
        }
        for i, a in enumerate(TIER):
            d.metering[a] = (T_UINT48, 1000 * (i + 1))
        for i, a in enumerate(BLOCK):
            d.metering[a] = (T_UINT48, i)
        d.prepayment = {
            0x0005: (T_INT32, 2500000),  # accumulated debt
            0x0002: (T_INT32, 500000),  # emergency credit remaining
            0x0001: (T_INT32, 2500000),  # credit remaining
            0x0211: (T_UINT32, 5000),  # debt amount 1
            0x0221: (T_UINT32, 5000),
            0x0231: (T_UINT32, 5000),
        }
        d.price = {0x0617: (T_MAP8, 0x50), 0x0616: (T_UINT16, 826)}
        d.daily_start = t2000(2014, 12, 22)
        d.daily = [48714, 17550, 49289, 2911, 58750, 13734, 49214, 11786, 42749, 46370, 5360]
        # 31 daily prepayment snapshots at 09:00, the last two as in the RTDS
        snaps = []
        for i in range(29):
            body = struct.pack("<6I", *(1000 + i * 6 + k for k in range(6)))
            snaps.append((t2000(2014, 12, 1, 9) + i * DAY, body))
        snaps.append((t2000(2014, 12, 30, 9), struct.pack("<6I", 130, 121, 223, 202, 50, 66)))
        snaps.append((t2000(2014, 12, 31, 9), struct.pack("<6I", 79, 17, 171, 69, 0xFFFFFFC0, 0xFFFFFF4B)))
        d.snapshots = snaps
        return d

    def _seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFF
        return self.seq

    # --- frames the GSME sends to the hub (cluster, ZCL frame) ------------------

    def request_mirror(self) -> tuple[int, bytes]:
        return METERING, zcl(0x09, self._seq(), 0x01)  # cluster-specific, server -> client

    def configure_mirror(self, issuer: int = 1, interval: int = 1800, notify: bool = True, scheme: int = 1):
        p = struct.pack("<I", issuer) + interval.to_bytes(3, "little") + bytes((1 if notify else 0, scheme))
        return METERING, zcl(0x09, self._seq(), 0x08, p)

    def report(self, cluster: int, attrs: dict[int, tuple[int, int]], snapshot_time: int | None = None):
        items = [(a, t, v) for a, (t, v) in sorted(attrs.items())]
        if snapshot_time is not None:
            items.append((READING_SNAPSHOT_TIME, T_UTC, snapshot_time))
        # global, server -> client; Metering is answered by a
        # MirrorReportAttributeResponse, the others by a Default Response
        fc = 0x18 if cluster == METERING else 0x08
        return cluster, zcl(fc, self._seq(), 0x0A, records(items))

    def reports(self, snapshot_time: int | None = None) -> list[tuple[int, bytes]]:
        return [
            self.report(METERING, self.metering, snapshot_time),
            self.report(PREPAYMENT, self.prepayment),
            self.report(PRICE, self.price),
        ]

    def daily_readings(self, base: int = 100000) -> list[tuple[int, tuple[int, bytes]]]:
        """(t2000, frame) summation reports at each midnight of the daily log:
        consecutive differences are the daily consumption values."""
        out = []
        s = base
        for i in range(len(self.daily) + 1):
            out.append((self.daily_start + i * DAY, self.report(METERING, {SUMMATION: (T_UINT48, s)})))
            if i < len(self.daily):
                s += self.daily[i]
        return out

    def snapshot_frames(self) -> list[tuple[int, bytes]]:
        """PublishPrepaySnapshot (Prepayment server -> client, cmd 0x01) for
        each daily snapshot: id, time, found, index, total, cause (general),
        payload type 0 (debt/credit status), sub-payload."""
        out = []
        for i, (t, body) in enumerate(self.snapshots):
            p = struct.pack("<IIBBBIB", i, t, len(self.snapshots), 0, 1, 1, 0) + body
            out.append((PREPAYMENT, zcl(0x19, self._seq(), 0x01, p)))
        return out


# --- on the emulated HAN (hil/devices) ------------------------------------------------


class MirrorReporter:
    """The GSME's side of the mirror on an EmulatedDevice: RequestMirror,
    ConfigureMirror, attribute reports to the mirror endpoint. Runs on the
    rig's loop (han.run(...)). The hub's answers to these server -> client
    frames are client -> server frames, so they are picked from the device's
    received frames by TSN."""

    def __init__(self, device, data: GsmeData) -> None:  # type: ignore[no-untyped-def]
        self.device = device
        self.data = data
        self.endpoint: int | None = None
        self.flags: list[int] = []  # functional notification flags of the last report response

    async def _exchange(self, cluster: int, frame: bytes, dst_ep: int = 1, timeout: float = 5.0):  # type: ignore[no-untyped-def]
        import asyncio

        n = len(self.device.frames)
        if not self.device.send(cluster, frame, dst_ep):
            raise ConnectionError("the GSME is not joined")
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            for cl, z in self.device.frames[n:]:
                if cl == cluster and z.tsn == frame[1]:
                    return z
            await asyncio.sleep(0.02)
        raise TimeoutError(f"no answer to ZCL 0x{cluster:04x} tsn {frame[1]}")

    async def setup(self) -> int:
        cl, f = self.data.request_mirror()
        z = await self._exchange(cl, f)
        if not z.cluster_specific or z.command != 0x01 or len(z.payload) != 2:
            raise ValueError(f"not a RequestMirrorResponse: {z}")
        ep = int.from_bytes(z.payload, "little")
        if ep == 0xFFFF:
            raise ValueError("the hub refused the mirror")
        self.endpoint = ep
        cl, f = self.data.configure_mirror()
        z = await self._exchange(cl, f, ep)
        if z.command != 0x0B or z.payload[1:2] != b"\x00":
            raise ValueError(f"ConfigureMirror refused: {z}")
        return ep

    async def report_all(self, snapshot_time: int | None = None) -> list[int]:
        assert self.endpoint is not None, "setup() first"
        for cl, f in self.data.reports(snapshot_time):
            z = await self._exchange(cl, f, self.endpoint)
            if cl == METERING and z.cluster_specific and z.command == 0x09:
                p = z.payload
                self.flags = [int.from_bytes(p[i : i + 4], "little") for i in range(1, len(p), 4)]
        return self.flags
