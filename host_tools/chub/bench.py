"""`chub bench`: the published figures, measured in one run on this machine.

Keys are stable: a figure once published keeps its name. Each `bench/mp_*.py`
script runs under MicroPython and prints one JSON object whose keys join the
table; the hub-level figures come from booting the emulated system.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chubcore.build import RUNTIME_STDLIB, image_modules  # noqa: F401 (bench's public names)
from chubcore.paths import BENCH, BOARDS, FIRMWARE, default_heap, micropython_exe

from . import (
    bench_cbke,
    bench_flash,
    bench_gbcs,
    bench_gpf,
    bench_gpf_han,
    bench_han,
    bench_labgrid,
    bench_mgmt,
    bench_ota,
    bench_proof,
    bench_route,
    bench_update,
    bench_wan,
)

STATUS_CALLS = 50


def _mp(args: list[str], heap: str, cwd: Path | None = None, timeout: float = 300) -> str:
    env = dict(os.environ)
    env["MICROPYPATH"] = os.pathsep.join([".frozen", str(FIRMWARE), str(BOARDS / "unix"), str(BENCH)])
    r = subprocess.run(
        [micropython_exe(), "-X", f"heapsize={heap}", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if r.returncode != 0:
        raise RuntimeError(f"micropython {' '.join(args)} failed ({r.returncode}): {r.stderr[-800:] or r.stdout[-800:]}")
    return r.stdout


def _last_json(text: str, tag: str = "") -> dict[str, Any]:
    """The last line's JSON object (after an optional tag such as "RESULT")."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith(tag) and "{" in line:
            return json.loads(line[line.index("{") :])
    raise RuntimeError(f"no {tag or 'JSON'} line in bench output: {text[-400:]}")




def import_figures(image: Path, heap: str, boot: list[str] | None = None) -> dict[str, Any]:
    """heap_after_imports_kb: the KiB allocated once the hub's boot import set
    (`boot`, default boot_modules(): what the hub holds at READY) is imported
    into a fresh interpreter; heap_all_imports_kb: the same for every module
    of the image (and RUNTIME_STDLIB), the features loaded on first use
    included; the names MicroPython interned for all of them (image_qstrs)
    in how many pools (image_qstr_pools). The pools double in size: one more
    pool takes ~28 KB at once on this port (docs/proof.md)."""
    if boot is None:
        boot = boot_modules(image, heap)
    every = _imports_run(image, heap, image_modules(image))
    m = re.search(r"n_pool=(\d+), n_qstr=(\d+)", every.stdout)
    if m is None:
        raise RuntimeError(f"no qstr_info line in: {every.stdout[-400:]}")
    return {"heap_after_imports_kb": _last_json(_imports_run(image, heap, boot).stdout)["kb"],
            "heap_all_imports_kb": _last_json(every.stdout)["kb"], "boot_import_modules": len(boot),
            "image_qstrs": int(m.group(2)), "image_qstr_pools": int(m.group(1))}


def _imports_run(image: Path, heap: str, names: list[str]) -> subprocess.CompletedProcess[str]:
    """`names` imported into a fresh interpreter: the heap allocated (after a
    collection) before and after, and qstr_info."""
    # the module names come from a file, not from `import` lines: a
    # script's names are interned when it is compiled, before its
    # baseline, and the code's share came out ~2 KB short of what the
    # hub pays to import the same modules (docs/proof.md)
    code = (
        "import gc\nimport micropython\ngc.collect()\nbase = gc.mem_alloc()\n"
        + "with open(NAMES_FILE) as f:\n    names = f.read().split()\n"
        + "for n in names:\n    __import__(n)\n"
        # what asyncio loads on first use it keeps in its globals (once the
        # hub first uses a name): the library's table, not the hub's data;
        # only the names of the submodules imported here
        + "import asyncio\nfor n, m in getattr(asyncio, '_attrs', {}).items():\n"
        + "    if 'asyncio.' + m in names:\n        getattr(asyncio, n)\n"
        + "del names, n, m, f\n"
        + "gc.collect()\nkb = (gc.mem_alloc() - base) / 1024\nmicropython.qstr_info()\n"
        + "print('{\"kb\": %.1f}' % kb)\n"
    )
    r = _run_on_image(image, heap, names, code, 60)
    if r.returncode != 0:
        raise RuntimeError(f"importing the image failed: {r.stderr[-800:] or r.stdout[-800:]}")
    return r


