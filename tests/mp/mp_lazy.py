# lazy: a feature's module loaded on first use and its heap returned when it
# is dropped (firmware/lazy.py), with han.ota, the meter OTA server.
import gc
import sys

import lazy

# han.ota's own imports, held by the hub anyway: loaded before the baseline
import hashlib  # noqa: F401
import os  # noqa: F401

import han
from han import zcl, zcl_servers  # noqa: F401
import log  # noqa: F401


def _alloc():
    gc.collect()
    return gc.mem_alloc()


def test_loads_on_first_use_and_returns_its_heap_when_dropped():
    assert "han.ota" not in sys.modules
    m = lazy.load("han.ota")
    assert sys.modules["han.ota"] is m and m.CLUSTER_OTA == 0x19 and han.ota is m
    assert lazy.load("han.ota") is m  # imported once
    # the first import from source interned the module's names (for good:
    # on a frozen build they are in flash); measured from the second one
    del m
    lazy.drop("han.ota")
    before = _alloc()
    m = lazy.load("han.ota")
    fn = lazy.command("han.ota", "ota_status")
    assert fn is m.ota_status
    loaded = _alloc()
    del m, fn
    assert lazy.drop("han.ota")
    assert "han.ota" not in sys.modules and not hasattr(han, "ota")
    after = _alloc()
    assert loaded - before > 1000, loaded - before  # the module's code and tables
    assert after - before < 256, (before, loaded, after)  # its heap came back
    assert not lazy.drop("han.ota")  # not loaded: nothing to drop


def test_a_command_it_does_not_list_is_a_key_error():
    try:
        lazy.command("han.ota", "nope")
        raise AssertionError("an unknown command was found")
    except KeyError:
        pass
    lazy.drop("han.ota")


def test_a_borrowed_module_goes_back_after_the_call_unless_it_was_loaded_before():
    # borrow: of the names, those not loaded now; give_back drops them. One
    # loaded before is another part's: it stays, the same module object (a
    # drop would make a second copy at its next load, whose classes an
    # `except` holding the first would not match)
    lazy.drop("han.ota")
    held = lazy.load("han.install_code")
    b = lazy.borrow("han.ota", "han.install_code")
    assert b == ["han.ota"], b
    m = lazy.load("han.ota")
    assert lazy.load("han.install_code") is held
    del m
    lazy.give_back(b)
    assert "han.ota" not in sys.modules and not hasattr(han, "ota")
    assert sys.modules["han.install_code"] is held
    assert lazy.borrow("han.install_code") == []
    lazy.give_back([])  # nothing borrowed: nothing dropped
    assert sys.modules["han.install_code"] is held
    lazy.drop("han.install_code")


def test_a_first_boot_with_a_bad_eui_leaves_no_p256_behind():
    # chf.prov_store.generate_identity refuses a 7-byte EUI before it
    # borrows P-256 (it loaded P-256 first and kept it on the refusal)
    from chf import prov_store
    from log import KindError

    lazy.drop("gbcs.p256")
    try:
        prov_store.generate_identity(None, None, b"\x01" * 7)
        raise AssertionError("a 7-byte EUI was taken")
    except KindError as e:
        assert e.args[0] == "IdentityError", e.args
    assert "gbcs.p256" not in sys.modules
    lazy.drop("chf.prov_store")
