# app.Commands: the hub's local-port commands by name (hub.commands), found in
# the parts' COMMANDS tuples where they lie; a feature loaded on first use
# answers its module's name (app._LAZY_COMMANDS, a private const: gone at
# run time, so a part of it here; tests/test_hil_lazy.py checks the table).
import gc

import app
from route import router
from wan import commands as wan_commands

HEAP = "2048k"  # app imports every part of the hub from source

LAZY = (("chf.commands", ("device_log_list", "device_log_add", "device_log_remove", "logs")),
        ("han.ota", ("ota_status", "ota_begin", "ota_put", "ota_notify")))


def test_answers_as_a_dict_of_the_commands_did_and_holds_no_table():
    groups = (wan_commands.COMMANDS, router.COMMANDS)
    gc.collect()
    before = gc.mem_alloc()
    c = app.Commands(groups, LAZY)
    gc.collect()
    cost = gc.mem_alloc() - before
    d = {}
    for group in groups:
        for name, fn in group:
            d[name] = fn
    for module, names in LAZY:
        for name in names:
            d[name] = module
    for name in d:
        assert c[name] is d[name] and c.get(name) is d[name] and name in c, name
    assert c["logs"] == "chf.commands" and c["ota_put"] == "han.ota"
    assert "nope" not in c and c.get("nope") is None and c.get(None) is None
    try:
        c["nope"]
        raise AssertionError("no KeyError")
    except KeyError:
        pass
    # the object and its two attributes (64 bytes on this 64-bit port); a
    # dict of these 20-odd names took a table of ~500 bytes
    assert cost <= 96, cost
