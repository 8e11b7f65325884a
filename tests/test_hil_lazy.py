"""Features used only on request stay out of the hub's boot import set
(firmware/lazy.py, docs/architecture.md "Features loaded on first use"):
the meter OTA server, the hub update's commands, the head-end's management
channel, the HAN's commands and bring-up and the rig's hooks are loaded by
their first request and dropped after it (the OTA server while it is idle),
on the emulated system; and the
wiring's table of their commands says what each module's COMMANDS holds."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from chubcore.paths import FIRMWARE
from hil.han_setup import DEVICES
from hil.headend.server import ManageError
from hil.meters.ota_client import make_image
from hil.system import EmulatedSystem

LAZY = {"chf.commands", "han.ota", "update.commands", "wan.mgmt", "rig.hooks", "update.image", "update.slots",
        "chf.prov_store", "chf.prov_commands", "route.commands", "chf.gbcs_commands", "han.commands",
        "han.network", "han.peer"}


def _assigned(path: Path, name: str) -> ast.AST:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            v = node.value  # NAME = const(value): the value
            return v.args[0] if isinstance(v, ast.Call) and getattr(v.func, "id", "") == "const" else v
    raise AssertionError(f"{path.name} assigns no {name}")


def test_the_wirings_table_names_each_modules_commands() -> None:
    app = FIRMWARE / "app.py"
    table = ast.literal_eval(_assigned(app, "_LAZY_COMMANDS"))
    assert {m for m, _ in table} | {"wan.mgmt", "update.image", "update.slots", "chf.prov_store", "rig.hooks",
                                    "chf.prov_commands", "route.commands", "chf.gbcs_commands", "han.network",
                                    "han.peer"} == LAZY
    for module, names in table:
        commands = _assigned(FIRMWARE / (module.replace(".", "/") + ".py"), "COMMANDS")
        assert tuple(e.elts[0].value for e in commands.elts) == names, module  # type: ignore[attr-defined]
    # nothing of the boot set imports them at module level
    src = app.read_text()
    for module in LAZY:
        pkg, name = module.split(".")
        assert f"from {pkg} import {name}" not in src and f"from {module} import" not in src, module


@pytest.fixture(scope="module")
def system(hub_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedSystem]:
    s = EmulatedSystem(tmp_path_factory.mktemp("lazy"), image=hub_image, fresh=True).start()
    s.keep_connection = True
    s.call_timeout = 10
    yield s
    s.drop_connection()
    s.stop()


def held(s: EmulatedSystem) -> set[str]:
    return set(s.call("status", modules=True)["modules"]) & LAZY


def test_loaded_on_first_use_and_dropped_after(system: EmulatedSystem) -> None:
    s = system
    s.drop_connection()
    s.reboot()
    # the HAN's bring-up (han.network) is loaded while it runs: checked once the HAN is up
    s.wait_until(lambda: s.call("han_status")["state"] == "up", 30, "the HAN up")
    assert held(s) == set(), "a rarely used feature is in the boot import set"
    # asyncio's wait_for/gather (asyncio.funcs): loaded on first use, as on the ESP32 board (no preload)
    assert "asyncio.funcs" not in s.call("status", modules=True)["modules"]
    assert s.call("image_status")["state"] is not None
    assert s.call("ota_status") == {"images": {}, "devices": {}, "blocks_served": 0}
    assert s.call("gbcs_fault", clear=True) == {"faults": 0}  # a rig hook
    assert s.call("han_energy_scan", channels=[15], duration=0)["ok"]  # han.commands and han.network, for the call
    assert held(s) == set()
    s.headend.wait_hello(1, timeout=30)
    s.wait_until(lambda: s.call("wan_status")["connected"], 30, "link")
    assert s.headend.manage({"cmd": "wan_status"})["connected"]  # served by wan.mgmt
    assert s.headend.manage({"cmd": "logs", "which": "event"})["which"] == "event"  # chf.commands, over wan.mgmt
    assert s.call("device_log_list")["entries"] is not None  # chf.commands, on the local port
    assert "local_args" not in s.call("status", modules=True)["modules"]  # its argument checks go with it
    with pytest.raises(ManageError, match="not a management command"):
        s.headend.manage({"cmd": "ota_status"})
    assert s.call("route_status")["counters"] is not None  # route.commands, for the call
    assert s.call("identity")["chf"]["eui"]  # chf.gbcs_commands, for the call
    assert held(s) == set()
    assert "provisioned" in s.call("prov_info")  # chf.prov_store and chf.prov_commands, for the call
    assert held(s) == set()
    # an installer's provisioning run: its steps module goes when the run ends
    assert "discarded" in s.call("prov_abort")
    assert "chf.provision_steps" not in s.call("status", modules=True)["modules"] and held(s) == set()


def test_the_rigs_provisioning_leaves_the_credentials_code_unloaded(system: EmulatedSystem) -> None:
    # the rig's provision_test_dcc writes the cells through a Credentials of
    # its own: chf.credentials (and gbcs.der, gbcs.p256 under it) go with the
    # call, as after the installer's provisioning; a device never provisioned
    # by the rig must not hold ~2.9 KB more (heapdump --gap, docs/proof.md)
    s = system
    he = s.headend.headend
    if he is None:
        pytest.skip("no head-end keystore: the rig provisions no test DCC anchors")
    anchors = he.test_dcc_anchors()
    assert s.call("provision_test_dcc", anchors=anchors) == {"device": "chf", "anchors": len(anchors)}
    assert s.call("provision_test_dcc", anchors=anchors, device="gpf") == {"device": "gpf", "anchors": len(anchors)}
    assert not {"chf.credentials", "gbcs.der", "gbcs.p256"} & set(s.call("status", modules=True)["modules"])


def test_the_installer_guard_leaves_no_hmac_code_loaded(system: EmulatedSystem) -> None:
    # local_auth (loaded for a protected request) borrows gbcs.p256's HMAC for
    # the request's tag: p256 (~0.8 KB) goes with local_auth, unless something
    # held it before
    s = system
    s.drop_connection()
    s.reboot()  # a new installer session, authenticated by the next protected request
    assert "gbcs.p256" not in s.call("status", modules=True)["modules"]
    assert s.call("device_log_list")["entries"] is not None  # protected: its tag checked by local_auth
    assert "gbcs.p256" not in s.call("status", modules=True)["modules"]


def test_the_image_anchors_check_leaves_no_p256_loaded(system: EmulatedSystem) -> None:
    # image_anchor checks the point with gbcs.p256 (~0.8 KB), which goes
    # with the command as update.commands does
    from chubcore import hubimage as hi

    s = system
    assert "gbcs.p256" not in s.call("status", modules=True)["modules"]
    st = s.call("image_anchor", anchor=hi.anchor_bytes(hi.new_key().public_key()).hex(), min_version="0.1.0")
    assert st["min_version"] == "0.1.0"
    assert "gbcs.p256" not in s.call("status", modules=True)["modules"]


def test_a_bad_install_code_is_refused_and_its_checks_go_after(system: EmulatedSystem) -> None:
    # device_log_add's install code checks (han.install_code, loaded per
    # check) refuse a bad CRC with the Device Log's INVALID_CODE and a bad
    # length as a bad argument, each time (the module is loaded anew for
    # each check), and are not held after
    s = system
    good = DEVICES["esme"].install_code_hex
    bad_crc = good[:-4] + ("0000" if good[-4:] != "0000" else "FFFF")
    for _ in range(2):
        r = s.call("device_log_add", eui="70B3D5C1CA00ABCD", type=1, install_code=bad_crc)
        assert r["code"] != 0 and "CRC" in r["message"], r
    with pytest.raises(Exception, match="install code"):
        s.call("device_log_add", eui="70B3D5C1CA00ABCD", type=1, install_code=good[:-2])
    held = set(s.call("status", modules=True)["modules"])
    assert not held & {"han.install_code", "chf.commands"}, sorted(held & {"han.install_code", "chf.commands"})


def test_the_ota_server_stays_while_an_image_is_taken_in_or_transferred(system: EmulatedSystem) -> None:
    s = system
    eui = DEVICES["esme"].eui
    if not any(r[0] == eui for r in s.call("device_log_list")["entries"]):  # ota_begin takes an ESME of the Device Log
        s.call("device_log_add", eui=eui, type=DEVICES["esme"].dev_type, install_code=DEVICES["esme"].install_code_hex)
    image = make_image(0x1234, 0x0001, 0x0200, bytes(range(256)) * 20)
    s.call("ota_begin", slot="esme", euis=[eui], size=len(image))
    s.call("ota_put", slot="esme", offset=0, data=image[:1000].hex())
    assert "han.ota" in held(s)  # 1000 bytes staged in RAM: kept
    for off in range(1000, len(image), 1000):
        r = s.call("ota_put", slot="esme", offset=off, data=image[off:off + 1000].hex())
    assert r["state"] == "ready"
    assert "han.ota" in held(s)  # a ready image its device has not fetched yet: kept
    # after a reboot the server is loaded by the first request again, from flash and KV
    s.drop_connection()
    s.reboot()
    assert "han.ota" not in held(s)
    assert s.call("ota_status")["images"]["esme"]["st"] == "ready"


def test_the_bench_counts_the_boot_import_set(hub_image: Path) -> None:
    from chub.bench import boot_modules, census_markdown, import_figures

    boot = boot_modules(hub_image, "1024k")
    assert {"app", "asyncio", "han.coordinator", "lazy"} <= set(boot) and not LAZY & set(boot)
    fig = import_figures(hub_image, "1024k", boot)
    assert fig["boot_import_modules"] == len(boot)
    assert 0 < fig["heap_after_imports_kb"] < fig["heap_all_imports_kb"]
    rows = [{"module": "app", "bytes": 1024, "with": []}, {"module": "han.ota", "bytes": 512, "with": []}]
    md = census_markdown(rows, boot)
    assert "| `app` | 1.00 |  | boot |" in md and "| `han.ota` | 0.50 |  | lazy |" in md
    assert f"the boot import set (what the hub holds at READY): {len(boot)} modules, 1.0 KB" in md
