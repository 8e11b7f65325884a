"""The emulated devices' side of CBKE: the Key Establishment cluster
(0x0800) client, the initiator of SE 1.2 Annex C, with its crypto in
hil.ncp.cbke (the same code as the emulated NCP's, run for the device)."""

from __future__ import annotations

import struct
import time
from typing import Any

from hil.ncp.cbke import Credentials, Party, ct_equal

from . import zcl as Z
from .device import EmulatedDevice

KEY_ESTABLISHMENT = 0x0800
INITIATE, EPHEMERAL, CONFIRM, TERMINATE = 0, 1, 2, 3


async def establish(dev: EmulatedDevice, creds: Credentials, timeout: float = 20.0) -> dict[str, Any]:
    """Run one CBKE with the hub (the device initiates). Returns {ok,
    status (Terminate status or None), key (the new TC link key), s (wall
    time), device_s (the device's own crypto time)}; on success the node's
    link key becomes the new key."""
    suite = creds.suite
    party = Party(creds)
    t0 = time.perf_counter()
    dev_s = 0.0

    async def ask(cmd: int, payload: bytes) -> Z.Zcl:
        frame = bytes((Z.CLUSTER_SPECIFIC, dev.next_tsn(), cmd)) + payload
        return await dev.request(KEY_ESTABLISHMENT, frame, timeout)

    def out(ok: bool, status: int | None, key: bytes | None = None) -> dict[str, Any]:
        return {"ok": ok, "status": status, "key": key, "s": time.perf_counter() - t0, "device_s": dev_s}

    z = await ask(INITIATE, struct.pack("<HBB", suite.number, 10, 10) + creds.cert)
    if z.command == TERMINATE:
        party.clear(False)
        return out(False, z.payload[0])
    their_suite = struct.unpack("<H", z.payload[:2])[0]
    their_cert = z.payload[4:]
    if their_suite != suite.number or len(their_cert) != suite.cert_len:
        return out(False, None)
    t = time.perf_counter()
    eph = party.generate()
    dev_s += time.perf_counter() - t
    z = await ask(EPHEMERAL, eph)
    if z.command == TERMINATE:
        return out(False, z.payload[0])
    t = time.perf_counter()
    macu, macv = party.calculate(True, their_cert, z.payload)
    dev_s += time.perf_counter() - t
    z = await ask(CONFIRM, macu)
    if z.command == TERMINATE:
        party.clear(False)
        return out(False, z.payload[0])
    if not ct_equal(z.payload, macv):
        party.clear(False)
        return out(False, None)
    got = party.clear(True)
    assert got is not None
    dev.node.link_key = got[1]
    return out(True, None, got[1])
