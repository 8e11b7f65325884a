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
