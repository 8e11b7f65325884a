"""The proof figures for `chub bench` (issue 8; docs/proof.md).

  fuzz_inputs, fuzz_crashes     seeded hostile inputs for every parser of
                                hil/campaign/fuzz.py (corpus + mutants + random
                                bytes) under micropython; crashes = anything
                                but "ok" or the parser's own ValueError subclass
  power_cuts_tried/_survived/_survived_ratio, power_cut_recovery_s
                                hil/campaign/power_cut.py: a seeded sample of
                                cut points (`--power-cut-sweep`: every block write)
  faults_injected, faults_survived  hil/campaign/faults.py: an emulated day
  heap_working_set_kb           the hub's live-heap high-water mark (after a
                                collection) over the full scenario at capacity
                                (hil/campaign/capacity.py), minus
                                heap_after_imports_kb (the boot import set's
                                share; features loaded on first use count here)
  heap_floor_kb                 smallest -X heapsize (16 KB steps; searched from
                                the step above the scenario's high water,
                                floor_search) with which the full scenario at
                                capacity passes with no MemoryError in the log
  e2e_ms                        head-end command (ECS26i) -> its response back
                                at the head-end, median
  e2e_ch_ms                     the hub's share: from the modem emulator taking
                                the command off the network to it putting the
                                response on the network (the hub's AT dialogue
                                included, the loopback link and head-end not)
  routed_msg_us, routed_msg_alloc_bytes  bench/mp_proof.py: hub.router.route of one GSME
                                command into the persistent buffer (median)
  wire_time_us                  the same message's bytes at 115200 baud (8N1)
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

GCS13A_GSME = "4.1.1_GCS13a/GCS13a_4.1.1_SUCCESS_RELIABLE_GSME_COMMAND_GBCS.HEX"
FUZZ_PER_PARSER = 3000
BENCH_CUTS = 8
BENCH_HOURS = 16
E2E_RUNS = 10


def fuzz_figures(seed: int = 8) -> dict[str, Any]:
    from hil.campaign import fuzz

    inputs_n = crashes = 0
    rnd = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        for parser in fuzz.PARSERS:
            corpus = [bytes.fromhex(ln) for f in sorted((fuzz.CORPUS / parser).glob("*.hex"))
                      for ln in f.read_text().split()]
            inputs = corpus + fuzz.make_inputs(parser, seed, FUZZ_PER_PARSER)
            inputs += [rnd.randbytes(rnd.randint(0, 300)) for _ in range(200)]
            res = fuzz.run_batch(parser, inputs, Path(tmp))
            inputs_n += len(inputs)
            crashes += len(fuzz.crashes_of(parser, inputs, res))
    return {"fuzz_inputs": inputs_n, "fuzz_crashes": crashes}


def power_cut_figures(image: Path, count: int | None = BENCH_CUTS, seed: int = 8, workers: int = 2,
                      progress: Callable[[int, int, Any], None] | None = None,
                      heap: str | None = None) -> tuple[dict[str, Any], Any]:
    from hil.campaign import power_cut

    with tempfile.TemporaryDirectory() as tmp:
        s = power_cut.campaign(image, Path(tmp), count=count, seed=seed, workers=workers, progress=progress,
                               heap=heap)
    return s.figures(), s


def fault_figures(image: Path, hours: int = BENCH_HOURS, seed: int = 1) -> dict[str, Any]:
    from hil.campaign import faults

    with tempfile.TemporaryDirectory() as tmp:
        return faults.day(image, Path(tmp), hours=hours, seed=seed).figures()


def _scenario_passes(image: Path, heap: str, workdir: Path) -> tuple[bool, dict, str]:
    """The full scenario at capacity (hil/campaign/capacity.py) at this heap,
    as the field runs it: the hub holds its boot import set, and the features
    loaded on first use (firmware/lazy.py) are imported by the scenario's
    steps that use them and dropped after, so the high-water mark above the
    boot set's share holds their code too. -> (passed, the last status, why
    it failed: the hub's first MemoryError line, or the step's error)."""
    from hil.campaign import capacity
    from hil.campaign.scenario import run_steps

    run = capacity.new_run(workdir, image, heap=heap)
    ok, st, why = False, {}, ""
    try:
        if run.power_on():
            run_steps(run, capacity.STEPS, max_reboots=0)
            capacity.check(run)
            ok, st = True, run.call("status")
        else:
            why = "the hub did not reach READY"
    except Exception as e:  # noqa: BLE001 - any failure means this heap is too small
        why = f"{type(e).__name__}: {e}"[:300]
    finally:
        run.stop()
    mem = next((ln.strip() for ln in run.log.path.read_text(errors="replace").splitlines() if "MemoryError" in ln),
               None)
    if mem is not None:
        return False, st, f"{mem[:200]} ({why or 'the scenario passed'})"
    return ok, st, why


def floor_search(passes: Callable[[int], bool], lo: int, hi: int, start: int) -> tuple[int, int]:
    """The smallest n in (lo, hi] for which passes(n), where lo fails and hi
    passes (not tried) and the outcome changes once between them: from
    `start` (clamped into the range) in steps doubling away from it (1, 2,
    4, ...) until one outcome differs from the others, then bisected.
    -> (n, how many passes() calls). With `start` the answer: 2 calls
    (start passes, start - 1 fails); a bisection of (lo, hi] takes
    ~log2(hi - lo)."""
    n, step, calls, seen = start, 1, 0, set()
    while hi - lo > 1:
        n = min(max(n, lo + 1), hi - 1)
        ok = passes(n)
        calls += 1
        seen.add(ok)
        if ok:
            hi = n
        else:
            lo = n
        if len(seen) == 2:
            n = (lo + hi) // 2
        else:
            n = hi - step if ok else lo + step
            step *= 2
    return hi, calls


def heap_figures(image: Path, heap: str, after_imports_kb: float | None, runs: int = 1,
                 say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """On the full scenario at capacity (hil/campaign/capacity.py):
    heap_working_set_kb: the worst of `runs` scenarios at `heap`;
    heap_floor_kb: in 16 KB steps, searched (floor_search) from the step
    above the worst high water of those runs (where the floor has been on
    both word sizes: 2 scenarios when it still is), then the smallest step
    at which `runs` of `runs` scenarios pass (a step up after any failure:
    fragmentation differs between runs). `heap_floor_runs` says how many.
    A run with a MemoryError in the hub's log fails; `say` gets each step's
    outcome and, for a failure, the first MemoryError line (or the error)."""
    say = say or (lambda _m: None)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        n = 0
        highs = []
        for _ in range(runs):
            n += 1
            t0 = time.monotonic()
            ok, st, why = _scenario_passes(image, heap, Path(tmp) / f"ws{n}")
            if not ok:
                say(f"  {heap}: failed ({why})")
                break
            highs.append(st["heap_high_water"])
            say(f"  {heap}: passed, high water {st['heap_high_water'] / 1024:.1f} KB ({time.monotonic() - t0:.0f} s)")
        if not ok:
            out["heap_floor_kb"] = None
            return out
        if after_imports_kb is not None:
            out["heap_working_set_kb"] = round(max(highs) / 1024 - after_imports_kb, 1)
        # in 16 KB units; hi passes; the code's own share is a floor already
        lo, hi = max(4, int((after_imports_kb or 64) // 16)), int(heap.rstrip("kK")) // 16

        def passes(step: int) -> bool:
            nonlocal n
            n += 1
            passed, _, why = _scenario_passes(image, f"{step * 16}k", Path(tmp) / f"f{n}")
            say(f"  {step * 16}k: {'passed' if passed else f'failed ({why})'}")
            return passed

        hi, _ = floor_search(passes, lo, hi, -(-max(highs) // 16384) + 1)
        # the floor must hold `runs` times (the bisection ran it once)
        while runs > 1 and hi * 16 < int(heap.rstrip("kK")):
            fails = []
            for _ in range(runs - 1):
                n += 1
                passed, _, why = _scenario_passes(image, f"{hi * 16}k", Path(tmp) / f"f{n}")
                if not passed:
                    fails.append(why)
            say(f"  {hi * 16}k: {runs - len(fails)} of {runs} passed" + "".join(f"\n    {w}" for w in fails))
            if not fails:
                break
            hi += 1
        out["heap_floor_kb"] = hi * 16
        if runs > 1:
            out["heap_floor_runs"] = runs
    return out


def e2e_figures(image: Path, heap: str) -> dict[str, Any]:
    """Head-end -> hub -> head-end for ECS26i, and the hub's share of it."""
    from chubcore.paths import vectors_dir
    from hil.campaign.scenario import ECS26I, Run, step_provision

    with tempfile.TemporaryDirectory() as tmp:
        run = Run(Path(tmp) / "e2e", image, heap=heap)
        try:
            if not run.power_on():
                raise RuntimeError("the hub did not boot")
            step_provision(run)
            run.wan_idle(20)
            he, emu = run.system.headend, run.system.modem
            marks: dict[str, list[float]] = {"in": [], "out": [], "he": []}
            frame_in = he._frame

            def t_downlink(link: int, data: bytes) -> None:
                marks["in"].append(time.perf_counter())

            def t_uplink(link: int, data: bytes) -> None:
                if data[:3] == b"CH\x03":  # a GBCS link frame from the hub
                    marks["out"].append(time.perf_counter())

            def t_frame(w, ftype, fid, p):  # noqa: ANN001, ANN202
                if ftype == 3:
                    marks["he"].append(time.perf_counter())
                return frame_in(w, ftype, fid, p)

            emu.on_downlink, emu.on_uplink, he._frame = t_downlink, t_uplink, t_frame
            raw = bytes.fromhex((vectors_dir() / "gbcs" / "rtds" / ECS26I).read_text().strip())
            e2e, ch = [], []
            for _ in range(E2E_RUNS + 1):
                run.wan_idle(20)
                for v in marks.values():
                    v.clear()
                t0 = time.perf_counter()
                he.send_command(raw, timeout=15)
                e2e.append((marks["he"][0] - t0) * 1000)
                ch.append((marks["out"][0] - marks["in"][0]) * 1000)
            # the first exchange warms the hub's caches (imports, keys): left out
            return {"e2e_ms": round(statistics.median(e2e[1:]), 1), "e2e_ch_ms": round(statistics.median(ch[1:]), 1)}
        finally:
            run.stop()


