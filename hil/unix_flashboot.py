# The emulated board's boot ROM when it boots from its flash (MicroPython
# code, run by the unix port): what `chub flash --board unix` wrote into the
# board's LittleFS (the flash file) is all that runs. Mount the flash at
# /flash, put /flash/lib first on sys.path, hand the mounted block device to
# the board module, and run /flash/main.py, as MicroPython on an ESP32 runs
# main.py from its file system. On a binary with the hub frozen in (board
# config "frozen": true) the path is the ESP32 port's order instead:
# .frozen, then /flash/lib, so nothing flashed can shadow a frozen module.
import json
import os
import sys

cfg = json.load(open(os.getenv("CHUB_BOARD")))
if cfg.get("frozen"):
    sys.path[:] = [".frozen", "/flash/lib"]

import vfs  # noqa: E402
from blockdev import FileBlockDevice  # noqa: E402

fl = cfg["flash"]
bdev = FileBlockDevice(fl["path"], fl.get("blocks", 256), fl.get("cut_after", 0), None)
try:
    fs = vfs.VfsLfs2(bdev)
except OSError:
    print("BOOT the flash has no file system: nothing to boot (run chub flash)")
    sys.exit(1)
vfs.mount(fs, "/flash")
try:
    os.stat("/flash/main.py")
except OSError:
    print("BOOT no /flash/main.py: nothing to boot (run chub flash)")
    sys.exit(1)
if not cfg.get("frozen"):
    sys.path.insert(0, "/flash/lib")
import board  # noqa: E402 - the board module from the flashed image

board._bdev = bdev
bdev.on_cut = board._power_lost


def _mounted():
    return board.FLASH_ROOT


board.mount = _mounted  # the flash is mounted already
print("BOOT /flash/main.py")
exec(open("/flash/main.py").read())
