"""HIL: the full scenario at capacity (hil/campaign/capacity.py), once, at
the board's default heap: the CHF Device Log full and every entry joined,
every GSME queue at its limit, a delivery in flight to each ESME and the
WAN outbox holding alerts behind a link that is down, all at once; then
released, and nothing acknowledged lost. At capacity the hub refuses a
17th device and a 33rd buffered command (nothing changes). The bench
measures the heap working set and floor on the same scenario
(`chub bench --board unix32 --runs N`, docs/proof.md).

And the rig itself: its emulated HAN holds as many devices as a full
Device Log (and more) with radio figures a ZigBee frame can carry.
"""

from __future__ import annotations

import struct
from pathlib import Path
from types import SimpleNamespace

from hil.campaign import capacity
from hil.campaign.scenario import run_steps
from hil.han_setup import DeviceSpec, EmulatedHan
from hil.headend.gbcs import parse_frame
from hil.log import DutLog
from hil.rig import Rig


def test_the_emulated_han_holds_more_devices_than_a_full_device_log(tmp_path: Path) -> None:
    # before: the 15th device's RSSI (-55 dBm, 5 dB less per device) left
    # the int8 the NCP's incomingMessageHandler carries: struct.error on its
    # first frame, so it never finished its join
    rig = Rig(DutLog(tmp_path / "log")).start()
    try:
        han = EmulatedHan(SimpleNamespace(rig=rig, workdir=tmp_path))
        for i in range(40):
            han.add_device(DeviceSpec(f"d{i}", f"70B3D5C1CB00{i:04X}", 6, bytes(16)))
        for name, node in han.nodes.items():
            struct.pack("<Bb", node.lqi, node.rssi)  # as the NCP emulator sends them
            assert -100 <= node.rssi <= -40 and 0 < node.lqi <= 255, (name, node.rssi, node.lqi)
    finally:
        rig.stop()


def test_readdress_keeps_the_frame_and_changes_only_the_header_fields() -> None:
    raw = capacity.rtds(capacity.ESME_CMD)
    f0 = parse_frame(raw)
    b = capacity.readdress(raw, counter=0x0102030405060708, recipient="70B3D5C1CA000101")
    f = parse_frame(b)
    assert len(b) == len(raw) and f.counter == 0x0102030405060708
    assert f.recipient.hex().upper() == "70B3D5C1CA000101" and f.originator == f0.originator
    assert f.payload == f0.payload and f.other_info == f0.other_info


def test_capacity_specs_fill_the_log_with_esmes_up_to_the_deliveries() -> None:
    specs = capacity.capacity_specs(11, 6)
    assert [s.dev_type for s in specs] == [1] * 6 + [5, 4] + [6] * 3
    assert len({s.eui for s in specs}) == 11
    assert all(len(s.install_code_hex) == 36 for s in specs)  # 16-byte codes with their CRC
    assert [s.dev_type for s in capacity.capacity_specs(3, 8)] == [1, 1, 1]


def test_full_scenario_at_capacity(hub_image: Path, tmp_path: Path, vectors: Path) -> None:
    run = capacity.new_run(tmp_path / "capacity", hub_image)
    try:
        assert run.power_on()
        at = capacity.STEPS.index(capacity.step_outbox_held)
        run_steps(run, capacity.STEPS[:at], max_reboots=0)
        cap = run.capacity
        assert cap.limits == {"device_log": 16, "buffer": 32, "deliveries": 8}, cap.limits
        # what a CHF command loads (its use cases, what they import, the
        # credentials' DER and P-256), what device_log_add loads (the install
        # code's checks) and what the head-end link's key was made with
        # (P-256) went after: none of it is held at capacity
        held = set(run.call("status", modules=True)["modules"])
        borrowed = {"chf.usecase_exec", "gbcs.dlms_apdu", "gbcs.usecase_base", "han.install_code", "chf.credentials",
                    "gbcs.der", "gbcs.p256"}
        assert not held & borrowed, sorted(held & borrowed)
        # at capacity the hub refuses what goes beyond, and nothing changes
        extra = DeviceSpec("cap_17th", "70B3D5C1CA00FFFF", 6, bytes.fromhex("CAFFFFC0DE0102030405060708090A0B"))
        r = run.call("device_log_add", eui=extra.eui, type=6, install_code=extra.install_code_hex, join_timeout=60)
        assert r["code"] != 0 and "full" in r["message"], r
        before = run.call("route_status")
        raw = capacity.readdress(capacity.rtds(capacity.GSME_CMD), counter=run.system.headend.headend.next_counter(),
                                 recipient=cap.specs[capacity.GSME].eui)
        assert run.system.headend.send_raw(raw, 20) == "rejected"  # a 33rd command for the GSME
        after = run.call("route_status")
        assert after["counters"]["refused_full"] == before["counters"]["refused_full"] + 1
        assert after["buffer"] == before["buffer"]
        run_steps(run, capacity.STEPS[at:], max_reboots=0)
        assert cap.heap["devices"] == 16 and cap.heap["deliveries"] == len(cap.esmes) == 8
        assert cap.heap["buffered"] == 32 * len(cap.gsmes) and cap.heap["outbox_pending"] >= len(cap.alerts) > 0
        out = capacity.check(run)
        assert run.call("device_log_list")["total"] == 16
    finally:
        run.stop()
    print(f"\ncapacity: {out}")
    assert out["capacity_devices"] == 16 and out["capacity_buffered"] == 32 * len(cap.gsmes)
