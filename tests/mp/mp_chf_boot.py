# ruff: noqa: UP031
# The boot import set's share of chf/, gbcs/, route/ and store/ (issue 15,
# docs/proof.md "The heap on the 32-bit frozen build"): what the hub imports
# from these packages at start-up (app.py: store, chf.gbcs_port,
# chf.provision, chf.device_log, chf.logs, route.router) makes a function
# object per def (~24 bytes with its dict slot on a 32-bit build) and a
# class object per class (~96 bytes), for the hub's life. The parts used on
# request are modules loaded for their use and dropped after (firmware/lazy.py):
# the CHF's use cases' run and the APDU decoder (per CHF command), the
# local-port commands of the CHF, the provisioning and the router, the
# command buffer's scan at open. This keeps them out of the boot set and
# bounds what the boot set makes.
import gc
import sys

# what these packages import from the rest of the hub, loaded first: not theirs
import asyncio  # noqa: F401
import codes  # noqa: F401
import counters  # noqa: F401
import flag  # noqa: F401
import ids  # noqa: F401
import jsonout  # noqa: F401
import lazy  # noqa: F401
import local_port  # noqa: F401
import log  # noqa: F401
import mono  # noqa: F401
from han import tunnel  # noqa: F401

HEAP = "512k"  # the modules compiled from source (the 64-bit port)

_MINE = ("chf", "gbcs", "route", "store")
# loaded for a use and dropped after it (or on first use), never at boot
RARE = ("chf.usecase_exec", "gbcs.dlms_apdu", "gbcs.usecase_base", "chf.prov_commands", "chf.gbcs_commands",
        "route.commands", "route.buffer_open", "chf.prov_store", "chf.provision_steps", "chf.credentials",
        "chf.subghz", "gbcs.der", "gbcs.gbz",
        # loaded for an anchor's check, a Z, an install code's check and dropped
        # after (branch bootrest): not held by the boot set
        "gbcs.p256", "han.install_code",
        # the Device Log's on-flash form, read at start and written at a change
        # (branch devlog)
        "chf.devlog_store")


def _f():
    pass


async def _g():
    pass


_FN = (type(_f), type(_g))


def _objects(names):
    # the function and class objects in these modules' dicts (and the
    # methods of those classes), by id
    out = set()
    for n in names:
        for v in sys.modules[n].__dict__.values():
            if isinstance(v, _FN):
                out.add(id(v))
            elif isinstance(v, type):
                out.add(id(v))
                for m in v.__dict__.values():
                    if isinstance(m, _FN):
                        out.add(id(m))
    return out


def _boot():
    gc.collect()
    before = gc.mem_alloc()
    others = [n for n in sys.modules if n.split(".")[0] not in _MINE]
    theirs = _objects(others)
    import store  # noqa: F401
    from chf import device_log, gbcs_port, logs, provision  # noqa: F401
    from route import router  # noqa: F401

    gc.collect()
    used = gc.mem_alloc() - before
    mine = [n for n in sys.modules if n.split(".")[0] in _MINE]
    fns = classes = 0
    seen = set()
    for n in mine:
        for v in sys.modules[n].__dict__.values():
            if isinstance(v, type) and id(v) not in theirs and id(v) not in seen:
                seen.add(id(v))
                classes += 1
                for m in v.__dict__.values():
                    if isinstance(m, _FN) and id(m) not in seen:
                        seen.add(id(m))
                        fns += 1
            elif isinstance(v, _FN) and id(v) not in theirs and id(v) not in seen:
                seen.add(id(v))
                fns += 1
    return used, mine, fns, classes


def test_the_parts_used_on_request_are_not_in_the_boot_set():
    _used, mine, _fns, _classes = _boot()
    held = [m for m in RARE if m in sys.modules]
    assert not held, held
    assert len(mine) <= 20, sorted(mine)


def test_the_boot_set_makes_few_functions_and_classes():
    # counted on main before this cut (927d65d), the same on both builds:
    # 399 functions and methods, 35 classes in 21 modules; then 305 and 22 in
    # 20; now (branch bootrest: gbcs.p256 dropped after use, the router's
    # status and configure, the buffer's queue, in_hand and pool in
    # route.commands, the CS14 and Sub GHz alerts' builders with their use
    # cases, frame.enc_len and dlms.data_bytes, used by tests alone, in the
    # tests) 280 and 21 in 19; branch bootcut (gbcs.security's mac_key and
    # out_key inlined, chf.logs' _collapse and _close_runs, Chf._log):
    # 274; 267 on main (ec7b50d); branch b2chf (device_log's key_hash and
    # log_value, router's response_to, _device, _u64 and undelivered_alert,
    # the buffer's keep_only, _empty and _write0, frame._clen, EventLog._trim,
    # Chf._signed (into chf.usecase_exec), kdf._counter, Frame.aad_body,
    # Frame.iv, dlms.put_len, Answers.counter, EventLog.count_total and
    # Identity.certificate (tests only) removed or written out at their
    # calls): 248; 250 with the journal index's push and a record's length
    # read from its header (the bounds)
    used, mine, fns, classes = _boot()
    assert fns <= 250, (fns, classes, len(mine))
    assert classes <= 21, (fns, classes, len(mine))
    # On the frozen build (the 32-bit one: the code is in flash, what the
    # import leaves is RAM) the heap these imports take, in words: 6532
    # (26.1 KB) before, 5420 (21.2 KB) after that cut, 5084 (19.9 KB) now
    # (branch bootrest), 4616 (18.0 KB) after branch b2chf, 4640 with branch
    # b2han merged beside it (the HAN modules these imports bring), 4656
    # with the journal index's push and a record's length read from its
    # header. From source (the 64-bit port)
    # the bytecode is in the heap too (112-144 KB): no bound there.
    frozen = not sys.modules["store"].__file__.startswith("/")
    if frozen:
        w = 8 if sys.maxsize > 2**31 else 4
        assert used <= 4664 * w, (used, 4664 * w)


def test_the_gpf_service_makes_few_functions():
    # gpf.service, the GPF's part in the boot set (app.py builds GpfService;
    # gpf.function, gpf.mirror and gpf.tapoff are loaded on first use): on
    # main (ec7b50d) 18 functions and methods in 2 classes; branch b2chf
    # (impl and _untap written out at their calls): 16
    from mp_wan_boot import _made
    from gpf import service

    fns, classes, _names = _made(service)
    assert fns <= 16 and classes <= 2, (fns, classes)
