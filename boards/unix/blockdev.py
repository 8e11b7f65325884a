# File-backed flash for the emulated board: 4096-byte blocks, NOR-like
# semantics (erase sets 0xFF), counters for reads/writes/erases, and a power
# cut that tears the Nth block write and then stops the device. Optionally
# the time an ESP32's SPI NOR flash takes (timing="spi_nor" or a dict like
# SPI_NOR): each write sleeps one page-program time per 256-byte page it
# touches, each erase one 4 KB sector-erase time. The sleep stops the whole
# VM, as a flash write does on the ESP32.
import os
import time

from micropython import const

_BLOCK_SIZE = const(4096)
# the erase pattern, written _BLOCK_SIZE // 256 times: no 4 KB object in RAM.
# A literal const: on a frozen build it stays in flash (b"\xff" * 256 was a
# 256-byte object on the heap while the board is loaded)
_BLANK = const(
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
)

# Winbond W25Q32FV (32 Mbit SPI NOR, the flash of many ESP32-WROOM-32
# modules): page program tPP 0.7 ms typical (3 ms max), 4 KB sector erase
# tSE 45 ms typical (400 ms max); 256-byte program pages. Typical figures: a
# worn or hot part is slower. Source: the datasheet's "AC Electrical
# Characteristics" table (rev. H, 2013-09-16, section 9.6), recalled, NOT
# checked against the table: the search tools hold that datasheet
# (scribd.com/document/332827182/w25q32fv-revh-091613) and the GD25Q32C's
# but return only their first pages. Secondary sources agree on the order:
# a W25Q64JV summary gives tSE 45/400 ms and tPP 0.8/3 ms, a W25X40 driver
# header tPP 0.7/3 ms (docs/hil.md).
SPI_NOR = {"page_bytes": 256, "page_us": 700, "erase_us": 45000}


class PowerLost(OSError):
    pass


class FileBlockDevice:
    def __init__(self, path, block_count, cut_after=0, on_cut=None, timing=None):
        self.path = path
        if isinstance(timing, str):
            if timing != "spi_nor":
                raise ValueError("unknown flash timing %r (known: spi_nor)" % timing)
            timing = SPI_NOR
        self.timing = timing  # None: no waits
        self.block_count = block_count
        self.reads = 0
        self.writes = 0
        self.erases = 0
        self.cut_after = cut_after  # 0 = never
        self.on_cut = on_cut
        self.dead = False
        try:
            size = os.stat(path)[6]
        except OSError:
            size = -1
        if size != block_count * _BLOCK_SIZE:
            with open(path, "wb") as f:
                for _ in range(block_count * (_BLOCK_SIZE // 256)):
                    f.write(_BLANK)
        self._f = open(path, "r+b")

    def counters(self):
        return {"reads": self.reads, "writes": self.writes, "erases": self.erases}

    def _check(self):
        if self.dead:
            raise PowerLost(5)

    def readblocks(self, block, buf, offset=0):
        self._check()
        self.reads += 1
        self._f.seek(block * _BLOCK_SIZE + offset)
        self._f.readinto(buf)

    def writeblocks(self, block, buf, offset=None):
        self._check()
        if offset is None:
            # simple interface: whole blocks, erase implied
            for i in range(len(buf) // _BLOCK_SIZE):
                self.ioctl(6, block + i)
            offset = 0
        self.writes += 1
        self._f.seek(block * _BLOCK_SIZE + offset)
        if self.cut_after and self.writes >= self.cut_after:
            # the write in progress when power goes is torn: half lands
            self._f.write(memoryview(buf)[: len(buf) // 2])
            self._f.flush()
            self.dead = True
            if self.on_cut:
                self.on_cut(self)
            raise PowerLost(5)
        # no fsync per program: a write(2) is in the host's page cache, which
        # a killed process cannot lose; littlefs's sync (ioctl 3, once per
        # commit) is where the host syncs - the emulated program latency
        self._f.write(buf)
        t = self.timing
        if t is not None and len(buf):
            pb = t["page_bytes"]
            pages = (offset + len(buf) - 1) // pb - offset // pb + 1
            time.sleep_us(pages * t["page_us"])

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.block_count
        if op == 5:  # block size
            return _BLOCK_SIZE
        if op == 6:  # erase
            self._check()
            self.erases += 1
            self._f.seek(arg * _BLOCK_SIZE)
            for _ in range(_BLOCK_SIZE // 256):
                self._f.write(_BLANK)
            if self.timing is not None:
                time.sleep_us(self.timing["erase_us"])
            return 0
        if op == 3:  # sync
            self._f.flush()
            return 0
        return 0
