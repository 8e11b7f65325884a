"""Every RTDS frame in vectors/gbcs/rtds goes through the firmware codec under
MicroPython (one batch run); the parsed sections are compared with the
independent gbcs-parser decode stored next to each .HEX file (.json)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mpy import run_mp

DLMS_TYPES = {
    "Null": 0x00,
    "Array": 0x01,
    "Structure": 0x02,
    "Boolean": 0x03,
    "Bit String": 0x04,
    "Double Long": 0x05,
    "Double Long Unsigned": 0x06,
    "Octet String": 0x09,
    "Visible String": 0x0A,
    "Integer": 0x0F,
    "Long": 0x10,
    "Unsigned": 0x11,
    "Long Unsigned": 0x12,
    "Long64": 0x14,
    "Long64 Unsigned": 0x15,
    "Enum": 0x16,
}


def _hex(s: str) -> str:
    return s.replace(" ", "").upper()


def _name(k: str) -> str:
    return re.sub(r"^\[\d+\] ", "", k)


def _preorder(
    items: dict, out: list, skip_empty: bool = True, drop_td: bool = False, in_td: bool = False
) -> list:
    """(name, hex) for every item in document order, children after their parent.
    With drop_td a compact array's type description is left out, its Contents kept."""
    for k, v in items.items():
        name = _name(k)
        h = _hex(v.get("hex", ""))
        if in_td and name != "Contents":
            continue
        if h or not skip_empty:
            out.append((name, h))
        if "children" in v:
            _preorder(v["children"], out, skip_empty, drop_td, drop_td and name == "Type Description")
    return out


def _section_hex(items: dict) -> str:
    return "".join(h for _, h in _preorder(items, []))


