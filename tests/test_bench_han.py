"""`chub bench`'s HAN figures (host_tools/chub/bench_han.py, bench/mp_han.py):
the keys are produced and the values are plausible (the hub's share of a
round trip is positive and below the whole; the micro-figures are neither
zero nor absurd)."""

from __future__ import annotations

from pathlib import Path

from chub import bench, bench_han

KEYS = ("ash_frame_us", "ezsp_overhead_us", "han_round_trip_ms", "han_round_trip_ch_ms")


def test_han_figures(hub_image: Path) -> None:
    fig = bench_han.figures("768k", hub_image)
    assert set(KEYS) <= set(fig), fig
    assert 5 < fig["ash_frame_us"] < 20_000, fig
    assert 2 < fig["ezsp_overhead_us"] < 20_000, fig
    # 300 bytes: 5 APS fragments each way over EZSP/ASH on TCP loopback
    assert 5 < fig["han_round_trip_ms"] < 5_000, fig
    assert 0 < fig["han_round_trip_ch_ms"] < fig["han_round_trip_ms"], fig
    # the emulated air time alone (5 fragments x 5 ms) is outside the hub
    assert fig["han_round_trip_ms"] - fig["han_round_trip_ch_ms"] >= 20, fig


def test_run_bench_includes_the_han_step() -> None:
    import inspect

    assert "bench_han.figures(heap, image)" in inspect.getsource(bench.run_bench)
