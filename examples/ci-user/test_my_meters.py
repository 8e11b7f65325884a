"""A worked example of a team's own HIL tests on the chub plugin
(docs: examples/ci-user/README.md)."""

from __future__ import annotations

from pathlib import Path

from chubcore.paths import vectors_dir
from hil.han_setup import DEVICES
from hil.meters.living import RTDS_GSME, readdress


def test_every_demo_meter_joined(chub_meter) -> None:  # noqa: ANN001
    for name in ("esme", "gsme", "ihd", "ppmid"):
        row = chub_meter(name)
        assert row.eui == DEVICES[name].eui and row.join_state == "joined"
        assert row.last_comm is not None  # heard since the hub started


def test_the_gsme_wakes_and_reports(chub_hub) -> None:  # noqa: ANN001
    gsme = chub_hub.meters.gsme
    before = gsme.reports
    chub_hub.wait_until(lambda: gsme.reports > before, 20, "the GSME's next report")
    assert chub_hub.call("gpf_status")["clusters"]["0702"] > 0


def test_a_gsme_command_is_buffered_then_answered(chub_hub) -> None:  # noqa: ANN001
    rtds = vectors_dir() / "gbcs" / "rtds" / "3.1_GCS07"
    eui = bytes.fromhex(DEVICES["gsme"].eui)
    cmd = readdress(bytes.fromhex(Path(rtds / "GCS07_3.1_SUCCESS_COMMAND_GBCS.HEX").read_text()), RTDS_GSME, eui)
    reply = chub_hub.send_gbcs(cmd)
    assert reply.buffered
    want = readdress(bytes.fromhex(Path(rtds / "GCS07_3.1_SUCCESS_RESPONSE_GBCS.HEX").read_text()), RTDS_GSME, eui)
    chub_hub.wait_until(lambda: any(r.raw == want for r in chub_hub.headend.received), 20,
                        "the GSME's response at the head-end")


def test_the_console(chub_hub) -> None:  # noqa: ANN001
    chub_hub.expect(r"hub READY version=\S+ board=unix")  # the boot line, anywhere in the log
    chub_hub.write(b"\x7e\x00garbage that is no frame\n")  # the hub must survive a broken frame
    assert chub_hub.call("status")["board"] == "unix"