def boot_modules(image: Path, heap: str) -> list[str]:
    """The hub's boot import set: the image's modules (image_modules order,
    then the runtime library's packages) that the running hub holds when it has reached READY and serves status
    (`status` with "modules": its sys.modules), on the emulated system (the
    image's board, nothing preloaded), after a reboot: the first boot from
    blank flash is followed by the rig's provisioning (its test DCC anchors,
    a rig hook), the reboot is a provisioned hub's ordinary boot."""
    from chubcore.localport import LocalPortClient
    from hil.system import EmulatedSystem

    with tempfile.TemporaryDirectory() as tmp:
        system = EmulatedSystem(Path(tmp), heap=heap, image=image, fresh=True)
        with system:
            system.reboot()
            time.sleep(1)  # the jobs started at READY settle (the update job drops an idle updater)
            with LocalPortClient(system.local_port_url, timeout=5) as c:
                held = set(c.call("status", modules=True)["modules"])
    known = image_modules(image)
    # the runtime library's packages (asyncio, asyncio.core) come with RUNTIME_STDLIB
    roots = {m.split(".")[0] for m in RUNTIME_STDLIB}
    extra = sorted(m for m in held if m not in known and m.split(".")[0] in roots)
    return [m for m in known if m in held] + extra


def _run_on_image(image: Path, heap: str, names: list[str], code: str,
                  timeout: float) -> subprocess.CompletedProcess[str]:
    """Run `code` with the image on the path (after the binary's frozen
    modules) and the module names in a file, whose path replaces NAMES_FILE
    in the code (a literal: the script interns it before its baseline)."""
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "modules.txt"
        listing.write_text("\n".join(names))
        script = Path(tmp) / "imports.py"
        script.write_text(code.replace("NAMES_FILE", repr(str(listing))))
        env = dict(os.environ)
        env["MICROPYPATH"] = f".frozen{os.pathsep}{image}"
        env["CHUB_BOARD"] = "/nonexistent"  # imports only: nothing may touch the board at import time
        return subprocess.run([micropython_exe(), "-X", f"heapsize={heap}", str(script)], env=env,
                              capture_output=True, text=True, timeout=timeout)


def heap_after_imports(image: Path, heap: str) -> float:
    """KiB allocated once every module of the image (and RUNTIME_STDLIB) is
    imported: the code's share with every feature loaded
    (heap_all_imports_kb)."""
    return _last_json(_imports_run(image, heap, image_modules(image)).stdout)["kb"]


def hub_figures(image: Path, heap: str) -> dict[str, Any]:
    """Boot the emulated system from blank flash and exercise its local port."""
    from chubcore.localport import LocalPortClient
    from hil.system import EmulatedSystem

    with tempfile.TemporaryDirectory() as tmp:
        system = EmulatedSystem(Path(tmp), heap=heap, image=image, fresh=True)
        with system:
            first_boot = system.boot_to_ready_s
            with LocalPortClient(system.local_port_url, timeout=5) as c:
                t0 = time.perf_counter()
                for _ in range(STATUS_CALLS):
                    st = c.call("status")
                status_ms = (time.perf_counter() - t0) * 1000 / STATUS_CALLS
            boot = system.reboot(power_cut=True)
    return {
        "boot_to_ready_s": round(boot, 3),
        "first_boot_to_ready_s": round(first_boot or 0, 3),
        "heap_peak_kb": round(st["heap_high_water"] / 1024, 1),
        "boot_block_writes": st["flash"]["writes"],
        "boot_block_erases": st["flash"]["erases"],
        "local_port_status_ms": round(status_ms, 2),
    }


def logs_full_figures(heap: str) -> dict[str, Any]:
    """heap_logs_full_kb: the heap the CHF event and security logs and the
    WAN transaction log take from empty to full (bench/mp_logs_full.py). The
    scenario at capacity fills the tables issue 15 names, not these logs (a
    run ends with a few entries in each), so a hub whose logs have filled
    over days holds up to this much over heap_working_set_kb."""
    with tempfile.TemporaryDirectory() as tmp:
        fig = _last_json(_mp([str(BENCH / "mp_logs_full.py"), "flash.bin"], heap, cwd=Path(tmp)), "FIGURES")
    full = (fig["transactions"], fig["event"], fig["security"])
    if full != (100, 40, 40):
        raise RuntimeError(f"the logs did not fill: {full} entries, not (100, 40, 40)")
    return {"heap_logs_full_kb": fig["heap_logs_full_kb"]}


