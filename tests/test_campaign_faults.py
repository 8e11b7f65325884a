"""Fault campaign in CI: a short seeded emulated day (every fault kind alone,
the scripted combinations, then seeded random hours) over the full HIL
scenario; the same loss/duplication checks as the power-cut campaign."""

from __future__ import annotations

from pathlib import Path

from hil.campaign import faults

HOURS = 16


def test_schedule_is_scripted_then_seeded() -> None:
    plan = faults.schedule(HOURS, 1)
    assert plan[: len(faults.FAULTS)] == [(k,) for k in faults.FAULTS]
    assert plan[len(faults.FAULTS) : len(faults.FAULTS) + len(faults.COMBOS)] == faults.COMBOS
    assert plan == faults.schedule(HOURS, 1) and len(plan) == HOURS
    assert faults.schedule(40, 1) != faults.schedule(40, 2)


def test_short_day_of_faults(hub_image: Path, tmp_path: Path, vectors: Path) -> None:
    r = faults.day(hub_image, tmp_path / "day", hours=HOURS, seed=1)
    failed = [(s.hour, s.faults, s.error) for s in r.slots if not s.survived]
    print(f"\nfaults: {r.injected} injected / {r.survived} survived over {len(r.slots)} hours, {r.seconds:.0f} s")
    assert r.final_ok, r.error
    assert not failed, failed
    assert len(r.slots) == HOURS and r.injected >= 18
    assert r.survived == r.injected
