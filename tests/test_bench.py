"""`chub bench --json`: one JSON object, measured in one run, with the published keys."""

from __future__ import annotations

import json

from click.testing import CliRunner

from chub.cli import main

# Keys are stable: a figure once published keeps its name.
PUBLISHED = {
    "heap_after_imports_kb",
    "heap_peak_kb",
    "block_writes",
    "block_erases",
    "boot_to_ready_s",
    "ecdh_ms",
}


def test_bench_json_has_the_published_figures() -> None:
    r = CliRunner().invoke(main, ["bench", "--json"])
    assert r.exit_code == 0, r.output
    figures = json.loads(r.output.strip().splitlines()[-1])
    missing = PUBLISHED - figures.keys()
    assert not missing, f"bench lost published keys: {missing}"
    limit_kb = 512
    assert 0 < figures["heap_after_imports_kb"] < limit_kb
    assert 0 < figures["heap_peak_kb"] < limit_kb
    # the storage workload really wrote and erased flash blocks
    assert figures["block_writes"] > 100 and figures["block_erases"] > 0
    assert 0 < figures["boot_to_ready_s"] < 30
    assert 0 < figures["ecdh_ms"] < 1000
