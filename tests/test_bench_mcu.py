"""`chub bench --mcu` (host_tools/chub/bench_mcu.py): its pure parts. The bench
itself builds the qemu port and runs it (minutes, an ARM toolchain): not here."""

from __future__ import annotations

import pytest

from chub import bench_mcu as M


def test_esp32_estimate_is_instructions_times_cpi_over_clock() -> None:
    # 240 M instructions at 1.5 cycles each on a 240 MHz CPU: 1.5 s
    assert M.esp32_ms(240.0, clock_mhz=240, cpi=1.5) == pytest.approx(1500.0)
    assert M.esp32_ms(1.0) == pytest.approx(M.CPI / M.CLOCK_MHZ * 1000)


def test_wire_time_is_ten_bits_a_byte() -> None:
    assert M.wire_ms(79) == pytest.approx(79 * 10 / 115200 * 1000)


def test_figures_from_raw_counts() -> None:
    # the image prints k-instructions for *_us keys and M-instructions for *_ms keys
    raw = {"ecdh_ms": 55.0, "gmac_us_per_frame": 880, "routed_msg_us": 300, "frame_bytes": 79,
           "routed_blockdev_calls": 67, "unrelated": 1}
    f = M.figures_from(raw)
    assert f["mcu_ecdh_minstr"] == 55.0
    assert f["mcu_gmac_frame_minstr"] == 0.88
    assert f["mcu_routed_msg_minstr"] == 0.3
    assert f["mcu_routed_msg_ms"] == round(M.esp32_ms(0.3), 2)
    assert f["mcu_routed_msg_wire_ratio"] == round(f["mcu_routed_msg_ms"] / f["mcu_routed_msg_wire_ms"], 3)
    assert f["mcu_routed_blockdev_calls"] == 67
    assert "unrelated" not in f and "mcu_unrelated_minstr" not in f
    assert "240 MHz" in f["mcu_assumed"]


def test_parse_lines_merges_json_lines_only() -> None:
    text = 'OK{"a": 1}\r\nnoise\r\n{"b": 2.5}\r\n{"a": 3}\r\n'
    assert M.parse_lines(text) == {"b": 2.5, "a": 3}


def test_the_image_runs_the_bench_scripts_it_freezes() -> None:
    manifest = (M.MCU_DIR / "manifest.py").read_text()
    for name in M.SCRIPTS:
        assert name in manifest
        assert (M.BENCH / name).exists()
    for mod in ("mcu_ops.py", "mcu_os.py"):
        assert (M.MCU_DIR / mod).exists() and mod in manifest


def test_missing_tools_are_named_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(M.shutil, "which", lambda _t: None)
    with pytest.raises(M.MpBuildError, match="apt-get install -y qemu-system-arm"):
        M.check_tools()


def test_cli_names_the_missing_tools_without_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from chub.cli import main

    monkeypatch.setattr(M.shutil, "which", lambda _t: None)
    r = CliRunner().invoke(main, ["bench", "--mcu"])
    assert r.exit_code == 1
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert "apt-get install -y qemu-system-arm" in r.output


def test_rv32_figures_carry_their_prefix_and_clock() -> None:
    raw = {"routed_msg_us": 200, "frame_bytes": 79, "ecdh_ms": 40.0, "mcu_heap_free_after_setup": 1000}
    f = M.figures_from(raw, M.RV32)
    assert f["mcu_rv32_ecdh_minstr"] == 40.0
    assert f["mcu_rv32_routed_msg_ms"] == round(M.esp32_ms(0.2, M.RV32_CLOCK_MHZ, M.RV32.cpi), 2)
    assert f["mcu_rv32_routed_msg_wire_ratio"] == round(f["mcu_rv32_routed_msg_ms"] / f["mcu_rv32_routed_msg_wire_ms"], 3)
    assert f["mcu_rv32_heap_free_after_setup"] == 1000
    assert "160 MHz" in f["mcu_rv32_assumed"] and not any(k.startswith("mcu_routed") for k in f)


def test_a_target_without_its_tools_is_named_with_its_apt_line(monkeypatch: pytest.MonkeyPatch) -> None:
    arm = set(M.CM3.tools)
    monkeypatch.setattr(M.shutil, "which", lambda t: "/usr/bin/" + t if t in arm else None)
    ready, missing = M.available()
    assert ready == [M.CM3]
    assert len(missing) == 1 and "VIRT_RV32" in missing[0] and M.RV32_APT in missing[0]
    with pytest.raises(M.MpBuildError, match="gcc-riscv64-unknown-elf"):
        M.check_tools(M.RV32)


def test_the_routed_message_mean_has_its_own_wire_ratio() -> None:
    f = M.figures_from({"routed_msg_us": 180, "routed_msg_mean_us": 200, "frame_bytes": 79})
    assert f["mcu_routed_msg_mean_minstr"] == 0.2
    assert f["mcu_routed_msg_mean_wire_ratio"] == round(f["mcu_routed_msg_mean_ms"] / f["mcu_routed_msg_wire_ms"], 3)
    assert f["mcu_routed_msg_mean_wire_ratio"] > f["mcu_routed_msg_wire_ratio"]
