"""The chub pytest plugin shares a venv with pytest-embedded (and labgrid's
plugin) without a clash: every option it registers is namespaced
(`--chub-...`), none is one pytest-embedded registers, and none of its
fixtures has a pytest-embedded fixture's name."""

from __future__ import annotations

import re
import subprocess
import sys

import hil.pytest_plugin as plugin

# pytest-embedded's options and fixtures, read from its source
# (github.com/espressif/pytest-embedded at 0d6502d, pytest_embedded/plugin.py)
EMBEDDED_OPTIONS = {
    "--count", "--parallel-count", "--parallel-index", "--check-duplicates", "--prettify-junit-report",
    "--unity-test-report-mode", "--root-logdir", "--cache-dir", "--embedded-services", "--app-path", "--build-dir",
    "--with-timestamp", "--logfile-extension", "--metric-path", "--port", "--port-location", "--baud", "--target",
    "--beta-target", "--add-target-as-marker-with-amount", "--flash-port", "--skip-autoflash", "--erase-all",
    "--esptool-baud", "--port-mac", "--port-serial-number", "--esp-flash-force", "--no-fast-flash",
    "--supported-targets", "--preview-targets", "--part-tool", "--confirm-target-elf-sha256", "--erase-nvs",
    "--skip-check-coredump", "--gdb-prog-path", "--gdb-cli-args", "--no-gdb", "--openocd-prog-path",
    "--openocd-cli-args", "--qemu-image-path", "--qemu-prog-path", "--qemu-cli-args", "--qemu-extra-args",
    "--qemu-efuse-path", "--skip-regenerate-image", "--encrypt", "--keyfile", "--espemu-image-path",
    "--espemu-prog-path", "--espemu-cli-args", "--espemu-extra-args", "--wokwi-diagram", "--wokwi-usb-serial-jtag",
}
EMBEDDED_FIXTURES = {
    "dut", "port", "app", "serial", "qemu", "gdb", "openocd", "wokwi", "espemu", "target", "app_path", "build_dir",
    "baud", "count", "pexpect_proc", "redirect", "msg_queue", "test_case_name", "test_file_path", "cache_dir",
}


def _our_options() -> list[str]:
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--help"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    section = r.stdout.split("HIL rig:\n", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^\s{2}(--[a-z0-9-]+)", section, re.M)


def test_options_namespaced_and_no_clash() -> None:
    names = _our_options()
    assert "--chub-dut" in names and "--chub-port" in names, names
    assert all(n.startswith("--chub-") for n in names), [n for n in names if not n.startswith("--chub-")]
    assert not set(names) & EMBEDDED_OPTIONS


def test_no_fixture_of_the_same_name() -> None:
    ours = {n for n, v in vars(plugin).items() if hasattr(v, "_fixture_function_marker") or
            type(v).__name__ == "FixtureFunctionDefinition"}
    assert {"hub", "chub_dut", "chub_system"} <= ours, ours
    assert not ours & EMBEDDED_FIXTURES, ours & EMBEDDED_FIXTURES
