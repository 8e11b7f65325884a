"""The event/alert code registry (firmware/codes.py, docs/codes.md): every
code is GBCS's, with the GBCS meaning (the comment starts with the name in
../shared/vectors/gbcs/alert-codes.tsv), or private in the one documented
range; no other firmware module defines a code; docs/codes.md lists them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from mpy import ROOT

FIRMWARE = ROOT / "firmware"
CODES = FIRMWARE / "codes.py"


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip().lower()


def gbcs_codes(vectors: Path) -> dict[int, str]:
    rows = (vectors / "gbcs" / "alert-codes.tsv").read_text().splitlines()[1:]
    return {int(c, 16): _norm(n) for c, n in (r.split("\t", 1) for r in rows if r.strip())}


def registry() -> dict[str, tuple[int, str]]:
    """NAME -> (value, comment) for every `NAME = const(0x....)  # comment`."""
    out = {}
    for line in CODES.read_text().splitlines():
        m = re.match(r"^([A-Z][A-Z0-9_]*) = const\((0x[0-9A-Fa-f]+)\)\s*(?:#\s*(.*))?$", line)
        if m:
            out[m.group(1)] = (int(m.group(2), 16), m.group(3) or "")
    return out


def test_every_code_is_gbcs_with_its_meaning_or_private(vectors: Path) -> None:
    gbcs = gbcs_codes(vectors)
    reg = registry()
    first, last = reg.pop("PRIVATE_FIRST")[0], reg.pop("PRIVATE_LAST")[0]
    assert (first, last) == (0x8FD0, 0x8FFF)
    assert not [c for c in gbcs if first <= c <= last], "the private range overlaps GBCS codes"
    bad = []
    for name, (value, comment) in reg.items():
        if first <= value <= last:
            continue
        want = gbcs.get(value)
        if want is None:
            bad.append(f"{name} 0x{value:04X}: neither a GBCS code nor private")
        elif not _norm(comment).startswith(want):
            bad.append(f"{name} 0x{value:04X}: comment {comment!r} does not start with the GBCS name {want!r}")
    assert not bad, "\n".join(bad)
    # the codes the issue named are the ones the hub uses for its security events
    by_name = {n: v for n, (v, _) in reg.items()}
    assert by_name["EV_MALFORMED"] == 0x8F1E and by_name["EV_AUTH_FAILED"] == 0x8F53
    assert by_name["EV_MALFORMED_FLOOD"] == 0x8F60 and by_name["EV_NOT_PROTECTED"] == 0x8F30
    assert by_name["EV_UNKNOWN_JOIN"] == 0x8F3E


def _code_like(value: int, gbcs: dict[int, str]) -> bool:
    return value in gbcs or 0x8FD0 <= value <= 0x8FFF


def test_no_firmware_module_defines_a_code(vectors: Path) -> None:
    """Outside codes.py no firmware or board module holds a GBCS/private code
    as a number (a constant, a call argument, a comparison): codes come from
    the registry by name."""
    gbcs = gbcs_codes(vectors)
    found = []
    for path in sorted([*FIRMWARE.rglob("*.py"), *(ROOT / "boards").rglob("*.py")]):
        if path == CODES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and type(node.value) is int and _code_like(node.value, gbcs):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: 0x{node.value:04X}")
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and re.match(r"^(EV|ALERT)_", t.id) for t in node.targets
            ):
                v = node.value
                if isinstance(v, ast.Call) and getattr(v.func, "id", "") == "const":
                    v = v.args[0]
                if isinstance(v, ast.Constant) and type(v.value) is int and v.value >= 0x8000:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not found, "\n".join(found)


def test_docs_list_every_code() -> None:
    text = (ROOT / "docs" / "codes.md").read_text()
    missing = [f"{n} 0x{v:04X}" for n, (v, _) in registry().items()
               if not n.startswith("PRIVATE_") and (f"0x{v:04X}" not in text or f"`{n}`" not in text)]
    assert not missing, missing
