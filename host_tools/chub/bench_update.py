"""The hub's own update for `chub bench` (issue 19; docs/firmware-update.md),
on the emulated system (hub under micropython, head-end over the emulated
modem, 2 MB emulated flash):

  hub_update_s   a signed 400 KB image (the unix image, padded with a data
                 file to 400 KB) from the head-end's first CS05a piece over
                 the emulated WAN, through CS06 (activate now), the reset,
                 to READY on the new image
  hub_update_download_s  the CS05a part of that (pieces of 3800 bytes, each a
                 MAC'd GBCS command and its response)
  rollback_s     a broken image (its app raises before READY) on trial: from
                 its power-on to READY on the old image (its boot, the crash,
                 the board's restart, the chooser's rollback, the old image's
                 boot); the rig restarts the process at once where a real board
                 resets
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from chubcore import hubimage as hi
from chubcore.build import compile_module

IMAGE_BYTES = 400 * 1024


def image_variant(src: Path, dst: Path, version: str, pad_to: int = 0, app_source: str | None = None) -> Path:
    """A copy of a built image folder with another VERSION (version.mpy), given
    another app (app.mpy from app_source), padded with a data file to pad_to bytes."""
    shutil.copytree(src, dst)
    for name, text in (("version.py", f'VERSION = "{version}"\n'), ("app.py", app_source)):
        if text is not None:
            f = dst / name
            f.write_text(text)
            compile_module(f, dst / (name[:-3] + ".mpy"), [])
            f.unlink()
    doc = json.loads((dst / "image.json").read_text())
    doc["version"] = version
    size = sum((dst / m).stat().st_size for m in doc["modules"])
    if pad_to > size + 4096:
        (dst / "pad.bin").write_bytes(os.urandom(pad_to - size - 4096))
        doc["modules"] = sorted([*doc["modules"], "pad.bin"])
    (dst / "image.json").write_text(json.dumps(doc))
    return dst


def figures(heap: str, image: Path) -> dict[str, Any]:
    from chubcore.localport import LocalPortClient
    from hil.headend.hub_image import activate_result, activate_start, send_image
    from hil.system import EmulatedSystem

    key = hi.new_key()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        ota = hi.ota_wrap(hi.pack(image_variant(image, t / "v2", "0.2.0", pad_to=IMAGE_BYTES), key))
        broken = hi.pack(image_variant(image, t / "v3", "0.3.0", app_source="raise RuntimeError('broken')\n"), key)
        with EmulatedSystem(t / "sys", heap=heap, image=image, fresh=True, flash_blocks=512) as s:
            assert s.dut is not None and s.rig is not None
            s.call("image_anchor", anchor=hi.anchor_bytes(key.public_key()).hex(), min_version="0.1.0")
            he = s.headend
            he.wait_hello(timeout=30)
            t0 = time.monotonic()
            send_image(he, ota)
            t_dl = time.monotonic()
            # the reset may come before the CS06 response leaves the hub
            # (it follows from the outbox after the boot): powered on first
            cs06 = activate_start(he, ota, at=0)
            s.wait_until(lambda: not s.dut.alive, 15, "the hub resets into the new image")
            boot_again(s)
            t_ready = time.monotonic()
            if activate_result(cs06) != 0:
                raise RuntimeError("CS06 refused")
            if s.call("status")["version"] != "0.2.0":
                raise RuntimeError("the new image is not running")
            s.wait_until(lambda: s.call("image_status")["trial"] is None, 30, "the trial image confirmed")
            # the broken image over the local port (the path does not matter
            # here) on one installer session: a session per image_write call
            # cost ~0.5 s each, ~90 s for the ~180 pieces on busy cores
            with LocalPortClient(s.local_port_url, timeout=60) as c:
                st = hi.upload(c.call, broken)
            s.call("image_activate", total=st["total"], at=0)
            s.wait_until(lambda: not s.dut.alive, 15, "the hub resets into the broken image")
            s.drop_connection()
            t1 = time.monotonic()
            s.dut.start()
            s.wait_until(lambda: not s.dut.alive, 30, "the broken image dies")
            boot_again(s)
            t_back = time.monotonic()
            if s.call("image_status")["running"] != "a":
                raise RuntimeError("not rolled back to the confirmed image")
    return {"hub_update_s": round(t_ready - t0, 1), "hub_update_download_s": round(t_dl - t0, 1),
            "hub_update_image_kb": round(len(ota) / 1024), "rollback_s": round(t_back - t1, 2)}


def boot_again(s: Any) -> float:
    """Power the (stopped) hub of EmulatedSystem s on again once the rig saw
    its connections go; seconds to READY."""
    s.drop_connection()
    deadline = time.monotonic() + 5
    while any(s.rig.connected.values()) and time.monotonic() < deadline:
        time.sleep(0.02)
    pos = s.log.position
    s.dut.start()
    return s.dut.wait_ready(30, after=pos)
