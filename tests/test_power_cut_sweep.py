"""Power-cut sweep of the hub's storage (firmware/store) on the emulated flash.

The workload (bench/mp_store_workload.py) runs under micropython on LittleFS2
over the file-backed block device. Run clean once to learn its block-write
count W, then for every n in 1..W cut the power at the n-th block write
(that write is torn) and check the image in a fresh micropython process
against what the workload had reported durable before the cut.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mpy import ROOT, run_mp

WORKLOAD = str(ROOT / "bench" / "mp_store_workload.py")
CUT_EXIT = 75
EV_CAPACITY = 5


def payload(kind: str, i: int) -> bytes:
    # independent restatement of the workload's payload rule
    n = 16 + (i * 13) % 48
    return f"{kind}{i}|".encode() + bytes((i * 7 + k) & 0xFF for k in range(n))


class Log:
    """What the workload said was durable (done lines) and what was in flight."""

    def __init__(self, stdout: str) -> None:
        self.lines = stdout.splitlines()
        self.q_appended: dict[int, int] = {}  # seq -> payload id
        self.q_acked: set[int] = set()
        self.ev_appended: list[tuple[int, int]] = []  # (seq, id), in order
        self.kv: dict = {}
        self.inflight: list[str] | None = None
        self.cut_at: int | None = None
        self.result: dict | None = None
        self.done_after_cut: list[str] = []  # calls that returned once the power was gone
        for line in self.lines:
            f = line.split(" ")
            if self.cut_at is not None and f[0] in ("APPENDED", "ACKED", "KV", "COMPACTED", "RESULT"):
                self.done_after_cut.append(line)
            if f[0] == "BEGIN":
                self.inflight = f
            elif f[0] == "APPENDED":
                seq, ident = int(f[2]), int(f[3])
                if f[1] == "q":
                    self.q_appended[seq] = ident
                else:
                    self.ev_appended.append((seq, ident))
                self.inflight = None
            elif f[0] == "ACKED":
                self.q_acked.add(int(f[2]))
                self.inflight = None
            elif f[0] == "KV":
                self.kv.update(json.loads(" ".join(f[1:-1])))
                self.inflight = None
            elif f[0] == "COMPACTED":
                self.inflight = None
            elif f[0] == "POWERCUT":
                self.cut_at = int(f[1][2:])
            elif f[0] == "RESULT":
                self.result = json.loads(line[7:])

    @property
    def op(self) -> str:
        if self.inflight is None:
            return "idle"
        return " ".join(self.inflight[1:3] if self.inflight[1] != "KV" else self.inflight[1:2])


def check_image(log: Log, got: dict) -> None:
    """Raise AssertionError unless the remounted image is consistent with log."""
    assert got["mount"], got
    inf = log.inflight or []
    # -- the queue journal --------------------------------------------------
    q = got["q"]
    seqs = [s for s, _ in q]
    assert seqs == sorted(set(seqs)), f"queue not strictly in seq order: {seqs}"
    max_known = max([*log.q_appended, 0])
    extra = []
    for seq, hexp in q:
        data = bytes.fromhex(hexp)
        assert seq not in log.q_acked, f"acked record {seq} returned"
        if seq in log.q_appended:
            assert data == payload("q", log.q_appended[seq]), f"record {seq} has wrong payload"
        else:
            extra.append((seq, data))
    if extra:
        # only the append that was in flight at the cut may show up unreported
        assert inf[:3] == ["BEGIN", "APPEND", "q"] and len(extra) == 1, (extra, inf)
        seq, data = extra[0]
        assert seq == max_known + 1 and data == payload("q", int(inf[3])), (extra, inf)
    in_flight_ack = int(inf[3]) if inf[:3] == ["BEGIN", "ACK", "q"] else None
    for seq, ident in log.q_appended.items():
        if seq in log.q_acked or seq == in_flight_ack:
            continue
        assert seqs.count(seq) == 1, f"durable record {seq} (id {ident}) lost"
    assert got["q_next"] > max([max_known, *seqs]), "sequence numbers went back"
    assert got["post_ok"] and got["post_seq"] > max([max_known, *seqs])
    # -- the bounded event log --------------------------------------------
    durable = log.ev_appended
    options = [durable[-EV_CAPACITY:]]
    if inf[:3] == ["BEGIN", "APPEND", "ev"]:
        nxt = (durable[-1][0] + 1 if durable else 1, int(inf[3]))
        options.append((durable + [nxt])[-EV_CAPACITY:])
    ev = [(s, bytes.fromhex(h)) for s, h in got["ev"]]
    assert any(ev == [(s, payload("ev", i)) for s, i in opt] for opt in options), (ev, options)
    # -- the KV store: the acknowledged state, or that plus the change in flight
    kv = dict(got["kv"])
    kv_options = [log.kv]
    if inf[:2] == ["BEGIN", "KV"]:
        kv_options.append({**log.kv, **json.loads(" ".join(inf[2:-1]))})
    assert kv in kv_options, (kv, kv_options)


def run_workload(flash: Path, cut: int = 0) -> Log:
    args = [WORKLOAD, str(flash)] + ([str(cut)] if cut else [])
    r = run_mp(args, timeout=60)
    log = Log(r.stdout)
    if cut:
        assert r.returncode == CUT_EXIT, f"cut {cut}: exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        assert log.cut_at == cut, (cut, log.cut_at)
        assert not log.done_after_cut, f"cut {cut}: a store call returned after the power was gone: {log.done_after_cut}"
    else:
        assert r.returncode == 0 and log.result, r.stdout[-2000:] + r.stderr[-2000:]
    return log


def remount_check(flash: Path) -> dict:
    r = run_mp([WORKLOAD, "--check", str(flash)], timeout=60)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("CHECK ")]
    assert r.returncode == 0 and lines, f"check exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return json.loads(lines[-1][6:])


def cut_and_check(tmp: Path, n: int) -> tuple[int, str, str | None]:
    flash = tmp / f"cut{n}.bin"
    try:
        log = run_workload(flash, n)
        got = remount_check(flash)
        check_image(log, got)
        return n, log.op, None
    except AssertionError as e:
        return n, "?", str(e)[:800]
    finally:
        flash.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> Log:
    flash = tmp_path_factory.mktemp("clean") / "flash.bin"
    log = run_workload(flash)
    got = remount_check(flash)
    check_image(log, got)
    return log


def test_clean_run_is_consistent(clean_run: Log) -> None:
    # the checker itself must see the clean image as exactly the reported state
    res = clean_run.result
    assert res and res["store"]["compactions"] >= 2, res
    assert res["store"]["journal_dropped"] > 0, "the bounded log never overflowed"
    assert res["store"]["torn_records_discarded"] == 0
    pending = [s for s in clean_run.q_appended if s not in clean_run.q_acked]
    assert res["q"]["pending"] == len(pending)


def test_checker_rejects_bad_images(clean_run: Log, tmp_path: Path) -> None:
    # a lost durable record, a resurrected ack and a mixed KV state must fail
    flash = tmp_path / "f.bin"
    run_workload(flash)
    got = remount_check(flash)
    bad = json.loads(json.dumps(got))
    bad["q"] = bad["q"][1:]
    with pytest.raises(AssertionError):
        check_image(clean_run, bad)
    acked = sorted(clean_run.q_acked)[0]
    bad = json.loads(json.dumps(got))
    bad["q"] = [[acked, payload("q", clean_run.q_appended[acked]).hex()], *bad["q"]]
    with pytest.raises(AssertionError):
        check_image(clean_run, bad)
    bad = json.loads(json.dumps(got))
    bad["kv"]["n"] = -1
    with pytest.raises(AssertionError):
        check_image(clean_run, bad)


def test_power_cut_at_every_block_write(clean_run: Log, tmp_path: Path) -> None:
    total = clean_run.result["writes_after_format"]
    assert 100 <= total <= 600, f"workload size drifted: W={total}"
    workers = min(2, os.cpu_count() or 1) or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda n: cut_and_check(tmp_path, n), range(1, total + 1)))
    failures = [(n, err) for n, _, err in results if err]
    by_op: dict[str, int] = {}
    for _, op, err in results:
        if not err:
            by_op[op] = by_op.get(op, 0) + 1
    print(f"\npower-cut sweep: {total} cuts tried, {total - len(failures)} survived; by operation in flight: {by_op}")
    assert not failures, f"{len(failures)} of {total} cuts failed, first: {failures[:3]}"


def test_power_cut_during_compaction_loses_nothing(clean_run: Log, tmp_path: Path) -> None:
    start = end = None
    for line in clean_run.lines:
        if line.startswith("BEGIN COMPACT q"):
            start = int(line.rsplit("w=", 1)[1])
        elif line.startswith("COMPACTED q"):
            end = int(line.rsplit("w=", 1)[1])
    assert start is not None and end is not None and end - start >= 3, (start, end)
    pending_before = [s for s in clean_run.q_appended if s not in clean_run.q_acked]
    for n in range(start + 1, end + 1):
        flash = tmp_path / f"c{n}.bin"
        log = run_workload(flash, n)
        assert log.inflight and log.inflight[1] == "COMPACT", (n, log.inflight)
        got = remount_check(flash)
        check_image(log, got)
        want = sorted(s for s in log.q_appended if s not in log.q_acked)
        assert [s for s, _ in got["q"]] == want, (n, got["q"], want)
        assert len(want) >= 3, "compaction should have live records to copy"
        assert set(want) <= set(pending_before) | set(log.q_appended)
