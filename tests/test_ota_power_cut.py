"""Power cuts at every flash block write of a meter image's way through the
hub (docs/ota-han.md, "Proof"): the image taken in (1 KB chunks), served in
blocks to the meter's OTA client, Upgrade End. The hub runs
bench/mp_ota_workload.py on the emulated LittleFS flash with CUT_AFTER=n;
after the cut a fresh process remounts the same flash and the scenario goes
on. The meter (the rig's zigpy client) keeps its own memory, as a meter
does across the hub's power cuts. For every n: the intake resumes from the
durable offset (never more than one 4 KB stage plus a chunk sent again),
the meter never restarts its download from zero, it never activates before
it holds the whole, hash-checked image, and it ends with the image and the
hub with the transfer recorded (CCS08 hook called)."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from chub.bench_ota import OtaWorkload, PowerCut
from hil.meters.ota_client import OtaClient, make_image

EUI = "00DB1234567890A4"
MF, IT = 0x1234, 0x0001
V_OLD, V_NEW = 0x00010000, 0x00020000
IMAGE = make_image(MF, IT, V_NEW, bytes((i * 37 + 1) & 0xFF for i in range(10 * 1024)))
CHUNK = 1024


class Scenario:
    def __init__(self, flash: Path) -> None:
        self.flash = flash
        self.client: OtaClient | None = None
        self.sent = 0  # image bytes the host sent to the hub
        self.begins = 0
        self.alerts: list[list] = []
        self.early_activation: list[bool] = []
        self.hub: OtaWorkload | None = None

    async def _zcl(self, fr: bytes) -> bytes:
        assert self.hub is not None
        a = await self.hub.zcl(EUI, fr)
        self.alerts += self.hub.last_alerts
        return a

    def step(self, w: OtaWorkload) -> None:
        """The whole scenario from where it is; raises PowerCut."""
        self.hub = w
        st = w.call("durable", slot="esme")
        if st["st"] is None or (st["st"] == "loading" and st["durable"] == 0):
            w.call("begin", slot="esme", euis=[EUI], size=len(IMAGE))
            self.begins += 1
            st = {"durable": 0, "st": "loading"}
        assert st["st"] in ("loading", "ready"), st
        off = st["durable"]
        while st["st"] == "loading":
            chunk = IMAGE[off:off + CHUNK]
            self.sent += len(chunk)
            st = w.call("put", slot="esme", offset=off, data=chunk.hex())
            assert "error" not in st, st
            off += len(chunk)
        if self.client is None:
            self.client = OtaClient(self._zcl, MF, IT, V_OLD)
        c = self.client
        # the meter is asked to activate at every step: only a whole, checked image may run
        self.early_activation.append(c.activate())
        asyncio.run(c.run())

    def run(self, cut: int) -> None:
        w = OtaWorkload(self.flash, cut)
        try:
            self.step(w)
            w.close()
            return
        except PowerCut:
            pass
        w = OtaWorkload(self.flash)
        self.step(w)
        self.counters = w.call("counters")
        w.close()


def check(s: Scenario) -> None:
    c = s.client
    assert c is not None and c.verified == V_NEW and bytes(c.image) == IMAGE and c.hash_ok()
    assert c.restarts == 1, f"the download started from zero {c.restarts} times"
    assert not any(s.early_activation), "activated before the image was whole and checked"
    assert s.begins <= 2 and s.sent <= len(IMAGE) + 4096 + CHUNK, (s.begins, s.sent)
    assert [EUI, f"{V_NEW:08x}", 0] in s.alerts
    assert c.activate() and c.version == V_NEW


def clean_writes(tmp: Path) -> int:
    s = Scenario(tmp / "clean.bin")
    w = OtaWorkload(s.flash)
    s.step(w)
    n = w.call("counters")["writes"]
    w.close()
    check(s)
    return n


def cut_and_check(tmp: Path, n: int) -> str | None:
    s = Scenario(tmp / f"cut{n}.bin")
    try:
        s.run(n)
        check(s)
        return None
    except (AssertionError, RuntimeError) as e:
        return f"cut {n}: {e}"[:600]
    finally:
        s.flash.unlink(missing_ok=True)


def test_cut_at_every_block_write(tmp_path: Path) -> None:
    total = clean_writes(tmp_path)
    assert 10 <= total <= 400, f"scenario size drifted: W={total}"
    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        fails = [r for r in pool.map(lambda n: cut_and_check(tmp_path, n), range(1, total + 1)) if r]
    assert not fails, f"{len(fails)} of {total} cuts failed:\n" + "\n".join(fails[:10])


def test_checker_rejects_a_restart_from_zero(tmp_path: Path) -> None:
    s = Scenario(tmp_path / "f.bin")
    w = OtaWorkload(s.flash)
    s.step(w)
    w.close()
    assert s.client is not None
    s.client.restarts = 2
    with pytest.raises(AssertionError, match="from zero"):
        check(s)


@pytest.mark.parametrize("blocks", [1, 40, 117, 222])
def test_hub_killed_mid_transfer(tmp_path: Path, blocks: int) -> None:
    # the hub loses power between two Image Block Responses (no flash write
    # in flight: SIGKILL); after the reboot the meter asks for the next block
    # from where it was
    s = Scenario(tmp_path / "f.bin")
    w = OtaWorkload(s.flash)
    s.hub = w
    st = w.call("begin", slot="esme", euis=[EUI], size=len(IMAGE))
    assert st == {}
    for off in range(0, len(IMAGE), CHUNK):
        w.call("put", slot="esme", offset=off, data=IMAGE[off:off + CHUNK].hex())
    c = s.client = OtaClient(s._zcl, MF, IT, V_OLD)
    assert asyncio.run(c.query())
    asyncio.run(c.fetch(blocks))
    at = c.offset
    w.proc.kill()
    w.proc.wait(10)
    assert not c.activate()
    w = OtaWorkload(s.flash)
    s.hub = w
    asyncio.run(c.run())
    assert c.restarts == 1 and c.blocks == -(-len(IMAGE) // 47) and at > 0
    assert c.verified == V_NEW and c.activate()
    w.close()
