"""HIL: the living default system (`chub sim`, EmulatedSystem(living=True)):
the GPF holds the test DCC anchors like the CHF, so the supplier's GCS13a to
the GPF is accepted and answered from the readings the GSME reported to the
mirror on its own; the GSME wakes on its schedule and collects a command the
hub buffered for it, and its response goes to the head-end; the ESME reports
on the same schedule: a Billing Data Log Updated alert (0x8F0A) MAC'd with its
own key to the ACB, which the hub forwards to the head-end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chubcore.paths import keystore_dir, vectors_dir
from hil.han_setup import DEVICES
from hil.headend.gbcs import HeadEnd, parse_frame
from hil.headend.gpf import GpfKeys, gbz_components, verify_response
from hil.meters.living import LIVING_HEAP, RTDS_GSME, readdress
from hil.system import EmulatedSystem

RTDS = vectors_dir() / "gbcs" / "rtds"
GSME_CMD = "3.1_GCS07/GCS07_3.1_SUCCESS_COMMAND_GBCS.HEX"
GSME_RSP = "3.1_GCS07/GCS07_3.1_SUCCESS_RESPONSE_GBCS.HEX"


@pytest.fixture(scope="module")
def living(tmp_path_factory: pytest.TempPathFactory, hub_image: Path) -> Iterator[EmulatedSystem]:
    if not RTDS.is_dir():
        pytest.skip("RTDS vectors not available")
    s = EmulatedSystem(tmp_path_factory.mktemp("living") / "sys", image=hub_image, fresh=True, living=True,
                       gsme_wake_s=2, heap=LIVING_HEAP)
    with s:
        yield s


def test_gsme_reports_and_gpf_answers_the_supplier(living: EmulatedSystem) -> None:
    m = living.meters
    assert m is not None
    living.wait_until(lambda: m.gsme is not None and m.gsme.reports >= 2, 30, "two GSME wake-ups with reports")
    st = living.call("gpf_status", timeout=40)
    assert st["gsme"] == DEVICES["gsme"].eui.lower() and st["clusters"]["0702"] == 13, st
    ident = living.call("identity", timeout=40)
    he = HeadEnd.for_hub(keystore_dir(), ident)
    keys = GpfKeys(keystore_dir(), bytes.fromhex(ident["gpf"]["eui"]), ident["gpf"]["ka_pub"])
    raw, cmd = he.rebuild(bytes.fromhex((RTDS / "4.1.1_GCS13a/GCS13a_4.1.1_SUCCESS_RELIABLE_GPF_COMMAND_GBCS.HEX")
                                        .read_text()))
    r = living.call("send_gbcs", timeout=40, frame=raw.hex())
    assert r.get("response"), r  # not refused as "unknown originator"
    f = verify_response(he, bytes.fromhex(r["response"]), cmd)
    (c,) = gbz_components(f.payload)
    plain = keys.decrypt(f, c, hub=True)
    # the summation the GSME reported last (12345 grown by 37 per later wake-up)
    summation = int.from_bytes(plain[-6:], "little")
    assert summation >= 12345 + 37 and (summation - 12345) % 37 == 0, plain.hex()


def test_gsme_wakes_and_collects_a_buffered_command(living: EmulatedSystem) -> None:
    m = living.meters
    assert m is not None and m.gsme is not None
    eui = bytes.fromhex(DEVICES["gsme"].eui)
    cmd = readdress(bytes.fromhex((RTDS / GSME_CMD).read_text()), RTDS_GSME, eui)
    r = living.call("send_gbcs", timeout=40, frame=cmd.hex())
    assert r.get("response") is None, r  # buffered for the sleepy meter
    want = readdress(bytes.fromhex((RTDS / GSME_RSP).read_text()), RTDS_GSME, eui)
    server = living.headend  # type: ignore[attr-defined]
    living.wait_until(lambda: any(x.raw == want for x in server.received), 20,
                      "the GSME's response at the head-end after its next wake-up")
    assert parse_frame(want).originator == eui
    assert living.call("route_buffer", eui=DEVICES["gsme"].eui)["queue"] == []


def test_esme_reports_to_the_dcc(living: EmulatedSystem) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from chubcore.dcc import ACB
    from hil.headend.gbcs import AAD_PREFIX, gmac12, kdf

    m = living.meters
    assert m is not None and m.esme is not None
    eui = bytes.fromhex(DEVICES["esme"].eui)
    server = living.headend  # type: ignore[attr-defined]

    def alerts() -> list:
        return [x.frame for x in server.received if x.frame is not None and x.frame.originator == eui
                and x.frame.cra == 3]

    living.wait_until(lambda: len(alerts()) >= 2, 20, "two ESME reports at the head-end")
    assert m.esme.reports >= 2 and not m.esme.report_errors, m.esme.report_errors
    he = HeadEnd.for_hub(keystore_dir(), living.call("identity", timeout=40))
    z = he.acb_ka.exchange(ec.ECDH(), m.esme.ka_pub)  # the ACB's side of the ESME's key agreement
    counters = []
    for f in alerts():
        assert f.recipient == ACB and b"\x12\x8f\x0a" in f.payload, f.payload.hex()
        key = kdf(z, f.originator, f.cra, f.counter, f.recipient)
        assert gmac12(key, f.originator + bytes(4), AAD_PREFIX + f.aad_body) == f.mac
        counters.append(f.counter)
    assert counters == sorted(set(counters))  # each report with a greater counter
    assert living.meters.summary()["esme"]["reports"] >= 2


def test_live_view_fits_80x24_and_uses_a_taller_terminal(living: EmulatedSystem) -> None:
    from rich.console import Console

    from chub.views import live_view

    answers = {c: living.call(c) for c in ("status", "device_log_list", "wan_status")}
    ready = {"local_port": living.local_port_url, "boot_to_ready_s": 1.0, "log": str(living.log.path)}
    assert living.meters is not None
    shown = {}
    for w, h in ((80, 24), (120, 40)):
        c = Console(width=w, height=h, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
        c.print(live_view(ready, answers, living.meters.summary(), living.log, c.size))
        text = c.export_text()
        lines = text.rstrip("\n").split("\n")
        assert len(lines) <= h and max(len(x) for x in lines) <= w, text
        for spec in DEVICES.values():
            assert spec.eui in text, text  # every meter, its EUI in full
        assert "Ctrl-C to stop" in text and "WAN   connected" in text and "clock 20" in text, text
        assert "wakes" in text, text  # the GSME's schedule
        shown[h] = len(lines)
    assert shown[40] > shown[24]  # the log takes the room a taller terminal has
