"""HIL: ZigBee key establishment (CBKE, cluster 0x0800) with the hub as the
trust centre. The hub (built image, under micropython) serves the Key
Establishment cluster and drives the emulated NCP's CBKE commands; the NCP
does the ECQV/ECMQV on the suite's curve (hil.ncp.cbke), the IHD and PPMID
initiate with their own certificates from the rig's CA. A completed CBKE
leaves the same new TC link key in the device and in the NCP's key table;
a certificate of another CA, or one whose subject is not the sender, is
refused with the SE status and logged (0x8F53). The GPF's Method B joins
(CS03B / CS04B, the RTDS commands re-addressed to the hub's GPF) answer
with the GBCS join codes from each device's key establishment: 0 after a
completed CBKE, 6-11 after a failed one (5 + the Terminate status; 11 for
an invalid certificate), 13 with none (also for a device removed from the
Device Log and added again). A completed CBKE sets the Device Log entry's
key state; the hub's APP_KEY_REQUEST_POLICY lets the NCP give the IHD and
the ESME a partner link key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.devices.cbke import establish
from hil.han_setup import DEVICES
from hil.headend.gbcs import HeadEnd
from hil.headend.gpf import verify_response
from hil.ncp.cbke import SUITE1, SUITE2, Ca, CbkeNcp
from hil.system import EmulatedSystem

EV_CBKE_FAILED = 0x8F53  # codes.EV_CBKE_FAILED
UNKNOWN_ISSUER, INVALID_CERTIFICATE = 1, 6
HUB = bytes.fromhex("00DB1234567890A2")
RTDS_GPF = bytes.fromhex("00DB1234567890A3")
CS03B = "gbcs/rtds/8.7.2_CS03B/CS03B_8.7.2_SUCCESS_COMMAND_GBCS.HEX"
CS04B = "gbcs/rtds/8.8.2_CS04B/CS04B_8.8.2_SUCCESS_COMMAND_GBCS.HEX"
RTDS_JOIN = bytes.fromhex("3010020102040800DB12345678909C020103")  # Method B, GPF ...9C, type 3
RTDS_UNJOIN = bytes.fromhex("04080102030405060708")


def _gpf_join(demo: EmulatedSystem, he: HeadEnd, vectors: Path, eui: str, typ: int, method: int = 2,
              unjoin: bool = False) -> tuple[int, list[str]]:
    """A CS03B (or CS04B) for the hub's GPF: (the response code, the alerts)."""
    raw = bytes.fromhex((vectors / (CS04B if unjoin else CS03B)).read_text())
    old = RTDS_UNJOIN if unjoin else RTDS_JOIN
    new = bytes.fromhex("0408" + eui) if unjoin else (
        bytes.fromhex(f"30100201{method:02x}0408{eui}0201") + bytes((typ,)))
    assert raw.count(old) == 1 and len(new) == len(old)
    cmd_raw, cmd = he.rebuild(raw.replace(old, new), recipient=RTDS_GPF)
    r = demo.call("send_gbcs", timeout=40, frame=cmd_raw.hex())
    f = verify_response(he, bytes.fromhex(r["response"]), cmd)
    assert f.payload[:2] == b"\x02\x01", f.payload.hex()
    return f.payload[2], r["alerts"]


@pytest.fixture
def demo(tmp_path: Path, hub_image: Path) -> Iterator[EmulatedSystem]:
    # 1024k: the GPF loads late (docs/proof.md, the GPF HIL tests)
    s = EmulatedSystem(tmp_path / "sys", image=hub_image, fresh=True, heap="1024k")
    s.han_demo = True  # type: ignore[attr-defined]
    s.han_version = 14  # type: ignore[attr-defined]
    s.start()
    yield s
    s.stop()


