"""A heap dump of the 32-bit frozen hub (measurement only; docs/proof.md,
"The heap on the 32-bit frozen build").

    CHUB_MICROPYTHON=build/unix32/micropython .venv/bin/python bench/heapdump/heapdump.py \\
        build/unix32/image 256k step_provision [--own CLASS] [--who NAME]

runs the capacity scenario (hil/campaign/capacity.py) up to the step named
(step_provision: READY), then has the hub dump its heap (heapdump_mp.py,
preloaded by the emulated board) and prints every live object by type and
the objects above the code by holder: each instance of a class, task,
coroutine frame, bound method or closure with what it alone reaches through
plain containers (dicts, lists, tuples, str/bytes, arrays, attribute tables).
Types are read from each block's first word: the ids the hub printed, and the
binary's mp_type_* symbols from its link map (port/micropython.map beside it).

    ... heapdump.py build/unix32/image 256k step_provision --gap

also dumps a fresh interpreter that only imported the boot import set
(chub.bench.boot_modules, as chub.bench.import_figures does) and prints what
the running hub holds on the code's side that the bare import does not: the
difference by type, per module (globals dict, functions made at run time,
classes with their locals dicts), the blocks only a root reaches (the qstr
pools, sys.modules' table) and the names interned at run time.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import hil.mprun as mprun  # noqa: E402
from hil.campaign import capacity  # noqa: E402

CODE = {"type", "module", "fun_bc", "gen_wrap", "staticmethod", "classmethod", "property"}
CONTAINERS = {"raw", "dict", "list", "tuple", "str", "bytes", "bytearray", "array", "int", "set", "memoryview",
              "frozenset"}


def dump(image: Path, heap: str, upto: str) -> list[str]:
    """The hub's log lines of one dump (ids, map, pool bytes) at step `upto`."""
    here = str(Path(__file__).resolve().parent)
    real = mprun.module_path
    mprun.module_path = lambda dirs: real([*dirs, here])  # heapdump_mp after the frozen modules
    with tempfile.TemporaryDirectory() as tmp:
        run = capacity.new_run(Path(tmp), image, heap=heap)
        run.preload = ["heapdump_mp"]
        try:
            assert run.power_on()
            for step in capacity.STEPS:
                step(run)
                if step.__name__ == upto:
                    break
            time.sleep(1.0)
            addr, plen = pool_place(run)
            time.sleep(0.5)
            pos = run.log.position
            run.system.rig.send_ctl({"heapdump": f"0x{addr:x}:{plen}"})
            run.log.expect(r"HD end$", after=pos, timeout=60)
            time.sleep(0.5)
            text = run.log.path.read_text(errors="replace").splitlines()
        finally:
            run.stop()
            mprun.module_path = real
    return last_dump(text)


def pool_place(run: capacity.Run) -> tuple[int, int]:
    """The heap pool's address and length: a map dumped by the hub now."""
    pos = run.log.position
    run.system.rig.send_ctl({"heapdump": "map"})
    addr = int(run.log.expect(r"GC memory layout; from (?:0x)?([0-9a-f]+)", after=pos, timeout=30).group(1), 16)
    run.log.expect(r"HD end$", after=pos, timeout=30)
    hdr = [ln for ln in run.log.lines(after=pos) if re.match(r"^[0-9a-f]{8}: ", ln)]
    return addr, int(hdr[-1][:8], 16) + (len(hdr[-1]) - 10) * 16


def last_dump(text: list[str]) -> list[str]:
    """The log lines of the last full dump (after the map before it), without the rig's prefixes."""
    i = max(k for k, ln in enumerate(text) if "HD from 0x" in ln)
    j = max(k for k, ln in enumerate(text[:i]) if "HD from map" in ln)
    return [ln.split("| ", 1)[1] if "| " in ln else ln for ln in text[j + 1:]]


