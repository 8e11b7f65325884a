# ruff: noqa: UP031
# The boot import set's share of the top-level modules and the emulated
# board (issue 15, docs/proof.md "The heap on the 32-bit frozen build",
# branch topboot). On a frozen build a constant (an int const(), a bytes or
# tuple literal) stays in flash; a value computed at import (b"\xff" * 256)
# is an object on the heap for as long as the module is loaded. The emulated
# board's flash driver (blockdev) stands in for what the ESP32 has in C: it
# holds no such object.
import gc
import sys

from mp_wan_boot import _made  # (functions, classes, globals) a module made at import

HEAP = "1024k"

W = 8 if sys.maxsize > 2**31 else 4


def _alloc():
    gc.collect()
    return gc.mem_alloc()


def test_the_emulated_flash_holds_no_buffer_made_at_import():
    import blockdev

    made = [k for k, v in blockdev.__dict__.items() if isinstance(v, (bytes, bytearray)) and len(v) > 16]
    assert not made, made


def test_on_a_frozen_build_the_emulated_flash_costs_at_most_its_bound():
    # 32-bit frozen: 864 bytes on main db6bd8d (census row blockdev 0.83 KB,
    # 256 of them the erase pattern), 592 after (the pattern a const literal)
    sys.modules.pop("blockdev", None)
    import os  # noqa: F401 - what blockdev imports, loaded before the baseline
    import time  # noqa: F401

    before = _alloc()
    import blockdev

    cost = _alloc() - before
    if "/" in blockdev.__file__:
        return  # from source: not frozen, the code itself is on the heap
    assert cost <= 150 * W, (cost, 150 * W)


# the top-level modules and the store the hub holds at READY (app.py imports
# them; board and blockdev are the emulated board's)
TOP = ("app", "store", "store.kv", "store.journal", "counters", "clock", "flag", "leds", "local_port",
       "supervisor", "log", "jsonout", "lazy", "mono", "ids", "codes", "board", "blockdev")


def test_the_top_level_modules_make_few_functions_classes_and_globals():
    fns = classes = names = 0
    rows = []
    for n in TOP:
        __import__(n)
        f, c, g = _made(sys.modules[n])
        rows.append((n, f, c, g))
        fns += f
        classes += c
        names += g
    # main db6bd8d: 216 functions and methods, 23 classes, 306 globals (app
    # 40 of them); branch topboot: 211 / 23 / 287 (the wiring's imports in
    # Hub.__init__: app 26; Counters without get/keys/len/iter)
    # branch bootcut: 205 / 22 / 280 (clock.StepRecorder is Hub.clock_step;
    # the supervisor's, Device Log's, clock's and LEDs' one-call helpers
    # inlined; flag's lock: two functions); with branch storeboot merged
    # 197 / 22 / 281 (store: the shared part's globals); branch b2top
    # 193 / 22 / 259 (app's and the unix board's rarely used names imported
    # where used, board.heap/console_released/ticks_ms wrappers gone, store's
    # submodules by name); main 3921eb9 194 / 22 / 261 (lazy.borrow and
    # give_back: two functions in place of nine written-out copies); with
    # branch toppk 195 / 22 / 260 (flag.wake_after, StatusLeds.run gone);
    # 197 / 22 / 261 with the journal index's push and a record's length
    # read from its header (its index 4 bytes a record, not 10)
    assert fns <= 197 and classes <= 22 and names <= 261, (fns, classes, names, rows)
