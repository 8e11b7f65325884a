"""Hostile input for the hub's byte parsers (ASH, EZSP, ZCL, ZSE tunnel, AT
lines, head-end link, local port) under MicroPython.

Seeds are valid inputs built on the CPython side by independent encoders
(hil/campaign/fuzz.py, shared with `chub bench`). Hypothesis draws the mutation seeds (bit flips, truncations,
insertions, interesting bytes, duplicated slices) and random blobs; one
micropython run per batch (bench/mp_fuzz_parsers.py `fuzz`) reports per input
"ok", the parser's own ValueError subclass, or "CRASH". bench/fuzz_corpus/<parser>/
holds the kept corpus that tests/mp/mp_fuzz.py replays in CI; regenerate it
with `python tests/test_fuzz_parsers.py` (seeded, deterministic).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hil.campaign.fuzz import CORPUS, PARSERS, SEEDS, _known, crashes_of, make_inputs, run_batch

# ---- tests ------------------------------------------------------------------------

@pytest.mark.parametrize("parser", PARSERS)
def test_seeds_parse_ok(parser: str, tmp_path: Path) -> None:
    """The independent encoders' valid inputs are accepted: the harness
    reaches the parsers' success paths (otherwise fuzzing them proves little)."""
    seeds = SEEDS[parser](random.Random(1))
    results = run_batch(parser, seeds, tmp_path)
    assert not crashes_of(parser, seeds, results)
    ok = results.count("ok")
    assert ok >= len(seeds) * 3 // 4, (parser, results)


@settings(max_examples=len(PARSERS) * 2, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(parser=st.sampled_from(PARSERS), seed=st.integers(0, 2**32 - 1))
def test_mutants_never_crash(parser: str, seed: int, tmp_path_factory: pytest.TempPathFactory) -> None:
    inputs = make_inputs(parser, seed, 1500)
    bad = crashes_of(parser, inputs, run_batch(parser, inputs, tmp_path_factory.mktemp("fz")))
    assert not [b for b in bad if not _known(parser, b[1])], bad[:5]


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(blobs=st.lists(st.binary(min_size=0, max_size=400), min_size=40, max_size=120))
def test_random_bytes_never_crash(blobs: list[bytes], tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("fz")
    for parser in PARSERS:
        bad = crashes_of(parser, blobs, run_batch(parser, blobs, tmp))
        assert not [b for b in bad if not _known(parser, b[1])], (parser, bad[:5])


def test_cpsi_non_ascii_is_a_format_error(tmp_path: Path) -> None:
    """Regression: the fuzzer's first find (UnicodeError escaped parse_cpsi)."""
    line = b"\r\n+CPSI: LTE,Online,234-1\x92,0x1A2B,27449090,301,EUTRAN-BAND20,6300\r\n"
    assert run_batch("at", [line], tmp_path) == ["ATFormatError"]


def test_corpus_is_complete() -> None:
    """Every parser has a kept corpus for the micropython replay (mp_fuzz)."""
    for parser in PARSERS:
        files = list((CORPUS / parser).glob("*.hex"))
        assert (CORPUS / parser / "ok.hex") in files, parser
        n = sum(len(f.read_text().split()) for f in files)
        assert n >= 50, (parser, n)


# ---- the kept corpus -----------------------------------------------------------------

def build_corpus(parser: str, tmp: Path, n: int = 4000, per_class: int = 40) -> dict[str, list[bytes]]:
    """Seeded: the seeds (ok) plus mutants grouped by the result they reach."""
    inputs = make_inputs(parser, 8, n)
    results = run_batch(parser, inputs, tmp)
    keep: dict[str, list[bytes]] = {}
    for b, res in zip(inputs, results, strict=True):
        if res.startswith("CRASH"):
            res = "crash"
        lst = keep.setdefault(res, [])
        if len(lst) < per_class and len(b) <= 600:
            lst.append(b)
    return keep


def main() -> None:  # pragma: no cover - maintenance helper
    import tempfile

    for parser in PARSERS:
        with tempfile.TemporaryDirectory() as t:
            keep = build_corpus(parser, Path(t))
        d = CORPUS / parser
        d.mkdir(parents=True, exist_ok=True)
        for old in d.glob("*.hex"):
            old.unlink()
        for name, items in keep.items():
            name = "known-crash" if name == "crash" else name
            (d / f"{name}.hex").write_text("".join(b.hex() + "\n" for b in items))
        print(parser, {k: len(v) for k, v in keep.items()})


if __name__ == "__main__":  # pragma: no cover
    main()
