"""HIL: meter firmware over the HAN, end to end (docs/ota-han.md).

The hub (built image, under micropython, on the emulated board) with the
rig's NCP emulator and head-end. Two emulated meters with OTA clients
(hil/meters/ota_client.py, on zigpy's OTA definitions): an always-awake
meter with the RTDS EUI 00DB1234567890A4 (the CCS08 vector's entity) and a
sleepy GSME (00DB1234567890A1) that fetches a few blocks per wake-up. The
images arrive over the local port (the installer's path, as `chub hht
firmware update` sends them); each meter downloads its image, checks the
hash and reports Upgrade End; the hub sends CCS08 0x8F8A to the head-end
(signed by the CHF: the RTDS NA_CCS08 shape); CS06 from the head-end is
routed to the meter, which then runs (and reports) the new version. The
GSME's transfer goes on across its wake-ups and across a power cut of the
hub in the middle of the image.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from chubcore.paths import vectors_dir
from hil.han_setup import DeviceSpec
from hil.headend.gbcs import SUPPLIER, Frame, compare_response, parse_frame
from hil.meters import fw_version, rtds_answers
from hil.meters.esme import EsmeMeter
from hil.meters.gsme import GsmeMeter
from hil.meters.ota_client import OtaClient, make_image
from hil.meters.ota_rig import (
    esme_activation,
    gsme_activation,
    load_over_local_port,
    ppmid_activation,
    zcl_sender,
)
from hil.meters.ppmid import Ppmid
from hil.system import EmulatedSystem

A4 = DeviceSpec("rtds_a4", "00DB1234567890A4", 1, bytes.fromhex("A4A4C0DE0102030405060708090A0B00"))
GSME = DeviceSpec("rtds_gsme", "00DB1234567890A1", 0, bytes.fromhex("647EC0DE0102030405060708090A0B00"), sleepy=True)
PPMID = DeviceSpec("ota_ppmid", "70B3D5C1FF1D00A5", 5, bytes.fromhex("FF1DC0DE0102030405060708090A0BA5"))
MF, IT_E, IT_G, IT_P = 0x1234, 0x0001, 0x0002, 0x0003
V_OLD, V_NEW = 0x00010000, 0x0123ABCD  # the CCS08 vector's firmware version
RTDS_CCS08 = vectors_dir() / "gbcs" / "rtds" / "NA_CCS08" / "CCS08_NA_NA_ALERT_GBCS.HEX"


@pytest.fixture(scope="module")
def sysm(tmp_path_factory: pytest.TempPathFactory, hub_image: Path) -> Iterator[SimpleNamespace]:
    s = EmulatedSystem(tmp_path_factory.mktemp("ota") / "sys", image=hub_image, fresh=True, heap="1024k")
    s.han_demo = False  # type: ignore[attr-defined]
    s.keep_connection = True  # type: ignore[attr-defined]
    s.call_timeout = 15  # type: ignore[attr-defined]
    s.start()
    try:
        han = s.han  # type: ignore[attr-defined]
        s.wait_until(lambda: s.call("han_status")["state"] == "up", 20, "the HAN up")
        for spec in (A4, GSME, PPMID):
            han.add_device(spec)
            r = s.call("device_log_add", eui=spec.eui, type=spec.dev_type, install_code=spec.install_code_hex,
                       join_timeout=600)
            assert r["code"] == 0, r
            han.power_on(spec.name)
        assert han.wait_hub_joined(s, [A4.name, GSME.name, PPMID.name], 20)
        answers = rtds_answers()

        async def meters() -> tuple[EsmeMeter, GsmeMeter, Ppmid]:
            return (EsmeMeter(han.device(A4.name), answers), GsmeMeter(han.device(GSME.name), answers, wake_s=None),
                    Ppmid(han.device(PPMID.name)))

        esme, gsme, ppmid = han.run(meters())
        s.call("route_config", esme_timeout_ms=3000)
        s.wait_until(lambda: s.headend.connected, 20, "the head-end link")  # type: ignore[attr-defined]
        yield SimpleNamespace(system=s, han=han, esme=esme, gsme=gsme, ppmid=ppmid, server=s.headend)  # type: ignore[attr-defined]
    finally:
        s.stop()


def _ccs08(server, n: int, eui: str) -> list[Frame]:  # noqa: ANN001
    out = []
    for r in server.received[n:]:
        f = parse_frame(r.raw)
        if f.cra == 3 and f.message_code == 0x0128 and bytes.fromhex(eui) in f.payload:
            out.append(server.headend.verify(r.raw, cra=3))
    return out


def _cs06(server, eui: str) -> bytes:  # noqa: ANN001
    he = server.headend
    f = Frame(1, he.next_counter(), SUPPLIER, bytes.fromhex(eui), None, b"\x00\x12", b"\x00", None, False)
    return f.header_and_payload()


def _ecs52(server, eui: str) -> int:  # noqa: ANN001
    """ECS52 to the ESME, routed over its tunnel: the file version it reports."""
    cmd = fw_version.command(fw_version.ECS52, server.headend.next_counter(), SUPPLIER, bytes.fromhex(eui))
    return fw_version.version_in(server.send_command(cmd, 15, rebuild=False).frame)


def _responses(server, n: int, mc: int) -> list[Frame]:  # noqa: ANN001
    return [r.frame for r in server.received[n:] if r.frame is not None and r.frame.cra == 2
            and r.frame.message_code == mc]


def test_esme_image_transfer_ccs08_and_cs06(sysm: SimpleNamespace) -> None:
    s, han = sysm.system, sysm.han
    image = make_image(MF, IT_E, V_NEW, bytes((i * 7) & 0xFF for i in range(6000)))
    r = load_over_local_port(s, "esme", [A4.eui], image)
    assert r["state"] == "ready" and r["durable"] == len(image)
    client = OtaClient(zcl_sender(han.device(A4.name)), MF, IT_E, V_OLD)
    esme_activation(sysm.esme, client)
    n = len(sysm.server.received)
    assert han.run(client.run(), timeout=300)
    assert client.hash_ok() and client.restarts == 1
    alerts = s.wait_until(lambda: _ccs08(sysm.server, n, A4.eui), 15, "CCS08 at the head-end")
    a = alerts[0]
    # the RTDS NA_CCS08 alert: the same frame but for the time stamp (the
    # hub's clock), counter and signature (checked by verify with the CHF's DS key)
    exp = bytes.fromhex(RTDS_CCS08.read_text().strip())
    assert compare_response(exp, a, {}) == []
    assert a.payload[-18:] == parse_frame(exp).payload[-18:]  # entity ...A4, version 0123ABCD, response code 0
    st = s.call("ota_status")
    assert st["devices"][A4.eui]["transferred"] == V_NEW and st["devices"][A4.eui]["running"] == V_OLD
    assert _ecs52(sysm.server, A4.eui) == V_OLD  # ECS52: downloaded, not yet running
    # CS06 from the head-end, routed to the meter over the tunnel: it runs the new version
    assert sysm.server.send_raw(_cs06(sysm.server, A4.eui), 15) == "done"
    s.wait_until(lambda: client.version == V_NEW, 15, "the meter activated")
    assert _ecs52(sysm.server, A4.eui) == V_NEW
    assert not han.run(client.query())  # it reports the new version: nothing newer
    assert s.call("ota_status")["devices"][A4.eui]["running"] == V_NEW
    # the hub reads its Basic versions again: the Device Log (CCS05/CCS06) has the new one
    s.wait_until(lambda: s.call("han_status")["versions"].get(A4.eui, [None])[0] == (V_NEW >> 16) & 0xFF, 15,
                 "the new application version in the Device Log")


def test_sleepy_gsme_transfer_across_wakeups_and_a_hub_power_cut(sysm: SimpleNamespace) -> None:
    s, han = sysm.system, sysm.han
    image = make_image(MF, IT_G, V_NEW, bytes((i * 13 + 5) & 0xFF for i in range(6000)))
    # a power cut while the image is taken in: the intake resumes from the durable part
    s.call("ota_begin", slot="gsme", euis=[GSME.eui], size=len(image))
    for off in range(0, 5 * 1024, 1024):
        s.call("ota_put", slot="gsme", offset=off, data=image[off:off + 1024].hex())
    s.drop_connection()
    s.reboot(power_cut=True)
    assert s.call("ota_status")["images"]["gsme"]["durable"] == 4096
    assert load_over_local_port(s, "gsme", [GSME.eui], image)["state"] == "ready"
    client = OtaClient(zcl_sender(han.device(GSME.name)), MF, IT_G, V_OLD)
    gsme_activation(sysm.gsme, client)
    n = len(sysm.server.received)
    wakes = 0
    while not han.run(client.run(max_blocks=25), timeout=120):  # one wake-up: 25 blocks
        wakes += 1
        if wakes == 2:
            at = client.offset
            s.drop_connection()
            s.reboot(power_cut=True)  # the hub loses power mid-image
            s.wait_until(lambda: s.call("han_status")["state"] == "up", 30, "the HAN up again")
            assert client.offset == at
        assert wakes < 100
    assert wakes >= 3 and client.restarts == 1 and client.hash_ok()
    s.wait_until(lambda: s.headend.connected, 30, "the head-end link")  # type: ignore[attr-defined]
    s.wait_until(lambda: _ccs08(sysm.server, n, GSME.eui), 20, "CCS08 for the GSME")
    # GCS38, CS06, GCS38 wait in the GSME's buffer until it wakes and GETs them, in order
    he = sysm.server.headend
    n = len(sysm.server.received)
    for frame in (fw_version.command(fw_version.GCS38, he.next_counter(), SUPPLIER, bytes.fromhex(GSME.eui)),
                  _cs06(sysm.server, GSME.eui),
                  fw_version.command(fw_version.GCS38, he.next_counter(), SUPPLIER, bytes.fromhex(GSME.eui))):
        assert sysm.server.send_raw(frame, 15) == "done"
    han.run(sysm.gsme.wake(), timeout=60)
    assert client.version == V_NEW
    got = s.wait_until(lambda: len(r := _responses(sysm.server, n, fw_version.GCS38)) == 2 and r, 20,
                       "the GSME's two GCS38 responses")
    assert sorted((f.counter, fw_version.version_in(f)) for f in got)[0][1] == V_OLD
    assert sorted((f.counter, fw_version.version_in(f)) for f in got)[1][1] == V_NEW


def test_ppmid_takes_its_image_from_the_ppmid_slot(sysm: SimpleNamespace) -> None:
    # a PPMID of its own (Device Log type 5, always awake): the ppmid slot's
    # image (CS05c) for it, CCS08, CS08 before and after CS06
    s, han, server = sysm.system, sysm.han, sysm.server
    image = make_image(MF, IT_P, V_NEW, bytes((i * 11 + 3) & 0xFF for i in range(3000)))
    # a slot's image is for devices of the slot's type only
    with pytest.raises(Exception, match="not in the Device Log as PPMID"):
        s.call("ota_begin", slot="ppmid", euis=[A4.eui], size=len(image))
    with pytest.raises(Exception, match="not in the Device Log as ESME"):
        s.call("ota_begin", slot="esme", euis=[PPMID.eui], size=len(image))
    assert load_over_local_port(s, "ppmid", [PPMID.eui], image)["state"] == "ready"
    client = OtaClient(zcl_sender(han.device(PPMID.name)), MF, IT_P, V_OLD)
    ppmid_activation(sysm.ppmid, client)
    n = len(server.received)
    assert han.run(client.run(), timeout=300)
    assert client.hash_ok() and client.restarts == 1
    a = s.wait_until(lambda: _ccs08(server, n, PPMID.eui), 15, "CCS08 for the PPMID")[0]
    # entity (the PPMID), firmware version, response code 0 (the NA_CCS08 shape)
    assert a.payload[-18:] == b"\x08" + bytes.fromhex(PPMID.eui) + b"\x04\x04" + V_NEW.to_bytes(4, "big") + b"\x02\x01\x00"

    def cs08() -> int:
        cmd = fw_version.command(fw_version.CS08, server.headend.next_counter(), SUPPLIER, bytes.fromhex(PPMID.eui))
        return fw_version.version_in(server.send_command(cmd, 15, rebuild=False).frame)

    assert cs08() == V_OLD
    assert server.send_raw(_cs06(server, PPMID.eui), 15) == "done"
    s.wait_until(lambda: client.version == V_NEW, 15, "the PPMID activated")
    assert cs08() == V_NEW
    assert s.call("ota_status")["devices"][PPMID.eui]["transferred"] == V_NEW


def test_cs05b_cs05c_over_the_wan_served_over_the_han_then_ccs08(sysm: SimpleNamespace) -> None:
    # meter images from the head-end (project-local 0x7F06 CS05b / 0x7F07
    # CS05c, MAC'd by the ACB, in pieces) into the hub's HAN OTA image store,
    # then served to the meter, which reports Upgrade End: CCS08
    from hil.headend.gbcs import RTDS_CHF, HeadEndError, decode_access_response, protect
    from hil.headend.hub_image import (
        MC_CS05B,
        MC_CS05C,
        OBIS_METER_IMAGE,
        meter_piece,
        octets,
        precommand,
        send_meter_image,
        u32,
    )

    s, han, server = sysm.system, sysm.han, sysm.server
    v3 = 0x01300000
    image = make_image(MF, IT_E, v3, bytes((i * 5 + 1) & 0xFF for i in range(9000)))  # three pieces
    # ACB only, as CS05a: one the ACB MACs for the supplier is refused (0x8F30), nothing begun
    he = server.headend
    chf = he.devices[RTDS_CHF][0]
    before = s.call("ota_status")["images"].get("esme")
    f = parse_frame(meter_piece(MC_CS05B, 0, image[:3800], [A4.eui]))
    f.originator, f.recipient, f.counter = SUPPLIER, chf, he.next_counter()
    f.payload = f.payload[:1] + (0x20000000 | (f.counter & 0xFFFFFF)).to_bytes(4, "big") + f.payload[5:]
    assert server.send_raw(protect(f, he.z(chf)), 15) == "rejected"
    sec = [r[2].upper() for r in s.call("logs", which="security")["entries"] if r[1] == 0x8F30]
    assert sec[-1] == (SUPPLIER + MC_CS05B.to_bytes(2, "big")).hex().upper()
    assert s.call("ota_status")["images"].get("esme") == before  # the slot untouched
    with pytest.raises(HeadEndError, match="refused"):  # CS05c is for a PPMID, not the ESME
        send_meter_image(server, MC_CS05C, image, [A4.eui])
    with pytest.raises(HeadEndError, match="refused"):  # one image for one kind of device
        send_meter_image(server, MC_CS05B, image, [A4.eui, GSME.eui])
    # CS05a's data shape on a CS05b object: type unmatched (12), nothing begun
    bad = precommand(MC_CS05B, 2, b"\x02\x02" + u32(0) + octets(image[:100]), OBIS_METER_IMAGE[MC_CS05B])
    assert decode_access_response(server.send_command(bad, 15).frame.payload).results == [(3, 12)]
    assert s.call("ota_status")["images"].get("esme") == before
    # two pieces, then the head-end starts again from 0: the hub says where it is
    assert send_meter_image(server, MC_CS05B, image, [A4.eui], stop=3800) == 3800
    assert send_meter_image(server, MC_CS05B, image, [A4.eui], stop=7600) == 7600
    st = s.call("ota_status")["images"]["esme"]
    assert st["st"] == "loading" and 0 < st["durable"] <= 7600
    # a power cut: the hub goes on from what is on flash (durable), not from 0
    s.drop_connection()
    s.reboot(power_cut=True)
    s.wait_until(lambda: server.connected and s.call("wan_status")["connected"], 30, "the WAN link up again")
    s.wait_until(lambda: s.call("han_status")["state"] == "up", 30, "the HAN up again")
    assert s.call("ota_status")["images"]["esme"]["durable"] == st["durable"]
    code = server.send_command(meter_piece(MC_CS05B, 0, image[:3800], [A4.eui]), 30)
    assert decode_access_response(code.frame.payload).data[0] == (0x06, st["durable"])
    assert send_meter_image(server, MC_CS05B, image, [A4.eui], start=st["durable"]) == len(image)
    st = s.call("ota_status")["images"]["esme"]
    assert st["st"] == "ready" and st["v"] == v3 and st["eui"] == [A4.eui] and st["durable"] == len(image)
    # the same image again (a lost answer): nothing restarts
    assert send_meter_image(server, MC_CS05B, image, [A4.eui]) == len(image)
    client = OtaClient(zcl_sender(han.device(A4.name)), MF, IT_E, V_NEW)
    n = len(server.received)
    assert han.run(client.run(), timeout=300)
    assert client.hash_ok() and client.restarts == 1 and bytes(client.image) == image
    a = s.wait_until(lambda: _ccs08(server, n, A4.eui), 15, "CCS08 for the WAN's ESME image")[0]
    assert a.payload[-7:-3] == v3.to_bytes(4, "big")
    # CS05c to the PPMID (one piece)
    p_img = make_image(MF, IT_P, 0x01310000, bytes(range(200)) * 5)
    assert send_meter_image(server, MC_CS05C, p_img, [PPMID.eui]) == len(p_img)
    assert s.call("ota_status")["images"]["ppmid"]["v"] == 0x01310000


def test_hht_firmware_update_and_status(sysm: SimpleNamespace, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from chub.cli import main

    s = sysm.system
    url = s.local_port_url
    image = make_image(MF, 0x0003, 0x00030000, bytes(range(256)) * 12)
    f = tmp_path / "ppmid.ota"
    f.write_bytes(image)
    bad = tmp_path / "bad.ota"
    bad.write_bytes(image[:-1] + bytes([image[-1] ^ 1]))
    s.drop_connection()
    r = CliRunner().invoke(main, ["hht", "--port", url, "firmware", "update", "--image", str(bad), "--device", "ppmid",
                                  "--eui", PPMID.eui])
    assert r.exit_code == 2 and "SHA-256" in r.output, r.output  # refused before anything is sent
    r = CliRunner().invoke(main, ["hht", "--port", url, "firmware", "update", "--image", str(f), "--device", "ppmid",
                                  "--eui", PPMID.eui])
    assert r.exit_code == 0, r.output
    assert "ready on the hub" in r.output and PPMID.eui in r.output
    r = CliRunner().invoke(main, ["hht", "--port", url, "firmware", "status", "--json"])
    assert r.exit_code == 0, r.output
    st = __import__("json").loads(r.output)
    assert st["images"]["ppmid"] == {"st": "ready", "size": len(image), "eui": [PPMID.eui], "mf": MF, "it": 3,
                                     "v": 0x00030000, "durable": len(image)}
    r = CliRunner().invoke(main, ["hht", "--port", url, "firmware", "status"])
    assert r.exit_code == 0 and "ppmid" in r.output, r.output
