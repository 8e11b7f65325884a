"""`chub bench`'s GPF-on-the-HAN figures (host_tools/chub/bench_gpf_han.py):
the keys are produced and the values are plausible (a tariff read is a few
HAN round trips; a top-up waits for the GSME's wake, at most one period plus
the exchange, and the part after the wake is below the whole)."""

from __future__ import annotations

import inspect
from pathlib import Path

from chub import bench, bench_gpf_han

KEYS = ("tapoff_read_ms", "ppmid_topup_round_trip_s", "ppmid_topup_gsme_wake_s", "ppmid_topup_after_wake_s")


def test_gpf_han_figures(hub_image: Path) -> None:
    fig = bench_gpf_han.figures("768k", hub_image)
    assert set(KEYS) <= set(fig), fig
    assert 0.5 < fig["tapoff_read_ms"] < 2_000, fig
    wake = fig["ppmid_topup_gsme_wake_s"]
    assert 0 < fig["ppmid_topup_after_wake_s"] < fig["ppmid_topup_round_trip_s"] < wake + 5, fig


def test_run_bench_includes_the_gpf_han_step() -> None:
    assert "bench_gpf_han.figures(heap, image)" in inspect.getsource(bench.run_bench)