def store_figures(heap: str) -> dict[str, Any]:
    """Flash traffic of the storage workload (the one the power-cut sweep cuts)."""
    script = str(BENCH / "mp_store_workload.py")
    with tempfile.TemporaryDirectory() as tmp:
        run = _last_json(_mp([script, "flash.bin"], heap, cwd=Path(tmp)), "RESULT")
        fig = _last_json(_mp([script, "--figures", "flash2.bin"], heap, cwd=Path(tmp)), "FIGURES")
    return {
        "block_writes": run["device"]["writes"],
        "block_erases": run["device"]["erases"],
        "store_block_writes_per_append_ack": fig["queue200"]["writes_per_append_ack"],
        "store_block_erases_per_append_ack": fig["queue200"]["erases_per_append_ack"],
        "kv_update_block_writes": fig["kv_update"]["writes"],
    }


def crypto_figures(heap: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        return _last_json(_mp([str(BENCH / "mp_crypto.py")], heap, cwd=Path(tmp)))


def auth_figures(heap: str) -> dict[str, Any]:
    """auth_failures_per_s_max: the most wrong installer credentials the
    local port checks in one second while a guesser hammers it
    (bench/mp_auth.py; the rest are refused unchecked by the back-off)."""
    with tempfile.TemporaryDirectory() as tmp:
        fig = _last_json(_mp([str(BENCH / "mp_auth.py")], heap, cwd=Path(tmp)))
    return {"auth_failures_per_s_max": fig["auth_failures_per_s_max"]}


def run_bench(heap: str | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    from chubcore.build import build

    heap = heap or default_heap()
    say = progress or (lambda _m: None)
    with tempfile.TemporaryDirectory() as tmp:
        say("building the unix image")
        image = build("unix", out=Path(tmp) / "image").path
        figures: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.system()}",
            "heap_limit": heap,
        }
        say("heap after imports")
        figures.update(import_figures(image, heap))
        say("booting the emulated system")
        figures.update(hub_figures(image, heap))
        say("a labgrid place: acquire to ready, beside the direct unix start")
        figures.update(bench_labgrid.figures(heap, image))
        say("storage workload")
        figures.update(store_figures(heap))
        figures.update(logs_full_figures(heap))
        say("GBCS crypto")
        figures.update(crypto_figures(heap))
        figures.update(auth_figures(heap))
        figures.update(bench_gbcs.figures(heap))
        figures.update(bench_gpf.figures(heap))
        figures.update(bench_route.figures(heap, image))
        figures.update(bench_wan.figures(heap, image))
        figures.update(bench_mgmt.figures(heap, image))
        figures.update(bench_han.figures(heap, image))
        figures.update(bench_gpf_han.figures(heap, image))
        say("meter firmware over the HAN")
        figures.update(bench_ota.figures(heap, image))
        figures.update(bench_cbke.figures(heap, image))
        say("hub update and rollback")
        figures.update(bench_update.figures(heap, image))
        figures.update(bench_proof.figures(heap, image, figures.get("heap_after_imports_kb"), say))
        figures.update(bench_flash.figures(image, heap, say=say))
    return figures


# The figures that speak for the device's shape: on a frozen 32-bit build they
# are published with this suffix, beside the 64-bit unix port's.
FROZEN_SUFFIX = "_32"