def routing_figures(heap: str) -> dict[str, Any]:
    import json

    from chubcore.paths import vectors_dir
    from hil.han_setup import DEVICES
    from hil.headend.gbcs import parse_frame

    from .bench import BENCH, _last_json, _mp

    raw = bytes.fromhex((vectors_dir() / "gbcs" / "rtds" / GCS13A_GSME).read_text().strip())
    eui = parse_frame(raw).recipient.hex().upper()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "board.json"
        cfg.write_text(json.dumps({"flash": {"path": str(Path(tmp) / "flash.bin"), "blocks": 256}, "uarts": {},
                                   "rtc_offset": 0}))
        import os

        old = os.environ.get("CHUB_BOARD")
        os.environ["CHUB_BOARD"] = str(cfg)
        try:
            fig = _last_json(_mp([str(BENCH / "mp_proof.py"), raw.hex(), eui, DEVICES["gsme"].install_code_hex],
                                 heap, cwd=Path(tmp)), "FIGURES")
        finally:
            if old is None:
                os.environ.pop("CHUB_BOARD", None)
            else:
                os.environ["CHUB_BOARD"] = old
    return {
        "routed_msg_us": fig["routed_msg_us"],
        "routed_msg_alloc_bytes": fig["routed_msg_alloc_bytes"],
        "wire_time_us": round(fig["frame_bytes"] * 10 / 115200 * 1e6),
    }


