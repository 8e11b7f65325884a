"""The steps of `chub flash` for one board (docs/flashing.md): a real board
gets MicroPython (esptool, optional) and the app image (mpremote), a reset
and the ready check; the emulated board (`--board unix`) is flashed by the
rig (hil/flash_unix.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .core.build import board_spec
from .core.image_copy import FlashError, Progress, copy_image, image_files, open_transport, wait_ready
from .core.localport import LocalPortClient, LocalPortError
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


def release_console(port: str) -> bool:
    """A running hub owns its console (Ctrl-C disabled, binary frames): ask it
    (as the installer) to hand the console back to the REPL. No hub answering
    is fine: the board is then at the REPL or in its bootloader."""
    try:
        with LocalPortClient(port, timeout=3) as c:
            c.call("console_release")
    except (LocalPortError, OSError, TimeoutError):
        return False
    time.sleep(1.5)  # the soft reset into the REPL
    return True
