"""Fuzz the firmware GBCS codec under MicroPython: hypothesis mutates RTDS
frames (bit flips, truncations, insertions, length-byte edits) and makes random
bytes; one micropython run per batch reports per input "ok", the specific
error class, or "CRASH ...". Only FrameError/DlmsError/DerError/GbzError may
come out of bad input. tests/corpus/gbcs/ holds a small replayed corpus."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpy import run_mp

CORPUS = Path(__file__).resolve().parent / "corpus" / "gbcs"
ALLOWED = {"ok", "FrameError", "DlmsError", "DerError", "GbzError"}


def _seeds(vectors: Path) -> list[bytes]:
    return [bytes.fromhex(p.read_text().strip()) for p in sorted((vectors / "gbcs" / "rtds").rglob("*.HEX"))]


def _run_batch(inputs: list[bytes], tmp: Path) -> list[str]:
    corpus = tmp / "batch.txt"
    corpus.write_text("\n".join(b.hex() for b in inputs) + "\n")
    r = run_mp(code=f"import mp_gbcs_codec as m; m.fuzz({str(corpus)!r})", heap="512k", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout.splitlines()
    assert len(out) == len(inputs), (len(out), len(inputs), r.stdout[-2000:])
    return out


def _assert_no_crash(inputs: list[bytes], results: list[str]) -> None:
    crashes = [(b.hex(), res) for b, res in zip(inputs, results, strict=True) if res not in ALLOWED]
    assert not crashes, crashes[:5]


def mutate(data: bytes, rnd: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(6)
        if not b:
            b = bytearray(rnd.randbytes(rnd.randint(1, 40)))
            continue
        i = rnd.randrange(len(b))
        if op == 0:  # bit flip
            b[i] ^= 1 << rnd.randrange(8)
        elif op == 1:  # truncate
            del b[i:]
        elif op == 2:  # insert bytes
            b[i:i] = rnd.randbytes(rnd.randint(1, 8))
        elif op == 3:  # delete a run
            del b[i : i + rnd.randint(1, 8)]
        elif op == 4:  # interesting byte values (lengths, tags)
            b[i] = rnd.choice((0x00, 0x01, 0x02, 0x08, 0x09, 0x0C, 0x13, 0x7F, 0x80, 0x81, 0x82, 0xFF))
        else:  # duplicate a slice
            j = rnd.randrange(len(b))
            b[i:i] = b[j : j + rnd.randint(1, 16)]
    return bytes(b)


def test_corpus_replay(tmp_path: Path) -> None:
    """The kept corpus (mutants that hit distinct error paths) never crashes."""
    files = sorted(CORPUS.glob("*.hex"))
    assert files, "tests/corpus/gbcs is empty"
    inputs = [bytes.fromhex(ln) for f in files for ln in f.read_text().split() if ln]
    results = _run_batch(inputs, tmp_path)
    _assert_no_crash(inputs, results)
    # the corpus exercises every error class and some valid frames
    assert {"ok", "FrameError", "DlmsError", "DerError", "GbzError"} <= set(results), set(results)


def test_unmutated_vectors_all_ok(vectors: Path, tmp_path: Path) -> None:
    seeds = _seeds(vectors)
    assert _run_batch(seeds, tmp_path) == ["ok"] * len(seeds)


@pytest.fixture(scope="module")
def seeds(vectors: Path) -> list[bytes]:
    return _seeds(vectors)


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(seed=st.integers(0, 2**32 - 1))
def test_mutated_frames_never_crash(seed: int, seeds: list[bytes], tmp_path_factory) -> None:
    rnd = random.Random(seed)
    inputs = [mutate(rnd.choice(seeds), rnd) for _ in range(1000)]
    _assert_no_crash(inputs, _run_batch(inputs, tmp_path_factory.mktemp("fz")))


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(blobs=st.lists(st.binary(min_size=0, max_size=300), min_size=50, max_size=200))
def test_random_bytes_never_crash(blobs: list[bytes], tmp_path_factory) -> None:
    # random bytes, and random bytes behind a valid-looking MAC header / grouping tag
    inputs = blobs + [b"\xdf\x09" + b for b in blobs] + [b"\xdd\x00\x00\x00\x00\x00\x00" + b for b in blobs]
    _assert_no_crash(inputs, _run_batch(inputs, tmp_path_factory.mktemp("fz")))


def build_corpus(vectors: Path, tmp: Path, per_class: int = 12) -> dict[str, list[bytes]]:
    """Pick mutants whose error messages differ (distinct error paths); used to
    (re)write tests/corpus/gbcs: python -c 'from tests.test_gbcs_fuzz import main; main()'."""
    rnd = random.Random(4)
    seeds = _seeds(vectors)
    inputs = [mutate(rnd.choice(seeds), rnd) for _ in range(6000)]
    results = _run_batch(inputs, tmp)
    keep: dict[str, list[bytes]] = {}
    for b, res in zip(inputs, results, strict=True):
        lst = keep.setdefault(res, [])
        if len(lst) < per_class and len(b) < 700:
            lst.append(b)
    return keep


def main() -> None:  # pragma: no cover - maintenance helper
    import tempfile

    from vectors import vectors_dir

    with tempfile.TemporaryDirectory() as t:
        keep = build_corpus(vectors_dir(), Path(t))
    CORPUS.mkdir(parents=True, exist_ok=True)
    for name, items in keep.items():
        (CORPUS / f"{name}.hex").write_text("\n".join(b.hex() for b in items) + "\n")


# ---- DLMS and DER (+ CHF credential parsers) on their own -----------------------

LAYERS = {"dlms": {"ok", "DlmsError"}, "der": {"ok", "DerError", "CredentialError"}}


def _layer_seeds(vectors: Path, layer: str) -> list[bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from hil.headend.gbcs import parse_frame

    out = []
    for p in sorted((vectors / "gbcs" / "rtds").rglob("*.HEX")):
        pl = parse_frame(bytes.fromhex(p.read_text().strip())).payload
        if layer == "dlms" and pl[:1] in (b"\xd9", b"\xda", b"\x0f"):
            out.append(pl)
        elif layer == "der" and pl[:1] == b"\x30":
            out.append(pl)
    if layer == "der":  # the remote-party certificates the CHF may be given
        for p in sorted((vectors / "gbcs" / "keystore").glob("90b3*.pem")):
            out.append(x509.load_pem_x509_certificate(p.read_bytes()).public_bytes(Encoding.DER))
    return out


def _run_layer(layer: str, inputs: list[bytes], tmp: Path) -> list[str]:
    corpus = tmp / f"{layer}.txt"
    corpus.write_text("\n".join(b.hex() for b in inputs) + "\n")
    r = run_mp(code=f"import mp_gbcs_codec as m; m.fuzz_layer({str(corpus)!r}, {layer!r})", heap="512k", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout.splitlines()
    assert len(out) == len(inputs), (len(out), len(inputs), r.stdout[-2000:])
    return out


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_layer_corpus_replay(layer: str, tmp_path: Path) -> None:
    """tests/corpus/<layer>: kept mutants of RTDS payloads (and keystore
    certificates for DER) replayed under micropython: each gives its recorded
    result class, never a crash."""
    files = sorted((CORPUS.parent / layer).glob("*.hex"))
    assert files, f"tests/corpus/{layer} is empty"
    inputs, want = [], []
    for f in files:
        for ln in f.read_text().split():
            inputs.append(bytes.fromhex(ln))
            want.append(f.stem)
    got = _run_layer(layer, inputs, tmp_path)
    assert got == want, [(i.hex()[:60], g, w) for i, g, w in zip(inputs, got, want, strict=True) if g != w][:5]
    assert set(got) == LAYERS[layer]


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(seed=st.integers(0, 2**32 - 1))
def test_layer_mutants_never_crash(seed: int, vectors: Path, tmp_path_factory) -> None:
    rnd = random.Random(seed)
    for layer, allowed in LAYERS.items():
        seeds = _layer_seeds(vectors, layer)
        inputs = [mutate(rnd.choice(seeds), rnd) for _ in range(300)]
        res = _run_layer(layer, inputs, tmp_path_factory.mktemp("fzl"))
        bad = [(b.hex()[:80], r) for b, r in zip(inputs, res, strict=True) if r not in allowed]
        assert not bad, bad[:5]


def build_layer_corpus(vectors: Path, tmp: Path, layer: str, per_class: int = 16) -> dict[str, list[bytes]]:
    rnd = random.Random(7)
    seeds = _layer_seeds(vectors, layer)
    inputs = seeds[:4] + [mutate(rnd.choice(seeds), rnd) for _ in range(3000)]
    keep: dict[str, list[bytes]] = {}
    for b, res in zip(inputs, _run_layer(layer, inputs, tmp), strict=True):
        lst = keep.setdefault(res, [])
        if len(lst) < per_class and len(b) < 1200:
            lst.append(b)
    return keep


def main_layers() -> None:  # pragma: no cover - maintenance helper
    import tempfile

    from vectors import vectors_dir

    for layer in LAYERS:
        with tempfile.TemporaryDirectory() as t:
            keep = build_layer_corpus(vectors_dir(), Path(t), layer)
        d = CORPUS.parent / layer
        d.mkdir(parents=True, exist_ok=True)
        for name, items in keep.items():
            assert not name.startswith("CRASH"), (name, items[0].hex())
            (d / f"{name}.hex").write_text("\n".join(b.hex() for b in items) + "\n")
