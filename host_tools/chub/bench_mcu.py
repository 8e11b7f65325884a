"""`chub bench --mcu`: the hub's protocol operations counted in instructions
on MCU-class CPUs (issue 15, item 4): a Cortex-M3 (`mcu_*`) and a 32-bit
RISC-V (`mcu_rv32_*`, the ESP32-C3/C6's instruction set).

The qemu port of our MicroPython source (../shared/micropython, board
MPS2_AN385: a Cortex-M3) is built with the firmware tree, MicroPython's asyncio
package and the bench scripts frozen in (bench/mcu/manifest.py), cryptolib and
hashlib from the shipped mbedtls and a C RAM block device under LittleFS2
(bench/mcu/cmod), cached under build/mcu/ and rebuilt when a source changes.
It runs under `qemu-system-arm -icount shift=0`, where one instruction is one
virtual nanosecond, so `time.ticks_us()` counts thousands of instructions: the
bench scripts' *_us figures are k-instructions there, *_ms millions. The
scripts are fed over the raw REPL on the emulated UART.

The same image is built for the port's VIRT_RV32 board (RV32IMAC, qemu's
`virt` machine, whose timer also counts virtual time: the counts are
instructions there too) into build/mcu-rv32/ and run under
`qemu-system-riscv32 -icount shift=0`.

Needs `apt-get install -y qemu-system-arm gcc-arm-none-eabi
libnewlib-arm-none-eabi` for the Cortex-M3 and `apt-get install -y
qemu-system-misc gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf` for
RV32 (the command names the line of a missing one and measures the other).
The ESP32 estimates assume CLOCK_MHZ and CPI below (Cortex-M3 instructions ->
Xtensa LX6 cycles; RV32 instructions -> ESP32-C3 cycles at RV32_CLOCK_MHZ):
estimates, not measurements of an ESP32.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chubcore.build import sources
from chubcore.mpbuild import MpBuildError, _lock, _make, _sha256, _unpack, source_tarball
from chubcore.paths import BENCH, BUILD, FIRMWARE

BOARD = "MPS2_AN385"
HEAP_BYTES = 196608  # the qemu image's GC heap: a plain ESP32 leaves MicroPython ~110-150 KB
RECIPE = 2  # bump when the way of building changes
TOOLS = ("arm-none-eabi-gcc", "qemu-system-arm")
APT = "apt-get install -y qemu-system-arm gcc-arm-none-eabi libnewlib-arm-none-eabi"
CLOCK_MHZ = 240  # ESP32 (WROOM-32) CPU clock
CPI = 1.5  # assumed ESP32 cycles per Cortex-M3 instruction (the 1.3-2x, taken at its middle)
RV32_CLOCK_MHZ = 160  # ESP32-C3 / ESP32-C6 CPU clock
RV32_APT = "apt-get install -y qemu-system-misc gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf"
BAUD = 115200  # the WAN/local link a routed message arrives on (8N1: 10 bits a byte)
WIRE_RATIO_GOAL = 0.25
MCU_DIR = BENCH / "mcu"
SCRIPTS = ("mp_crypto.py", "mp_gbcs.py", "mp_han.py")  # run unchanged on the image (frozen)
GCS13A_GSME = "4.1.1_GCS13a/GCS13a_4.1.1_SUCCESS_RELIABLE_GSME_COMMAND_GBCS.HEX"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Target:
    """One qemu board the image is built for and counted on."""

    prefix: str  # figure names: mcu_<prefix><op>_minstr
    board: str
    tools: tuple[str, ...]
    apt: str
    out: str  # build/<out>/
    qemu: tuple[str, ...]  # the command line before -kernel ELF
    make_args: tuple[str, ...]
    clock_mhz: float
    cpi: float
    assumed: str


_ICOUNT = ("-nographic", "-monitor", "null", "-semihosting", "-serial", "stdio",
           "-icount", "shift=0,align=off,sleep=off")
CM3 = Target("", BOARD, TOOLS, APT, "mcu", ("qemu-system-arm", "-machine", "mps2-an385") + _ICOUNT, (),
             CLOCK_MHZ, CPI, f"ESP32 at {CLOCK_MHZ} MHz, {CPI} cycles per Cortex-M3 instruction")
# Debian's riscv64-unknown-elf GCC 12 has rv32imac/ilp32 libraries but does not
# match the port's "rv32imac_zicsr" to them (it links the rv64 default and
# fails); the 2.2 ISA spec, where Zicsr is part of I, selects them. The port's
# own qemu line adds zcmp=on, which qemu 7.2 lacks: the image uses no Zcmp.
RV32 = Target("rv32_", "VIRT_RV32", ("riscv64-unknown-elf-gcc", "qemu-system-riscv32"), RV32_APT, "mcu-rv32",
              ("qemu-system-riscv32", "-machine", "virt", "-bios", "none", "-cpu", "rv32") + _ICOUNT,
              ("RV32_ARCH=rv32imac -misa-spec=2.2",), RV32_CLOCK_MHZ, CPI,
              f"ESP32-C3/C6 at {RV32_CLOCK_MHZ} MHz, {CPI} cycles per RV32 instruction")
TARGETS = (CM3, RV32)

# figure -> (bench script key, divisor to millions of instructions)
_OPS: dict[str, tuple[str, float]] = {
    "ecdh": ("ecdh_ms", 1),
    "ecdsa_sign": ("ecdsa_sign_ms", 1),
    "ecdsa_verify": ("ecdsa_verify_ms", 1),
    "gmac_frame": ("gmac_us_per_frame", 1000),  # 160-byte GBCS frame, key setup included
    "gmac_kb": ("gmac_us_per_kb", 1000),
    "gbcs_verify_decode": ("gbcs_verify_decode_us", 1000),  # CCS05 to the CHF: parse, MAC, counter, A-XDR
    "gbcs_response_build": ("gbcs_response_build_us", 1000),
    "gbcs_handle": ("gbcs_handle_us", 1000),  # Chf.handle end to end (the counter persisted)
    "ash_frame": ("ash_frame_us", 1000),  # ASH encode + decode of a 100-byte EZSP frame
    "ezsp_command": ("ezsp_overhead_us", 1000),  # EZSP layer of one command/response
    "zcl_tunnel_msg": ("zcl_tunnel_msg_us", 1000),  # 79-byte message through TransferData both ways
    "routed_msg": ("routed_msg_us", 1000),  # Router.route of a GSME command into its buffer (median)
    "routed_msg_mean": ("routed_msg_mean_us", 1000),  # the same, mean of 36 (the folder's compactions in)
    "routed_parse": ("routed_parse_us", 1000),
    "routed_device": ("routed_device_us", 1000),
    "routed_buffer_put": ("routed_buffer_put_us", 1000),
}


def check_tools(target: Target = CM3) -> None:
    missing = [t for t in target.tools if shutil.which(t) is None]
    if missing:
        raise MpBuildError(f"{', '.join(missing)} not found: {target.apt}")


def available(targets: tuple[Target, ...] = TARGETS) -> tuple[list[Target], list[str]]:
    """(the targets whose tools are installed, a line for each other one
    naming what is missing and its apt-get line)."""
    ready, missing = [], []
    for t in targets:
        try:
            check_tools(t)
            ready.append(t)
        except MpBuildError as e:
            missing.append(f"mcu {t.board}: {e}")
    return ready, missing


def esp32_ms(minstr: float, clock_mhz: float = CLOCK_MHZ, cpi: float = CPI) -> float:
    """Milliseconds on the ESP32 for `minstr` million Cortex-M3 instructions."""
    return minstr * cpi / clock_mhz * 1000


def wire_ms(nbytes: int, baud: int = BAUD) -> float:
    return nbytes * 10 / baud * 1000


def figures_from(raw: dict[str, Any], target: Target = CM3) -> dict[str, Any]:
    """The published figures from the image's raw output (k/M-instruction
    counts by the bench scripts' keys): mcu_<op>_minstr and mcu_<op>_ms (the
    ESP32 estimate) per operation, the routed message over its wire time;
    mcu_rv32_* for the RISC-V target."""
    p = "mcu_" + target.prefix
    out: dict[str, Any] = {}
    for name, (key, div) in _OPS.items():
        if key not in raw:
            continue
        m = raw[key] / div
        out[f"{p}{name}_minstr"] = round(m, 3)
        out[f"{p}{name}_ms"] = round(esp32_ms(m, target.clock_mhz, target.cpi), 2)
    if f"{p}routed_msg_ms" in out and raw.get("frame_bytes"):
        out[f"{p}routed_msg_wire_ms"] = round(wire_ms(raw["frame_bytes"]), 2)
        out[f"{p}routed_msg_wire_ratio"] = round(out[f"{p}routed_msg_ms"] / out[f"{p}routed_msg_wire_ms"], 3)
        if f"{p}routed_msg_mean_ms" in out:
            out[f"{p}routed_msg_mean_wire_ratio"] = round(
                out[f"{p}routed_msg_mean_ms"] / out[f"{p}routed_msg_wire_ms"], 3)
    for k in ("routed_blockdev_calls", "heap_free_after_setup"):
        if k in raw or "mcu_" + k in raw:
            out[p + k] = raw.get(k, raw.get("mcu_" + k))
    out[p + "assumed"] = target.assumed
    return out


def c_hash(tarball: Path, target: Target = CM3) -> str:
    """What the port's C side depends on: when it changes the port is built
    from clean (make does not see a changed heap size or C module)."""
    h = hashlib.sha256(f"mcu recipe {RECIPE} {target.board} {target.make_args} heap {HEAP_BYTES}\n".encode())
    h.update(_sha256(tarball).encode())
    for f in sorted(p for p in MCU_DIR.rglob("*") if p.is_file() and p.suffix in (".c", ".h", ".mk")):
        h.update(str(f.relative_to(MCU_DIR)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def build_hash(tarball: Path, target: Target = CM3) -> str:
    """Everything the image holds: the C side and the frozen Python."""
    h = hashlib.sha256(c_hash(tarball, target).encode())
    for f in sorted(p for p in MCU_DIR.rglob("*.py") if "__pycache__" not in p.parts):
        h.update(str(f.relative_to(MCU_DIR)).encode() + b"\0" + f.read_bytes())
    for name in SCRIPTS:
        h.update(name.encode() + b"\0" + (BENCH / name).read_bytes())
    for src, rel in sources("unix"):
        if src.is_relative_to(FIRMWARE):
            h.update(rel.encode() + b"\0" + src.read_bytes())
    return h.hexdigest()


def build_image(progress: Progress | None = None, jobs: int = 2, target: Target = CM3) -> Path:
    """build/<target.out>/firmware.elf, rebuilt when build_hash changes (from
    clean when c_hash does)."""
    say = progress or (lambda _m: None)
    check_tools(target)
    tarball = source_tarball()
    out = BUILD / target.out
    elf = out / "firmware.elf"
    with _lock(BUILD / ".mcu.lock"):
        stamp = build_hash(tarball, target)
        stamp_file = out / "mcu.stamp"
        if elf.exists() and stamp_file.exists() and stamp_file.read_text().strip() == stamp:
            say(f"{elf} is current")
            return elf
        tree = _unpack(tarball, say)
        out.mkdir(parents=True, exist_ok=True)
        log = out / "make.log"
        log.write_text("")
        if not (tree / "mpy-cross" / "build" / "mpy-cross").exists():
            _make(["make", "-C", str(tree / "mpy-cross"), f"-j{jobs}"], say, "mpy-cross", log)
        # the C module's mbedtls objects go to BUILD/../../lib: out/lib, one per target
        port = (out / "port" / target.board).resolve()
        c_stamp, c_file = c_hash(tarball, target), out / "c.stamp"
        if not c_file.exists() or c_file.read_text().strip() != c_stamp:
            shutil.rmtree(out / "port", ignore_errors=True)
            shutil.rmtree(out / "lib", ignore_errors=True)
        c_file.write_text(c_stamp + "\n")
        env = {"CHUB_MCU_FIRMWARE": str(FIRMWARE), "CHUB_MCU_BENCH": str(BENCH)}
        os.environ.update(env)  # read by bench/mcu/manifest.py under make
        args = ["make", "-C", str(tree / "ports" / "qemu"), f"-j{jobs}", f"BOARD={target.board}", f"BUILD={port}",
                f"FROZEN_MANIFEST={(MCU_DIR / 'manifest.py').resolve()}", "MICROPY_VFS_LFS2=1",
                f"USER_C_MODULES={(MCU_DIR / 'cmod').resolve()}", f"MICROPY_HEAP_SIZE={HEAP_BYTES}",
                *target.make_args]
        _make(args, say, f"qemu port {target.board}", log)
        shutil.copyfile(port / "firmware.elf", elf)
        stamp_file.write_text(stamp + "\n")
        return elf


def run_raw(elf: Path, code: str, timeout: float = 600, target: Target = CM3) -> str:
    """Run `code` on the image under qemu (-icount) over the raw REPL; its
    output up to the end-of-output mark. Raises on a traceback or a timeout."""
    p = subprocess.Popen(
        [*target.qemu, "-kernel", str(elf)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert p.stdin is not None and p.stdout is not None
    buf = b""
    try:
        buf = _read_until(p, buf, b"raw REPL; CTRL-B to exit\r\n>", 20, first=b"\r\x03\x03\x01")
        p.stdin.write(code.encode() + b"\x04")
        p.stdin.flush()
        buf = _read_until(p, buf, b"\x04>", timeout)
    finally:
        p.kill()
        p.wait()
    text = buf.decode(errors="replace")
    body = text.split("raw REPL; CTRL-B to exit\r\n>", 1)[-1]
    outp, _, err = body.partition("\x04")
    err = err.rstrip("\x04>").strip()
    if err:
        raise RuntimeError(f"qemu image raised: {err[-1200:]}")
    return outp.removeprefix("OK")


def _read_until(p: subprocess.Popen[bytes], buf: bytes, mark: bytes, timeout: float, first: bytes = b"") -> bytes:
    assert p.stdin is not None and p.stdout is not None
    fd = p.stdout.fileno()
    t0 = time.monotonic()
    start = len(buf)
    sent = not first
    while mark not in buf[start:]:
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"qemu: no {mark!r} within {timeout} s; output {buf[-600:]!r}")
        if not sent and time.monotonic() - t0 > 0.3:  # the banner is out: interrupt, raw REPL
            p.stdin.write(first)
            p.stdin.flush()
            sent = True
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            d = os.read(fd, 65536)
            if not d:
                raise RuntimeError(f"qemu exited: {buf[-600:]!r}")
            buf += d
    return buf


def parse_lines(text: str) -> dict[str, Any]:
    """Every JSON object line of the output, merged."""
    raw: dict[str, Any] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            raw.update(json.loads(line))
    return raw


def route_args() -> tuple[str, str, str]:
    """(frame hex, GSME EUI, install code hex): RTDS GCS13a to the rig's GSME."""
    from chubcore.paths import vectors_dir
    from hil.han_setup import DEVICES
    from hil.headend.gbcs import parse_frame

    raw = bytes.fromhex((vectors_dir() / "gbcs" / "rtds" / GCS13A_GSME).read_text().strip())
    return raw.hex(), parse_frame(raw).recipient.hex().upper(), DEVICES["gsme"].install_code_hex


def run_bench_mcu(progress: Progress | None = None) -> dict[str, Any]:
    """Every target whose tools are installed (a missing one is named with its
    apt-get line and left out; none at all raises MpBuildError)."""
    say = progress or (lambda _m: None)
    t0 = time.monotonic()
    ready, missing = available()
    for line in missing:
        say(line)
    if not ready:
        raise MpBuildError("; ".join(missing))
    frame, eui, code = route_args()
    out: dict[str, Any] = {}
    for target in ready:
        elf = build_image(say, target=target)
        say(f"mcu {target.board}: crypto, GBCS, HAN, ZCL tunnel, routed message under qemu -icount")
        text = run_raw(elf, "import mcu_ops\nmcu_ops.setup()\nimport mp_crypto\nimport mp_gbcs\nimport mp_han\n"
                            f"mcu_ops.zcl()\nmcu_ops.route({frame!r}, {eui!r}, {code!r})\n", target=target)
        out.update(figures_from(parse_lines(text), target))
    if missing:
        out["mcu_missing"] = "; ".join(missing)
    out["mcu_bench_s"] = round(time.monotonic() - t0, 1)
    return out
