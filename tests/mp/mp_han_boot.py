# ruff: noqa: UP031
# The HAN's share of the hub's boot import set (issue 15, docs/proof.md "The
# heap on the 32-bit frozen build"): what `from han import coordinator` (the
# wiring's import) holds. On a frozen build an import costs RAM for each
# function object (a def, a method), each class and each module-level name;
# the code used rarely or only by the other end is in modules the hub loads
# for the moment it needs them (han.commands, han.network) or never
# (han.peer). The count is the same on every build; the heap is measured
# where the firmware is frozen (the unix32 build), its bound in machine words.
import gc
import sys

# what han.coordinator imports from outside han: loaded before the baseline
import asyncio  # noqa: F401
import binascii  # noqa: F401
import board  # noqa: F401
import codes  # noqa: F401
import counters  # noqa: F401
import cryptolib  # noqa: F401
import flag  # noqa: F401
import ids  # noqa: F401
import lazy  # noqa: F401
import log  # noqa: F401
import micropython  # noqa: F401
import struct  # noqa: F401
import time  # noqa: F401
import version  # noqa: F401

HEAP = "1024k"  # the han modules compiled from source on the 64-bit port

W = 8 if sys.maxsize > 2**31 else 4
RARE = ("han.peer", "han.commands", "han.network", "han.cbke", "han.ota", "han.ota_wan")

_OUTSIDE = set(id(v) for m in list(sys.modules.values()) for v in m.__dict__.values())
gc.collect()
_BEFORE = gc.mem_alloc()

from han import coordinator  # noqa: E402

gc.collect()
_AFTER = gc.mem_alloc()


def _held():
    return sorted(k for k in sys.modules if k == "han" or k.startswith("han."))


def _defined():
    # the functions, classes and methods the han modules the hub holds define
    # (not the names they import from elsewhere)
    seen = set()
    n = 0
    for name in _held():
        for v in sys.modules[name].__dict__.values():
            if id(v) in _OUTSIDE or id(v) in seen or not (callable(v) or isinstance(v, property)):
                continue
            seen.add(id(v))
            n += 1
            if isinstance(v, type):
                for a in v.__dict__.values():
                    if callable(a) or isinstance(a, (property, staticmethod, classmethod)):
                        n += 1
    return n


def test_the_hub_holds_no_rarely_used_han_module():
    held = _held()
    assert coordinator.Coordinator is not None
    assert not [m for m in RARE if m in held], held
    assert held == ["han", "han.ash", "han.coordinator", "han.ezsp", "han.ezsp_frames", "han.messaging",
                    "han.trust_centre", "han.tunnel", "han.zcl", "han.zcl_clusters", "han.zcl_servers"], held


def test_the_hubs_han_modules_define_few_functions():
    # functions, classes and methods: 265 before the cut (main 927d65d), 192 after;
    # 197 on main e16d9ba, 187 after branch bootcut (the EZSP's
    # import_link_key/remove_device are the trust centre's own ok() calls,
    # _wait_state han.network's, the ASH's control-byte encoders han.peer's,
    # one-call methods of both written out); 178 after branch b2han (one-call
    # helpers written out, GsmeError is TunnelError, the Basic/Time server is
    # AttributeServer itself, made without basic_server/time_server); 172
    # after branch hanws (the EZSP host's frame handler for its receive
    # loop; permit_joining/add_install_code_key the trust centre's ok()
    # calls, sent_info/incoming_info read in the coordinator, ASH's _start
    # and _reject_data written out); 171: the coordinator's _on_fault (its
    # run loop waits on the EZSP host's state Flag and reads its fault);
    # 170 after branch hanpk (the Time server holds the hub's Clock itself,
    # no coordinator _clock)
    n = _defined()
    print("han: %d functions, classes and methods held" % n)
    assert n <= 170, n


def test_the_hubs_han_modules_heap_on_a_frozen_build():
    if coordinator.__file__.startswith("/"):  # compiled from source: its bytecode is in the heap too
        return
    # measured on the unix32 build (W = 4): 13,376 bytes before the cut
    # (main 927d65d), 9,248 after; 9,344 on main e16d9ba, 9,088 after branch
    # bootcut; 8,608 after branch b2han (two classes and seven functions
    # fewer, eight functions without default arguments); 8,528 after branch
    # hanws (six functions fewer, the EZSP host's and ASH's defaults class
    # attributes: their class tables 17 and 23 slots still), then 8,512 (the
    # coordinator's _on_fault gone). The reading moves by 16-32 bytes with the
    # length of the checkout's path (names interned before the baseline fill
    # the qstr pool to a different point: 8,512 from /work/main, 8,544 from a
    # longer path), so the bound has 64 bytes over the measure
    used = _AFTER - _BEFORE
    print("han: %d bytes after import (%d-bit)" % (used, W * 8))
    assert used <= 2144 * W, used


def test_the_coordinators_counters_end_with_the_messagings():
    # written out in han.coordinator (a constant tuple, not a sum built at import)
    from han import messaging

    c = coordinator._COUNTERS
    assert c[len(c) - len(messaging.COUNTERS):] == messaging.COUNTERS, c
    assert len(set(c)) == len(c)
