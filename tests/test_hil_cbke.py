"""HIL: ZigBee key establishment (CBKE, cluster 0x0800) with the hub as the
trust centre. The hub (built image, under micropython) serves the Key
Establishment cluster and drives the emulated NCP's CBKE commands; the NCP
does the ECQV/ECMQV on the suite's curve (hil.ncp.cbke), the IHD and PPMID
initiate with their own certificates from the rig's CA. A completed CBKE
leaves the same new TC link key in the device and in the NCP's key table;
a certificate of another CA, or one whose subject is not the sender, is
refused with the SE status and logged (0x8F53)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.devices.cbke import establish
from hil.han_setup import DEVICES
from hil.ncp.cbke import SUITE1, SUITE2, Ca, CbkeNcp
from hil.system import EmulatedSystem

EV_CBKE_FAILED = 0x8F53  # codes.EV_CBKE_FAILED
UNKNOWN_ISSUER, INVALID_CERTIFICATE = 1, 6
HUB = bytes.fromhex("00DB1234567890A2")


@pytest.fixture
def demo(tmp_path: Path, hub_image: Path) -> Iterator[EmulatedSystem]:
    s = EmulatedSystem(tmp_path / "sys", image=hub_image, fresh=True, heap="768k")
    s.han_demo = True  # type: ignore[attr-defined]
    s.han_version = 14  # type: ignore[attr-defined]
    s.start()
    yield s
    s.stop()


def test_cbke_ihd_and_ppmid(demo: EmulatedSystem) -> None:
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
