"""`chub flash`: the firmware checks on a real MicroPython-format image (made
with esptool's image API), the esptool write/verify path against a
monkeypatched chip connection (the only stand-in: there is no ESP32 here),
whose flash is then read back with esptool's own image tools, and the
emulated board flashed for real through the pty bridge with mpremote."""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from esptool.bin_image import LoadFirmwareImage
from esptool.util import FatalError

from chub.cli import main
from chub.firmware_bin import build_test_firmware, check_firmware
from chub.flash_chip import flash_firmware
from chubcore.build import board_spec
from chubcore.image_copy import FlashError, image_files

S3 = board_spec("esp32_s3_devkitc")
WROOM = board_spec("esp32_devkitc")


class FakeChip:
    """The chip end of esptool's flasher-stub protocol, on a bytearray."""

    FLASH_WRITE_SIZE = 0x4000

    def __init__(self, name: str = "ESP32-S3", size_mb: int = 8, corrupt: bool = False) -> None:
        self.CHIP_NAME = name
        self.IS_STUB = False
        self.flash = bytearray(b"\xff" * (size_mb << 20))
        self.corrupt = corrupt
        self.calls: list[str] = []
        self._port = None

    def run_stub(self) -> FakeChip:
        self.IS_STUB = True
        self.calls.append("stub")
        return self

    def change_baud(self, baud: int) -> None:
        self.calls.append(f"baud {baud}")

    def get_chip_description(self) -> str:
        return f"{self.CHIP_NAME} (revision v0.2)"

    def flash_id(self) -> int:
        return ((len(self.flash).bit_length() - 1) << 16) | 0x40C8

    def erase_flash(self) -> None:
        assert self.IS_STUB
        self.flash[:] = b"\xff" * len(self.flash)
        self.calls.append("erase")

    def flash_defl_begin(self, size: int, compsize: int, offset: int) -> int:
        assert self.IS_STUB, "esptool writes through its stub"
        self._z, self._at, self._end, self._seq = zlib.decompressobj(), offset, offset + size, 0
        self.calls.append(f"begin 0x{offset:x} {size}")
        return (compsize + self.FLASH_WRITE_SIZE - 1) // self.FLASH_WRITE_SIZE

    def flash_defl_block(self, data: bytes, seq: int, timeout: float = 3) -> None:
        assert seq == self._seq, "blocks out of order"
        self._seq += 1
        out = bytearray(self._z.decompress(data))
        if self.corrupt and out:
            out[len(out) // 2] ^= 0x10
        self.flash[self._at : self._at + len(out)] = out
        self._at += len(out)

    def flash_defl_finish(self, reboot: bool = False) -> None:
        assert self._at == self._end and self._z.eof, "short write"
        self.calls.append("finish")

    def flash_md5sum(self, addr: int, size: int) -> str:
        return hashlib.md5(self.flash[addr : addr + size]).hexdigest()

    def hard_reset(self) -> None:
        self.calls.append("reset")


@pytest.fixture
def fw_s3(tmp_path: Path) -> Path:
    p = tmp_path / "ESP32_GENERIC_S3-SPIRAM_OCT.bin"
    p.write_bytes(build_test_firmware("esp32s3"))
    return p


def _chip(monkeypatch: pytest.MonkeyPatch, chip: FakeChip | Exception) -> None:
    import esptool.cmds

    def detect(port, baud, mode, trace, attempts):  # noqa: ANN001, ANN202
        if isinstance(chip, Exception):
            raise chip
        return chip

    monkeypatch.setattr(esptool.cmds, "detect_chip", detect)


def _noop(*_a: object) -> None:
    pass


def test_check_firmware_reads_a_micropython_image(fw_s3: Path) -> None:
    fw = check_firmware(fw_s3, S3)
    assert fw.project == "micropython" and fw.version == "v1.29.0"
    assert (fw.app.label, fw.app.offset) == ("factory", 0x10000)
    assert [p.label for p in fw.partitions] == ["nvs", "phy_init", "factory", "vfs"]
    wroom = tmp = fw_s3.with_name("ESP32_GENERIC.bin")
    tmp.write_bytes(build_test_firmware("esp32"))
    assert check_firmware(wroom, WROOM).offset == 0x1000


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda b: b"", "too short"),
        (lambda b: b[:-20], "truncated"),
        (lambda b: b[:-200], "truncated"),
        (lambda b: b[:0x10100] + bytes([b[0x10100] ^ 1]) + b[0x10101:], "corrupt"),
        (lambda b: b[:0x8010] + bytes([b[0x8010] ^ 1]) + b[0x8011:], "partition table's MD5"),
        (lambda b: b"\x00" + b[1:], "not a valid ESP image"),
        (lambda b: build_test_firmware("esp32s3", project=b"blink"), "not MicroPython"),
        (lambda b: build_test_firmware("esp32"), "wrong firmware for this board"),
        (lambda b: build_test_firmware("esp32s3", app_chip="esp32c3"), "wrong firmware for this board"),
    ],
)
def test_check_firmware_refuses_bad_files(fw_s3: Path, mutate, words: str) -> None:  # noqa: ANN001
    fw_s3.write_bytes(mutate(fw_s3.read_bytes()))
    with pytest.raises(FlashError, match=words):
        check_firmware(fw_s3, S3)


