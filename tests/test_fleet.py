"""The fleet check (issue 21): N emulated hubs against one head-end send
their periodic report at their own times in one send window (the
firmware's wan.window scheduling and wan.link frames under MicroPython,
hil/fleet), and the arrivals spread over the window: the busiest second
holds at most twice the uniform mean. Bounded: one window of 10 s, ~13 s."""

from __future__ import annotations

from hil.fleet import run_fleet

HUBS = 200


def test_fleet_reports_spread_over_the_window() -> None:
    r = run_fleet(HUBS, length_s=10, lead_s=3, timeout=60)
    assert r.hubs == HUBS and r.outside == 0, r
    assert r.late_ms < 500, r  # each hub sent at its scheduled time
    assert all(n > 0 for n in r.histogram), r  # every second of the window has sends
    assert r.peak_ratio <= 2.0, r
