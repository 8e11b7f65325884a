# File-backed flash for the emulated board: 4096-byte blocks, NOR-like
# semantics (erase sets 0xFF), counters for reads/writes/erases, and a power
# cut that tears the Nth block write and then stops the device.
import os

BLOCK_SIZE = 4096
_BLANK = b"\xff" * BLOCK_SIZE


class PowerLost(OSError):
    pass


class FileBlockDevice:
    def __init__(self, path, block_count, cut_after=0, on_cut=None):
        self.path = path
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
        if size != block_count * BLOCK_SIZE:
            with open(path, "wb") as f:
                for _ in range(block_count):
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
        self._f.seek(block * BLOCK_SIZE + offset)
        self._f.readinto(buf)

    def writeblocks(self, block, buf, offset=None):
        self._check()
        if offset is None:
            # simple interface: whole blocks, erase implied
            for i in range(len(buf) // BLOCK_SIZE):
                self.ioctl(6, block + i)
            offset = 0
        self.writes += 1
        self._f.seek(block * BLOCK_SIZE + offset)
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

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.block_count
        if op == 5:  # block size
            return BLOCK_SIZE
        if op == 6:  # erase
            self._check()
            self.erases += 1
            self._f.seek(arg * BLOCK_SIZE)
            self._f.write(_BLANK)
            return 0
        if op == 3:  # sync
            self._f.flush()
            return 0
        return 0
