"""Latency figures with device-like flash (issue 15, item 5): the emulated
board's flash takes the ESP32's SPI NOR times (boards/unix/blockdev.py
SPI_NOR: W25Q32FV page program 0.7 ms, 4 KB sector erase 45 ms, typical), set
through $CHUB_FLASH_TIMING, which the unix board reads when its config names
no timing. The same measurements as the plain figures, published with the
suffix _nor:
  e2e_ms_nor, e2e_ch_ms_nor      bench_proof.e2e_figures
  routed_msg_us_nor              bench_proof.routing_figures
  esme_round_trip_ms_nor, esme_round_trip_ch_ms_nor  bench_route.system_figures
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import bench_proof, bench_route

ENV = "CHUB_FLASH_TIMING"
SUFFIX = "_nor"
KEYS = ("e2e_ms", "e2e_ch_ms", "routed_msg_us", "esme_round_trip_ms", "esme_round_trip_ch_ms")


@contextmanager
def flash_timing(name: str | None) -> Iterator[None]:
    """$CHUB_FLASH_TIMING set to `name` (None: unset) while inside."""
    old = os.environ.get(ENV)
    if name is None:
        os.environ.pop(ENV, None)
    else:
        os.environ[ENV] = name
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = old


def latency_figures(image: Path, heap: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out.update(bench_proof.e2e_figures(image, heap))
    out.update(bench_proof.routing_figures(heap))
    sysf = bench_route.system_figures(image, heap)
    out.update({k: sysf[k] for k in ("esme_round_trip_ms", "esme_round_trip_ch_ms")})
    return {k: out[k] for k in KEYS}


def figures(image: Path, heap: str, timing: str = "spi_nor",
            say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The latency figures with the named flash timing, keys suffixed _nor."""
    (say or (lambda _m: None))(f"latencies with {timing} flash timing")
    with flash_timing(timing):
        return {k + SUFFIX: v for k, v in latency_figures(image, heap).items()}


def both(image: Path, heap: str, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """`chub bench --flash-nor`: the plain latency figures and the _nor ones, one after the other."""
    (say or (lambda _m: None))("latencies with the plain (untimed) flash")
    with flash_timing(None):
        out = latency_figures(image, heap)
    out.update(figures(image, heap, say=say))
    return out
