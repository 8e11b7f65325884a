"""Meter behaviour on the rig's emulated HAN devices (hil/devices): the ESME
answering GBCS commands over the hub's tunnel (esme.py), the sleepy GSME
that GETs its buffered commands and PUTs responses and alerts (gsme.py), and
the GSME's own data and mirror reporting (gsme_data.py).

`rtds_answers()` pairs every RTDS COMMAND file with what the device sent
back in the same scenario: its RESPONSE and, for future-dated commands, the
ALERT files of that scenario (e.g. 8F66). The meters answer a command they
know byte for byte with those frames."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from chubcore.paths import vectors_dir


def read_hex(path: Path) -> bytes:
    return bytes.fromhex(path.read_text().strip())


@dataclass
class Answer:
    folder: str
    scenario: str
    response: bytes
    alerts: list[bytes] = field(default_factory=list)

    @property
    def error(self) -> bool:
        return "ERROR" in self.scenario


def _parts(name: str) -> tuple[str, str] | None:
    # "<UC>_<ref>_<rest>_GBCS.HEX" -> (prefix "<UC>_<ref>_", rest)
    if not name.endswith("_GBCS.HEX"):
        return None
    stem = name[: -len("_GBCS.HEX")]
    bits = stem.split("_", 2)
    if len(bits) < 3:
        return None
    return bits[0] + "_" + bits[1] + "_", bits[2]


def rtds_answers(folders: list[str] | None = None, vectors: Path | None = None) -> dict[bytes, Answer]:
    """command bytes -> Answer, for the RTDS folders given (default: all)."""
    base = (vectors or vectors_dir()) / "gbcs" / "rtds"
    out: dict[bytes, Answer] = {}
    for d in sorted(base.iterdir()) if base.is_dir() else []:
        if folders is not None and d.name not in folders:
            continue
        files = {p.name: p for p in d.iterdir()}
        for name, path in files.items():
            pr = _parts(name)
            if pr is None or not pr[1].endswith("_COMMAND") or pr[1].endswith("PRECOMMAND"):
                continue
            scenario = pr[1][: -len("_COMMAND")]
            rsp = files.get(pr[0] + scenario + "_RESPONSE_GBCS.HEX")
            if rsp is None:
                continue
            alerts = []
            for other in sorted(files):
                po = _parts(other)
                # alert files: "<prefix><code 4 hex>_<scenario>_ALERT..."
                if po and po[0] == pr[0] and po[1][4:5] == "_" and po[1][5:].startswith(scenario + "_ALERT"):
                    alerts.append(read_hex(files[other]))
            out[read_hex(path)] = Answer(d.name, scenario, read_hex(rsp), alerts)
    return out
