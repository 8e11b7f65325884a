# ruff: noqa: UP031
# The boot import set's share of the WAN and the local port (issue 15,
# docs/proof.md "The heap on the 32-bit frozen build", branch wanboot). On a
# frozen build an import still costs RAM per name: a function object and its
# dict slot per def (module or class level), a class object and its dict per
# class, a globals slot per public name. The parts used rarely are modules
# loaded on first use and dropped after (firmware/lazy.py): the installer's
# authentication (local_auth), the whole-frame codec (local_frame), the link
# credentials' files (wan.linkfiles), the modem's bring-up (wan.sim7600_up,
# held only while the link is down) and the report job's step (wan.report,
# wan.window). These bounds keep it so.
import gc
import sys

import lazy

# what the modules below import that the hub holds anyway: loaded first
import asyncio  # noqa: F401
import board  # noqa: F401
import codes  # noqa: F401
import flag  # noqa: F401
import ids  # noqa: F401
import jsonout  # noqa: F401
import log  # noqa: F401
import mono  # noqa: F401
import store  # noqa: F401
import version  # noqa: F401
from gbcs import frame, gcm, p256  # noqa: F401

HEAP = "512k"

W = 8 if sys.maxsize > 2**31 else 4

# the local port's and the WAN's modules the hub holds at READY with the link up
# (app.py imports the first three; the job "wan" the rest)
BOOT = ("local_port", "wan.service", "wan.commands", "wan.session", "wan.sim7600")
# their parts used on request (the job "report" loads its two for each step)
LAZY = ("local_auth", "local_frame", "wan.linkfiles", "wan.sim7600_up", "wan.report", "wan.window",
        "wan.local_commands", "local_args")


def _alloc():
    gc.collect()
    return gc.mem_alloc()


def _made(m):
    # (functions, classes, globals) module m made at import: its own defs at
    # module and class level (a class attribute counts as a method: a slot),
    # its own classes, every name in its dict
    d = m.__dict__
    fns = classes = 0
    for v in d.values():
        if type(v) is type:
            if v.__dict__.get("__module__") == m.__name__:
                classes += 1
                fns += len(v.__dict__) - 2  # __module__, __qualname__
        elif getattr(v, "__globals__", None) is d:
            fns += 1
    return fns, classes, len(d)


def test_the_boot_modules_make_few_functions_classes_and_globals():
    fns = classes = names = 0
    rows = []
    for n in BOOT + ("wan.outbox", "wan.link", "wan.at", "wan.linkcred", "wan.modem", "wan.settings"):
        m = lazy.load(n)
        f, c, g = _made(m)
        rows.append((n, f, c, g))
        fns += f
        classes += c
        names += g
    # main before branch wanboot (927d65d): 234 functions and methods, 25
    # classes, 259 globals (local_port alone 44 / 5 / 60); after: 156 / 19 / 194;
    # after branch bootrest (the WAN's commands in wan.local_commands, link's
    # parse_hello, used by a test alone, in the test): 150 / 19 / 189; after
    # branch bootcut (the argument checks in local_args; the session's,
    # modem's, outbox's, settings' and AT parser's one-call helpers inlined,
    # WanService.changed in wan.local_commands): 136 / 19 / 183; branch b2top
    # (local_port's OK reply in _handle, the AT parser's cme_code in ATError,
    # wan_config's configure in wan.local_commands, LinkCredentials without
    # its linkfiles wrappers, the session's and outbox's rare names imported
    # where used): 130 / 19 / 168
    assert fns <= 130 and classes <= 19 and names <= 168, (fns, classes, names, rows)
    lp = rows[0]
    assert lp[1] <= 18 and lp[2] <= 4 and lp[3] <= 26, lp  # branch b2top (main ec7b50d: 19 / 4 / 30)


def test_the_parts_used_on_request_are_not_imported_by_the_boot_modules():
    for n in BOOT:
        lazy.load(n)
    # the commands' argument checks are local_args' (loaded with the command
    # modules, all loaded on first use), not local_port's (branch bootcut)
    lp = sys.modules["local_port"]
    assert not [n for n in ("int_arg", "str_arg", "hex_arg", "eui_arg") if hasattr(lp, n)]
    assert not [n for n in LAZY if n in sys.modules], [n for n in LAZY if n in sys.modules]


def test_a_part_used_on_request_gives_its_heap_back_when_dropped():
    for n in BOOT:
        lazy.load(n)
    for n in LAZY:
        lazy.load(n)
        lazy.drop(n)  # the first import from source interns its names, for good
        before = _alloc()
        m = lazy.load(n)
        loaded = _alloc()
        del m
        assert lazy.drop(n)
        after = _alloc()
        assert loaded - before > 16 * W, (n, loaded - before)  # a module and its globals at least
        assert after - before < 32 * W, (n, before, loaded, after)


def test_on_a_frozen_build_the_boot_modules_cost_at_most_their_bound():
    # the RAM of the imports themselves (a frozen build keeps the code in
    # flash; the 64-bit test tier compiles the source into the heap, so only
    # the counts above apply there): this group with the WAN modules it
    # imports, 32-bit, 12,192 bytes on main 927d65d (census rows local_port
    # 2.12 KB, wan.sim7600 1.77, wan.session 1.23, ...), 8,800 after
    if "/" in lazy.__file__:
        return  # from source: not frozen
    before = _alloc()
    for n in BOOT:
        lazy.load(n)
    cost = _alloc() - before
    # main e16d9ba: 8,560; branch bootcut: 8,144; branch b2top: 7,808
    assert cost <= 1952 * W, (cost, 1952 * W)
