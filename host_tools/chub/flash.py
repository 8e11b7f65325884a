"""`chub flash`: MicroPython onto an ESP32 board with esptool, the app image
onto its file system with mpremote, then a reset and a ready check
(docs/flashing.md).

Real boards: esptool's Python API detects the chip (checked against the
board), writes the MicroPython .bin at the board's offset (compressed, block
by block, with a rich progress bar) and verifies it by MD5 on the chip;
mpremote copies the app image (main.py last, so a cut copy never boots) and
verifies every file by SHA-256 on the board; the board is reset and must
answer `status` with the image's version.

The emulated board (`--board unix`): its "port" is its folder (the flash
file and board config). The unix MicroPython REPL runs behind a pty with the
flash file mounted (the pty bridge) and mpremote talks to it exactly as to a
board (`resume`: no soft reset); then the board boots from its flash
(hil/unix_flashboot.py) with the rig's peripherals and must answer status.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pty
import select
import struct
import subprocess
import threading
import time
import tty
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core.build import board_spec
from .core.paths import BOARDS, ROOT

PARTITION_TABLE_OFFSET = 0x8000
APP_DESC_MAGIC = 0xABCD5432

Progress = Callable[[str, int, int], None]  # (task, done, total)


class FlashError(Exception):
    """A flash step failed; the board is not reported as flashed."""


# --- the firmware file --------------------------------------------------------------


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


# --- esptool: the chip ---------------------------------------------------------------


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


# --- mpremote: the app image ----------------------------------------------------------


def image_files(image: Path) -> tuple[dict, list[str]]:
    """image.json and the files to copy, main.py last (a cut copy never boots)."""
    doc_path = image / "image.json"
    if not doc_path.exists():
        raise FlashError(f"{image} is not a built image (no image.json): run chub build first")
    doc = json.loads(doc_path.read_text())
    files = sorted(doc["files"], key=lambda f: (f in ("main.py", "boot.py"), f))
    for f in files:
        if not (image / f).is_file():
            raise FlashError(f"{image / f} is missing from the image: rebuild it")
        if hashlib.sha256((image / f).read_bytes()).hexdigest() != doc["files"][f]:
            raise FlashError(f"{image / f} does not match image.json: rebuild the image")
    return doc, files


def _transport(device: str) -> Any:
    from mpremote.transport import TransportError
    from mpremote.transport_serial import SerialTransport

    try:
        return SerialTransport(device, baudrate=115200)
    except TransportError as e:
        raise FlashError(f"cannot open {device}: {e}") from None


def copy_image(t: Any, image: Path, root: str, progress: Progress) -> dict:
    """Copy the image under `root` (modules in root/lib, main.py in root),
    replacing the old app (data elsewhere is kept), then check every file's
    SHA-256 on the board."""
    from mpremote.transport import TransportError

    doc, files = image_files(image)
    lib = root.rstrip("/") + "/lib"
    base = root.rstrip("/") or ""

    def dest(f: str) -> str:
        return f"{base}/{f}" if f in ("main.py", "boot.py") else f"{lib}/{f}"

    try:
        # the old app goes first: main.py (so nothing half-new boots), then lib
        t.exec(f"import os\ntry:\n os.remove({base + '/main.py'!r})\nexcept OSError:\n pass\n"
               f"def rm(p):\n try:\n  for e in os.ilistdir(p):\n   q=p+'/'+e[0]\n   rm(q) if e[1]==0x4000 "
               f"else os.remove(q)\n  os.rmdir(p)\n except OSError:\n  pass\nrm({lib!r})\nos.mkdir({lib!r})")
        dirs = sorted({str(Path(dest(f)).parent) for f in files} - {lib, base or "/"})
        for d in dirs:
            t.exec(f"import os\ntry:\n os.mkdir({d!r})\nexcept OSError:\n pass")
        total = sum((image / f).stat().st_size for f in files)
        done = 0
        for f in files:
            data = (image / f).read_bytes()
            t.fs_writefile(dest(f), data, chunk_size=2048,
                           progress_callback=lambda n, _s, d0=done: progress("copy", d0 + n, total))
            done += len(data)
        progress("copy", total, total)
        bad = []
        for i, f in enumerate(files):
            got = t.fs_hashfile(dest(f), "sha256").hex()
            if got != doc["files"][f]:
                bad.append(f)
            progress("check", i + 1, len(files))
    except TransportError as e:
        raise FlashError(f"copying the app failed: {e}") from None
    if bad:
        raise FlashError(f"{len(bad)} file(s) differ on the board after the copy ({', '.join(bad[:3])}): "
                         "the board is NOT flashed")
    return doc


def wait_ready(url: str, doc: dict, timeout: float) -> dict:
    """The reset board must answer `status` with the image's version."""
    from .core.localport import LocalPortClient

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with LocalPortClient(url, timeout=3) as c:
                st = c.call("status")
            if st.get("version") != doc["version"] or st.get("git") != doc["git"]:
                raise FlashError(f"the hub runs {st.get('version')} ({st.get('git')}), not the flashed "
                                 f"{doc['version']} ({doc['git']})")
            return st
        except FlashError:
            raise
        except Exception as e:  # noqa: BLE001 - keep asking until the deadline
            last = e
            time.sleep(0.5)
    raise FlashError(f"the hub did not report ready on {url} within {timeout:g} s ({last})")


