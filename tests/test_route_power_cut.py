"""Power-cut sweep of the GSME command buffer (firmware/route/buffer.py).

bench/mp_route.py runs a buffering workload under micropython on LittleFS2
over the file-backed block device: puts for two devices, GETs (take), a
dropped queue and an expiry. A clean run gives its block-write count W;
then the power is cut at every n in 1..W (that write is torn, the device
dead), the image is remounted and the reopened buffer's queues are checked
here against what the workload had reported done before the cut:
  * every put that returned is there (once, byte-exact) unless it was taken,
    dropped or expired by an operation that returned;
  * nothing taken (handed out for delivery) is ever there again;
  * only the operation in flight may have happened or not (a put in flight
    is there whole or not at all; a take in flight may have removed the
    oldest message: it is then lost, never delivered twice);
  * the reopened buffer still takes and hands out a message.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mpy import ROOT, run_mp

WORKLOAD = str(ROOT / "bench" / "mp_route.py")
A = "00DB1234567890A1"
B = "00DB1234567890B1"
SIZES = (60, 150, 230, 90, 300, 40)
EXPIRY_S = 8  # the workload's expiry; put at step i expires at i + 8
EXPIRE_AT = 18


def payload(i: int) -> bytes:
    # independent restatement of the workload's payload rule
    n = SIZES[i % len(SIZES)]
    head = f"m{i}|".encode()
    return head + bytes((i * 7 + k) & 0xFF for k in range(n - len(head)))


def expected(ops: list[list]) -> dict[str, list[int]]:
    """Queues (payload ids, oldest first) after the operations that returned."""
    q: dict[str, list[int]] = {A: [], B: []}
    for op in ops:
        if op[0] == "put":
            q[op[1]].append(op[2])
        elif op[0] == "take":
            if op[2] is None:
                assert not q[op[1]], op
            else:
                assert q[op[1]] and q[op[1]][0] == op[2], (op, q)
                q[op[1]].pop(0)
        elif op[0] == "drop":
            assert op[2] == len(q[op[1]]), (op, q)
            q[op[1]] = []
        elif op[0] == "expire":
            due = sorted(i for d in q.values() for i in d if i + EXPIRY_S <= EXPIRE_AT)
            assert sorted(op[1]) == due, (op, due)
            for d in q:
                q[d] = [i for i in q[d] if i not in due]
    return q


def check_cut(cut: dict) -> None:
    assert cut["dead"] and not cut["finished"] and cut["err"], cut
    assert ["returned_after_cut"] not in cut["ops"], "an operation returned after the power was gone"
    assert cut["post_ok"] is True, cut["post_ok"]
    img = cut["image"]
    got: dict[str, list[int]] = {}
    for eh in (A, B):
        seqs = [s for s, _ in img[eh]]
        assert seqs == sorted(set(seqs)), f"queue {eh} not in seq order: {seqs}"
        ids = []
        for _seq, hexp in img[eh]:
            data = bytes.fromhex(hexp)
            i = int(data[1 : data.index(b"|")])
            assert data == payload(i), f"message {i} damaged"
            ids.append(i)
        got[eh] = ids
    want = expected(cut["ops"])
    taken = {op[2] for op in cut["ops"] if op[0] == "take" and op[2] is not None}
    for eh in (A, B):
        assert not taken & set(got[eh]), f"a message handed out before the cut is back: {taken & set(got[eh])}"
    inf = cut["inflight"]
    options = [want]
    if inf is None or inf[1] == "open":
        pass
    elif inf[1] == "put":
        options.append({**want, inf[2]: [*want[inf[2]], inf[3]]})
    elif inf[1] == "take":
        if want[A]:
            options.append({**want, A: want[A][1:]})
    elif inf[1] == "drop":
        options = [{**want, B: want[B][k:]} for k in range(len(want[B]) + 1)]
    elif inf[1] == "expire":
        # each due message may or may not be gone yet
        due = {i for d in want.values() for i in d if i + EXPIRY_S <= EXPIRE_AT}
        options.append({d: [i for i in want[d] if i not in due or i in got[d]] for d in want})
    assert got in options, f"cut {cut['n']} during {inf}: got {got}, want one of {options}"


def _clean(tmp: Path) -> tuple[int, list[list]]:
    r = run_mp([WORKLOAD, "clean", str(tmp / "clean.bin")], timeout=60)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    ops = [json.loads(ln[3:]) for ln in r.stdout.splitlines() if ln.startswith("OP ")]
    res = json.loads(next(ln for ln in r.stdout.splitlines() if ln.startswith("CLEAN "))[6:])
    return res["writes"], ops


def _sweep(tmp: Path, first: int, step: int) -> list[dict]:
    r = run_mp([WORKLOAD, "sweep", str(tmp / f"s{first}.bin"), str(first), str(step)], timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return [json.loads(ln[4:]) for ln in r.stdout.splitlines() if ln.startswith("CUT ")]


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> tuple[int, list[list]]:
    return _clean(tmp_path_factory.mktemp("route_clean"))


def test_clean_run_matches_the_model(clean_run) -> None:
    writes, ops = clean_run
    done = [op for op in ops if op[0] != "begin"]
    q = expected(done)
    kinds = {op[0] for op in done}
    assert {"put", "take", "drop", "expire"} <= kinds, kinds
    assert 60 <= writes <= 600, writes
    # the workload leaves messages queued, so the sweep checks survivors too
    assert q[A] and q[B], q


def test_checker_rejects_bad_images(clean_run, tmp_path: Path) -> None:
    cuts = _sweep(tmp_path, 40, 9)
    cut = next(c for c in cuts if c["inflight"] and c["inflight"][1] == "put" and c["image"][A]
               and any(op[0] == "take" and op[2] is not None for op in c["ops"]))
    check_cut(cut)
    lost = json.loads(json.dumps(cut))
    eh = A if lost["image"][A] else B
    lost["image"][eh] = lost["image"][eh][1:]
    with pytest.raises(AssertionError):
        check_cut(lost)
    twice = json.loads(json.dumps(cut))
    taken = next(op[2] for op in cut["ops"] if op[0] == "take" and op[2] is not None)
    twice["image"][A] = [[0, payload(taken).hex()], *twice["image"][A]]
    with pytest.raises(AssertionError):
        check_cut(twice)
    bad = json.loads(json.dumps(cut))
    if bad["image"][eh]:
        s, h = bad["image"][eh][0]
        bad["image"][eh][0] = [s, h[:-2] + ("00" if h[-2:] != "00" else "01")]
        with pytest.raises(AssertionError):
            check_cut(bad)


def test_power_cut_at_every_block_write(clean_run, tmp_path: Path) -> None:
    writes, _ = clean_run
    with ThreadPoolExecutor(max_workers=2) as pool:
        parts = list(pool.map(lambda f: _sweep(tmp_path, f, 2), (1, 2)))
    cuts = sorted((c for p in parts for c in p), key=lambda c: c["n"])
    assert [c["n"] for c in cuts] == list(range(1, writes + 1)), "the sweep must reach every write"
    failures = []
    by_op: dict[str, int] = {}
    for c in cuts:
        try:
            check_cut(c)
            op = c["inflight"][1] if c["inflight"] else "idle"
            by_op[op] = by_op.get(op, 0) + 1
        except AssertionError as e:
            failures.append((c["n"], str(e)[:600]))
    print(f"\nbuffer power-cut sweep: {writes} cuts, {writes - len(failures)} survived; in flight: {by_op}")
    assert not failures, f"{len(failures)} of {writes} cuts failed, first: {failures[:3]}"
