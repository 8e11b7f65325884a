"""HIL: hub replacement (E2E R05, CCS03 Restore CHF Device Log), two hubs in
turn on one emulated HAN (hil/hub_swap.py): hub B, restored from hub A's
Device Log, re-forms the HAN on hub A's extended PAN id, hands the restored
link keys to its NCP, and the meters rejoin it without a new install. The
power is cut while hub B re-forms (right after its NCP left the old
network): it finishes the job after the reboot."""

from __future__ import annotations

from pathlib import Path

from hil.hub_swap import METERS, swap


def test_hub_replacement_restore_rejoin_and_power_cut(tmp_path: Path, hub_image: Path, vectors: Path) -> None:
    r = swap(tmp_path, hub_image, vectors, cut=True)
    # hub A's Device Log (what CS14 / CCS07 carry) holds the install codes
    assert {e: v["key_hash"].upper() for e, v in r["a_log"].items()} == {
        m.eui: m.install_code.hex().upper() for m in METERS}
    assert r["cut"] and r["b_first_epid"] != r["epid"]
    # after the cut and the reboot hub B is on hub A's extended PAN id
    assert r["b_epid"] == r["epid"] and r["b_network"]["ext_pan_id"] == r["epid"].hex().upper()
    assert set(r["b_log"]) == {m.eui for m in METERS}
    # the restored keys went to the NCP's key table: the meters rejoined with what they hold
    assert "importLinkKey" in r["b_commands"] and r["keys_match"]
    assert r["rejoined"] == {m.name: True for m in METERS}
    assert all(v["join_state"] == "joined" for v in r["b_log"].values())


def test_hub_replacement_without_a_cut_reforms_in_place(tmp_path: Path, hub_image: Path, vectors: Path) -> None:
    # the re-form while the hub runs (no restart): the HAN is up again on hub A's id
    r = swap(tmp_path, hub_image, vectors)
    assert not r["cut"] and r["b_epid"] == r["epid"] and r["ccs03_response"]
    assert r["rejoined"] == {m.name: True for m in METERS} and r["keys_match"]