def test_cbke_ihd_and_ppmid(demo: EmulatedSystem, vectors: Path) -> None:
    han = demo.han
    demo.wait_until(lambda: demo.call("han_status")["node_count"] == 4, 20, "the demo HAN up")
    cas = {2: Ca(SUITE2), 1: Ca(SUITE1)}
    han.emu.cbke = CbkeNcp(han.emu, {n: ca.issue(HUB) for n, ca in cas.items()})
    ihd, ppmid = han.device("ihd"), han.device("ppmid")
    results = {}
    for name, dev, suite in (("ihd", ihd, 2), ("ppmid", ppmid, 2), ("ihd1", ihd, 1)):
        creds = cas[suite].issue(dev.node.eui)
        r = han.run(establish(dev, creds), timeout=60)
        assert r["ok"], (name, r)
        # the hub's NCP stored the same key as the device's new TC link key
        assert han.emu.han.key_table[dev.node.eui] == r["key"] == dev.node.link_key
        results[name] = r
    assert [s for s, _ in han.emu.cbke.stored] == [2, 2, 1]
    # the Device Log's key state follows (the 16 octets stay the install code)
    states = {r[0]: r[2] for r in demo.call("device_log_list")["entries"]}
    assert states[DEVICES["ihd"].eui] == states[DEVICES["ppmid"].eui] == "key establishment", states
    assert states[DEVICES["esme"].eui] == "established"
    # a partner link key (SE 1.2 partner link key exchange: APS Request Key,
    # application link key, through the trust centre): the hub's
    # APP_KEY_REQUEST_POLICY lets the NCP make one key and send it to both
    esme = han.device("esme")
    key = han.emu.request_app_key(ihd.node, esme.node.eui)
    assert key is not None and len(key) == 16
    assert ihd.node.app_keys[esme.node.eui] == esme.node.app_keys[ihd.node.eui] == key
    assert han.emu.request_app_key(ihd.node, bytes.fromhex("00DB12345678FFFF")) is None  # no such partner
    assert "generateCbkeKeys283k1" in han.commands and "calculateSmacs283k1" in han.commands
    # a certificate from another CA: UNKNOWN_ISSUER; someone else's: INVALID_CERTIFICATE
    stranger = Ca(SUITE2, issuer=b"STRANGER").issue(ihd.node.eui)
    r = han.run(establish(ihd, stranger), timeout=60)
    assert not r["ok"] and r["status"] == UNKNOWN_ISSUER
    theirs = cas[2].issue(ppmid.node.eui)
    r = han.run(establish(ihd, theirs), timeout=60)
    assert not r["ok"] and r["status"] == INVALID_CERTIFICATE
    sec = demo.call("logs", which="security")["entries"]
    cbke = [bytes.fromhex(e[2]).decode() for e in sec if e[1] == EV_CBKE_FAILED]
    ihd_eui = DEVICES["ihd"].eui
    assert f"{ihd_eui} {UNKNOWN_ISSUER} issuer" in cbke[-2] and f"{ihd_eui} {INVALID_CERTIFICATE} subject" in cbke[-1]
    # the cluster's KeyEstablishmentSuite attribute: suites 1 and 2 (bitmap16)
    r = han.run(ihd.read_hub_attributes(0x0800, [0x0000]))
    assert r[0x0000][0] == 0 and r[0x0000][2] == 0x0003

    # Method B joins to the GPF: the join codes follow each device's CBKE
    he = HeadEnd.for_hub(vectors / "gbcs" / "keystore", demo.call("identity", timeout=40))
    demo.call("provision_test_dcc", timeout=40, anchors=he.test_dcc_anchors(), device="gpf")
    ppmid_eui, ihd_eui, esme_eui = DEVICES["ppmid"].eui, DEVICES["ihd"].eui, DEVICES["esme"].eui
    code, alerts = _gpf_join(demo, he, vectors, ppmid_eui, 5)
    assert code == 0 and len(alerts) == 1  # joined; 0x8071 GPF Device Log Changed
    assert _gpf_join(demo, he, vectors, ppmid_eui, 5, method=1)[0] == 2  # not Method B
    assert _gpf_join(demo, he, vectors, ppmid_eui, 6)[0] == 3  # other type than its entry
    assert _gpf_join(demo, he, vectors, ihd_eui, 6)[0] == 5 + INVALID_CERTIFICATE  # its last CBKE failed: 11
    assert _gpf_join(demo, he, vectors, esme_eui, 1)[0] == 13  # never ran one
    r = han.run(establish(ihd, cas[2].issue(ihd.node.eui)), timeout=60)
    assert r["ok"]
    assert _gpf_join(demo, he, vectors, ihd_eui, 6)[0] == 0
    code, alerts = _gpf_join(demo, he, vectors, ppmid_eui, 0, unjoin=True)
    assert code == 0 and len(alerts) == 1
    assert _gpf_join(demo, he, vectors, ppmid_eui, 0, unjoin=True)[0] == 1  # not in the GPF's log
    # out of order (a Confirm with no key establishment open: the last
    # outcome stands) or malformed (a short Initiate): Terminate BAD_MESSAGE (3)
    z = han.run(ihd.request(0x0800, bytes((0x01, ihd.next_tsn(), 2)) + bytes(16)))
    assert z.command == 3 and z.payload[0] == 3, z
    assert _gpf_join(demo, he, vectors, ihd_eui, 6)[0] == 0
    z = han.run(ihd.request(0x0800, bytes((0x01, ihd.next_tsn(), 0, 2, 0))))
    assert z.command == 3 and z.payload[0] == 3, z
    assert _gpf_join(demo, he, vectors, ihd_eui, 6)[0] == 5 + 3
    # a device removed from the Device Log loses its recorded outcome: re-added,
    # it has run no key establishment with the hub (13), not "completed" (0)
    assert _gpf_join(demo, he, vectors, ppmid_eui, 5)[0] == 0
    assert demo.call("device_log_remove", eui=ppmid_eui)["code"] == 0
    assert demo.call("device_log_add", eui=ppmid_eui, type=5, install_code=DEVICES["ppmid"].install_code_hex,
                     join_timeout=60)["code"] == 0
    assert _gpf_join(demo, he, vectors, ppmid_eui, 5)[0] == 13
