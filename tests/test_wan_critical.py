"""The outbox's retry class follows the GBCS criticality of the message
(issue 21): the firmware's table (firmware/wan/critical.py) against
../shared/vectors/gbcs/use-cases.tsv + message-codes.tsv, and the firmware's
is_critical, run under MicroPython, on every RTDS response and alert: its
header read finds the message code the host's parser finds, and each message
class gets its use case's class."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from hil.headend.gbcs import parse_frame
from hil.mprun import Micropython

ROOT = Path(__file__).resolve().parents[1]
CRITICAL_TYPES = {"SME.C.C", "SME.A.C"}
NON_CRITICAL_TYPES = {"SME.C.NC", "SME.A.NC"}


def table(vectors: Path) -> tuple[set[int], set[int]]:
    """(critical, non-critical) message codes by their use case's message type."""
    g = vectors / "gbcs"
    uc: dict[str, set[str]] = {}
    for line in (g / "use-cases.tsv").read_text().splitlines()[1:]:
        f = line.split("\t")
        uc.setdefault(f[2], set()).add(f[1])
    crit, non = set(), set()
    for line in (g / "message-codes.tsv").read_text().splitlines()[1:]:
        code, name = line.split("\t")
        types = uc.get(name.split()[0], set())
        if types & CRITICAL_TYPES or name == "Generic Critical Alert":
            crit.add(int(code, 16))
        elif types & NON_CRITICAL_TYPES or name == "Generic Non Critical Alert":
            non.add(int(code, 16))
    return crit, non


def firmware_table(name: str) -> set[int]:
    tree = ast.parse((ROOT / "firmware" / "wan" / "critical.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == name:  # type: ignore[attr-defined]
            b = ast.literal_eval(node.value)
            return {int.from_bytes(b[i:i + 2], "big") for i in range(0, len(b), 2)}
    raise AssertionError(name)


def test_firmware_table_is_the_use_case_table(vectors: Path) -> None:
    crit, non = table(vectors)
    assert firmware_table("CRITICAL") == crit
    assert firmware_table("NON_CRITICAL") == non
    assert len(crit) >= 50 and not crit & non


def test_each_rtds_message_class_gets_its_use_cases_class(vectors: Path, tmp_path: Path) -> None:
    crit, non = table(vectors)
    files = sorted(p for p in (vectors / "gbcs" / "rtds").rglob("*.HEX")
                   if "_RESPONSE" in p.name or "ALERT" in p.name)
    frames = []
    for p in files:
        raw = bytes.fromhex(p.read_text().strip())
        try:
            code = parse_frame(raw).message_code
        except Exception:  # noqa: BLE001 - a file our host parser does not take is not a class to check
            continue
        frames.append((p.parent.name, code, "ALERT" in p.name, raw.hex()))
    assert len(frames) >= 40
    (tmp_path / "frames.json").write_text(json.dumps(frames))
    code = (
        "import json\nfrom wan.critical import is_critical, message_code\n"
        "fr = json.load(open('frames.json'))\n"
        "print(json.dumps([[message_code(bytes.fromhex(h)), is_critical(bytes.fromhex(h), a, False)]"
        " for _, _, a, h in fr]))\n"
    )
    r = Micropython(heap="512k", cwd=tmp_path).run(code=code)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    classes: dict[str, set[bool]] = {}
    for (folder, mc, alert, _), (code, c) in zip(frames, got, strict=True):
        assert code == mc, (folder, code, mc)  # the header read finds the parser's message code
        # by the table; a code it does not class: responses critical, alerts
        # per critical_alerts (False here)
        want = True if mc in crit else False if mc in non else not alert
        assert c == want, (folder, hex(mc), alert, c)
        classes.setdefault(folder, set()).add(c)
    # both classes occur among the RTDS message classes
    assert any(True in v for v in classes.values()) and any(False in v for v in classes.values())