# --- the emulated board: a pty bridge to the unix MicroPython REPL ----------------------


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
    from .core.paths import venv_tool

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
    proc = subprocess.Popen([venv_tool("micropython"), "-i", "-c", script], stdin=slave, stdout=slave,
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
    from hil.system import FLASHED

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
        t = _transport(dev)
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
    from types import SimpleNamespace

    from hil.dut import UnixDut
    from hil.log import DutLog
    from hil.rig import Rig
    from hil.system import attach_peripherals

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


# --- a real board ------------------------------------------------------------------------


def flash_board(board: str, port: str, image: Path, firmware: Path | None, erase: bool, progress: Progress,
                ready_timeout: float = 30.0, heap: str | None = None) -> dict:
    spec = board_spec(board)
    doc, _files = image_files(image)
    if doc.get("board") != board:
        raise FlashError(f"{image} is built for board {doc.get('board')!r}, not {board!r}: "
                         f"run chub build --board {board}")
    if board == "unix":
        if firmware is not None:
            raise FlashError("--firmware does not apply to the emulated board (its MicroPython is the unix port)")
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
    t = _transport(port)
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
    from .core.localport import LocalPortClient, LocalPortError

    try:
        with LocalPortClient(port, timeout=3) as c:
            c.call("console_release")
    except (LocalPortError, OSError, TimeoutError):
        return False
    time.sleep(1.5)  # the soft reset into the REPL
    return True


def register(main: Any) -> None:
    import sys

    import click
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    @main.command("flash")
    @click.option("--board", default="unix", show_default=True, help="Board folder under boards/.")
    @click.option("--port", required=True,
                  help="Serial port of the board (/dev/ttyUSB0); for --board unix, the emulated board's folder.")
    @click.option("--firmware", type=click.Path(path_type=Path), default=None,
                  help="MicroPython .bin to write first (esptool); without it only the app image is copied.")
    @click.option("--erase", is_flag=True, help="Erase the whole flash first (the hub's data too).")
    @click.option("--image", type=click.Path(path_type=Path), default=None,
                  help="Image folder (default build/BOARD/image, built if missing).")
    @click.option("--ready-timeout", type=float, default=30.0, show_default=True)
    @click.option("--heap", default=None, help="Emulated board only: the MicroPython heap of the boot check "
                                               "(default: boards/unix/board.json default_heap).")
    def flash_cmd(board: str, port: str, firmware: Path | None, erase: bool, image: Path | None,
                  ready_timeout: float, heap: str | None) -> None:
        """Flash MicroPython (esptool) and the hub's app image (mpremote), reset, and check the hub is ready."""
        from .cli import _stderr
        from .core import build as build_mod

        err = _stderr()
        try:
            spec = board_spec(board)
        except build_mod.BuildError as e:
            err.print(f"[red]flash failed:[/red] {e}")
            sys.exit(1)
        img = image or (ROOT / "build" / board / "image")
        try:
            if image is None and not (img / "image.json").exists():
                err.print(f"building the {board} image first")
                build_mod.build(board)
            cols = (TextColumn("{task.description:<8}"), BarColumn(), TextColumn("{task.fields[shown]:>17}"),
                    TimeRemainingColumn())
            with Progress(*cols, console=err, transient=False) as bar:
                tasks: dict[str, Any] = {}

                def progress(name: str, done: int, total: int) -> None:
                    # bytes for the data moves, counts for the rest
                    shown = (f"{done / 1024:.0f}/{total / 1024:.0f} KiB" if name in ("write", "verify", "copy")
                             else f"{done}/{total}")
                    if name not in tasks:
                        tasks[name] = bar.add_task(name, total=total, shown=shown)
                    bar.update(tasks[name], completed=done, total=total, shown=shown)

                r = flash_board(board, port, img, firmware, erase, progress, ready_timeout, heap)
        except (FlashError, build_mod.BuildError) as e:
            err.print(f"[red]flash failed:[/red] {e}")
            sys.exit(1)
        st = r["status"]
        err.print(f"[green]done[/green]: {spec['name']} on {port} runs {st['version']} ({st['git']}), "
                  f"board {st['board']}, ready")


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
