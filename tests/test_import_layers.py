"""Import layering: no import cycle between packages, and the host's layers.

Every `import` and `from ... import` statement (at module level or inside a
function: both run some time) of these packages is read with `ast`:

* firmware: each package under firmware/ (chf, han, gbcs, ...), each
  top-level firmware/*.py module, and boards (all board modules as one
  node). Imports are MicroPython-style absolute (`from chf import logs`,
  `import store`) with firmware/ and the board's folder on sys.path;
* host: the top-level packages `chubcore` (host_tools/chubcore: what both
  the CLI and the rig stand on), `chub` (host_tools/chub: the CLI) and `hil`
  (the rig), one node each, in CPython dotted form, relative imports resolved.
  Nodes are whole top-level packages, so a cycle is a cycle between the
  packages an installer or a reviewer sees, not between sub-folders.

An import of a name outside these nodes (the standard library, MicroPython's
built-ins, third-party packages) is no edge. A failure names every cycle with
the file and line of each import on it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
BOARDS = ROOT / "boards"
HOST_TOOLS = ROOT / "host_tools"
CHUB = HOST_TOOLS / "chub"
CHUBCORE = HOST_TOOLS / "chubcore"
HIL = ROOT / "hil"

# the host's top-level packages, one node each
HOST = {"chubcore", "chub", "hil"}

# boards/<board>/manifest.py is a build recipe (freeze() calls), not a module
NOT_MODULES = {"manifest.py"}


@dataclass
class Graph:
    # (from node, to node) -> where: "path:line"
    edges: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    nodes: set[str] = field(default_factory=set)

    def add(self, a: str, b: str, where: str) -> None:
        if a != b:
            self.edges.setdefault((a, b), []).append(where)

    def successors(self, a: str) -> list[str]:
        return sorted(b for (x, b) in self.edges if x == a)

    def restricted(self, keep: set[str]) -> Graph:
        g = Graph(nodes=self.nodes & keep)
        g.edges = {k: v for k, v in self.edges.items() if k[0] in keep and k[1] in keep}
        return g


def _imports(path: Path) -> Iterable[tuple[int, int, str, list[str]]]:
    """(line, relative level, module, imported names) of every import statement."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, 0, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, node.level, node.module or "", [a.name for a in node.names]


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


# --- firmware and boards ------------------------------------------------------------


def _firmware_nodes() -> dict[Path, str]:
    """Each firmware/board source file -> its node."""
    out: dict[Path, str] = {}
    for f in sorted(FIRMWARE.rglob("*.py")):
        rel = f.relative_to(FIRMWARE)
        out[f] = rel.parts[0] if len(rel.parts) > 1 else f.stem
    for f in sorted(BOARDS.rglob("*.py")):
        if f.name not in NOT_MODULES:
            out[f] = "boards"
    return out


def _firmware_names() -> dict[str, str]:
    """Top-level import name on the device -> node (firmware packages and
    modules, then every board module)."""
    names: dict[str, str] = {}
    for f in sorted(BOARDS.rglob("*.py")):
        if f.name not in NOT_MODULES:
            names[f.stem] = "boards"
    for p in FIRMWARE.iterdir():
        if p.is_dir() and any(p.glob("*.py")):
            names[p.name] = p.name
        elif p.suffix == ".py":
            names[p.stem] = p.stem
    return names


def _firmware_target(path: Path, node: str, level: int, module: str, names: dict[str, str]) -> str | None:
    if level:  # relative: inside the file's own package
        return node
    return names.get(module.split(".")[0])


# --- host -------------------------------------------------------------------------------


def _host_module(path: Path) -> str:
    """host_tools/chubcore/paths.py -> chubcore.paths; hil/x/__init__.py -> hil.x."""
    base = HOST_TOOLS if path.is_relative_to(HOST_TOOLS) else ROOT
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def host_node(dotted: str) -> str | None:
    """The layer of a dotted module name: chubcore, chub, hil, or None (not ours)."""
    top = dotted.split(".")[0]
    return top if top in HOST else None


def _host_targets(path: Path, level: int, module: str, names: list[str], known: set[str]) -> list[str]:
    """The dotted modules a statement loads: `from chub import core` loads
    chubcore, `from chubcore.paths import ROOT` chubcore.paths."""
    if level:
        pkg = _host_module(path).split(".")
        if path.name != "__init__.py":
            pkg.pop()
        base = pkg[: len(pkg) - (level - 1)]
        module = ".".join([*base, module] if module else base)
    subs = [f"{module}.{n}" for n in names if f"{module}.{n}" in known]
    return subs if subs and len(subs) == len(names) else [module, *subs]


