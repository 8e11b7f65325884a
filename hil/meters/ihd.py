"""An IHD on the emulated HAN that reads the GPF's mirror of the gas meter
over ZCL (Read Attributes of Metering / Prepayment / Price on the hub), as a
real In-Home Display shows gas consumption and credit, and the GPF's
tapped-off tariff and calendar (Get commands on Price / Calendar: the hub
answers with the Publish command it applied). The PPMID reads them the same
way (`Ihd(han.device("ppmid"))`)."""

from __future__ import annotations

from typing import Any

from hil.devices import zcl as Z

METERING = 0x0702
PREPAYMENT = 0x0705
PRICE = 0x0700
CALENDAR = 0x0707
GET_TARIFF_INFORMATION = 0x06  # Price: answered by PublishTariffInformation (0x04)
GET_CALENDAR = 0x00  # Calendar: answered by PublishCalendar (0x00)


_SIZES = {0x18: 1, 0x19: 2, 0x1B: 4, 0x20: 1, 0x21: 2, 0x22: 3, 0x23: 4, 0x25: 6, 0x2B: 4, 0x30: 1, 0xE2: 4}
_SIGNED = {0x28, 0x29, 0x2A, 0x2B}


def parse_read_attributes_rsp(p: bytes) -> dict[int, tuple[int, int | None, object]]:
    """attr -> (status, type, value); the metering types (uint24, uint48)
    included."""
    out: dict[int, tuple[int, int | None, object]] = {}
    o = 0
    while o < len(p):
        if o + 3 > len(p):
            raise ValueError("truncated read attributes record")
        a, st = int.from_bytes(p[o : o + 2], "little"), p[o + 2]
        o += 3
        if st != Z.SUCCESS:
            out[a] = (st, None, None)
            continue
        t = p[o]
        n = _SIZES.get(t)
        if n is None or o + 1 + n > len(p):
            raise ValueError(f"type 0x{t:02X} not handled or truncated")
        out[a] = (st, t, int.from_bytes(p[o + 1 : o + 1 + n], "little", signed=t in _SIGNED))
        o += 1 + n
    return out


class Ihd:
    def __init__(self, device: Any) -> None:
        self.device = device

    async def read(self, cluster: int, ids: list[int], timeout: float = 5.0) -> dict[int, tuple[int, int | None, object]]:
        """{attr: (status, type, value)} from the hub's mirror."""
        z = await self.device.request(cluster, Z.read_attributes(self.device.next_tsn(), ids), timeout)
        if z.cluster_specific or z.command != Z.READ_ATTRIBUTES_RSP:
            raise ValueError(f"not a Read Attributes Response: {z}")
        return parse_read_attributes_rsp(z.payload)

    async def gas(self) -> dict[str, object]:
        """What the display shows: kWh-style reading and credit."""
        m = await self.read(METERING, [0x0000, 0x0301, 0x0302, 0x0300])
        p = await self.read(PREPAYMENT, [0x0001, 0x0002])
        return {
            "summation": m[0x0000][2],
            "multiplier": m[0x0301][2],
            "divisor": m[0x0302][2],
            "unit": m[0x0300][2],
            "credit_remaining": p[0x0001][2],
            "emergency_credit": p[0x0002][2],
        }

    async def get(self, cluster: int, command: int, payload: bytes = b"", timeout: float = 5.0) -> Z.Zcl:
        """A Get command (cluster-specific, client -> server) to the hub; its
        answer (a Publish command, or a Default Response)."""
        return await self.device.request(cluster, Z.frame(0x01, self.device.next_tsn(), command, payload), timeout)

    async def tariff(self, timeout: float = 5.0) -> bytes | None:
        """The PublishTariffInformation payload the GPF holds, None when Not Found."""
        # GetTariffInformation: earliest start time 0, min issuer event id 0, number 1, tariff type 0
        z = await self.get(PRICE, GET_TARIFF_INFORMATION, bytes(8) + b"\x01\x00", timeout)
        if z.cluster_specific and z.from_server and z.command == 0x04:
            return bytes(z.payload)
        return None
