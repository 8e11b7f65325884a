"""The hub's OTA Upgrade cluster server (firmware/han/ota.py) under
MicroPython on the emulated flash (bench/mp_ota_workload.py), checked
against an OTA client written on zigpy's OTA cluster definitions
(hil/meters/ota_client.py): intake, Query Next Image, Image Block, Upgrade
End (the CCS08 hook), and the refusals."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from zigpy.zcl import foundation as f

from chub.bench_ota import OtaWorkload, load_image
from hil.meters.ota_client import INVALID_IMAGE, OtaClient, decode, encode, make_image

EUI = "00DB1234567890A4"
MF, IT = 0x1234, 0x0001
V_OLD, V_NEW = 0x00010000, 0x00020000
BODY = bytes((i * 31 + 7) & 0xFF for i in range(5000))


@pytest.fixture
def hub(tmp_path: Path):
    w = OtaWorkload(tmp_path / "flash.bin")
    yield w
    w.close()


def client(w: OtaWorkload, eui: str = EUI, version: int = V_OLD, max_data: int = 64) -> OtaClient:
    return OtaClient(lambda fr: w.zcl(eui, fr), MF, IT, version, max_data)


def test_meter_downloads_checks_and_ends(hub: OtaWorkload) -> None:
    image = make_image(MF, IT, V_NEW, BODY)
    st = load_image(hub, "esme", [EUI], image)
    assert st == {"durable": len(image), "st": "ready"}
    c = client(hub)
    assert asyncio.run(c.run())
    assert bytes(c.image) == image and c.hash_ok()
    # 47 bytes a block: one unfragmented 64-byte ZCL frame
    assert c.blocks == -(-len(image) // 47)
    ans = c.end_answers[-1]
    assert int(ans.file_version) == V_NEW and int(ans.upgrade_time) == 0xFFFFFFFF  # wait for CS06
    assert hub.last_alerts == [[EUI, f"{V_NEW:08x}", 0]]  # -> CCS08 0x8F8A
    s = hub.call("status")
    assert s["devices"][EUI]["running"] == V_OLD and s["devices"][EUI]["transferred"] == V_NEW
    # activation (the meter's CS06): it runs the new version, and the hub has nothing newer
    assert c.activate() and c.version == V_NEW
    assert not asyncio.run(c.query())
    assert hub.call("status")["devices"][EUI]["running"] == V_NEW


def test_block_size_follows_the_client(hub: OtaWorkload) -> None:
    load_image(hub, "esme", [EUI], make_image(MF, IT, V_NEW, BODY))
    c = client(hub, max_data=20)
    assert asyncio.run(c.query())
    asyncio.run(c.fetch(3))
    assert c.offset == 60 and c.blocks == 3


def test_refusals(hub: OtaWorkload) -> None:
    image = make_image(MF, IT, V_NEW, BODY)
    # intake: out-of-order offset, a flipped byte (hash), an unknown slot
    hub.call("begin", slot="esme", euis=[EUI], size=len(image))
    assert "expected 0" in hub.call("put", slot="esme", offset=10, data="00")["error"]
    assert "error" in hub.call("begin", slot="hcalcs", euis=[EUI], size=len(image))
    # an image larger than the flash has room for (the workload's is 256 KB)
    assert "no room" in hub.call("begin", slot="ppmid", euis=[EUI], size=300 * 1024)["error"]
    assert hub.call("durable", slot="ppmid") == {"durable": 0, "st": None}
    bad = bytearray(image)
    bad[100] ^= 1
    with pytest.raises(RuntimeError, match="hash"):
        load_image(hub, "esme", [EUI], bytes(bad))
    assert hub.call("durable", slot="esme") == {"durable": 0, "st": "bad"}
    c = client(hub)
    assert not asyncio.run(c.query())  # NO_IMAGE_AVAILABLE: nothing ready
    hub.call("begin", slot="esme", euis=[EUI], size=len(image))
    load_image(hub, "esme", [EUI], image)
    # another device, not a target
    assert not asyncio.run(client(hub, eui="00DB1234567890A5").query())
    # a block of a version the hub does not hold: ABORT
    _h, r = decode(asyncio.run(hub.zcl(EUI, encode(1, "image_block", field_control=0, manufacturer_code=MF,
                                                       image_type=IT, file_version=V_NEW + 1, file_offset=0,
                                                       maximum_data_size=40))))
    assert r.status == f.Status.ABORT
    # short, and the optional Image Page Request: Default Responses
    _h, r = decode(asyncio.run(hub.zcl(EUI, bytes.fromhex("0102030012"))))
    assert r == (0x03, 0x80)  # MALFORMED_COMMAND
    page = encode(2, "image_page", field_control=0, manufacturer_code=MF, image_type=IT, file_version=V_NEW,
                  file_offset=0, maximum_data_size=40, page_size=256, response_spacing=10)
    _h, r = decode(asyncio.run(hub.zcl(EUI, page)))
    assert r == (0x04, 0x81)  # UNSUP_CLUSTER_COMMAND
    # a device that failed its own check: CCS08 failure (code != 0), Default Response
    end = encode(3, "upgrade_end", status=INVALID_IMAGE, manufacturer_code=MF, image_type=IT, file_version=V_NEW)
    _h, r = decode(asyncio.run(hub.zcl(EUI, end)))
    assert r == (0x06, 0x00)
    assert hub.last_alerts == [[EUI, f"{V_NEW:08x}", INVALID_IMAGE]]


def test_intake_resumes_after_restart(tmp_path: Path) -> None:
    # a restart (no cut) between chunks: the RAM stage is lost, the flash
    # part stays; the intake goes on from the durable offset
    image = make_image(MF, IT, V_NEW, bytes(range(256)) * 40)
    flash = tmp_path / "flash.bin"
    w = OtaWorkload(flash)
    w.call("begin", slot="gsme", euis=[EUI], size=len(image))
    for off in range(0, 6 * 1024, 1024):
        r = w.call("put", slot="gsme", offset=off, data=image[off:off + 1024].hex())
    assert r == {"durable": 4096, "st": "loading"}
    w.close()
    w = OtaWorkload(flash)
    assert w.call("durable", slot="gsme") == {"durable": 4096, "st": "loading"}
    assert load_image(w, "gsme", [EUI], image)["st"] == "ready"
    w.close()
