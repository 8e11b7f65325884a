"""Fault campaign: the full HIL scenario, then a time-scaled emulated day of
traffic with faults injected - modem faults (the SIM7600 emulator's fault
injection), NCP resets, lost HAN frames, head-end disconnects and clock jumps -
scripted (each kind alone, then combinations) and randomised (seeded).

The day is `hours` slots; each slot moves the board's clock and the
head-end's one emulated hour on, injects its faults, then does the hour's
traffic: a head-end GBCS command (must be answered exactly once), HAN
reports from the joined devices and, every few hours, a Device Log change on
the local port. A slot's faults are survived when, within `recover_s`, the
command was answered and the hub is back in service (WAN connected with an
empty outbox, HAN up) without restarting. At the end `scenario.check` runs the
same loss/duplication/consistency checks as the power-cut campaign.

CLI: part of `chub bench` (faults_injected, faults_survived);
tests/test_campaign_faults.py runs a short seeded day in CI.
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .scenario import ECS26I, JOINERS, Run, Violation, check, run_steps

HOUR = 3600
# fast modem timings so a silent modem is reset within seconds (as in
# tests/test_hil_wan_faults.py)
TIMINGS = {"cmd": 1500, "at": 300, "at_retries": 2, "cpin_retries": 2, "cpin_interval": 50, "netopen": 3000,
           "netclose": 2000, "cipopen": 3000, "cipsend": 3000, "cipclose": 2000, "boot": 3000, "reg_poll": 50,
           "grace": 50}
FAST = {"retry_ms": 100, "retry_max_ms": 400, "reg_timeout_ms": 1000, "hello_timeout_ms": 3000,
        "signal_ms": 300, "max_errors": 4, "timings": TIMINGS}


def _on_rig(run: Run, fn: Callable[[], Any]) -> None:
    async def go() -> None:
        fn()

    assert run.system.rig is not None
    run.system.rig.call(go())


def f_remote_close(run: Run) -> None:
    _on_rig(run, lambda: run.system.modem.remote_close(0))


def f_drop_network(run: Run) -> None:
    _on_rig(run, run.system.modem.drop_network)


def f_garble(run: Run) -> None:
    _on_rig(run, run.system.modem.garble)


def f_lose_registration(run: Run) -> None:
    emu = run.system.modem
    _on_rig(run, emu.lose_registration)
    time.sleep(1.0)
    _on_rig(run, emu.regain_registration)


def f_modem_silent(run: Run) -> None:
    _on_rig(run, run.system.modem.go_silent)  # the hub must pull the modem's reset line


def f_ncp_reset(run: Run) -> None:
    run.system.han.reset_ncp()


def f_han_loss(run: Run) -> None:
    """Half the HAN unicasts lost while the devices report."""
    emu = run.system.han.emu
    emu.han.loss = 0.5
    try:
        for _ in range(3):
            for name in JOINERS:
                run.system.han.send(name, bytes((0x18, 0x05, 0x0A, 0, 0, 0x20, 3)))
            time.sleep(0.1)
    finally:
        emu.han.loss = 0.0


def f_headend_disconnect(run: Run) -> None:
    run.system.headend.disconnect()


def f_clock_jump(run: Run) -> None:
    """The board's RTC jumps by hours; the head-end's time must win back."""
    rig = run.system.rig
    assert rig is not None
    jump = random.Random(run.seed + len(run.events)).choice((-3, -1, 2, 5)) * HOUR
    run.clock_jumps += 1
    rig.set_rtc_offset(run.day_offset + jump)
    for _ in range(3):  # a valid clock takes a step over 10 s once three readings agree (docs/clock.md)
        run.system.headend.send_time(int(time.time()) + run.day_offset)


FAULTS: dict[str, Callable[[Run], None]] = {
    "modem_remote_close": f_remote_close,
    "modem_drop_network": f_drop_network,
    "modem_garble": f_garble,
    "modem_lose_registration": f_lose_registration,
    "modem_silent": f_modem_silent,
    "ncp_reset": f_ncp_reset,
    "han_loss": f_han_loss,
    "headend_disconnect": f_headend_disconnect,
    "clock_jump": f_clock_jump,
}
# after each kind alone: combinations that meet in one hour
COMBOS = [
    ("ncp_reset", "headend_disconnect"),
    ("modem_drop_network", "clock_jump"),
    ("han_loss", "modem_remote_close", "ncp_reset"),
    ("modem_silent", "headend_disconnect"),
]


@dataclass
class SlotResult:
    hour: int
    faults: tuple[str, ...]
    survived: bool
    seconds: float
    error: str = ""


@dataclass
class DayResult:
    slots: list[SlotResult] = field(default_factory=list)
    final_ok: bool = False
    error: str = ""
    seconds: float = 0.0

    @property
    def injected(self) -> int:
        return sum(len(s.faults) for s in self.slots)

    @property
    def survived(self) -> int:
        # a fault counts as survived when its hour recovered and nothing
        # was lost or duplicated over the whole day
        if not self.final_ok:
            return 0
        return sum(len(s.faults) for s in self.slots if s.survived)

    def figures(self) -> dict[str, Any]:
        return {"faults_injected": self.injected, "faults_survived": self.survived}


def schedule(hours: int, seed: int) -> list[tuple[str, ...]]:
    """Scripted first (each kind alone, then the combinations), then seeded
    random hours of one or two faults (some hours quiet)."""
    plan: list[tuple[str, ...]] = [(k,) for k in FAULTS] + COMBOS
    rnd = random.Random(seed)
    kinds = sorted(FAULTS)
    while len(plan) < hours:
        k = rnd.choice((0, 1, 1, 2))
        plan.append(tuple(rnd.sample(kinds, k)))
    return plan[:hours]


def day(image: Path, workdir: Path, hours: int = 24, seed: int = 1, recover_s: float = 30.0,
        progress: Callable[[SlotResult], None] | None = None) -> DayResult:
    t0 = time.monotonic()
    out = DayResult()
    run = Run(workdir, image, seed=seed)
    try:
        if not run.power_on():
            raise RuntimeError("the hub did not boot")
        run_steps(run, max_reboots=0)
        run.call("wan_config", set=FAST)
        boots = run.dut.boots
        for hour, faults in enumerate(schedule(hours, seed), 1):
            s0 = time.monotonic()
            res = SlotResult(hour, faults, survived=False, seconds=0.0)
            try:
                run.day_offset = hour * HOUR
                assert run.system.rig is not None
                run.system.rig.set_rtc_offset(run.day_offset)
                run.system.headend.time_offset = run.day_offset
                for name in faults:
                    run.events.append(f"hour {hour}: {name}")
                    FAULTS[name](run)
                run.command(f"hour{hour}", ECS26I, timeout=recover_s)
                for name in JOINERS:
                    run.system.han.send(name, bytes((0x18, hour & 0xFF, 0x0A, 0, 0, 0x20, 3)))
                if hour % 6 == 0:
                    _device_log_change(run, hour)
                run.wan_idle(recover_s)
                if "clock_jump" in faults:
                    run.until(lambda: _time_and_check(run), recover_s, "the clock back on the head-end's time")
                run.until(lambda: run.call("han_status")["state"] == "up", recover_s, "the HAN up")
                if run.dut.boots != boots or not run.dut.alive:
                    raise Violation("the hub restarted")
                res.survived = True
            except Exception as e:  # noqa: BLE001 - a finding, recorded per hour
                res.error = f"{type(e).__name__}: {e}"[:400]
                if not run.dut.alive:
                    out.slots.append(res)
                    raise
            res.seconds = time.monotonic() - s0
            out.slots.append(res)
            if progress:
                progress(res)
        check(run)
        out.final_ok = True
    except Exception as e:  # noqa: BLE001
        out.error = f"{type(e).__name__}: {e}"[:600] + "\n" + traceback.format_exc(limit=2)[-400:]
        out.error += f"\n(log: {run.log.path})"
    finally:
        run.stop()
        out.seconds = time.monotonic() - t0
    return out


def _time_and_check(run: Run) -> bool:
    """The head-end's TIME again (as its periodic ones would come: a valid
    clock takes a step over 10 s once three readings agree), then the check."""
    run.system.headend.send_time(int(time.time()) + run.day_offset)
    return _clock_ok(run)


def _clock_ok(run: Run) -> bool:
    return abs(run.call("status")["clock"]["utc"] - (time.time() + run.day_offset)) < 60


def _device_log_change(run: Run, hour: int) -> None:
    """Every six hours: the PPMID added or removed on the local port."""
    from ..han_setup import DEVICES

    spec = DEVICES["ppmid"]
    if spec.eui in run.ledger.dl_added:
        r = run.call("device_log_remove", eui=spec.eui)
        if r["code"] != 0:
            raise Violation(f"hour {hour}: device_log_remove: {r}")
        run.ledger.dl_added.pop(spec.eui)
        run.ledger.dl_removed.add(spec.eui)
    else:
        r = run.call("device_log_add", eui=spec.eui, type=spec.dev_type, install_code=spec.install_code_hex,
                     join_timeout=60)
        if r["code"] != 0:
            raise Violation(f"hour {hour}: device_log_add: {r}")
        run.ledger.dl_added[spec.eui] = spec.dev_type
        run.ledger.dl_removed.discard(spec.eui)
