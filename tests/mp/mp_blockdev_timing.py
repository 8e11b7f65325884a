# boards/unix/blockdev.py's flash timing option (issue 15, item 5): the
# emulated flash can take as long as the ESP32's SPI NOR does, per 256-byte
# page programmed and per 4 KB sector erased (blockdev.SPI_NOR, from the
# datasheet it cites), so latency figures can be given with device-like flash.
import os
import time

import blockdev
from blockdev import FileBlockDevice

IMG = "timing.bin"


def _dev(timing):
    try:
        os.remove(IMG)
    except OSError:
        pass
    return FileBlockDevice(IMG, 4, timing=timing)


def _ms(fn):
    t = time.ticks_us()
    fn()
    return time.ticks_diff(time.ticks_us(), t) / 1000


def test_spi_nor_figures():
    t = blockdev.SPI_NOR
    assert t["page_bytes"] == 256 and t["page_us"] == 700 and t["erase_us"] == 45000


def test_program_takes_a_page_time_per_page_touched():
    d = _dev(blockdev.SPI_NOR)
    assert _ms(lambda: d.writeblocks(0, b"\x00" * 16, 0)) >= 0.7
    # 128 bytes across a page boundary: two pages programmed
    assert _ms(lambda: d.writeblocks(0, b"\x00" * 128, 200)) >= 1.4
    assert _ms(lambda: d.writeblocks(1, b"\x00" * 256, 0)) < 1.4 + 5
    assert _ms(lambda: d.ioctl(6, 2)) >= 45


def test_no_timing_is_the_plain_file():
    d = _dev(None)
    assert _ms(lambda: d.ioctl(6, 2)) < 20
    # named timing as the board config gives it
    assert FileBlockDevice(IMG, 4, timing="spi_nor").timing == blockdev.SPI_NOR


def test_unknown_timing_is_refused():
    try:
        FileBlockDevice(IMG, 4, timing="eeprom")
    except ValueError as e:
        assert "eeprom" in str(e)
    else:
        raise AssertionError("an unknown flash timing was taken")


def test_import_keeps_no_block_sized_buffer():
    # heap after imports (issue 15): the module holds no 4 KB blank block in
    # RAM (it was 4.5 KB of the 32-bit frozen build's census); an erase still
    # leaves the whole block 0xFF
    for k, v in blockdev.__dict__.items():
        if isinstance(v, (bytes, bytearray)):
            assert len(v) <= 256, (k, len(v))
    d = _dev(None)
    d.writeblocks(1, b"\x00" * 4096, 0)
    d.ioctl(6, 1)
    buf = bytearray(4096)
    d.readblocks(1, buf, 0)
    assert buf == b"\xff" * 4096
