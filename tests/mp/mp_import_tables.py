# ruff: noqa: UP031
# The heap after imports (issue 15, docs/proof.md "The heap on the 32-bit
# frozen build"): on a frozen build a literal tuple, bytes or str stays in
# flash, while a dict, list, set or bytearray, and a tuple holding anything
# but constants (functions, classes, names bound at run time), is built in
# RAM when the module is imported, for the hub's life. These modules had such
# tables; they are constant tuples now (or built on use), and this keeps
# them so.
from chf import credentials, usecase_exec, usecases
from gbcs import security
from gpf import function as gpf_function
from han import ezsp_frames, peer, zcl
from route import router
from wan import at, modem, outbox, settings, sim7600

HEAP = "1024k"  # eleven modules compiled from source (the 64-bit port; ~600k needed)

_CONST = (int, str, bytes, bool, type(None))

# name -> why it may be a table: a real data structure the code uses as one
# (copied, overlaid, written)
ALLOWED = {
    "DEFAULTS": "settings defaults, overlaid by the KV",
    "TIMINGS": "the modem's timing defaults, shared until overridden",
    "COMMANDS": "the local-port commands, (name, fn(hub, req)) each, as app.py collects them",
}

CLEANED = (ezsp_frames, zcl, usecases, usecase_exec, gpf_function, router, at, modem, outbox, settings, sim7600, security, credentials)


def _constant(v):
    if isinstance(v, _CONST):
        return True
    if isinstance(v, tuple):
        for x in v:
            if not _constant(x):
                return False
        return True
    return False


def test_cleaned_modules_build_no_tables_at_import():
    bad = []
    for mod in CLEANED:
        for k, v in mod.__dict__.items():
            if k in ALLOWED:
                continue
            if isinstance(v, (dict, list, set, bytearray)):
                bad.append("%s.%s: %s" % (mod.__name__, k, type(v).__name__))
            elif isinstance(v, tuple) and not _constant(v):
                bad.append("%s.%s: a tuple of non-constants" % (mod.__name__, k))
    assert not bad, bad


def test_chf_use_case_table_spells_the_obis_codes_it_names():
    # the table writes the OBIS codes out (a constant tuple); each is one of
    # the module's OBIS_ names
    named = [v for k, v in usecase_exec.__dict__.items() if k.startswith("OBIS_")]
    t = usecase_exec.USE_CASES
    assert len(t) % 2 == 0
    for i in range(0, len(t), 2):
        code, (name, specs) = t[i], t[i + 1]
        assert isinstance(code, int) and isinstance(name, str)
        for spec in specs:
            assert spec[2] in named, (name, spec)


def test_tables_answer_as_the_dicts_did():
    # lookups through the constant tuples
    assert ezsp_frames.lookup(13, "sendUnicast") == (0x34, "BHATL", "SB")
    assert ezsp_frames.lookup(14, "leaveNetwork") == (0x20, "B", "S")  # the version's own entry wins
    assert ezsp_frames.name_of(14, 0x45) == "incomingMessageHandler"
    assert settings.spec("port") == ("int", 1, 65535, False, 4059) and settings.spec("nope") is None
    assert zcl.type_size(peer.T_EUI64) == 8 and zcl.type_size(zcl.T_UTC) == 4
    # wan.service's _KINDS (response, alert, scheduled): a name's place + 1 is its KIND_
    assert (outbox.KIND_RESPONSE, outbox.KIND_ALERT, outbox.KIND_SCHEDULED) == (1, 2, 3)


def test_few_globals_and_no_interface_stubs():
    # each global is a dict slot in RAM; the modem interface is a comment,
    # not 19 methods that raise NotImplementedError (bounds with a little room)
    assert len(sim7600.__dict__) <= 36, len(sim7600.__dict__)
    assert len(modem.Modem.__dict__) <= 6, list(modem.Modem.__dict__)
