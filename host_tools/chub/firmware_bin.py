"""A MicroPython .bin for an ESP32 board, read and checked before anything is
written (docs/flashing.md): the bootloader image at the start (for the
board's chip), the partition table, the app image (checksums and SHA-256)
and MicroPython's ESP-IDF app description. `build_test_firmware` makes a
tiny valid one with esptool's image API for the tests.
"""

from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chubcore.image_copy import FlashError

PARTITION_TABLE_OFFSET = 0x8000
APP_DESC_MAGIC = 0xABCD5432


@dataclass
class Partition:
    label: str
    type: int
    subtype: int
    offset: int
    size: int


@dataclass
class Firmware:
    path: Path
    data: bytes
    chip_family: str
    offset: int
    app: Partition
    project: str
    version: str
    partitions: list[Partition] = field(default_factory=list)


def _chip_id(family: str) -> int:
    from esptool.targets import CHIP_DEFS

    return CHIP_DEFS[family].IMAGE_CHIP_ID


def _check_image(what: str, data: bytes, family: str, path: Path) -> Any:
    from esptool.bin_image import LoadFirmwareImage
    from esptool.util import FatalError

    try:
        img = LoadFirmwareImage(family, data)
    except (FatalError, struct.error, RuntimeError, ValueError, IndexError, TypeError) as e:
        if "End of file" in str(e) or isinstance(e, struct.error):
            raise FlashError(f"{path}: the {what} image ends early: the file is truncated") from None
        raise FlashError(f"{path}: the {what} is not a valid ESP image ({e})") from None
    if img.append_digest and len(img.stored_digest) < 32:
        raise FlashError(f"{path}: the {what} image ends early: the file is truncated")
    if img.chip_id != _chip_id(family):
        raise FlashError(f"{path}: the {what} is built for chip id {img.chip_id}, "
                         f"not {family.upper()} (id {_chip_id(family)}): wrong firmware for this board")
    if img.checksum != img.calculate_checksum():
        raise FlashError(f"{path}: the {what} image checksum is wrong: the file is corrupt")
    if img.append_digest and img.stored_digest != img.calc_digest:
        raise FlashError(f"{path}: the {what} image SHA-256 is wrong: the file is corrupt")
    return img


def parse_partitions(blob: bytes) -> list[Partition]:
    """An ESP-IDF binary partition table (32-byte entries, MD5 entry)."""
    out = []
    for i in range(0, min(len(blob), 0xC00) - 31, 32):
        e = blob[i : i + 32]
        if e[:2] == b"\xaa\x50":
            _, typ, sub, off, size, label, _flags = struct.unpack("<2sBBII16sI", e)
            out.append(Partition(label.rstrip(b"\0").decode("ascii", "replace"), typ, sub, off, size))
        elif e[:2] == b"\xeb\xeb":
            if hashlib.md5(blob[:i]).digest() != e[16:]:
                raise FlashError("the partition table's MD5 does not match: the file is corrupt")
            break
        else:
            break
    return out


def check_firmware(path: Path, spec: dict) -> Firmware:
    """Read and check a MicroPython .bin for a board: bootloader image at the
    start (for the board's chip), partition table, app image (checksums and
    SHA-256), and MicroPython's app description."""
    family = spec["chip_family"]
    offset = int(str(spec["flash_offset"]), 0)
    if not path.is_file():
        raise FlashError(f"firmware file {path} not found ({spec.get('firmware_hint', 'a MicroPython .bin')})")
    data = path.read_bytes()
    if len(data) < 24:
        raise FlashError(f"{path}: {len(data)} bytes is too short for a MicroPython image: the file is truncated")
    _check_image("bootloader", data, family, path)
    if len(data) < 0x10000 - offset:
        raise FlashError(f"{path}: {len(data)} bytes is too short for a MicroPython image: the file is truncated")
    parts = parse_partitions(data[PARTITION_TABLE_OFFSET - offset : PARTITION_TABLE_OFFSET - offset + 0xC00])
    apps = [p for p in parts if p.type == 0]
    if not apps:
        raise FlashError(f"{path}: no app partition in the partition table at 0x{PARTITION_TABLE_OFFSET:X}")
    app = apps[0]
    start = app.offset - offset
    if start >= len(data):
        raise FlashError(f"{path}: the app partition at 0x{app.offset:X} is past the end of the file: truncated")
    img = _check_image("app", data[start:], family, path)
    seg = img.segments[0].data if img.segments else b""
    if len(seg) < 80 or struct.unpack_from("<I", seg, 0)[0] != APP_DESC_MAGIC:
        raise FlashError(f"{path}: the app has no ESP-IDF app description: not a MicroPython build")
    version = seg[16:48].rstrip(b"\0").decode("ascii", "replace")
    project = seg[48:80].rstrip(b"\0").decode("ascii", "replace")
    if "micropython" not in project.lower():
        raise FlashError(f"{path}: the app is {project!r} {version}, not MicroPython")
    return Firmware(path, data, family, offset, app, project, version, parts)


def build_test_firmware(family: str = "esp32s3", project: bytes = b"micropython", version: bytes = b"v1.29.0",
                        app_chip: str | None = None) -> bytes:
    """A tiny but valid MicroPython-format .bin (bootloader + partition table
    + factory app with an ESP-IDF app description), made with esptool's image
    API: what the tests flash, since no real .bin is available offline."""
    from esptool.bin_image import ELFSection
    from esptool.targets import CHIP_DEFS

    offset = 0x1000 if family == "esp32" else 0x0

    def image(fam: str, segments: list[tuple[int, bytes]]) -> bytes:
        rom = CHIP_DEFS[fam]
        img = rom.BOOTLOADER_IMAGE()
        img.chip_id = rom.IMAGE_CHIP_ID
        img.append_digest = True
        img.entrypoint = segments[0][0]
        img.segments = [ELFSection(f".seg{i}".encode(), a, d, 0) for i, (a, d) in enumerate(segments)]
        out = img.save(None)
        assert out is not None
        return bytes(out)

    boot = image(family, [(0x40080000, b"\x00" * 64)])
    desc = struct.pack("<IIII", APP_DESC_MAGIC, 0, 0, 0) + version.ljust(32, b"\0") + project.ljust(32, b"\0")
    desc = desc.ljust(256, b"\0")
    app = image(app_chip or family, [(CHIP_DEFS[app_chip or family].DROM_MAP_START + 0x20, desc + b"MicroPython" * 8)])
    entries = b""
    for label, typ, sub, off, size in (("nvs", 1, 0x02, 0x9000, 0x6000), ("phy_init", 1, 0x01, 0xF000, 0x1000),
                                       ("factory", 0, 0x00, 0x10000, 0x1F0000), ("vfs", 1, 0x81, 0x200000, 0x200000)):
        entries += struct.pack("<2sBBII16sI", b"\xaa\x50", typ, sub, off, size, label.encode().ljust(16, b"\0"), 0)
    table = entries + b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(entries).digest()
    buf = io.BytesIO()
    buf.write(boot)
    buf.write(b"\xff" * (PARTITION_TABLE_OFFSET - offset - buf.tell()))
    buf.write(table.ljust(0xC00, b"\xff"))
    buf.write(b"\xff" * (0x10000 - offset - buf.tell()))
    buf.write(app)
    return buf.getvalue()
