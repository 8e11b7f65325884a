"""Acceptance, on the emulated board: build -> flash via mpremote -> provision
-> commission -> send-gbcs (single and cache mode), all through the `chub`
CLI against the real hub; then `hht signal` against what the hub reports,
and commissioning failures (a meter that never joined)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from chub.cli import main
from chub.hht_commission import csq_from_dbm
from chubcore.localport import LocalPortClient
from chubcore.paths import default_heap
from hil.headend.gbcs import HeadEnd, parse_frame
from hil.system import EmulatedSystem
from hil.wan_setup import provision as provision_headend


def _cli(*args: str) -> object:
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def flashed(tmp_path_factory: pytest.TempPathFactory, hub_image: Path, request: pytest.FixtureRequest,
            vectors: Path) -> Iterator[tuple[EmulatedSystem, Path]]:
    import json
    import os

    if json.loads((hub_image / "image.json").read_text()).get("frozen"):
        # chub flash copies the app onto the board's flash with mpremote: the
        # unix board's; a frozen board runs the app in its binary
        pytest.skip("a frozen board's app is in its binary: nothing for chub flash to copy (docs/flashing.md)")
    tmp = tmp_path_factory.mktemp("accept")
    old = os.environ.get("CHUB_STATE")
    os.environ["CHUB_STATE"] = str(tmp / "laptop")
    from test_provision import PROVISION_HEAP

    heap = request.config.getoption("--chub-heap") or default_heap()
    heap = heap if int(heap.rstrip("kK")) >= int(PROVISION_HEAP[:-1]) else PROVISION_HEAP
    board = tmp / "board"
    r = _cli("flash", "--board", "unix", "--port", str(board), "--image", str(hub_image), "--heap", heap)
    assert r.exit_code == 0, r.output
    s = EmulatedSystem(board, heap=heap)
    try:
        s.start()
        assert s.from_flash  # the hub runs what mpremote copied onto its flash
        yield s, tmp
    finally:
        s.stop()
        if old is None:
            os.environ.pop("CHUB_STATE", None)
        else:
            os.environ["CHUB_STATE"] = old


def test_flash_provision_commission_send_gbcs(flashed: tuple[EmulatedSystem, Path], vectors: Path) -> None:
    system, tmp = flashed
    url = system.local_port_url
    r = _cli("provision", "--port", url, "--json")
    assert r.exit_code == 0, r.output
    prov = json.loads(r.output.strip().splitlines()[-1])
    provision_headend(system)  # the head-end learns the hub's new identity (a DCC would, from its certificates)
    r = _cli("hht", "--port", url, "commission", "--wait", "30", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    names = [c["name"] for c in res["checks"]]
    assert res["pass"] and names[:3] == ["WAN registered", "head-end reached", "HAN formed"]
    assert names[-1] == "clock valid" and sum(n.endswith("joined") for n in names) == 4
    # a pre-protected command for the newly provisioned CHF, as a DCC user would prepare it
    with LocalPortClient(url) as c:
        he = HeadEnd.for_hub(vectors / "gbcs" / "keystore", c.call("identity"))
    single, _ = he.rebuild(bytes.fromhex((vectors / "gbcs/rtds/6.2.4_ECS26i/ECS26i_6.2.4_SUCCESS_COMMAND_GBCS.HEX")
                                         .read_text()))
    (tmp / "single.hex").write_text(single.hex())
    cmds = tmp / "cache"  # prepared after the single one: higher counters
    cmds.mkdir()
    for i, name in enumerate(("6.2.4_ECS26i/ECS26i_6.2.4_SUCCESS_COMMAND_GBCS.HEX",
                              "6.2.4_ECS26n/ECS26n_6.2.4_SUCCESS_COMMAND_GBCS.HEX")):
        raw, _ = he.rebuild(bytes.fromhex((vectors / "gbcs/rtds" / name).read_text()))
        (cmds / f"{i:02d}_{name.split('/')[0]}.hex").write_text(raw.hex())
    r = _cli("hht", "--port", url, "send-gbcs", "--in", str(tmp / "single.hex"), "--out", str(tmp / "one.hex"))
    assert r.exit_code == 0, r.output
    resp = parse_frame(bytes.fromhex((tmp / "one.hex").read_text()))
    assert resp.cra == 2 and resp.originator.hex().upper() == prov["chf_eui"]
    out = tmp / "responses"
    r = _cli("hht", "--port", url, "send-gbcs", "--cache", str(cmds), "--out", str(out))
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert [s["ok"] for s in summary] == [True, True]
    for f in ("00_6.2.4_ECS26i", "01_6.2.4_ECS26n"):
        resp = parse_frame(bytes.fromhex((out / f"{f}.resp.hex").read_text()))
        assert resp.originator.hex().upper() == prov["chf_eui"]
    # a command the hub refuses (a replay of the first) is recorded, the run goes on, the exit is non-zero
    (cmds / "02_replay.hex").write_text((cmds / "00_6.2.4_ECS26i.hex").read_text())
    r = _cli("hht", "--port", url, "send-gbcs", "--cache", str(cmds), "--out", str(tmp / "again"))
    assert r.exit_code == 1
    summary = json.loads((tmp / "again" / "summary.json").read_text())
    assert [s["ok"] for s in summary] == [False, False, False]  # all three are replays now
    assert (tmp / "again" / "02_replay.error").read_text().strip()
    # the unauthenticated stranger still gets nothing
    with LocalPortClient(url, credential=False) as c:
        assert c.call("status")["board"] == "unix"


def test_signal_matches_the_hub(flashed: tuple[EmulatedSystem, Path]) -> None:
    system, _ = flashed
    url = system.local_port_url
    r = _cli("hht", "--port", url, "signal", "--json")
    assert r.exit_code == 0, r.output
    sig = json.loads(r.output)
    with LocalPortClient(url) as c:
        wan = c.call("wan_status")
        log = c.call("device_log_list")
    assert sig["wan"]["cell_id"] == wan["cell"][3] and sig["wan"]["plmn"] == wan["cell"][1]
    assert sig["wan"]["csq_avg"] == csq_from_dbm(wan["signal_avg_dbm"])
    assert {d["eui"]: d["rssi"] for d in sig["han"]} == {e[0]: e[7] for e in log["entries"]}
    r = _cli("hht", "--port", url, "signal")
    assert r.exit_code == 0 and "CSQ (average)" in r.output


def test_commission_fails_for_a_meter_that_never_joined(flashed: tuple[EmulatedSystem, Path]) -> None:
    system, _ = flashed
    r = _cli("hht", "--port", system.local_port_url, "commission", "--expect", "00DB1234567890FF")
    assert r.exit_code == 1
    assert "FAIL" in r.output and "00DB1234567890FF" in r.output and "not commissioned" in r.output


def test_csq_scale() -> None:
    assert csq_from_dbm(-113) == 0 and csq_from_dbm(-51) == 31 and csq_from_dbm(-71) == 21
    assert csq_from_dbm(-120) == 0 and csq_from_dbm(-40) == 31 and csq_from_dbm(None) is None