def bare(image: Path, heap: str) -> list[str]:
    """The dump lines of a fresh interpreter that imported only the boot
    import set (the same list and order as chub.bench.import_figures) and
    heapdump_mp: the code's side alone."""
    from chub.bench import boot_modules

    names = boot_modules(image, heap)
    here = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "modules.txt"
        listing.write_text("\n".join(names))
        script = Path(tmp) / "bare.py"
        script.write_text(
            f"with open({str(listing)!r}) as f:\n    names = f.read().split()\n"
            "for n in names:\n    __import__(n)\n"
            "import asyncio\nfor n, m in getattr(asyncio, '_attrs', {}).items():\n"
            "    if 'asyncio.' + m in names:\n        getattr(asyncio, n)\n"
            "del names, n, m, f\nimport heapdump_mp\nheapdump_mp.bare()\n")
        env = dict(os.environ)
        env["MICROPYPATH"] = mprun.module_path([image, here])
        env["CHUB_BOARD"] = "/nonexistent"  # imports only, as the bench's import figures
        p = subprocess.Popen([mprun.micropython_exe(), "-X", f"heapsize={heap}", str(script)], env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert p.stdin is not None and p.stdout is not None
        p.stdin.write("map\n")
        p.stdin.flush()
        first: list[str] = []
        for ln in p.stdout:
            first.append(ln.rstrip("\n"))
            if ln.rstrip("\n") == "HD end":  # not Q(\nHD end): heapdump_mp's own names are interned too
                break
        addr = int(next(m for ln in first if (m := re.search(r"GC memory layout; from (?:0x)?([0-9a-f]+)", ln)))
                   .group(1), 16)
        hdr = [ln for ln in first if re.match(r"^[0-9a-f]{8}: ", ln)]
        plen = int(hdr[-1][:8], 16) + (len(hdr[-1]) - 10) * 16
        out, _ = p.communicate(f"0x{addr:x}:{plen}\n\n", timeout=120)
    lines = out.splitlines()
    i = max(k for k, ln in enumerate(lines) if "HD from 0x" in ln)
    k = i - 1
    while k >= 0 and lines[k].startswith("HD id"):
        k -= 1
    return lines[k + 1:]


class Heap:
    def __init__(self, lines: list[str], link_map: Path):
        i_from = max(k for k, ln in enumerate(lines) if ln.startswith("HD from 0x"))
        self.names: dict[int, tuple[str, str]] = {}
        k = i_from - 1
        while k >= 0 and lines[k].startswith("HD id"):
            _, _, v, kind, nm = lines[k].split(" ", 4)
            iv = int(v)
            self.names.setdefault(iv & 0x7FFFFFFF if iv < 0 else iv, (kind, nm))  # a ROM id is a 31-bit small int
            k -= 1
        syms = {}
        for ln in link_map.read_text().splitlines():
            m = re.match(r"^\s+0x([0-9a-f]+)\s+(mp_type_\w*)\s*$", ln)
            if m:
                syms[m.group(2)] = int(m.group(1), 16)
        base = next(v for v, n in self.names.items() if n == ("type", "dict")) - syms["mp_type_dict"]
        for s, a in syms.items():
            self.names[a + base] = ("type", s[8:])
        kinds: list[str] = []
        hx = []
        for ln in lines[i_from:]:
            m = re.match(r"GC memory layout; from (?:0x)?([0-9a-f]+):", ln)
            if m:
                self.pool = int(m.group(1), 16)
            elif m := re.match(r"^\s+\((\d+) lines all free\)", ln):
                kinds.extend("." * (64 * int(m.group(1))))
            elif m := re.match(r"^([0-9a-f]{8}): (.*)$", ln):
                kinds.extend(m.group(2))
            elif ln.startswith("HX "):
                hx.append(ln[3:])
        self.data = bytes.fromhex("".join(hx))
        nb = len(self.data) // 16
        self.objs: dict[int, int] = {}  # head block -> blocks
        b = 0
        while b < nb:
            if kinds[b] not in ".=":
                e = b + 1
                while e < nb and kinds[e] == "=":
                    e += 1
                self.objs[b] = e - b
                b = e
            else:
                b += 1
        self.edges = {}
        for b, n in self.objs.items():
            out = []
            for a in range(b * 16, (b + n) * 16, 4):
                t = self.block(self.word(a))
                if t is not None and t != b:
                    out.append(t)
            self.edges[b] = out

    def word(self, a: int) -> int:
        return struct.unpack_from("<I", self.data, a)[0]

    def block(self, w: int) -> int | None:
        if self.pool <= w < self.pool + len(self.data):
            t = (w - self.pool) // 16
            return t if t in self.objs else None
        return None

    def fname(self, a: int) -> str:
        n = self.names.get(a)
        return n[1] if n else f"?{a:x}"

    def label(self, b: int) -> str:
        w = self.word(b * 16)
        n = self.names.get(w)
        if n is None or n[0] not in ("type", "class"):
            # no type word: a dict's or list's table, an attribute table, a
            # buffer (a first word that points at a module, a function or an
            # address a dropped module once had is an item, not a type)
            return "raw"
        lb = n[1]
        if lb == "gen_instance":  # a coroutine frame: named by its function
            return "gen " + self.fname(self.word(b * 16 + 8))
        if lb in ("bound_meth", "closure"):
            return lb + " " + self.fname(self.word(b * 16 + 4))
        return lb

    def by_type(self) -> collections.Counter:
        c: collections.Counter = collections.Counter()
        for b, n in self.objs.items():
            c[self.label(b)] += n * 16
        return c

    def holders(self) -> tuple[dict[int, int], collections.Counter]:
        """Each object above the code -> its holder (the first to reach it
        through containers, breadth first); each holder's bytes."""
        globs = {t for b in self.objs if self.label(b) == "module" for t in self.edges[b] if self.label(t) == "dict"}
        hold = [b for b in self.objs if self.label(b) not in CODE and self.label(b) not in CONTAINERS]
        owner = {h: h for h in hold}
        q = collections.deque(hold)
        while q:
            v = q.popleft()
            for t in self.edges[v]:
                if t not in owner and t not in globs and self.label(t) in CONTAINERS:
                    owner[t] = owner[v]
                    q.append(t)
        size: collections.Counter = collections.Counter()
        for v, h in owner.items():
            size[h] += self.objs[v] * 16
        return owner, size


    def module_of(self, b: int) -> str:
        """The module a function block (fun_bc, gen_wrap) was defined in: its
        context word is the module object."""
        w = self.word(b * 16 + 4)
        n = self.names.get(w)
        return n[1] if n and n[0] == "module" else f"?{w:x}"

    def tree(self, b: int, kinds: set[str]) -> set[int]:
        """b and the blocks it reaches through blocks labelled in `kinds`."""
        seen = {b}
        q = [b]
        while q:
            for t in self.edges[q.pop()]:
                if t not in seen and self.label(t) in kinds:
                    seen.add(t)
                    q.append(t)
        return seen

    def code_side(self) -> dict[str, collections.Counter]:
        """Per module: its object, globals dict and table ("globals"), its
        classes with their locals dicts and tables ("classes"), the functions
        the module defines at import ("functions", named in the ids) and
        those made later (nested defs, lambdas: "made at run time")."""
        per: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        blk = {(a - self.pool) // 16: n for a, n in self.names.items() if self.pool <= a < self.pool + len(self.data)}
        for b, (kind, nm) in blk.items():
            if b not in self.objs:
                continue
            if kind == "module" and self.label(b) == "module":
                per[nm]["globals"] += sum(self.objs[x] * 16 for x in self.tree(b, {"dict", "raw"}))
            elif kind == "class" and self.label(b) == "type":
                per[nm.rsplit(".", 1)[0]]["classes"] += sum(self.objs[x] * 16 for x in self.tree(b, {"dict", "raw"}))
        for b in self.objs:
            if self.label(b) in ("fun_bc", "gen_wrap"):
                named = (self.pool + b * 16) in self.names
                per[self.module_of(b)]["functions" if named else "made at run time"] += self.objs[b] * 16
        return per

    def root_only(self) -> collections.Counter:
        """Blocks no heap block points at (held by the VM's roots: the qstr
        pools and their string chunks, sys.modules' table, the main module),
        by label."""
        into = set()
        for b, out in self.edges.items():
            into.update(t for t in out if t != b)
        c: collections.Counter = collections.Counter()
        for b in self.objs:
            if b not in into:
                c[self.label(b)] += self.objs[b] * 16
        return c


def qstrs(lines: list[str]) -> tuple[str, list[str]]:
    """The qstr_info line and the names interned at run time, of the last dump."""
    i = max(k for k, ln in enumerate(lines) if ln.startswith("HD from"))
    info = next((ln for ln in lines[i:] if ln.startswith("qstr pool:")), "")
    return info, [ln[2:-1] for ln in lines[i:] if ln.startswith("Q(") and ln.endswith(")")]


def print_gap(ready: Heap, ready_lines: list[str], alone: Heap, alone_lines: list[str]) -> None:
    """What the running hub holds on the code's side that a bare import of the
    boot set does not."""
    tr, ta = sum(ready.objs.values()) * 16, sum(alone.objs.values()) * 16
    print(f"\nbare import of the boot set (+ heapdump_mp): {ta} bytes live; the hub at this step: {tr}")
    owner, size = ready.holders()
    code_r = tr - sum(size.values())
    print(f"the hub's code side (live minus above the code): {code_r}; minus the bare import: {code_r - ta}")
    pr, pa = ready.code_side(), alone.code_side()
    own = pr["heapdump_mp"]["globals"] - pa["heapdump_mp"]["globals"]
    print(f"of which heapdump_mp's own record of dropped modules: {own}; the rest: {code_r - ta - own}")
    print("by type, the hub minus the bare import (code kinds and containers):")
    br, ba = ready.by_type(), alone.by_type()
    above = collections.Counter()
    for x, o in owner.items():
        above[ready.label(x)] += ready.objs[x] * 16
    for lb in sorted(set(br) | set(ba), key=lambda k: -abs(br[k] - above[k] - ba[k])):
        d = br[lb] - above[lb] - ba[lb]
        if d and (lb in CODE or lb in CONTAINERS):
            print(f"  {d:+7d} {lb} (hub {br[lb] - above[lb]} on the code side, bare {ba[lb]})")
    print("per module, the hub minus the bare import (bytes):")
    rows = []
    for m in set(pr) | set(pa):
        for k in set(pr[m]) | set(pa[m]):
            d = pr[m][k] - pa[m][k]
            if d:
                rows.append((d, m, k, pr[m][k], pa[m][k]))
    for d, m, k, r, a in sorted(rows, key=lambda r: -abs(r[0])):
        print(f"  {d:+6d} {m}: {k} (hub {r}, bare {a})")
    rr, ra = ready.root_only(), alone.root_only()
    print("blocks only a root reaches, the hub minus the bare import:")
    for lb in set(rr) | set(ra):
        if rr[lb] != ra[lb]:
            print(f"  {rr[lb] - ra[lb]:+6d} {lb} (hub {rr[lb]}, bare {ra[lb]})")
    (ir, qr), (ia, qa) = qstrs(ready_lines), qstrs(alone_lines)
    print(f"qstrs, the hub: {ir}\nqstrs, bare: {ia}")
    print("interned at run time by the hub only:", " ".join(q for q in qr if q not in qa))
    print("interned by the bare import too:", " ".join(q for q in qr if q in qa))


def report(h: Heap, own: str | None, who: str | None = None) -> None:
    """Print a dump: every live object by type, then the objects above the
    code by holder (and, with `own`, what each holder of those labels (commas between) holds;
    with `who`, what points at each object of that label or name, three
    levels up)."""
    print(f"live: {sum(h.objs.values()) * 16} bytes in {len(h.objs)} objects (heapdump_mp's own ~1.3 KB included)")
    for lb, v in h.by_type().most_common(25):
        print(f"  {v:7d} {lb}")
    owner, size = h.holders()
    by: collections.Counter = collections.Counter()
    n: collections.Counter = collections.Counter()
    for x, o in owner.items():
        if x == o:
            by[h.label(x)] += size[x]
            n[h.label(x)] += 1
    print(f"above the code, by holder: {sum(size.values())} bytes")
    for lb, v in by.most_common():
        print(f"  {v:6d} {n[lb]:3d} {lb}")
    if own:
        for x in h.objs:
            if owner.get(x) == x and h.label(x) in own.split(","):
                print(f"{h.label(x)} @{x}: {size[x]} bytes")
                seen = {x}

                def down(b: int, depth: int, x: int = x, seen: set[int] = seen) -> None:
                    for t in h.edges[b]:
                        if owner.get(t) == x and t not in seen:
                            seen.add(t)
                            print(f"{'  ' * depth}{h.objs[t] * 16:5d} {h.label(t)} @{t}")
                            down(t, depth + 1)

                down(x, 1)
    if who:
        into: dict[int, list[int]] = collections.defaultdict(list)
        for b, out in h.edges.items():
            for t in out:
                into[t].append(b)

        def name(b: int) -> str:
            n = h.names.get(h.pool + b * 16)
            return f"{h.label(b)} {n[1]}" if n else h.label(b)

        def up(b: int, depth: int, seen: set[int]) -> None:
            for r in into[b]:
                print(f"{'  ' * depth}<- @{r} {name(r)} ({h.objs[r] * 16} B)")
                if depth < 3 and r not in seen:
                    seen.add(r)
                    up(r, depth + 1, seen)

        for x in h.objs:
            if who in (h.label(x), name(x)) or (h.names.get(h.pool + x * 16) or ("", ""))[1] == who:
                print(f"who points at @{x} {name(x)}:")
                up(x, 1, {x})


def main() -> None:
    image, heap, upto = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    own = sys.argv[sys.argv.index("--own") + 1] if "--own" in sys.argv else None
    who = sys.argv[sys.argv.index("--who") + 1] if "--who" in sys.argv else None
    link_map = Path(mprun.micropython_exe()).parent / "port/micropython.map"  # the binary's own (chub build)
    lines = dump(image, heap, upto)
    h = Heap(lines, link_map)
    report(h, own, who)
    if "--gap" in sys.argv:
        alone = bare(image, heap)
        print_gap(h, lines, Heap(alone, link_map), alone)


if __name__ == "__main__":
    main()