def run_bench_frozen(image: Path, heap: str, runs: int = 3,
                     progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The heap figures on a frozen board's binary ($CHUB_MICROPYTHON, our own
    32-bit unix port with `image`'s app frozen in): heap_after_imports_kb
    (the boot import set), heap_all_imports_kb (every module),
    boot_import_modules (how many the boot set holds), heap_peak_kb (boot + status calls, as run_bench),
    heap_logs_full_kb (logs_full_figures), heap_working_set_kb
    (the worst of `runs` full scenarios) and heap_floor_kb (the smallest
    16 KB step at which `runs` of `runs` full scenarios pass), each with the
    suffix _32."""
    say = progress or (lambda _m: None)
    doc = json.loads((image / "image.json").read_text())
    fig: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.system()}",
        "board": doc.get("board"),
        "micropython": micropython_exe(),
        "heap_limit": heap,
    }
    say("heap after imports (the boot import set, and every module)")
    figs = import_figures(image, heap)
    imp = figs["heap_after_imports_kb"]
    out: dict[str, Any] = {k: figs[k] for k in ("heap_after_imports_kb", "heap_all_imports_kb",
                                                 "boot_import_modules")}
    say("booting the emulated system")
    out["heap_peak_kb"] = hub_figures(image, heap)["heap_peak_kb"]
    say("the three logs full")
    out.update(logs_full_figures(heap))
    say(f"heap working set and floor ({runs} scenario runs each)")
    out.update(bench_proof.heap_figures(image, heap, imp, runs=runs, say=say))
    fig.update({k + FROZEN_SUFFIX: v for k, v in out.items()})
    return fig


CENSUS_PASSES = 8


def heap_census(image: Path, heap: str) -> list[dict[str, Any]]:
    """The heap after imports per module: each module of the image (and
    RUNTIME_STDLIB) imported on its own in dependency order, the heap
    allocated (after a collection) before and after. The order comes from
    repeated runs: a module whose import brought others in is imported after
    them in the next run, until each import brings only itself. Returns
    [{"module", "bytes", "with": [modules that came along]}] in import order."""
    order = image_modules(image)
    rows: list[dict[str, Any]] = []
    for _ in range(CENSUS_PASSES):
        rows = _census_run(image, heap, order)
        if all(all(m.startswith(r["module"] + ".") for m in r["with"]) for r in rows):
            break  # each import brought only itself, or a package its own submodules
        new: list[str] = []
        for r in rows:
            for m in [*r["with"], r["module"]]:
                _parents_first(m, new, set(order))
        order = new
    return rows


def _parents_first(name: str, out: list[str], known: set[str]) -> None:
    # name appended to out after its parent packages: a package whose
    # __init__ imports its submodules is imported before them, so what they
    # cost is counted once, in its row (else the order swings between the two)
    parts = name.split(".")
    for i in range(1, len(parts)):
        parent = ".".join(parts[:i])
        if parent in known and parent not in out:
            out.append(parent)
    if name not in out:
        out.append(name)


def _census_run(image: Path, heap: str, order: list[str]) -> list[dict[str, Any]]:
    code = (
        "import gc\nimport sys\nwith open(NAMES_FILE) as f:\n    names = f.read().split()\n"
        + "import json\nout = []\n"
        + "for n in names:\n"
        + "    if n in sys.modules:\n        continue\n"
        + "    before = set(sys.modules)\n    gc.collect()\n    a = gc.mem_alloc()\n    __import__(n)\n"
        + "    gc.collect()\n    b = gc.mem_alloc()\n"
        + "    came = sorted(m for m in sys.modules if m not in before and m != n)\n"
        + "    out.append((n, b - a, came))\n"
        + "print('CENSUS', json.dumps(out))\n"
    )
    r = _run_on_image(image, heap, order, code, 120)
    if r.returncode != 0:
        raise RuntimeError(f"the heap census failed: {r.stderr[-800:] or r.stdout[-800:]}")
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("CENSUS "))
    return [{"module": n, "bytes": b, "with": w} for n, b, w in json.loads(line[7:])]


def census_markdown(rows: list[dict[str, Any]], boot: list[str] | None = None) -> str:
    """The census as a Markdown table, largest first, with the package totals;
    with `boot` (boot_modules()), each module in the boot import set marked
    and the boot set's sum."""
    total = sum(r["bytes"] for r in rows)
    packages: dict[str, int] = {}
    for r in rows:
        top = r["module"].split(".")[0] if "." in r["module"] else "(top level)"
        packages[top] = packages.get(top, 0) + r["bytes"]
    lines = [f"heap after imports, all modules: {total / 1024:.1f} KB ({len(rows)} imports; "
             f"{micropython_exe()})"]
    if boot is not None:
        held = set(boot)
        in_boot = [r for r in rows if r["module"] in held]
        lines.append(f"the boot import set (what the hub holds at READY): {len(boot)} modules, "
                     f"{sum(r['bytes'] for r in in_boot) / 1024:.1f} KB by the census; the rest "
                     "is loaded when first used")
    lines += ["", "| package | KB |", "|---|---:|"]
    lines += [f"| {k} | {v / 1024:.1f} |" for k, v in sorted(packages.items(), key=lambda kv: -kv[1])]
    if boot is None:
        lines += ["", "| module | KB | came along |", "|---|---:|---|"]
    else:
        lines += ["", "| module | KB | came along | at boot |", "|---|---:|---|---|"]
    for r in sorted(rows, key=lambda r: -r["bytes"]):
        line = f"| `{r['module']}` | {r['bytes'] / 1024:.2f} | {', '.join(r['with'])} |"
        if boot is not None:
            line += " boot |" if r["module"] in held else " lazy |"
        lines.append(line)
    return "\n".join(lines)
