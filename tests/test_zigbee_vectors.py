"""Every ASH, install-code and ZCL vector in vectors/zigbee/vectors.json, and
every frame of the fake_ncp_v13.out wire transcript, encoded and decoded by
the firmware under MicroPython (one batch run) and compared byte for byte on
the CPython side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mpy import run_mp

# MicroPython side: compute what the firmware produces; no expectations here.
MP_CODE = r"""
import json, os
from binascii import hexlify, unhexlify
from han import peer
from han import ash, install_code as ic, zcl, zcl_clusters
from log import kind_of

def H(b):
    return hexlify(b).decode().upper()

vdir = os.getenv("CHUB_VECTORS") + "/zigbee"
V = json.load(open(vdir + "/vectors.json"))
out = {"ash": [], "ic": [], "mmo": [], "zcl": [], "transcript": []}
A = V["ash"]
r = bytearray(32)
ash.randomise(r, 0, -1)
out["prs"] = H(r)
out["crc"] = "%04X" % ash.crc16(b"123456789", 0xFFFF, 0, -1)
out["stuff"] = {k: H(peer.stuff(unhexlify(k))) for k in A["stuffing"]["table"]}
out["unstuff"] = {k: H(peer.unstuff(unhexlify(v))) for k, v in A["stuffing"]["table"].items()}
buf = bytearray(peer.BUF_SIZE)
n = ash.encode_frame(buf, peer.RST)
out["send_reset"] = H(bytes([peer.CANCEL]) * 32 + buf[:n])
for f in A["frames"]:
    c = int(f["control"], 16)
    data = unhexlify(f.get("ezsp_frame") or f.get("data") or "")
    n = ash.encode_frame(buf, c, data or None)
    dec = ash.Decoder()
    got = list(peer.frames(dec, unhexlify(f["wire"])))
    ctrl, payload = got[0] if len(got) == 1 and isinstance(got[0], tuple) else (None, b"")
    t, frm, flag, ackn = peer.parse_control(c)
    chk = ash.check_frame(unhexlify(f["unstuffed"]), -1, 128)
    out["ash"].append({"name": f["name"], "wire": H(buf[:n]), "dec_control": ctrl,
        "dec_data": H(payload), "nframes": len(got), "type": t, "frm": frm, "flag": flag,
        "ack": ackn, "check_type": chk, "stuffed": H(peer.stuff(unhexlify(f["unstuffed"])))})
dec = ash.Decoder()
for line in open(vdir + "/fake_ncp_v13.out"):
    line = line.strip()
    if line[:2] not in ("> ", "< "):
        continue
    wire = unhexlify(line[2:].replace(" ", ""))
    items = list(peer.frames(dec, wire))
    rec = {"line": line, "frames": []}
    for it in items:
        if isinstance(it, tuple):
            n = ash.encode_frame(buf, it[0], it[1] or None)
            rec["frames"].append({"control": it[0], "data": H(it[1]), "reencoded": H(buf[:n])})
        else:
            rec["frames"].append({"error": repr(it)})
    out["transcript"].append(rec)
for c in V["install_codes"]["cases"]:
    code_crc = unhexlify(c["install_code_with_crc"])
    r = {"name": c["name"]}
    try:
        r["key"] = H(ic.link_key(code_crc))
    except ic.InstallCodeError as e:
        r["error"] = kind_of(e)
    if "install_code" in c:
        r["with_crc"] = H(ic.add_crc(unhexlify(c["install_code"])))
        r["crc"] = "0x%04X" % ic.crc16_x25(unhexlify(c["install_code"]), 0, -1)
    out["ic"].append(r)
out["x25_check"] = "0x%04X" % ic.crc16_x25(b"123456789", 0, -1)
for v in V["install_codes"]["aes_mmo_hash"]:
    out["mmo"].append({"name": v["name"], "hash": H(ic.aes_mmo_hash(unhexlify(v["input"])))})

def reencode(h, cmd, p):
    if h.frame_type != zcl.FT_GLOBAL:
        return bytes(p)
    if cmd == zcl.READ_ATTRIBUTES:
        return zcl.encode_read_attributes(p, bytearray())
    if cmd == zcl.READ_ATTRIBUTES_RSP:
        return zcl.encode_read_attributes_rsp(p)
    if cmd == zcl.REPORT_ATTRIBUTES:
        return zcl.encode_attribute_records(p)
    if cmd == zcl.DEFAULT_RSP:
        return zcl.encode_default_rsp(p[0], p[1])
    raise ValueError("no encoder")

for f in V["zcl"]["frames"]:
    fr = unhexlify(f["frame"])
    h, p = peer.zcl_decode(fr)
    body = reencode(h, h.command_id, p)
    vals = p if isinstance(p, list) else [p] if isinstance(p, tuple) else []
    rec = {"name": f["name"], "fc": "%02X" % h.frame_control, "tsn": h.tsn, "cmd": h.command_id,
           "manuf": h.manufacturer, "direction": h.direction, "ddr": h.disable_default_response,
           "frame_type": h.frame_type, "reencoded": H(zcl.build_frame(h, body)),
           "values": [[x if not isinstance(x, bytes) else H(x) for x in r] if isinstance(r, tuple) else r for r in vals]}
    if f["name"] == "metering_request_mirror_response":
        rec["endpoint"] = peer.decode_request_mirror_rsp(fr, 3)
    out["zcl"].append(rec)