def _host_nodes() -> dict[Path, str]:
    out: dict[Path, str] = {}
    for f in sorted(CHUBCORE.rglob("*.py")) + sorted(CHUB.rglob("*.py")) + sorted(HIL.rglob("*.py")):
        node = host_node(_host_module(f))
        assert node is not None
        out[f] = node
    return out


# --- the graph --------------------------------------------------------------------------


def build_graph() -> Graph:
    g = Graph()
    names = _firmware_names()
    for path, node in _firmware_nodes().items():
        g.nodes.add(node)
        for line, level, module, _ in _imports(path):
            to = _firmware_target(path, node, level, module, names)
            if to is not None:
                g.add(node, to, _where(path, line))
    host = _host_nodes()
    known = {_host_module(f) for f in host}
    for path, node in host.items():
        g.nodes.add(node)
        for line, level, module, imported in _imports(path):
            for target in _host_targets(path, level, module, imported, known):
                to = host_node(target)
                if to is not None:
                    g.add(node, to, _where(path, line))
    return g


def cycles(g: Graph) -> list[list[str]]:
    """One shortest cycle through each node of every strongly connected
    component of more than one node (rotations removed)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    sccs: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.successors(v):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    for v in sorted(g.nodes):
        if v not in index:
            strong(v)
    found: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()
    for comp in sccs:
        inside = set(comp)
        for start in comp:
            # breadth first from start back to start, inside the component
            prev: dict[str, str] = {}
            queue = [start]
            path: list[str] | None = None
            while queue and path is None:
                v = queue.pop(0)
                for w in g.successors(v):
                    if w not in inside:
                        continue
                    if w == start:
                        path = [start]
                        while v != start:
                            path.insert(1, v)
                            v = prev[v]
                        break
                    if w not in prev:
                        prev[w] = v
                        queue.append(w)
            assert path is not None
            i = path.index(min(path))
            key = tuple(path[i:] + path[:i])
            if key not in seen:
                seen.add(key)
                found.append([*key, key[0]])
    return found


def describe(g: Graph, found: list[list[str]]) -> str:
    lines = [f"{len(found)} import cycle(s) between packages:"]
    for cyc in found:
        lines.append("  " + " -> ".join(cyc))
        for a, b in zip(cyc, cyc[1:], strict=False):
            where = g.edges[(a, b)]
            more = f" (+{len(where) - 1} more)" if len(where) > 1 else ""
            lines.append(f"      {a} -> {b}: {where[0]}{more}")
    return "\n".join(lines)


def test_the_graph_sees_the_layers() -> None:
    """The reader finds the imports it must (else every check below passes on nothing)."""
    g = build_graph()
    assert {"chubcore", "chub", "hil", "chf", "han", "gbcs", "store", "app", "boards"} <= g.nodes
    for edge in [("chub", "chubcore"), ("hil", "chubcore"), ("chub", "hil"), ("app", "chf"), ("chf", "gbcs")]:
        assert edge in g.edges, edge
    # the cycle finder on a known cycle
    t = Graph(nodes={"a", "b", "c", "d"})
    for a, b in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]:
        t.add(a, b, "here:1")
    assert cycles(t) == [["a", "b", "c", "a"]]
    assert "a -> b -> c -> a" in describe(t, cycles(t))


def test_no_import_cycle_between_host_packages() -> None:
    g = build_graph().restricted(HOST)
    found = cycles(g)
    assert not found, describe(g, found)


def test_chub_core_imports_neither_the_cli_nor_the_rig() -> None:
    g = build_graph()
    bad = {k: v for k, v in g.edges.items() if k[0] == "chubcore" and k[1] in ("chub", "hil")}
    assert not bad, f"chubcore must stand alone: {bad}"


def test_the_rig_takes_only_chub_core_from_chub() -> None:
    g = build_graph()
    bad = g.edges.get(("hil", "chub"))
    assert not bad, f"hil may import only chubcore from chub: {bad}"


def test_no_import_cycle_between_packages() -> None:
    """Firmware packages and modules, boards, chubcore, chub and hil."""
    g = build_graph()
    found = cycles(g)
    assert not found, describe(g, found)
