"""An emulated PPMID (prepayment meter interface device) on the rig's HAN:
it sends a top-up for the gas meter (PCS01, message code 0x009B: a GBZ
Prepayment Consumer Top Up with a UTRN) as a GBCS command over its tunnel
to the hub, and keeps what the hub sends it back (the GSME's response,
routed by the hub once the sleepy GSME has executed the command). The
frames carry no MAC or signature: the hub's router reads only the grouping
header, and the emulated GSME answers by the hook `gsme_answer`.

Usage (on the rig's loop): `p = Ppmid(han.device("ppmid")); await p.send(top_up(1, p.eui, gsme_eui))`;
the GSME: `GsmeMeter(...).on_command.append(gsme_answer)`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from hil.headend.gbcs import parse_frame

PCS01 = 0x009B  # Apply Prepayment Top Up to a GSME using PPMID
UTRN = b"73612345678901234567"


def gbcs_frame(cra: int, counter: int, orig: bytes, recip: bytes, mc: int, payload: bytes) -> bytes:
    """A GBCS frame without MAC or signature (grouping header, payload, empty
    signature field)."""
    return (bytes((0xDF, 0x09, cra)) + counter.to_bytes(8, "big") + b"\x08" + orig + b"\x08" + recip + b"\x00"
            + b"\x02" + mc.to_bytes(2, "big") + bytes((len(payload),)) + payload + b"\x00")


def top_up(counter: int, ppmid: bytes, gsme: bytes) -> bytes:
    """PCS01: GBZ, one component: Prepayment (0x0705) Consumer Top Up (0x04):
    originating device 1 (PPMID), the UTRN."""
    zcl = bytes((0x01, counter & 0xFF, 0x04, 0x01, len(UTRN))) + UTRN
    comp = b"\x01\x00\x07\x05\x00" + bytes((len(zcl),)) + zcl
    return gbcs_frame(1, counter, ppmid, gsme, PCS01, b"\x01\x09\x01" + comp)


def response_for(cmd: bytes) -> bytes:
    """The GSME's response to a top-up: Consumer Top Up Response (result 0
    accepted, amount 5000, source 1), same counter, back to the originator."""
    f = parse_frame(cmd)
    rsp = bytes((0x09, f.counter & 0xFF, 0x03, 0x00)) + (5000).to_bytes(4, "little") + b"\x01"
    comp = b"\x01\x00\x07\x05\x00" + bytes((len(rsp),)) + rsp
    return gbcs_frame(2, f.counter, bytes(f.recipient), bytes(f.originator), PCS01, b"\x01\x09\x01" + comp)


def gsme_answer(cmd: bytes) -> list[bytes] | None:
    """GsmeMeter.on_command hook: a top-up gets its response."""
    try:
        return [response_for(cmd)] if parse_frame(cmd).message_code == PCS01 else None
    except Exception:  # noqa: BLE001 - not a GBCS frame: not ours
        return None


class Ppmid:
    def __init__(self, device: Any) -> None:
        self.device = device
        self.eui: bytes = device.node.eui
        self.received: list[bytes] = []  # what the hub sent it over a tunnel
        self.received_at: list[float] = []  # time.monotonic() of each
        self.arrived = asyncio.Event()
        device.on_tunnel_data = self._on_data

    async def _on_data(self, data: bytes) -> None:
        self.received.append(bytes(data))
        self.received_at.append(time.monotonic())
        self.arrived.set()

    async def send(self, frame: bytes, timeout: float = 5.0) -> bool:
        """The command over its tunnel to the hub (opened first if needed)."""
        if self.device.tunnel_id is None:
            await self.device.open_tunnel(timeout)
        return bool(self.device.tunnel_send(frame))
