# app.Commands: the hub's local-port commands by name (hub.commands), found in
# the parts' COMMANDS tuples where they lie; a feature loaded on first use
# answers its module's name (app._LAZY_COMMANDS).
import gc

import app
from route import router
from wan import commands as wan_commands

HEAP = "2048k"  # app imports every part of the hub from source


def test_answers_as_a_dict_of_the_commands_did_and_holds_no_table():
    groups = (wan_commands.COMMANDS, router.COMMANDS)
    gc.collect()
    before = gc.mem_alloc()
    c = app.Commands(groups, app._LAZY_COMMANDS)
    gc.collect()
    cost = gc.mem_alloc() - before
    d = {}
    for group in groups:
        for name, fn in group:
            d[name] = fn
    for module, names in app._LAZY_COMMANDS:
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
