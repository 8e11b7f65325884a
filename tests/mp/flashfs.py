# Shared by the MicroPython store tests: LittleFS2 over the unix board's
# file-backed block device in the cwd (a temp dir), and a remount that stands
# for a power cycle (every handle dropped, the image mounted again).
import os

import vfs
from blockdev import FileBlockDevice

ROOT = "/flash"
IMG = "flash.bin"


def _umount():
    try:
        vfs.umount(ROOT)
    except OSError:
        pass


def fresh(blocks=64, cut_after=0):
    _umount()
    try:
        os.remove(IMG)
    except OSError:
        pass
    dev = FileBlockDevice(IMG, blocks, cut_after)
    vfs.VfsLfs2.mkfs(dev)
    vfs.mount(vfs.VfsLfs2(dev), ROOT)
    return dev


def remount(blocks=64, cut_after=0):
    _umount()
    dev = FileBlockDevice(IMG, blocks, cut_after)
    vfs.mount(vfs.VfsLfs2(dev), ROOT)
    return dev
