"""HIL: the hub's own update on the emulated board (docs/firmware-update.md).
A signed image goes over the local port, is activated, the hub resets into
it and confirms it after READY and its self-check; a deliberately broken
image (its app raises before READY) is rolled back on the next boot, with
0x8F1B in the event log; a hostile image is refused with 0x8F1C and the
running image stays."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from chub.bench_update import boot_again, image_variant
from chubcore import hubimage as hi
from hil.system import EmulatedSystem


@pytest.fixture(scope="module")
def key():
    return hi.new_key()


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, hub_image: Path) -> Iterator[EmulatedSystem]:
    if json.loads((hub_image / "image.json").read_text()).get("frozen"):
        pytest.skip("a frozen board's app is in its binary: no file image (docs/firmware-update.md)")
    with EmulatedSystem(tmp_path_factory.mktemp("hubupdate") / "sys", image=hub_image, fresh=True,
                        flash_blocks=512) as s:  # 2 MB: the data and two images (docs/firmware-update.md)
        yield s


@contextmanager
def one_session(s: EmulatedSystem) -> Iterator[None]:
    """The calls inside on one kept installer session, dropped after (an
    upload is ~200 image_write calls; a session of its own per call costs
    ~0.3 s of the hub's time each)."""
    s.keep_connection = True
    try:
        yield
    finally:
        s.drop_connection()
        s.keep_connection = False


def upload(s: EmulatedSystem, blob: bytes) -> dict:
    with one_session(s):
        return hi.upload(lambda cmd, **a: s.call(cmd, timeout=60, **a), blob)


def install(s: EmulatedSystem, blob: bytes) -> dict:
    st = upload(s, blob)
    assert st["state"] == "verified", st
    pos = s.log.position
    s.call("image_activate", total=st["total"], at=0)
    assert s.dut is not None
    s.wait_until(lambda: not s.dut.alive, 10, "the hub resets into the new image")
    return {"pos": pos, "status": st}


def events(s: EmulatedSystem, code: int) -> list[str]:
    rows = s.call("logs", which="event")["entries"]
    return [bytes.fromhex(r[2]).decode() for r in rows if r[1] == code]


def test_update_confirm_then_broken_image_rolls_back(system: EmulatedSystem, hub_image: Path, key,
                                                     tmp_path: Path) -> None:
    s = system
    s.call("image_anchor", anchor=hi.anchor_bytes(key.public_key()).hex(), min_version="0.1.0")
    assert s.call("image_status")["running"] == "factory"

    # a hostile image (another key) is refused, the factory image runs on
    bad = hi.pack(image_variant(hub_image, tmp_path / "v9", "0.9.0"), hi.new_key())
    with pytest.raises(Exception, match="signature"):
        upload(s, bad)
    assert "signature" in events(s, 0x8F1C)[-1]
    assert s.call("image_status")["state"] == "idle"

    # a good one: staged, verified (0x8F72), activated, confirmed
    good = hi.pack(image_variant(hub_image, tmp_path / "v2", "0.2.0"), key)
    install(s, good)
    boot_again(s)
    assert s.call("status")["version"] == "0.2.0"
    st = s.wait_until(lambda: (x := s.call("image_status"))["active"] == "a" and x, 20, "the trial image confirmed")
    assert st["running"] == "a" and st["trial"] is None
    assert events(s, 0x8F72)

    # a broken one: its app raises at import, before READY
    broken = image_variant(hub_image, tmp_path / "v3", "0.3.0", app_source="raise RuntimeError('broken image')\n")
    install(s, hi.pack(broken, key))
    assert s.dut is not None
    pos = s.log.position
    s.dut.start()
    s.wait_until(lambda: not s.dut.alive, 30, "the broken image dies before READY")
    assert any("broken image" in line for line in s.log.lines("dut", after=pos))
    boot_again(s)  # the next boot runs the confirmed image again
    st = s.call("image_status")
    assert st["running"] == "a" and st["active"] == "a" and st["trial"] is None, st
    assert s.call("status")["version"] == "0.2.0"
    assert events(s, 0x8F1B)[-1].startswith("rollback 0.3.0")


def test_cs05a_over_the_wan_then_cs06(system: EmulatedSystem, hub_image: Path, key, tmp_path: Path) -> None:
    from hil.headend.gbcs import HeadEndError
    from hil.headend.hub_image import activate_result, activate_start, send_image

    s = system
    s.call("image_anchor", anchor=hi.anchor_bytes(key.public_key()).hex(), min_version="0.1.0")
    he = s.headend
    s.wait_until(lambda: he.connected and s.call("wan_status")["connected"], 30, "the WAN link up")
    # a corrupted OTA file (its Manufacturer Image Hash does not match) is refused
    ota = hi.ota_wrap(hi.pack(image_variant(hub_image, tmp_path / "v5", "0.5.0"), key))
    bad = ota[:-1] + bytes([ota[-1] ^ 1])
    with pytest.raises(HeadEndError, match="refused"):
        send_image(he, bad)
    assert "Manufacturer Image Hash" in events(s, 0x8F1C)[-1]
    assert s.call("image_status")["state"] == "idle"
    # the good one, then CS06 now: the hub resets into it. The link is cut
    # once the hub has ACKed the CS06, so the reset comes before its response
    # leaves (as on a busy machine): the response comes from the hub's
    # outbox after the boot into the new image
    send_image(he, ota)
    assert s.call("image_status")["state"] == "verified"
    he.on_command_acked = lambda fid: s.modem.drop_network()
    try:
        cs06 = activate_start(he, ota, at=0)
        s.wait_until(lambda: not s.dut.alive, 10, "the hub resets into the new image")
    finally:
        he.on_command_acked = None
    boot_again(s)
    assert activate_result(cs06) == 0
    assert s.call("status")["version"] == "0.5.0"
    s.wait_until(lambda: s.call("image_status")["trial"] is None, 20, "the trial image confirmed")


def test_power_cuts_during_a_download_resume_it(system: EmulatedSystem, hub_image: Path, key,
                                                tmp_path: Path) -> None:
    # power cut at a block write during the download, four times at growing
    # depths: each time the hub boots its running image again and the
    # download goes on from where the hub had it on flash, never from zero
    from serial import SerialException

    from chubcore.localport import LocalPortClient, LocalPortTimeout

    s = system
    assert s.dut is not None and s.rig is not None
    s.call("image_anchor", anchor=hi.anchor_bytes(key.public_key()).hex(), min_version="0.1.0")
    blob = hi.pack(image_variant(hub_image, tmp_path / "v6", "0.6.0"), key)
    running = s.call("image_status")["running"]
    durable = 0  # what the hub said it had on flash (the header stored)
    received_after_cut = []
    base = s.call("status")["flash"]["writes"]  # a boot's writes, about
    for delta in (40, 300, 700, 1500):
        s.dut.power_cut()
        s.drop_connection()
        deadline = time.monotonic() + 5
        while any(s.rig.connected.values()) and time.monotonic() < deadline:
            time.sleep(0.02)
        pos = s.log.position
        s.dut.start(cut_after=base + delta)
        s.dut.wait_ready(30, after=pos)
        st = s.call("image_status")
        base = s.call("status")["flash"]["writes"]
        assert st["running"] == running and st["trial"] is None, st
        assert st["received"] >= durable, (st, durable)
        received_after_cut.append(st["received"])
        off = st["received"]
        try:  # the download on one session of its own: no retry once the power goes
            with LocalPortClient(s.local_port_url, timeout=20) as c:
                while off < len(blob):
                    r = c.call("image_write", offset=off, data=blob[off:off + hi.PIECE].hex())
                    off = r["received"]
                    if r["state"] != "idle":
                        durable = off
        except (LocalPortTimeout, OSError, TimeoutError, SerialException):
            pass  # the power went
        else:
            raise AssertionError(f"no power cut in the download (cut after {base + delta} block writes)")
        s.wait_until(lambda: not s.dut.alive, 30, "the power cut")
    boot_again(s)
    st = s.call("image_status")
    assert st["received"] >= durable and st["running"] == running
    assert any(r > 0 for r in received_after_cut[1:]), received_after_cut
    st = upload(s, blob)
    assert st["state"] == "verified"
    s.call("image_activate", total=st["total"], at=0)
    s.wait_until(lambda: not s.dut.alive, 10, "the hub resets into the new image")
    boot_again(s)
    assert s.call("status")["version"] == "0.6.0"


def test_hht_firmware_update_hub_status_and_activate(system: EmulatedSystem, hub_image: Path, key,
                                                     tmp_path: Path) -> None:
    # the installer's path from the CLI: status shows the hub's image, a
    # hostile image is refused by the hub, a good one goes on from where an
    # interrupted download left it, is activated at a time, confirmed, and
    # its version becomes the minimum (an older image then refused)
    from click.testing import CliRunner

    from chub.cli import main

    s = system
    s.call("image_anchor", anchor=hi.anchor_bytes(key.public_key()).hex(), min_version="0.1.0")
    s.wait_until(lambda: s.call("image_status")["trial"] is None, 30, "no trial image (an earlier test's)")
    url = s.local_port_url

    def hht(*args: str) -> tuple[int, str]:
        s.drop_connection()
        r = CliRunner().invoke(main, ["hht", "--port", url, "--timeout", "60", "firmware", *args])
        return r.exit_code, r.output

    code, out = hht("status", "--json")
    assert code == 0, out
    hub = json.loads(out)["hub"]
    assert hub["board"] == "unix" and hub["anchor"] and hub["running_version"]

    bad = tmp_path / "bad.chim"
    bad.write_bytes(hi.pack(image_variant(hub_image, tmp_path / "v8", "0.8.0"), hi.new_key()))
    code, out = hht("update", "--image", str(bad), "--device", "hub")
    assert code == 2 and "signature" in out, out

    good = hi.pack(image_variant(hub_image, tmp_path / "v7", "0.7.0"), key)
    f = tmp_path / "hub.chim"
    f.write_bytes(good)
    # an interrupted download: a third of the image on the hub, then the CLI
    with one_session(s):
        s.call("image_write", timeout=60, offset=0, data=good[:hi.PIECE].hex())
        off = hi.PIECE
        while off < len(good) // 3:
            off = s.call("image_write", timeout=60, offset=off, data=good[off:off + hi.PIECE].hex())["received"]
    code, out = hht("status")
    assert code == 0 and "0.7.0 in slot" in out and f"{off} of {len(good)} bytes" in out, out
    code, out = hht("update", "--image", str(f), "--device", "hub", "--activate-at", "2099-01-01T00:00")
    assert code == 0 and "verified on the hub" in out and "2099-01-01T00:00:00Z" in out, out
    code, out = hht("status")
    assert code == 0 and "scheduled at 2099-01-01T00:00:00Z" in out, out
    # the signature checks (the hostile image's, the good one's) took gbcs.p256 for the check only
    assert "gbcs.p256" not in s.call("status", modules=True)["modules"]
    code, out = hht("activate", "--at", "now")
    assert code == 0 and "resets into it" in out, out
    assert s.dut is not None
    s.wait_until(lambda: not s.dut.alive, 10, "the hub resets into the new image")
    boot_again(s)
    st = s.wait_until(lambda: (x := s.call("image_status"))["trial"] is None and x, 20, "the trial image confirmed")
    assert s.call("status")["version"] == "0.7.0" and st["min_version"] == "0.7.0", st
    code, out = hht("status")
    assert code == 0 and "0.7.0 (slot" in out and "confirmed" in out, out
    # anti-rollback: an older signed image is refused, and the anchor's
    # provisioning does not lower the minimum
    s.call("image_anchor", anchor=hi.anchor_bytes(key.public_key()).hex(), min_version="0.1.0")
    assert s.call("image_status")["min_version"] == "0.7.0"
    older = tmp_path / "older.chim"
    older.write_bytes(hi.pack(image_variant(hub_image, tmp_path / "v65", "0.6.5"), key))
    code, out = hht("update", "--image", str(older), "--device", "hub")
    assert code == 2 and "below minimum 0.7.0" in out, out


def test_cs05a_and_cs06_only_from_the_acb(system: EmulatedSystem, hub_image: Path, key, tmp_path: Path) -> None:
    # the access rule: the CHF's image transfer takes CS05a and CS06 only
    # from the Access Control Broker as originator. A command the ACB MACs for
    # the supplier (a trust anchor of the CHF) is refused with 0x8F30 in the
    # security log and nothing changes: no image staged, a staged one not
    # activated
    from chubcore.dcc import SUPPLIER
    from hil.headend.gbcs import RTDS_CHF, parse_frame, protect
    from hil.headend.hub_image import MC_CS05A, MC_CS06, activate, octets, precommand, send_image, u32

    s = system
    s.call("image_anchor", anchor=hi.anchor_bytes(key.public_key()).hex(), min_version="0.1.0")
    s.wait_until(lambda: s.call("image_status")["trial"] is None, 30, "no trial image (an earlier test's)")
    he = s.headend
    s.wait_until(lambda: he.connected and s.call("wan_status")["connected"], 30, "the WAN link up")
    chf = he.headend.devices[RTDS_CHF][0]

    def from_supplier(mc: int, method: int, data: bytes) -> str | None:
        f = parse_frame(precommand(mc, method, data))
        f.originator, f.recipient, f.counter = SUPPLIER, chf, he.headend.next_counter()
        iid = 0x20000000 | (f.counter & 0xFFFFFF)
        f.payload = f.payload[:1] + iid.to_bytes(4, "big") + f.payload[5:]
        return he.send_raw(protect(f, he.headend.z(chf)), 15)  # MAC'd by the ACB, as GBCS has it

    def refusals() -> list[str]:
        return [r[2].upper() for r in s.call("logs", which="security")["entries"] if r[1] == 0x8F30]

    ota = hi.ota_wrap(hi.pack(image_variant(hub_image, tmp_path / "v9", "0.9.0"), key))
    before = len(refusals())
    assert from_supplier(MC_CS05A, 2, b"\x02\x02" + u32(0) + octets(ota[:3800])) == "rejected"
    assert s.call("image_status")["state"] == "idle" and s.call("image_status")["received"] == 0
    sec = refusals()
    assert len(sec) == before + 1 and sec[-1] == (SUPPLIER + MC_CS05A.to_bytes(2, "big")).hex().upper()
    # staged by the ACB, activation by the supplier refused
    send_image(he, ota)
    assert s.call("image_status")["state"] == "verified"
    assert from_supplier(MC_CS06, 4, b"\x02\x02" + octets(ota[-32:]) + u32(0)) == "rejected"
    assert s.call("image_status")["state"] == "verified"
    assert refusals()[-1] == (SUPPLIER + MC_CS06.to_bytes(2, "big")).hex().upper()
    assert activate(he, ota, at=0xFFFFFFF0) == 0  # the ACB's is taken (far future: stays scheduled)
    assert s.call("image_status")["state"] == "scheduled"
    s.call("image_abort")


@pytest.mark.timeout(900)
def test_power_cuts_during_activation(system: EmulatedSystem, hub_image: Path, key, tmp_path: Path) -> None:
    # a whole-hub sample of power cuts during an activation: an image staged
    # and scheduled, the hub powered off before its time and on again after
    # it, so the activation (boot.json put on trial, stage.json removed, the
    # reset) runs at the boot; for each sample a calibration boot without a
    # cut says at which block write the reset came (W), the flash is put back
    # as it was before that boot, then the boot with the power cut at W-k (W
    # moves between stages with the logs' fill: 6 to 8 over four stages). Every
    # cut then boots the old image (the activation then runs again) or the
    # new one on trial, and the new one ends confirmed
    import re

    s = system
    assert s.dut is not None and s.rig is not None
    s.call("image_anchor", anchor=hi.anchor_bytes(key.public_key()).hex(), min_version="0.1.0")
    s.wait_until(lambda: s.call("image_status")["trial"] is None, 30, "no trial image (an earlier test's)")

    def power_off() -> None:
        s.dut.power_cut()
        s.drop_connection()
        deadline = time.monotonic() + 5
        while any(s.rig.connected.values()) and time.monotonic() < deadline:
            time.sleep(0.02)

    def stage(version: str) -> int:
        blob = hi.pack(image_variant(hub_image, tmp_path / f"v{version}", version), key)
        st = upload(s, blob)  # on one installer session
        assert st["state"] == "verified", st
        at = int(time.time()) + 3
        s.call("image_activate", total=st["total"], at=at)
        power_off()  # before the time comes
        time.sleep(max(0.0, at + 1 - time.time()))
        return at

    def confirmed(version: str) -> dict:
        # power on (no cut) until the hub runs `version` confirmed: a boot of
        # the old image with the activation still due resets into the new one
        for _ in range(3):
            if not s.dut.alive:
                boot_again(s)
            if s.call("status")["version"] == version:
                return s.wait_until(lambda: (x := s.call("image_status"))["trial"] is None and x, 20,
                                    "the trial image confirmed")
            s.wait_until(lambda: not s.dut.alive, 10, "the hub resets into the new image")
        raise AssertionError(f"{version} never ran")

    def last_reset_write(pos: int) -> int:
        hits = [int(m.group(1)) for line in s.log.lines("dut", after=pos)
                if (m := re.search(r"BOARD reset after block write (\d+)", line))]
        assert hits, "no reset logged"
        return hits[-1]

    outcomes = []
    # W-1 (the old image boots and re-runs the activation) and W (the new one boots): both outcomes;
    # W-2 and W-4 behave as W-1 and cost ~1.5 min each in CI, so they are left to the update-code sweep
    for i, k in enumerate((1, 0)):
        version = f"1.0.{i + 1}"
        old = s.call("status")["version"]
        stage(version)
        flash = s.dut.flash_path.read_bytes()
        pos = s.log.position
        s.dut.start()  # the calibration: the activation at boot, no cut
        s.wait_until(lambda: not s.dut.alive, 30, "the activation's reset")
        w = last_reset_write(pos)
        assert w > k, w
        power_off()
        s.dut.flash_path.write_bytes(flash)  # the flash as that boot found it
        pos = s.log.position
        s.dut.start(cut_after=w - k)
        s.wait_until(lambda: not s.dut.alive, 30, "the cut or the activation's reset")
        cut = any("BOARD power-cut" in line for line in s.log.lines("dut", after=pos))
        # the next power-on: the new image on trial, or the old one, which
        # finds the activation still due and resets into the new one
        pos = s.log.position
        boot_again(s)
        time.sleep(3)  # the update job runs a due activation right after READY
        reran = not s.dut.alive
        if reran:
            assert any("BOARD reset after" in line for line in s.log.lines("dut", after=pos))
            boot_again(s)
        assert s.call("status")["version"] == version, (k, old)  # never bricked, never a partial image
        outcomes.append((k, w, cut, "activation ran again" if reran else "new image at once"))
        confirmed(version)
    assert all(cut for _, _, cut, _ in outcomes), outcomes  # every sample cut the power
    assert {o for _, _, _, o in outcomes} == {"activation ran again", "new image at once"}, outcomes
    print("activation cuts (k below the reset's write W, W, cut, what the next power-on did):", outcomes)
