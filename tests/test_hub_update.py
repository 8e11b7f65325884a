"""The hub's own update (docs/firmware-update.md): the image format on the
host (chubcore.hubimage, `chub image`) and the hub's staging, verification,
activation and rollback (firmware/update) under micropython on LittleFS2,
with a power-cut sweep at every block write of a download and its activation."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from chub.cli import main
from chubcore import hubimage as hi
from mpy import MP_TESTS, run_mp

FAILED, FAILED_AT_BOOT, OK = 0x8F1C, 0x8F1B, 0x8F72


def image_dir(tmp: Path, version: str = "0.2.0", board: str = "unix", size: int = 6000) -> Path:
    d = tmp / f"img-{board}-{version}"
    (d / "pkg").mkdir(parents=True, exist_ok=True)
    files = {"main.py": b"import app\napp.main()\n", "app.mpy": os.urandom(size), "pkg/x.mpy": os.urandom(size // 3),
             "empty.mpy": b""}
    for name, data in files.items():
        (d / name).write_bytes(data)
    doc = {"version": version, "board": board, "git": "abc", "built_utc": "now", "frozen": False,
           "modules": sorted(files)}
    (d / "image.json").write_text(json.dumps(doc))
    return d


@pytest.fixture(scope="module")
def key():
    return hi.new_key()


def run_driver(tmp: Path, args: dict, timeout: float = 300) -> dict:
    (tmp / "args.json").write_text(json.dumps(args))
    r = run_mp([str(MP_TESTS / "update_driver.py")], cwd=tmp, heap="512k", timeout=timeout)
    line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
    assert line, r.stdout + r.stderr
    res = json.loads(line[-1][7:])
    assert "exception" not in res, r.stdout
    return res


def kv_for(key, min_version: str | None = None) -> dict:
    kv = {"anchor": hi.anchor_bytes(key.public_key()).hex()}
    if min_version:
        kv["min_version"] = min_version
    return kv


# -- host side ------------------------------------------------------------------


def test_pack_sign_verify_and_hostile_on_the_host(tmp_path: Path, key) -> None:
    blob = hi.pack(image_dir(tmp_path), key)
    p = hi.verify(blob, key.public_key(), board="unix")
    assert p.signed and p.manifest["size"] == sum(f[1] for f in p.manifest["files"])
    other = hi.new_key()
    with pytest.raises(hi.ImageError, match="signature"):
        hi.verify(blob, other.public_key())
    flipped = bytearray(blob)
    flipped[-10] ^= 1
    with pytest.raises(hi.ImageError, match="SHA-256"):
        hi.verify(bytes(flipped), key.public_key())
    with pytest.raises(hi.ImageError, match="truncated"):
        hi.verify(blob[:-5], key.public_key())
    with pytest.raises(hi.ImageError, match="board"):
        hi.verify(blob, key.public_key(), board="esp32_devkitc")
    assert hi.ota_unwrap(hi.ota_wrap(blob)) == blob
    ota = bytearray(hi.ota_wrap(blob))
    ota[70] ^= 1
    with pytest.raises(hi.ImageError, match="Hash"):
        hi.ota_unwrap(bytes(ota))


def test_cli_image_build_sign_verify_inspect(tmp_path: Path, key) -> None:
    keyf = tmp_path / "mfr.pem"
    keyf.write_bytes(hi.key_pem(key))
    src = image_dir(tmp_path)
    out = tmp_path / "hub.chim"
    run = CliRunner().invoke
    r = run(main, ["image", "build", "--from", str(src), "--out", str(out)])
    assert r.exit_code == 0, r.output
    r = run(main, ["image", "verify", str(out), "--key", str(keyf)])
    assert r.exit_code == 1 and "not signed" in r.output
    r = run(main, ["image", "sign", str(out), "--key", str(keyf)])
    assert r.exit_code == 0, r.output
    r = run(main, ["image", "verify", str(out), "--key", str(keyf), "--board", "unix"])
    assert r.exit_code == 0 and "verified" in r.output, r.output
    r = run(main, ["image", "inspect", str(out), "--json"])
    doc = json.loads(r.output)
    assert doc["signed"] and doc["version"] == "0.2.0" and doc["files"] == 4
    r = run(main, ["image", "verify", str(out), "--key", str(keyf), "--board", "esp32_devkitc"])
    assert r.exit_code == 1 and "board" in r.output


# -- the hub ---------------------------------------------------------------------


def hostile_images(tmp: Path, key) -> dict[str, bytes]:
    good = hi.pack(image_dir(tmp), key)
    p = hi.parse(good)
    flipped = bytearray(good)
    flipped[p.body_offset + 3000] ^= 0x40
    # a manifest that lies about a file: re-signed by another key
    wrong_key = hi.pack(image_dir(tmp), hi.new_key())
    return {
        "wrong_signature": wrong_key,
        "flipped_byte": bytes(flipped),
        "truncated": good[:-700],
        "other_board": hi.pack(image_dir(tmp, board="esp32_devkitc"), key),
        "downgrade": hi.pack(image_dir(tmp, version="0.0.9"), key),
        "not_an_image": b"MZ" + os.urandom(200),
        "flipped_manifest": good[:20] + bytes([good[20] ^ 1]) + good[21:],
    }


def test_hostile_images_refused_with_0x8F1C_and_nothing_changes(tmp_path: Path, key) -> None:
    imgs = hostile_images(tmp_path, key)
    for name, data in imgs.items():
        (tmp_path / name).write_bytes(data)
    res = run_driver(tmp_path, {"scenario": "hostile", "images": list(imgs), "chunk": 1536,
                                "kv": kv_for(key, min_version="0.1.0")})
    reasons = {n: r["error"] for n, r in res.items()}
    assert "signature" in reasons["wrong_signature"]
    assert "hash" in reasons["flipped_byte"]
    assert "truncated" in reasons["truncated"]
    assert "board" in reasons["other_board"]
    assert "below minimum" in reasons["downgrade"]
    assert reasons["not_an_image"] == "not a hub image"
    assert reasons["flipped_manifest"]  # the board, the JSON or the signature: whichever check sees it first
    for name, r in res.items():
        assert r["alerts"] == [FAILED], (name, r)
        assert [c for c, _ in r["events"]] == [FAILED], (name, r)
        assert r["state"] == "idle"
        assert r["boot_after"] == r["boot_before"]  # the running image untouched
        assert r["img"] == [], (name, r["img"])  # nothing staged is left


def test_cs05a_ota_header_version_must_be_the_manifests(tmp_path: Path, key) -> None:
    # a hostile CS05a file: a validly signed 0.2.0 image inside an OTA header
    # that says 3.0.0.0 (the header is covered only by the Manufacturer Image
    # Hash, which anyone can recompute); refused before one byte is staged
    blob = hi.pack(image_dir(tmp_path), key)
    good = hi.ota_wrap(blob)
    assert good[14:18] == bytes([0, 0, 2, 0])  # little-endian 0x00020000: 0.2.0(.0)
    lying = good[:14] + (0x03000000).to_bytes(4, "little") + good[18:-32]
    lying += hashlib.sha256(lying).digest()
    with pytest.raises(hi.ImageError, match="file version"):
        hi.ota_unwrap(lying)  # the laptop (chub image verify, hht firmware update) refuses it too
    (tmp_path / "lying").write_bytes(lying)
    (tmp_path / "good").write_bytes(good)
    res = run_driver(tmp_path, {"scenario": "cs05a", "images": ["lying", "good"], "chunk": 3800,
                                "kv": kv_for(key)})
    r = res["lying"]
    assert r["error"] == "OTA file version 03000000 not 0.2.0", r
    assert r["alerts"] == [FAILED] and [c for c, _ in r["events"]] == [FAILED]
    assert r["state"] == "idle" and r["img"] == [] and r["boot_after"] == r["boot_before"]
    assert r["received"] == 0  # the sender starts again from 0
    g = res["good"]
    assert g["error"] is None and g["state"] == "verified" and g["alerts"] == [OK] and g["received"] == len(good)


def test_ota_file_version_of_a_hub_version() -> None:
    assert hi.ota_file_version("1.2.3") == 0x01020300 and hi.ota_file_version("7") == 0x07000000
    with pytest.raises(hi.ImageError, match="255"):
        hi.ota_file_version("1.256")  # an OTA file version has a byte per part


def test_download_activate_trial_and_rollback(tmp_path: Path, key) -> None:
    blob = hi.pack(image_dir(tmp_path), key)
    (tmp_path / "good").write_bytes(blob)
    res = run_driver(tmp_path, {"scenario": "good", "images": ["good"], "chunk": 1000, "kv": kv_for(key)})
    assert res["wrong_offset"] == 0
    assert res["partial"] == 28 and res["restart"] == 1000
    assert res["alerts"] == [OK] and res["status"]["state"] == "verified" and res["status"]["slot"] == "a"
    assert res["resend"] == len(blob)
    assert not res["due_early"] and res["due"] and res["reset"]
    assert res["after_reboot"]["state"] == "scheduled"
    assert res["boot"]["trial"] == "a" and res["boot"]["tries"] == 0
    assert res["choose1"] == "a" and res["boot1"]["tries"] == 1
    # not confirmed: the next boot runs the factory image and reports 0x8F1B
    assert res["choose2"] is None
    assert res["notes"] == 1 and res["notes_alerts"] == [FAILED_AT_BOOT]
    assert res["notes_events"][0][1].startswith("rollback 0.2.0")
    assert res["boot2"] == {"active": None, "trial": None, "tries": 0, "notes": []}


def test_confirmed_trial_stays(tmp_path: Path, key) -> None:
    (tmp_path / "good").write_bytes(hi.pack(image_dir(tmp_path), key))
    res = run_driver(tmp_path, {"scenario": "good", "images": ["good"], "chunk": 4096, "kv": kv_for(key),
                                "confirm": True})
    assert res["on_trial"] and res["confirmed"]
    assert res["choose2"] == "a" and res["notes"] == 0 and res["check"]
    assert res["boot2"]["active"] == "a" and res["boot2"]["trial"] is None


def test_confirm_raises_the_minimum_version_to_the_running_one(tmp_path: Path, key) -> None:
    # anti-rollback: once 0.2.0 is confirmed, an image of 0.1.5 (above the
    # provisioned minimum 0.1.0) is refused before one byte is stored
    (tmp_path / "good").write_bytes(hi.pack(image_dir(tmp_path), key))
    (tmp_path / "older").write_bytes(hi.pack(image_dir(tmp_path, version="0.1.5"), key))
    res = run_driver(tmp_path, {"scenario": "good", "images": ["good", "older"], "chunk": 4096,
                                "kv": kv_for(key, min_version="0.1.0"), "confirm": True})
    assert res["confirmed"]
    assert res["kv_after_confirm"]["min_version"] == "0.2.0"
    assert res["older"] == "version 0.1.5 below minimum 0.2.0"
    assert res["older_alerts"] == [FAILED]


def test_power_cut_at_every_block_write_of_download_and_activation(tmp_path: Path, key) -> None:
    (tmp_path / "good").write_bytes(hi.pack(image_dir(tmp_path, size=12000), key))
    res = run_driver(tmp_path, {"scenario": "sweep", "images": ["good"], "chunk": 1536, "kv": kv_for(key)},
                     timeout=900)
    c = res["counts"]
    assert res["writes"] > 20 and sum(v for k, v in c.items() if k in ("download", "activate", "no cut")) == res["writes"]
    # every cut boots the old image or the whole new one, and the update then completes
    assert res["failures"] == []
    assert c["download"] > 20 and c.get("activate", 0) >= 1 and c.get("resumed", 0) > 10, c
    print(res["writes"], c)


def test_hht_firmware_update_hub_refusals_on_the_laptop(tmp_path: Path, key) -> None:
    # chub hht firmware update --device hub: what the laptop refuses before
    # it opens the port (the port here is closed: nothing is sent)
    from chub.hht_firmware import parse_when

    src = image_dir(tmp_path)
    signed = tmp_path / "hub.chim"
    signed.write_bytes(hi.pack(src, key))
    unsigned = tmp_path / "unsigned.chim"
    unsigned.write_bytes(hi.pack(src))
    flipped = tmp_path / "flipped.chim"
    b = bytearray(signed.read_bytes())
    b[-10] ^= 1
    flipped.write_bytes(bytes(b))
    ota = hi.ota_wrap(signed.read_bytes())
    bad_ota = tmp_path / "bad.ota"
    bad_ota.write_bytes(ota[:-1] + bytes([ota[-1] ^ 1]))
    port = ["hht", "--port", "socket://127.0.0.1:9", "--timeout", "0.5", "firmware", "update"]
    run = CliRunner().invoke
    r = run(main, [*port, "--image", str(unsigned), "--device", "hub"])
    assert r.exit_code == 2 and "not signed" in r.output, r.output
    r = run(main, [*port, "--image", str(flipped), "--device", "hub"])
    assert r.exit_code == 2 and "SHA-256" in r.output, r.output
    r = run(main, [*port, "--image", str(bad_ota), "--device", "hub"])
    assert r.exit_code == 2 and "Manufacturer Image Hash" in r.output, r.output
    r = run(main, [*port, "--image", str(signed), "--device", "hub", "--eui", "00-11-22-33-44-55-66-77"])
    assert r.exit_code == 2 and "no --eui" in r.output, r.output
    r = run(main, [*port, "--image", str(signed), "--device", "esme", "--eui", "00-11-22-33-44-55-66-77"])
    assert r.exit_code == 2 and "--device hub" in r.output, r.output
    r = run(main, [*port, "--image", str(signed), "--device", "hub", "--activate-at", "tomorrow"])
    assert r.exit_code == 2 and "UTC time" in r.output, r.output
    r = run(main, [*port, "--image", str(signed), "--device", "esme", "--eui", "00-11-22-33-44-55-66-77",
                   "--activate-at", "now"])
    assert r.exit_code == 2 and "CS06" in r.output, r.output
    # a good image gets as far as the port: nobody listens there
    r = run(main, [*port, "--image", str(signed), "--device", "hub"])
    assert r.exit_code == 3 and "no answer" in r.output, r.output
    assert parse_when("now") == 0 and parse_when("1700000000") == 1700000000
    assert parse_when("2026-12-07T22:00") == parse_when("2026-12-07T22:00:00Z") == 1796680800
    assert parse_when("2026-12-07T23:00+01:00") == 1796680800
