"""The steps of `chub flash` for one board (docs/flashing.md): a real board
gets MicroPython (esptool, optional) and the app image (mpremote), a reset
and the ready check; the emulated board (`--board unix`) is flashed by the
rig (hil/flash_unix.py).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from chubcore.build import board_spec
from chubcore.image_copy import FlashError, Progress, copy_image, image_files, open_transport, wait_ready
from chubcore.localport import LocalPortClient, LocalPortError

from .firmware_bin import check_firmware
from .flash_chip import flash_firmware


def flash_board(board: str, port: str, image: Path, firmware: Path | None, erase: bool, progress: Progress,
                ready_timeout: float = 30.0, heap: str | None = None) -> dict:
    """Flash `image` (and MicroPython from `firmware`, when given) onto
    `board` at `port`, reset it and check it is ready; -> what was written
    and the hub's status."""
    spec = board_spec(board)
    doc, _files = image_files(image)
    if doc.get("board") != board:
        raise FlashError(f"{image} is built for board {doc.get('board')!r}, not {board!r}: "
                         f"run chub build --board {board}")
    if board == "unix":
        if firmware is not None:
            raise FlashError("--firmware does not apply to the emulated board (its MicroPython is the unix port)")
        from hil.flash_unix import flash_unix

        return flash_unix(Path(port), image, erase, progress, heap=heap, ready_timeout=ready_timeout)
    out: dict[str, Any] = {}
    if firmware is not None:
        fw = check_firmware(firmware, spec)
        out["firmware"] = {"file": str(firmware), "project": fw.project, "version": fw.version}
        out["chip"] = flash_firmware(port, spec, fw, erase, progress)
        time.sleep(2)  # MicroPython's first boot formats the file system
        if not erase:
            # the old app on the file system boots on the new MicroPython
            # (always so on the frozen esp32_devkitc): its hub owns the console
            release_console(port, wait_s=ready_timeout)
    elif erase:
        raise FlashError("--erase wipes MicroPython too: give --firmware with it")
    else:
        release_console(port)
    t = open_transport(port)
    try:
        from mpremote.transport import TransportError

        try:
            t.enter_raw_repl(soft_reset=True)
        except TransportError as e:
            raise FlashError(f"no MicroPython REPL answered on {port}: {e} (flash MicroPython with --firmware)"
                             ) from None
        out["image"] = copy_image(t, image, "", progress)
        progress("boot", 0, 1)
        t.exec_raw_no_follow("import machine\nmachine.reset()")
    finally:
        t.close()
    out["status"] = wait_ready(port, doc, ready_timeout)
    progress("boot", 1, 1)
    return out


def release_console(port: str, wait_s: float = 3.0) -> bool:
    """A running hub owns its console (Ctrl-C disabled, binary frames): ask it
    (as the installer) to hand the console back to the REPL, for up to
    wait_s (a hub that is still booting answers later). The hub sets a flag
    in RTC memory and resets; the next boot stops at the REPL. The reset
    takes the S3's native USB console away and back (a new device node):
    this returns once the port is there again and the boot is done. No hub
    answering is fine: the board is then at the REPL or in its bootloader."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with LocalPortClient(port, timeout=3) as c:
                c.call("console_release")
            break
        except LocalPortError:
            return False
        except (OSError, TimeoutError):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)
    time.sleep(0.5)  # the hub resets 200 ms after its answer
    back = time.monotonic() + 15
    while port.startswith("/") and not os.path.exists(port) and time.monotonic() < back:
        time.sleep(0.2)
    time.sleep(1.5)  # the boot into the REPL
    return True
