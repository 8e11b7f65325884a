"""HIL: the GPF in the whole hub (built image under micropython) with the
emulated HAN: the sleepy GSME asks for a mirror and reports its data over
the radio (hil.meters.gsme_data.MirrorReporter), the IHD reads the mirror over
ZCL (hil.meters.ihd), and a head-end GCS13a read (local-port send_gbcs ->
router.route -> hub.gpf) answers from the same data, decrypted by the supplier's
key; the mirror's data survive a power cut."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.headend.gbcs import HeadEnd, parse_frame
from hil.headend.gpf import GpfKeys, gbz_components, verify_response
from hil.meters.gsme_data import GsmeData, MirrorReporter
from hil.meters.ihd import Ihd
from hil.system import EmulatedSystem


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, hub_image: Path) -> Iterator[EmulatedSystem]:
    # the board's default heap (1024k): the GPF loads late, and its modules take the eighth name pool
    # (docs/proof.md, the qstr trap)
    with EmulatedSystem(tmp_path_factory.mktemp("gpf") / "sys", image=hub_image, fresh=True) as s:
        yield s


def test_gsme_mirror_ihd_and_headend_read(demo: EmulatedSystem, vectors: Path) -> None:
    han = demo.han
    demo.wait_until(lambda: han.wait_joined(["gsme", "ihd"], 1.0), 20, "the GSME and the IHD joined")
    gsme = MirrorReporter(han.device("gsme"), GsmeData.rtds())
    ep = han.run(gsme.setup())
    assert ep not in (0, 0xFFFF)
    flags = han.run(gsme.report_all())
    assert flags == [0]  # nothing queued for the GSME: no tunnelled message pending
    st = demo.call("gpf_status", timeout=40)
    assert st["gsme"] == han.device("gsme").node.eui.hex(), st
    assert st["clusters"] == {"0702": 13, "0705": 6, "0700": 2}, st
    # the IHD shows what the GSME reported
    shown = han.run(Ihd(han.device("ihd")).gas())
    assert shown == {
        "summation": 12345,
        "multiplier": 1,
        "divisor": 1000,
        "unit": 1,
        "credit_remaining": 2500000,
        "emergency_credit": 500000,
    }
    # the head-end reads the same register through the GPF
    ident = demo.call("identity", timeout=40)
    he = HeadEnd.for_hub(vectors / "gbcs" / "keystore", ident)
    demo.call("provision_test_dcc", timeout=40, anchors=he.test_dcc_anchors(), device="gpf")
    keys = GpfKeys(vectors / "gbcs" / "keystore", bytes.fromhex(ident["gpf"]["eui"]), ident["gpf"]["ka_pub"])
    rtds = vectors / "gbcs/rtds/4.1.1_GCS13a/GCS13a_4.1.1_SUCCESS_RELIABLE_GPF_COMMAND_GBCS.HEX"
    raw, cmd = he.rebuild(bytes.fromhex(rtds.read_text()))
    r = demo.call("send_gbcs", timeout=40, frame=raw.hex())
    f = verify_response(he, bytes.fromhex(r["response"]), cmd)
    (c,) = gbz_components(f.payload)
    plain = keys.decrypt(f, c, hub=True)
    # summation 12345 as uint48, last record of the Read Attributes Response
    assert plain.endswith(bytes.fromhex("0000" + "00" + "25") + (12345).to_bytes(6, "little")), plain.hex()
    assert f.date_time is not None and parse_frame(bytes.fromhex(r["response"])).message_code == 0x0074
    # power cut: the mirror's data come back from flash
    demo.reboot(power_cut=True)
    shown2 = demo.wait_until(lambda: _try(lambda: han.run(Ihd(han.device("ihd")).gas(), timeout=10)), 40,
                             "the IHD's gas reading after the power cut")
    assert shown2 == shown


def _try(fn):  # type: ignore[no-untyped-def]
    try:
        return fn()
    except Exception:  # noqa: BLE001 - retried until the hub is back
        return None
