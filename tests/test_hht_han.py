"""`chub hht han read|tunnel|rotate-key` against the real hub (built image,
under micropython) and the demo HAN of emulated devices, through the CLI:
attribute reads by name and by id (values as the emulated ESME holds them),
a tunnel round trip, a network key rotation the NCP emulator sees; the
installer session the commands need; clear failures for bad input and
undeliverable requests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from chub.cli import main
from chubcore.localport import NOT_AUTHORISED, LocalPortClient, LocalPortError
from hil.han_setup import DEVICES
from hil.system import EmulatedSystem

ESME = DEVICES["esme"].eui
IHD = DEVICES["ihd"].eui


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, hub_image: Path) -> Iterator[EmulatedSystem]:
    s = EmulatedSystem(tmp_path_factory.mktemp("hht_han") / "sys", image=hub_image, fresh=True)
    s.han_version = 14  # type: ignore[attr-defined]
    with s:
        yield s


def _cli(system: EmulatedSystem, *args: str) -> object:
    return CliRunner().invoke(main, ["hht", "--port", system.local_port_url, "han", *args])


def test_read_attributes_by_name_and_id(demo: EmulatedSystem) -> None:
    held = demo.han.device("esme").attributes[0x0000]  # type: ignore[attr-defined]
    r = _cli(demo, "read", "--eui", ESME.lower(), "--cluster", "basic", "--attr", "manufacturer", "--attr", "0x0005",
             "--attr", "7", "--attr", "0x1234", "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    assert got["eui"] == ESME and got["cluster"] == 0 and got["ep"] == 1
    recs = {x["attr"]: x for x in got["records"]}
    assert [x["attr"] for x in got["records"]] == [4, 5, 7, 0x1234]
    for aid in (4, 5, 7):
        assert recs[aid]["status_name"] == "SUCCESS"
        assert (recs[aid]["type"], recs[aid]["value"]) == held[aid], (aid, recs[aid], held[aid])
    assert recs[4]["name"] == "manufacturer" and recs[5]["type_name"] == "string"
    assert recs[0x1234]["status_name"] == "UNSUPPORTED_ATTRIBUTE" and recs[0x1234]["value"] is None
    # the table view
    r = _cli(demo, "read", "--eui", ESME, "--cluster", "0x0000", "--attr", "model")
    assert r.exit_code == 0, r.output
    assert str(held[5][1]) in r.output and "SUCCESS" in r.output


def test_tunnel_round_trip(demo: EmulatedSystem) -> None:
    msg = bytes(range(200)).hex()
    r = _cli(demo, "tunnel", "--eui", ESME, "--data", msg, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert out["reply"] == msg  # the emulated ESME's default hook echoes
    assert demo.han.device("esme").tunnel_in[-1] == bytes.fromhex(msg)  # type: ignore[attr-defined]


def test_rotate_key(demo: EmulatedSystem) -> None:
    han = demo.han  # type: ignore[attr-defined]
    old_key, old_seq = han.emu.han.network_key, han.emu.han.key_seq
    r = _cli(demo, "rotate-key")
    assert r.exit_code == 0, r.output
    assert "rotated" in r.output
    assert han.emu.han.network_key != old_key and han.emu.han.key_seq == (old_seq + 1) & 0xFF
    # the HAN carries on under the new key: a read still works
    r = _cli(demo, "read", "--eui", IHD, "--cluster", "basic", "--attr", "model", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["records"][0][
        "value"] == demo.han.device("ihd").attributes[0][5][1]  # type: ignore[attr-defined]


def test_the_commands_need_an_installer_session(demo: EmulatedSystem) -> None:
    with LocalPortClient(demo.local_port_url, timeout=20, credential=False) as c:
        for cmd, kw in (("han_zcl_read", {"eui": ESME, "cluster": 0, "attrs": [4]}), ("han_rotate_key", {}),
                        ("han_tunnel", {"eui": ESME, "data": "00"})):
            with pytest.raises(LocalPortError) as ei:
                c.call(cmd, **kw)
            assert ei.value.status == NOT_AUTHORISED, (cmd, ei.value)


def test_bad_input_and_undeliverable(demo: EmulatedSystem) -> None:
    for args, words in (
        (("read", "--eui", "12345", "--cluster", "basic", "--attr", "model"), "EUI-64"),
        (("read", "--eui", ESME, "--cluster", "no_such_cluster", "--attr", "1"), "cluster"),
        (("read", "--eui", ESME, "--cluster", "0x10000", "--attr", "1"), "16 bits"),
        (("read", "--eui", ESME, "--cluster", "basic", "--attr", "no_such_attr"), "attribute"),
        (("tunnel", "--eui", ESME, "--data", "abc"), "hex"),
    ):
        r = _cli(demo, *args)
        assert r.exit_code == 2 and words in r.output, (args, r.exit_code, r.output)
    # a device the hub does not know: the hub's reason, a non-zero exit
    r = _cli(demo, "read", "--eui", "00112233445566AA", "--cluster", "basic", "--attr", "model", "--timeout-ms", "2000")
    assert r.exit_code == 4, r.output
    assert "failed" in r.output and "no_route" in r.output