def test_missing_firmware_file(tmp_path: Path) -> None:
    with pytest.raises(FlashError, match="not found.*ESP32_GENERIC_S3"):
        check_firmware(tmp_path / "nope.bin", S3)


def test_esptool_write_lands_a_valid_image_at_the_board_offset(fw_s3: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chip = FakeChip()
    _chip(monkeypatch, chip)
    seen: list[tuple[str, int, int]] = []
    fw = check_firmware(fw_s3, S3)
    r = flash_firmware("/dev/ttyUSB0", S3, fw, erase=True, progress=lambda *a: seen.append(a))
    assert chip.calls[:3] == ["stub", "baud 460800", "erase"] and chip.calls[-1] == "reset"
    assert r["flash_bytes"] == 8 << 20 and r["offset"] == 0
    data = fw_s3.read_bytes()
    assert bytes(chip.flash[: len(data)]) == data
    # what is in the chip's flash, read back with esptool's own image tools
    boot = LoadFirmwareImage("esp32s3", bytes(chip.flash[:0x8000]))
    assert boot.chip_id == 9 and boot.checksum == boot.calculate_checksum()
    app = LoadFirmwareImage("esp32s3", bytes(chip.flash[0x10000:]))
    assert app.stored_digest == app.calc_digest and b"micropython" in app.segments[0].data[48:80]
    assert seen[-1][0] == "verify" and seen[-1][1] == seen[-1][2] == len(data)


def test_wroom_image_goes_to_0x1000(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "ESP32_GENERIC.bin"
    p.write_bytes(build_test_firmware("esp32"))
    chip = FakeChip("ESP32", size_mb=4)
    _chip(monkeypatch, chip)
    flash_firmware("/dev/ttyUSB0", WROOM, check_firmware(p, WROOM), erase=False, progress=_noop)
    assert "erase" not in chip.calls
    assert bytes(chip.flash[:0x1000]) == b"\xff" * 0x1000
    assert LoadFirmwareImage("esp32", bytes(chip.flash[0x1000:0x8000])).chip_id == 0


def test_wrong_chip_is_refused_before_writing(fw_s3: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chip = FakeChip("ESP32")
    _chip(monkeypatch, chip)
    with pytest.raises(FlashError, match="is an ESP32, but board esp32_s3_devkitc has an ESP32-S3"):
        flash_firmware("/dev/ttyUSB0", S3, check_firmware(fw_s3, S3), erase=True, progress=_noop)
    assert chip.calls == []


def test_failed_verify_is_an_error(fw_s3: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _chip(monkeypatch, FakeChip(corrupt=True))
    with pytest.raises(FlashError, match="verify failed at 0x0.*NOT flashed"):
        flash_firmware("/dev/ttyUSB0", S3, check_firmware(fw_s3, S3), erase=False, progress=_noop)


def test_no_board_answering(fw_s3: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _chip(monkeypatch, FatalError("Failed to connect to ESP32-S3: No serial data received."))
    with pytest.raises(FlashError, match="no ESP32 bootloader answered on /dev/ttyUSB0"):
        flash_firmware("/dev/ttyUSB0", S3, check_firmware(fw_s3, S3), erase=False, progress=_noop)


def test_cli_wrong_port_fails_without_done(fw_s3: Path, tmp_path: Path) -> None:
    # the real esptool on a port that does not exist
    img = tmp_path / "img"
    r0 = CliRunner().invoke(main, ["build", "--board", "esp32_s3_devkitc", "--out", str(img)])
    assert r0.exit_code == 0, r0.output
    r = CliRunner().invoke(main, ["flash", "--board", "esp32_s3_devkitc", "--port", str(tmp_path / "ttyNOPE"),
                                  "--firmware", str(fw_s3), "--image", str(img)])
    assert r.exit_code == 1 and "cannot open" in r.output and "done" not in r.output
    r = CliRunner().invoke(main, ["flash", "--board", "esp32_s3_devkitc", "--port", "/dev/null",
                                  "--firmware", str(tmp_path / "missing.bin"), "--image", str(img)])
    assert r.exit_code == 1 and "not found" in r.output and "done" not in r.output


def test_image_copy_order_and_hash_checks(hub_image: Path, tmp_path: Path) -> None:
    doc, files = image_files(hub_image)
    assert files[-1] == "main.py" and len(files) == len(doc["files"])
    bad = tmp_path / "img"
    import shutil

    shutil.copytree(hub_image, bad)
    (bad / "app.mpy").write_bytes(b"x")
    with pytest.raises(FlashError, match="does not match image.json"):
        image_files(bad)


def test_flash_the_emulated_board_through_mpremote(hub_image: Path, tmp_path: Path) -> None:
    from chubcore.localport import LocalPortClient
    from hil.system import EmulatedSystem

    board = tmp_path / "board"

    from test_provision import PROVISION_HEAP

    def flash(*extra: str) -> None:
        r = CliRunner().invoke(main, ["flash", "--board", "unix", "--port", str(board), "--image", str(hub_image),
                                      "--heap", PROVISION_HEAP, *extra])
        assert r.exit_code == 0, r.output
        assert f"runs {doc['version']} ({doc['git']})" in r.output and "done" in r.output

    def chf_eui() -> str:
        # the flashed board booted again by the emulated system (no demo HAN)
        s = EmulatedSystem(board, heap=PROVISION_HEAP)
        s.han_demo = False
        s.start()
        try:
            assert s.from_flash and s.image is None
            with LocalPortClient(s.local_port_url) as c:
                assert c.call("status")["git"] == doc["git"]
                return c.call("identity")["chf"]["eui"]
        finally:
            s.stop()

    doc = json.loads((hub_image / "image.json").read_text())
    flash()
    log = (board / "flash-boot.log").read_text()
    assert "BOOT /flash/main.py" in log and "hub READY" in log
    assert json.loads((board / "flashed.json").read_text())["git"] == doc["git"]
    eui = chf_eui()
    flash()
    assert chf_eui() == eui  # the app was replaced, the hub's data kept
    flash("--erase")
    assert chf_eui() != eui  # a blank flash: a new hub


def test_emulated_board_refusals(hub_image: Path, tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["flash", "--board", "unix", "--port", str(tmp_path / "b"), "--image",
                                  str(hub_image), "--firmware", str(tmp_path / "x.bin")])
    assert r.exit_code == 1 and "does not apply to the emulated board" in r.output
    other = tmp_path / "s3"
    CliRunner().invoke(main, ["build", "--board", "esp32_s3_devkitc", "--out", str(other)])
    r = CliRunner().invoke(main, ["flash", "--board", "unix", "--port", str(tmp_path / "b"), "--image", str(other)])
    assert r.exit_code == 1 and "built for board 'esp32_s3_devkitc'" in r.output and "done" not in r.output
    assert not (tmp_path / "b" / "flashed.json").exists()