print("RESULT" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def fw(vectors: Path):
    # vectors.json alone is 176 KB of JSON: give the batch run a bigger heap
    r = run_mp(code=MP_CODE, heap="4m", env={"CHUB_VECTORS": str(vectors)})
    assert r.returncode == 0, r.stderr + r.stdout
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT")][0]
    return json.loads(line[6:])


@pytest.fixture(scope="module")
def V(vectors: Path):
    return json.loads((vectors / "zigbee" / "vectors.json").read_text())


def test_ash_reference_values(fw, V):
    A = V["ash"]
    assert fw["prs"] == A["pseudo_random_sequence_first_32"]["value"]
    assert fw["crc"] == A["crc_check_123456789"]["value"]
    assert fw["stuff"] == A["stuffing"]["table"]
    assert fw["unstuff"] == {k: k for k in A["stuffing"]["table"]}
    assert fw["send_reset"] == A["send_reset"]["wire"]


TYPES = {"DATA": 0, "ACK": 1, "NAK": 2, "RST": 3, "RSTACK": 4, "ERROR": 5}


def test_ash_frames(fw, V):
    frames = V["ash"]["frames"]
    assert len(fw["ash"]) == len(frames) >= 30
    for got, f in zip(fw["ash"], frames, strict=True):
        name = f["name"]
        assert got["wire"] == f["wire"], name
        assert got["stuffed"] + "7E" == f["wire"], name
        assert got["nframes"] == 1 and got["dec_control"] == int(f["control"], 16), name
        assert got["dec_data"] == (f.get("ezsp_frame") or f.get("data") or ""), name
        cf = f["control_fields"]
        assert got["type"] == TYPES[cf["type"]] == got["check_type"], name
        if cf["type"] == "DATA":
            assert (got["frm"], got["flag"], got["ack"]) == (cf["frmNum"], bool(cf["reTx"]), cf["ackNum"]), name
        elif cf["type"] in ("ACK", "NAK"):
            assert (got["flag"], got["ack"]) == (bool(cf["nRdy"]), cf["ackNum"]), name
    print(f"ASH vectors matched: {len(frames)} frames")


def test_ash_transcript(fw, vectors):
    lines = [ln for ln in (vectors / "zigbee" / "fake_ncp_v13.out").read_text().splitlines()
             if ln[:2] in ("> ", "< ")]
    assert len(fw["transcript"]) == len(lines) >= 30
    nframes = 0
    for rec, line in zip(fw["transcript"], lines, strict=True):
        wire = line[2:].replace(" ", "")
        frames = rec["frames"]
        assert all("error" not in fr for fr in frames), rec
        assert len(frames) == 1, rec
        fr = frames[0]
        # the reset line starts with 32 CANCEL bytes, which the decoder drops
        assert wire.endswith(fr["reencoded"]), rec
        if wire.startswith("1A" * 32):
            assert fr["control"] == 0xC0
        else:
            assert fr["reencoded"] == wire
        nframes += 1
    print(f"transcript frames decoded and re-encoded: {nframes}")


def test_install_codes(fw, V):
    ic = V["install_codes"]
    assert fw["x25_check"] == ic["crc16_x25_check_123456789"]
    assert len(fw["ic"]) == len(ic["cases"])
    for got, c in zip(fw["ic"], ic["cases"], strict=True):
        if "link_key" in c:
            assert got["key"] == c["link_key"], c["name"]
            assert got["with_crc"] == c["install_code_with_crc"], c["name"]
            assert got["crc"] == c["crc16_x25_value"], c["name"]
        else:
            assert "key" not in got and got["error"] == "InstallCodeCrcError", c["name"]
    for got, v in zip(fw["mmo"], ic["aes_mmo_hash"], strict=True):
        assert got["hash"] == v["aes_mmo_hash"], v["name"]


def test_zcl_frames(fw, V):
    frames = V["zcl"]["frames"]
    assert len(fw["zcl"]) == len(frames)
    for got, f in zip(fw["zcl"], frames, strict=True):
        h = f["header"]
        fc = h["frame_control"]
        assert got["reencoded"] == f["frame"], f["name"]
        assert got["fc"] == fc["hex"]
        assert got["tsn"] == int(h["tsn"], 16) and got["cmd"] == int(h["command_id"], 16)
        assert got["manuf"] == h["manufacturer"]
        assert got["direction"] == fc["direction"].endswith("(1)")
        assert got["ddr"] == bool(fc["disable_default_response"])
        assert got["frame_type"] == int(fc["frame_type"].split("(")[1][0])
    byname = {g["name"]: g for g in fw["zcl"]}
    # field values against the vectors' own breakdowns
    rsp = byname["time_read_attributes_response"]["values"]
    assert rsp == [[0, 0, 0xE2, 770558400], [1, 0, 0x18, 3]]
    assert byname["time_read_attributes_request"]["values"] == [0, 1]
    assert byname["metering_report_attributes"]["values"] == [[0, 0x25, 12345]]
    assert byname["default_response_to_report"]["values"] == [[0x0A, 0]]
    assert byname["metering_request_mirror_response"]["endpoint"] == 2
    print(f"ZCL vectors matched: {len(frames)} frames")
