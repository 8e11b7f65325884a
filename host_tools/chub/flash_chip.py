"""esptool on a real board's chip (docs/flashing.md): detect the chip through
its ROM bootloader (checked against the board), run esptool's flasher stub,
write the MicroPython .bin at the board's offset (compressed, block by block)
and verify it by MD5 on the chip.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Any

from chubcore.image_copy import FlashError, Progress

from .firmware_bin import Firmware


def connect_chip(port: str, spec: dict, baud: int = 460800) -> Any:
    """Detect the chip on `port` (esptool, through its ROM bootloader) and
    check it is the board's; returns the loader running esptool's stub."""
    import esptool.cmds
    import serial
    from esptool.util import FatalError

    try:
        esp = esptool.cmds.detect_chip(port, 115200, "default-reset", False, 3)
    except (FatalError, serial.SerialException, OSError) as e:
        msg = str(e)
        if isinstance(e, serial.SerialException | OSError) or "could not open port" in msg.lower():
            raise FlashError(f"cannot open {port}: {msg}") from None
        raise FlashError(f"no ESP32 bootloader answered on {port} ({msg}); hold BOOT while pressing RESET "
                         "and try again") from None
    if esp.CHIP_NAME != spec["chip"]:
        raise FlashError(f"the chip on {port} is an {esp.CHIP_NAME}, but board {spec['name']} has an {spec['chip']}"
                         f": wrong board (--board) or wrong port")
    try:
        esp = esp.run_stub()
        if baud != 115200:
            esp.change_baud(baud)
    except FatalError as e:
        raise FlashError(f"the {esp.CHIP_NAME} on {port} did not take esptool's flasher stub: {e}") from None
    return esp


def flash_size(esp: Any) -> int:
    size_id = (esp.flash_id() >> 16) & 0xFF
    return 1 << size_id if 0x12 <= size_id <= 0x1A else 0


def write_verified(esp: Any, offset: int, data: bytes, progress: Progress) -> None:
    """Compressed write of `data` at `offset`, then the chip's MD5 must match."""
    from esptool.util import FatalError

    comp = zlib.compress(data, 9)
    try:
        blocks = esp.flash_defl_begin(len(data), len(comp), offset)
        size = esp.FLASH_WRITE_SIZE
        for seq in range(blocks):
            esp.flash_defl_block(comp[seq * size : (seq + 1) * size], seq, timeout=30)
            progress("write", min((seq + 1) * size, len(comp)), len(comp))
        esp.flash_defl_finish(reboot=False)
        progress("verify", 0, len(data))
        got = esp.flash_md5sum(offset, len(data))
    except FatalError as e:
        raise FlashError(f"writing flash at 0x{offset:X} failed: {e}") from None
    want = hashlib.md5(data).hexdigest()
    progress("verify", len(data), len(data))
    if got.lower() != want:
        raise FlashError(f"verify failed at 0x{offset:X}: the flash reads back MD5 {got}, the file is {want}; "
                         "the board is NOT flashed")


def flash_firmware(port: str, spec: dict, fw: Firmware, erase: bool, progress: Progress) -> dict:
    esp = connect_chip(port, spec)
    try:
        desc = esp.get_chip_description()
        size = flash_size(esp)
        if size and size < len(fw.data) + fw.offset:
            raise FlashError(f"the board's flash ({size >> 20} MB) is smaller than the image")
        if erase:
            progress("erase", 0, 1)
            esp.erase_flash()
            progress("erase", 1, 1)
        write_verified(esp, fw.offset, fw.data, progress)
        esp.hard_reset()
    finally:
        port_obj = getattr(esp, "_port", None)
        if port_obj is not None:
            port_obj.close()
    return {"chip": desc, "flash_bytes": size, "offset": fw.offset, "bytes": len(fw.data)}
