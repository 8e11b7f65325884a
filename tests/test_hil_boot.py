"""HIL: the hub boots under MicroPython on the emulated board, answers on its
local port, keeps its flash across power cuts and follows the rig's RTC."""

from __future__ import annotations

import time

import pytest


def test_boots_and_reports_status(hub) -> None:
    st = hub.call("status")
    assert st["board"] in ("unix", "esp32_s3_devkitc", "esp32_devkitc")
    assert st["version"]
    assert st["heap_free"] > 0 and st["heap_alloc"] > 0
    assert isinstance(st["store"], dict) and isinstance(st["flash"], dict)
    assert st["jobs"]["local_port"]["state"] == "running"


# The tasks the hub holds at READY: each costs ~150 bytes on a 32-bit board
# (its Task, its coroutine frame, the factory's bound method, the
# supervisor's record). Only jobs that wait on something have one; the
# periodic work that only ticks (the heap's high-water mark, the watchdog's
# feed, the status LEDs, the clock's age count, the update's scheduled
# activation) runs in the hub's main task, and the job "update" ends once the
# boot's notes are done.
def test_at_ready_only_the_jobs_that_wait_on_something_run(hub) -> None:
    deadline = time.monotonic() + 10
    while True:
        st = hub.call("status")
        jobs = st["jobs"]
        if jobs.get("update", {}).get("state") != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    running = sorted(n for n, j in jobs.items() if j["state"] == "running")
    assert running == ["board", "han", "last_gasp", "local_port", "report", "route", "wan"]
    assert jobs["update"]["state"] == "done"
    assert st["heap_high_water"] > 0 and st["leds"]["power"] == "on"


def test_the_watchdog_is_fed_every_second_from_the_ticks(hub) -> None:
    # the board's WDT (the unix board's stand-in, with "watchdog_ms" in its
    # config) is fed once a second by the hub's ticks while the critical
    # jobs run: no job of its own
    if hub.dut.kind != "unix":
        pytest.skip("the watchdog stand-in is the emulated board's")
    pos = hub.log.position
    hub.dut.power_cut()
    hub.dut.watchdog_ms = 30000
    hub.dut.start()
    hub.dut.wait_ready(after=pos)
    assert "watchdog" not in hub.call("status")["jobs"]
    a = hub.rig.wdt_feeds
    time.sleep(3.2)
    fed = hub.rig.wdt_feeds - a
    assert 2 <= fed <= 4, fed


def test_uptime_advances(hub) -> None:
    a = hub.call("status")["uptime_s"]
    time.sleep(1.2)
    assert hub.call("status")["uptime_s"] >= a + 1


def test_heap_limit_is_the_one_asked_for(hub, request) -> None:
    if hub.dut.kind != "unix":
        pytest.skip("the heap limit is a property of the emulated board")
    st = hub.call("status")
    from chubcore.paths import default_heap

    # --chub-heap, else the default of the image's board (unix: 768k, unix32: 256k)
    limit = int((request.config.getoption("--chub-heap") or default_heap(hub.dut.board)).rstrip("k")) * 1024
    total = st["heap_free"] + st["heap_alloc"]
    assert limit * 0.9 <= total <= limit


def test_power_cut_then_reboot_keeps_flash(hub) -> None:
    if hub.dut.kind != "unix":
        pytest.skip("the rig cuts power only on the emulated board")
    before = hub.dut.flash_path.stat().st_size
    pos = hub.log.position
    hub.dut.power_cut()
    hub.dut.start()
    hub.dut.wait_ready(after=pos)
    # the second boot mounts the existing file system instead of formatting it
    assert not any("formatting" in line for line in hub.log.lines("dut", after=pos))
    assert hub.dut.flash_path.stat().st_size == before
    assert hub.call("status")["uptime_s"] < 5


def test_rig_sets_rtc_offset(hub) -> None:
    if hub.dut.kind != "unix":
        pytest.skip("the RTC offset line exists on the emulated board")
    t0 = hub.call("status")["utc"]
    assert abs(t0 - time.time()) < 5
    hub.rig.set_rtc_offset(86400)
    time.sleep(0.2)
    assert abs(hub.call("status")["utc"] - (time.time() + 86400)) < 5


# The data budget the hub must boot and serve in, above its code. On the unix
# board the bytecode sits in the heap, so the limit is the code's share (every
# module of the image imported) plus this; the bench's heap_working_set_kb is
# the measured figure (goal <= 48 KB), this leaves room for fragmentation.
DATA_BUDGET_KB = 128


def test_boots_in_code_plus_data_budget(rig, hil_log, hub_image, tmp_path) -> None:
    from chub.bench import heap_after_imports
    from hil.dut import UnixDut

    code_kb = heap_after_imports(hub_image, "4096k")
    heap = f"{int(code_kb) + 1 + DATA_BUDGET_KB}k"
    d = UnixDut(hub_image, tmp_path / "b", rig, hil_log, heap=heap)
    d.start()
    try:
        d.wait_ready(timeout=20)
        time.sleep(3)  # the jobs start, the first boot generates keys
        assert d.proc is not None and d.proc.poll() is None, f"the hub died at heap {heap}"
        assert not [line for line in hil_log.lines("dut") if "MemoryError" in line]
    finally:
        d.stop()