@pytest.fixture(scope="module")
def dumped(vectors: Path, tmp_path_factory) -> dict[Path, dict]:
    hexes = sorted((vectors / "gbcs" / "rtds").rglob("*.HEX"))
    assert len(hexes) == 256, f"expected 256 RTDS frames, found {len(hexes)}"
    tmp = tmp_path_factory.mktemp("gbcs")
    lst = tmp / "list.txt"
    lst.write_text("\n".join(str(p) for p in hexes))
    r = run_mp(code=f"import mp_gbcs_codec as m; m.dump({str(lst)!r})", heap="512k", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = {}
    for line in r.stdout.splitlines():
        d = json.loads(line)
        out[Path(d["path"])] = d
    assert len(out) == 256
    return out


def _check_frame(path: Path, d: dict) -> list[str]:
    """Returns a list of mismatches (empty when everything matches)."""
    errs: list[str] = []
    if "error" in d:
        return [d["error"]]
    j = json.loads(path.with_suffix(".json").read_text())
    raw = _hex(path.read_text())

    def eq(what, a, b):
        if a != b:
            errs.append(f"{what}: {a!r} != {b!r}")

    eq("reencode", d["reencode"], True)
    # MAC header / MAC
    eq("mac header", d["mac_header"], _section_hex(j["MAC Header"]) if "MAC Header" in j else None)
    eq("mac", d["mac"], _hex(j["MAC"]["MAC"]["hex"]) if "MAC" in j else None)
    # grouping header and its fields
    gh = j["Grouping Header"]
    eq("grouping header", d["gh"], _section_hex(gh))
    eq("cra", d["cra"], int(_hex(gh["CRA Flag"]["hex"]), 16))
    eq("counter", d["counter"], int(_hex(gh["Originator Counter"]["hex"]), 16))
    eq("originator", "08" + d["originator"], _hex(gh["Originator System Title"]["hex"]))
    eq("recipient", "08" + d["recipient"], _hex(gh["Recipient System Title"]["hex"]))
    eq("date-time", "0C" + d["date_time"] if d["date_time"] else "00", _hex(gh["Date Time"]["hex"]))
    oi = gh["Other Information Length"].get("children", {})
    eq("message code", d["message_code"], int(_hex(oi["Message Code"]["hex"]), 16))

    def opt(key, conv=_hex):
        return conv(_hex(oi[key]["hex"])) if key in oi else None

    eq("supp party", d["supp_party"], opt("Supplementary Remote Party ID"))
    eq("supp counter", d["supp_counter"], opt("Supplementary Remote Party Counter", lambda h: int(h, 16)))
    eq(
        "supp orig counter",
        d["supp_orig_counter"],
        opt("Supplementary Originator Counter", lambda h: int(h, 16)),
    )
    eq("supp cert", d["supp_cert"], opt("Supplementary Remote Party Key Agreement Certificate"))
    # payload: gbcs-parser's Payload + GBZ Component sections, in order, cover it exactly
    payload_hex = _section_hex(j["Payload"]) + "".join(
        _section_hex(v) for k, v in j.items() if k.startswith("GBZ Component")
    )
    eq("payload", d["payload"], payload_hex)
    # signature field
    if "Signature" in j:
        sig = j["Signature"]
        eq(
            "signature field",
            d["sig_field"],
            _hex(sig["Signature Length"]["hex"]) + _hex(sig.get("Signature", {}).get("hex", "")),
        )
        eq("signature", d["signature"], _hex(sig["Signature"]["hex"]) if "Signature" in sig else None)
    else:
        eq("signature field", d["sig_field"], None)
    # byte ranges: signature input = grouping header without DF + payload; AAD body = DF .. signature
    mac_hdr = d["mac_header"] or ""
    gh_start = len(mac_hdr) // 2
    s, e = d["signed_data"]
    eq("signed data", raw[2 * s : 2 * e], d["gh"][2:] + d["payload"])
    s, e = d["aad_body"]
    eq("aad body", raw[2 * s : 2 * e], d["gh"] + d["payload"] + (d["sig_field"] or ""))
    eq("gh start", s, gh_start)
    # payload decode
    if d["kind"] == "dlms":
        errs += _check_dlms(j, d)
    elif d["kind"] == "gbz":
        errs += _check_gbz(j, d)
    else:
        errs += _check_der(j, d)
    return errs


def _check_dlms(j: dict, d: dict) -> list[str]:
    errs = []
    nodes = _preorder(j["Payload"], [], skip_empty=False, drop_td=True)
    top = nodes[0]
    want_tag = {"DLMS Access Request": 0xD9, "DLMS Access Response": 0xDA, "DLMS Data Notification": 0x0F}
    if d["apdu"] != want_tag.get(top[0]):
        errs.append(f"apdu {d['apdu']:#x} vs {top[0]}")
    if int(top[1][2:10], 16) != d["invoke_id"]:
        errs.append("invoke id")
    # access-request specifications
    specs = []
    results = []
    for name, v in _walk(j["Payload"]):
        if name == "Access Request Specification":
            c = v["children"]
            i = c.get("Attribute Id", c.get("Method Id"))
            sel = c.get("Access Selector")
            specs.append(
                [
                    int(_hex(v["hex"]), 16),
                    int(_hex(c["Class Id"]["hex"]), 16),
                    _hex(c["Instance Id"]["hex"]),
                    int(_hex(i["hex"]), 16),
                    int(_hex(sel["hex"]), 16) if sel else None,
                ]
            )
        if name == "Access Response Specification":
            c = v["children"]
            r = c.get("Data Access Result", c.get("Action Result"))
            results.append([int(_hex(v["hex"]), 16), int(_hex(r["hex"]), 16)])
    if d.get("specs") is not None or specs:
        if d.get("specs") != specs:
            errs.append(f"specs {d.get('specs')} != {specs}")
    if d.get("results") is not None or results:
        if d.get("results") != results:
            errs.append(f"results {d.get('results')} != {results}")
    # scalar leaves in document order: type and bytes
    want = []
    for name, h in nodes:
        if name in DLMS_TYPES and name not in ("Array", "Structure"):
            want.append([DLMS_TYPES[name], h])
        elif name in ("Array", "Structure") and h and int(h[2:4] or "0", 16) == 0 and len(h) == 4:
            want.append([DLMS_TYPES[name], h])
        elif name in ("Alert Code", "Time Stamp"):
            want.append([None, h])
    got = d["leaves"]
    if top[0] == "DLMS Data Notification":
        # header hex includes the body's "02 03": the alert code and time stamp are its first leaves
        got = [[None, g[1]] if i < 2 else g for i, g in enumerate(got)]
    if got != want:
        errs.append(f"leaves differ: {got[:8]} ... vs {want[:8]} ...")
    return errs


def _walk(items: dict):
    for k, v in items.items():
        yield _name(k), v
        if "children" in v:
            yield from _walk(v["children"])


def _check_gbz(j: dict, d: dict) -> list[str]:
    errs = []
    p = j["Payload"]
    if "Alert Code" in p:
        if d["alert_code"] != int(_hex(p["Alert Code"]["hex"]), 16):
            errs.append("alert code")
        if d["timestamp"] != int(_hex(p["Time Stamp"]["hex"]), 16):
            errs.append("timestamp")
        rest = "".join(
            _hex(v["hex"])
            for k, v in p.items()
            if k
            not in (
                "Profile ID",
                "Number of GBZ components",
                "Alert Code",
                "Time Stamp",
                "Future Dated Alert Payload",
            )
        )
        if d["fd"] != [rest]:
            errs.append(f"future-dated entry {d['fd']} != {rest}")
    comps = [v for k, v in j.items() if k.startswith("GBZ Component")]
    if len(comps) != len(d["components"]):
        return errs + [f"{len(d['components'])} components, want {len(comps)}"]
    for n, (c, g) in enumerate(zip(comps, d["components"], strict=True)):

        def num(key, c=c):
            return int(_hex(c[key]["hex"]), 16) if key in c else None

        zh = c["ZCL Header"]["children"]
        checks = [
            ("control", g["control"], num("Control Field")),
            ("cluster", g["cluster"], num("Cluster Id")),
            ("from_dt", g["from_dt"], num("From Date Time")),
            ("ahc", g["ahc"], num("Additional Header Control")),
            ("ahfc", g["ahfc"], num("Additional Header Frame Counter")),
            ("fc", g["fc"], int(_hex(zh["Frame Control"]["hex"]), 16)),
            ("seq", g["seq"], int(_hex(zh["Sequence Number"]["hex"]), 16)),
            ("cmd", g["cmd"], int(_hex(zh["Command Id"]["hex"]), 16)),
            ("sec", g["sec"], _hex(c["Security Header"]["hex"]) if "Security Header" in c else None),
            (
                "ct",
                g["ct"],
                _hex(c["Encrypted ZCL Payload"]["hex"]) if "Encrypted ZCL Payload" in c else None,
            ),
            ("aemac", g["aemac"], _hex(c["AE MAC"]["hex"]) if "AE MAC" in c else None),
            ("body", g["body"], _section_hex({"x": c["ZCL Payload"]}) if "ZCL Payload" in c else None),
        ]
        for what, a, b in checks:
            if a != b:
                errs.append(f"component {n + 1} {what}: {a!r} != {b!r}")
    return errs


def _check_der(j: dict, d: dict) -> list[str]:
    """Every element boundary gbcs-parser shows must be an element start in our tree."""
    starts = set(d["der_starts"])
    off = 0
    bad = []
    for name, h in _preorder(j["Payload"], []):
        if off not in starts:
            bad.append(f"{name}@{off}")
        off += len(h) // 2
    return [f"DER boundaries not found: {bad[:5]}"] if bad else []


def test_every_rtds_frame_parses_and_matches(vectors: Path, dumped: dict[Path, dict]) -> None:
    failures = {}
    kinds: dict[str, int] = {}
    for path, d in sorted(dumped.items()):
        errs = _check_frame(path, d)
        if errs:
            failures[path.name] = errs
        kinds[d.get("kind", "?")] = kinds.get(d.get("kind", "?"), 0) + 1
    ok = len(dumped) - len(failures)
    print(f"{ok} of {len(dumped)} frames parsed and matched (payloads: {kinds})")
    assert not failures, json.dumps(dict(list(failures.items())[:10]), indent=1)
    assert ok == 256


def test_chf_dlms_payloads_are_covered(dumped: dict[Path, dict]) -> None:
    """The CHF folders' DLMS payloads all decoded and re-encoded (dump asserts byte equality)."""
    chf = [d for d in dumped.values() if "00DB1234567890A2" in (d["originator"], d["recipient"])]
    dl = [d for d in chf if d["kind"] == "dlms"]
    assert len(dl) >= 60, len(dl)
    assert {d["apdu"] for d in dl} == {0xD9, 0xDA, 0x0F}
    assert all("error" not in d for d in chf)
