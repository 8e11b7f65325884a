"""`chub flash --board unix`: the emulated board flashed as a real one is
(docs/flashing.md). Its "port" is its folder (the flash file and board
config). The unix MicroPython REPL runs behind a pty with the flash file
mounted (the pty bridge) and mpremote talks to it exactly as to a board
(`resume`: no soft reset); then the board boots from its flash
(hil/unix_flashboot.py) with the rig's peripherals and must answer status.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import threading
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

from chubcore.build import board_spec
from chubcore.image_copy import FlashError, Progress, copy_image, open_transport, wait_ready
from chubcore.paths import BOARDS, micropython_exe

from .dut import UnixDut
from .log import DutLog
from .rig import Rig
from .system import FLASHED, attach_peripherals


def _pump(a: int, b: int, stop: threading.Event) -> None:
    """Copy bytes both ways between two pty masters until stopped."""
    while not stop.is_set():
        try:
            r, _, _ = select.select([a, b], [], [], 0.1)
            for src in r:
                data = os.read(src, 4096)
                if data:
                    os.write(b if src == a else a, data)
        except OSError:
            return


@contextmanager
def unix_repl(flash: Path, blocks: int) -> Iterator[str]:
    """The pty bridge: the unix MicroPython REPL on one pty, with the board's
    flash file mounted at /flash (formatted when blank), joined to a second
    pty whose device mpremote opens like a board's serial port."""
    master, slave = pty.openpty()
    host_master, host_slave = pty.openpty()
    for fd in (slave, host_slave):  # raw: no echo, no newline translation, like a UART
        tty.setraw(fd)
    path = os.ttyname(host_slave)
    env = dict(os.environ, MICROPYPATH=f".frozen{os.pathsep}{BOARDS / 'unix'}")
    # -i: the REPL after the mount script, as the board's ROM would give it
    script = (
        "import vfs\nfrom blockdev import FileBlockDevice\n"
        f"bd = FileBlockDevice({str(flash)!r}, {blocks})\n"
        "try:\n fs = vfs.VfsLfs2(bd)\nexcept OSError:\n vfs.VfsLfs2.mkfs(bd)\n fs = vfs.VfsLfs2(bd)\n"
        "vfs.mount(fs, '/flash')\n"
    )
    proc = subprocess.Popen([micropython_exe(), "-i", "-c", script], stdin=slave, stdout=slave,
                            stderr=slave, env=env, cwd=flash.parent, close_fds=True)
    os.close(slave)
    stop = threading.Event()
    pump = threading.Thread(target=_pump, args=(master, host_master, stop), daemon=True)
    pump.start()
    try:
        yield path
    finally:
        proc.kill()
        proc.wait(5)
        stop.set()
        pump.join(2)
        for fd in (master, host_master, host_slave):
            os.close(fd)


def flash_unix(folder: Path, image: Path, erase: bool, progress: Progress, heap: str | None = None,
               ready_timeout: float = 30.0) -> dict:
    """Flash the emulated board in `folder` with `image` through the pty
    bridge, boot it from its flash and check it is ready; `flashed.json`
    marks a good flash. -> {"status": the hub's status, "image": image.json}."""
    spec = board_spec("unix")
    heap = heap or spec.get("default_heap", "512k")
    blocks = int(spec.get("flash_blocks", 256))
    folder.mkdir(parents=True, exist_ok=True)
    flash = folder / "flash.bin"
    marker = folder / FLASHED
    marker.unlink(missing_ok=True)  # not flashed until the end says so
    if erase:
        progress("erase", 0, 1)
        flash.unlink(missing_ok=True)
        progress("erase", 1, 1)
    with unix_repl(flash, blocks) as dev:
        t = open_transport(dev)
        try:
            from mpremote.transport import TransportError

            try:
                t.enter_raw_repl(soft_reset=False)  # mpremote resume
            except TransportError as e:
                raise FlashError(f"the emulated board's REPL did not answer on {dev}: {e}") from None
            doc = copy_image(t, image, "/flash", progress)
            t.exec("import vfs\nvfs.umount('/flash')")
        finally:
            t.close()
    progress("boot", 0, 1)
    st = boot_unix(folder, doc, heap, ready_timeout)
    progress("boot", 1, 1)
    marker.write_text(json.dumps({k: doc[k] for k in ("version", "git", "board", "built_utc")}))
    return {"status": st, "image": doc}


def boot_unix(folder: Path, doc: dict, heap: str, timeout: float) -> dict:
    """Power the emulated board on from its flash with the rig's NCP and modem
    (no demo devices), check it answers status, power it off."""
    log = DutLog(folder / "flash-boot.log")
    rig = Rig(log).start()
    dut = None
    try:
        attach_peripherals(SimpleNamespace(rig=rig, log=log, local_port_url=rig.local_port_url, han_demo=False))
        dut = UnixDut(None, folder, rig, log, heap=heap, from_flash=True)
        pos = log.position
        dut.start()
        try:
            dut.wait_ready(timeout, after=pos)
        except Exception as e:  # noqa: BLE001 - report the boot failure plainly
            raise FlashError(f"the flashed hub did not boot: {e}") from None
        return wait_ready(rig.local_port_url, doc, 10)
    finally:
        if dut:
            dut.stop()
        rig.stop()
        log.close()
