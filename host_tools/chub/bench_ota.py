"""Meter firmware over the HAN: figures for `chub bench` (issue 19,
docs/ota-han.md, "Figures").

From bench/mp_ota_workload.py under micropython (the hub's OTA server on the
emulated LittleFS flash, the rig's zigpy-based OTA client asking for blocks):
  ota_flash_bytes_per_image_byte  bytes programmed into flash while an image
                        is taken in (ota_put chunks of 1 KB) and served to
                        one meter, over the image's size
  ota_flash_erased_bytes_per_image_byte  the same counting whole 4 KB
                        blocks erased
  ota_heap_kb           heap held by the OTA server above its code (its
                        state, the 4 KB intake stage) while an image is taken
                        in and served, after a collection
  ota_code_kb           the server's bytecode in the heap (run from source;
                        in flash on a frozen build)
From the emulated system (the hub under micropython, the NCP emulator, the
emulated ESME's OTA client):
  ota_han_kbps          image bytes per second the ESME downloads (Query
                        Next Image .. the last Image Block Response)
  ota_han_link_ratio    that over ota_han_link_limit_kbps, what the
                        115200-baud EZSP link allows for the same block
                        size after ASH/EZSP/APS/ZCL framing (link_limit_kbps
                        below states the arithmetic)
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from chubcore.paths import BENCH

WORKLOAD = BENCH / "mp_ota_workload.py"
CUT_EXIT = 75
IMAGE_BODY = 128 * 1024  # bytes of upgrade image in the workload figures (a meter image of modest size)
ESME_MF, ESME_TYPE = 0x1234, 0x0001


class PowerCut(Exception):
    pass


class OtaWorkload:
    """bench/mp_ota_workload.py as a process: call(op, **args) -> answer."""

    def __init__(self, flash: Path, cut: int = 0, heap: str = "256k") -> None:
        from hil.mprun import BOARD_UNIX, FIRMWARE, Micropython

        mp = Micropython((FIRMWARE, BOARD_UNIX), heap=heap)
        args = [str(WORKLOAD), str(flash)] + ([str(cut)] if cut else [])
        self.proc = mp.popen(args, stdin=subprocess.PIPE)
        self.cut_at: int | None = None
        line = self._line()
        if line != "READY":
            raise RuntimeError(f"workload did not start: {line!r} {self._stderr()}")

    def _stderr(self) -> str:
        try:
            return self.proc.stderr.read().decode(errors="replace")[-2000:] if self.proc.stderr else ""
        except Exception:
            return ""

    def _line(self) -> str:
        assert self.proc.stdout is not None
        while True:
            raw = self.proc.stdout.readline()
            if not raw:
                rc = self.proc.wait(30)
                if rc == CUT_EXIT:
                    raise PowerCut(self.cut_at)
                raise RuntimeError(f"workload exit {rc}: {self._stderr()}")
            s = raw.decode().rstrip("\n")
            if s.startswith("POWERCUT"):
                self.cut_at = int(s.split("=")[1])
                continue
            if s.startswith("R ") or s == "READY":
                return s

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        return json.loads(self._line()[2:])

    async def zcl(self, eui: str, frame: bytes) -> bytes:
        r = self.call("zcl", eui=eui, frame=frame.hex())
        self.last_alerts = r["alerts"]
        if r.get("error") or r["frame"] is None:
            raise RuntimeError(f"no answer: {r}")
        return bytes.fromhex(r["frame"])

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(30)


def load_image(w: OtaWorkload, slot: str, euis: list[str], image: bytes, chunk: int = 1024) -> dict[str, Any]:
    """Take an image into the hub, resuming from its durable offset."""
    st = w.call("durable", slot=slot)
    if st["st"] not in ("loading", "ready") or (st["st"] == "loading" and st["durable"] == 0):
        w.call("begin", slot=slot, euis=euis, size=len(image))
        st = {"durable": 0, "st": "loading"}
    off = st["durable"]
    while st["st"] == "loading" and off < len(image):
        st = w.call("put", slot=slot, offset=off, data=image[off:off + chunk].hex())
        if "error" in st:
            raise RuntimeError(st["error"])
        off += min(chunk, len(image) - off)
    return w.call("durable", slot=slot)


def workload_figures(heap: str = "256k") -> dict[str, Any]:
    from hil.meters.ota_client import OtaClient, make_image

    body = bytes((i * 31 + 7) & 0xFF for i in range(IMAGE_BODY))
    image = make_image(ESME_MF, ESME_TYPE, 0x00020000, body)
    eui = "00DB1234567890A4"
    with tempfile.TemporaryDirectory() as tmp:
        w = OtaWorkload(Path(tmp) / "flash.bin", heap=heap)
        try:
            load_image(w, "esme", [eui], image)
            c = OtaClient(lambda fr: w.zcl(eui, fr), ESME_MF, ESME_TYPE, 0x00010000)
            if not asyncio.run(c.run()) or not c.hash_ok():
                raise RuntimeError("bench: the OTA client did not get the image")
            k = w.call("counters")
        finally:
            w.close()
    return {
        "ota_flash_bytes_per_image_byte": round(k["bytes"] / len(image), 2),
        "ota_flash_erased_bytes_per_image_byte": round(k["erases"] * 4096 / len(image), 2),
        "ota_heap_kb": round(k["heap_peak"] / 1024, 1),
        "ota_code_kb": round(k["code"] / 1024, 1),
    }


def link_limit_kbps(block: int, baud: int = 115200) -> float:
    """Image bytes/s the EZSP UART allows for Image Block transfers of
    `block` data bytes, counting every byte each way per block:

    NCP -> host (the busier direction): incomingMessageHandler carrying the
    Image Block Request (EZSP header 5, callback fields 19 + the ZCL frame
    3 + 14), the sendUnicast response (5 + 2), messageSentHandler (5 + 17 +
    the ZCL response 3 + 14 + block it echoes); host -> NCP: the sendUnicast
    command (5 + 16 + ZCL frame 3 + 14 + block) and the ASH ACKs. Each ASH
    DATA frame adds control, CRC and flag (4 bytes) and byte stuffing (~1/64
    for random data); each ACK is 4 bytes; a UART byte is 10 bits.
    """
    zcl_rsp = 3 + 14 + block
    zcl_req = 3 + 14
    rx = (5 + 19 + zcl_req) + (5 + 2) + (5 + 17 + zcl_rsp)
    rx = rx * (1 + 1 / 64) + 3 * 4 + 1 * 4  # 3 DATA frames, the ACK of the host's one
    tx = (5 + 16 + zcl_rsp) * (1 + 1 / 64) + 4 + 3 * 4  # 1 DATA frame + ACKs for 3
    per_block_s = max(rx, tx) * 10 / baud
    return block / per_block_s / 1000 * 8


def system_figures(image_dir: Path | None, heap: str) -> dict[str, Any]:
    """The emulated ESME downloads an image from the hub over the emulated HAN."""
    from hil.meters.ota_rig import han_transfer

    r = han_transfer(image_dir, heap, body_len=8 * 1024)
    kbps = r["bytes"] * 8 / r["seconds"] / 1000
    limit = link_limit_kbps(r["block"])
    return {
        "ota_han_kbps": round(kbps, 1),
        "ota_han_link_limit_kbps": round(limit, 1),
        "ota_han_link_ratio": round(kbps / limit, 2),
    }


def figures(heap: str, image: Path | None = None) -> dict[str, Any]:
    t0 = time.monotonic()
    out = workload_figures()
    out.update(system_figures(image, heap))
    out["ota_bench_s"] = round(time.monotonic() - t0, 1)
    return out
