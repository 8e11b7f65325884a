"""`chub bench`'s key establishment figures (host_tools/chub/bench_cbke.py)."""

from __future__ import annotations

import inspect
from pathlib import Path

from chub import bench, bench_cbke


def test_cbke_figures(hub_image: Path) -> None:
    fig = bench_cbke.figures("768k", hub_image)
    assert set(fig) == {"cbke_s", "cbke_ncp_s", "cbke_device_s", "cbke_ch_s", "restore_rejoin_s"}
    assert 0 < fig["restore_rejoin_s"] < 60, fig
    assert 0 < fig["cbke_ncp_s"] < fig["cbke_s"] < 60, fig
    assert 0 < fig["cbke_device_s"] < fig["cbke_s"], fig
    assert 0 < fig["cbke_ch_s"] < fig["cbke_s"], fig
    print(fig)


def test_run_bench_includes_the_cbke_step() -> None:
    assert "bench_cbke.figures(heap, image)" in inspect.getsource(bench.run_bench)