def figures(heap: str, image: Path, after_imports_kb: float | None = None,
            say: Callable[[str], None] | None = None) -> dict[str, Any]:
    say = say or (lambda _m: None)
    out: dict[str, Any] = {}
    say("proof: routing cost")
    out.update(routing_figures(heap))
    say("proof: end to end")
    out.update(e2e_figures(image, heap))
    say("proof: heap working set and floor")
    out.update(heap_figures(image, heap, after_imports_kb))
    say("proof: fuzzing")
    out.update(fuzz_figures())
    say(f"proof: power cuts ({BENCH_CUTS} seeded points; --power-cut-sweep for all)")
    out.update(power_cut_figures(image, heap=heap)[0])
    say(f"proof: faults over a {BENCH_HOURS}-hour emulated day")
    out.update(fault_figures(image))
    return out


def power_cut_sweep(as_json: bool, heap: str, count: int | None = None, seed: int = 8, workers: int = 2) -> int:
    """`chub bench --power-cut-sweep`: every block write of the scenario (or a
    seeded sample of `count`), one line per cut on stderr, the figures last."""
    import json
    import sys

    from chubcore.build import build

    def progress(i: int, total: int, r: Any) -> None:
        state = "survived" if r.survived else ("not reached" if not r.reached else "FAILED")
        if r.put_window:
            state += f" ({r.put_window} GSME response lost in the PUT window)"
        print(f"[{i}/{total}] cut at write {r.n} ({r.step or '-'}): {state} {r.seconds:.1f} s", file=sys.stderr)
        if r.error:
            print("    " + r.error.replace("\n", "\n    "), file=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        image = build("unix", out=Path(tmp) / "image").path
        fig, s = power_cut_figures(image, count=count, seed=seed, workers=workers, progress=progress, heap=heap)
    fig["power_cut_block_writes"] = s.writes
    fig["power_cut_sweep_s"] = round(s.seconds)
    if as_json:
        print(json.dumps(fig))
    else:
        print(f"power cuts: {s.tried} tried / {s.survived} survived over {s.writes} block writes "
              f"({fig['power_cuts_survived_ratio']:.2%}); recovery {fig['power_cut_recovery_s']} s (median); "
              f"GSME responses lost in the PUT window: {s.gsme_put_window}; {s.seconds:.0f} s")
    return 0 if s.survived == s.tried else 1
