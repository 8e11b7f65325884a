# WAN settings that cannot take the hub down (issue 16): every settable key
# has a type and a range, checked before anything is stored; a value that is
# already on flash and fails the check is reported once (event log 0x8FF3)
# and its default used, also by the outbox built at boot.
import asyncio

import board
import flashfs
from clock import Clock
from codes import EV_BAD_SETTING
from store import Store
from wan import local_commands, service, settings

HEAP = "512k"  # the checks of timings and radio load wan.sim7600

# per key: values of the wrong type or out of range
BAD = {
    "host": [5, None, "", "a b", "x" * 254, "-x", "h\"ost", "x..y", ["a"]],
    "port": ["x", 0, 65536, -1, None, True, 1.5],
    "apn": [["a"], 5, None, "a\"b", "x" * 63, "a\r\nAT"],
    "pin": ["12", "123456789", "12a4", 1234, True],
    "radio": ["5g", 5, True],
    "timings": ["x", {"nope": 1}, {"cmd": "x"}, {"cmd": -1}, {"cmd": 10 ** 9}, [1]],
    "critical_alerts": [1, "yes", None],
    "on_exhausted": ["zz", None, 1],
}
for _i in range(0, len(settings.SCHEMA), 2):
    _k, (_kind, _lo, _hi, _null, _dflt) = settings.SCHEMA[_i], settings.SCHEMA[_i + 1]
    if _kind == "int":
        BAD[_k] = ["x", None, True, _lo - 1, _hi + 1, 2 ** 70, 1.0]


def _wan(ev=None):
    st = Store(flashfs.ROOT + "/data")
    clk = Clock(board.utc, board.set_utc, board.ticks_ms)
    w = service.WanService(st, None, clk, board.utc, board.power_fail, asyncio.Event())
    if ev is not None:
        w.attach_chf(None, ev, None)
    return st, w, clk


def test_every_key_refuses_wrong_types_and_ranges():
    flashfs.fresh()
    st, w, clk = _wan()
    kv = st.kv("wan")
    names = [settings.SCHEMA[i] for i in range(0, len(settings.SCHEMA), 2)]  # name, spec, name, spec, ...
    assert set(names) == set(settings.defaults()) and w.outbox.cfg is None  # every outbox setting its default
    for k in names:
        for v in BAD.get(k, []):
            try:
                local_commands.configure(kv, w.settings, w.outbox, None, clk, {k: v})
            except ValueError as e:
                assert k in str(e), (k, v, str(e))
            else:
                raise AssertionError("stored %s=%r" % (k, v))
        assert k not in kv, k
    # the defaults pass their own schema; sensible values are taken
    for k, v in settings.defaults().items():
        assert settings.check(k, v) is None, (k, v)
    c = local_commands.configure(kv, w.settings, w.outbox, None, clk,
                           {"host": "10.0.0.7", "port": 443, "apn": "iot.m2m_x", "pin": "1234", "radio": "lte",
                            "timings": {"cmd": 500}, "crit_retries": 3})
    assert c["host"] == "10.0.0.7" and c["port"] == 443 and c["pin"] == "1234" and w.outbox.setting("crit_retries") == 3
    # a pair that contradicts itself
    for bad in ({"retry_ms": 90000, "retry_max_ms": 60000}, {"crit_backoff_ms": 700000, "crit_backoff_max_ms": 600000}):
        try:
            local_commands.configure(kv, w.settings, w.outbox, None, clk, bad)
            raise AssertionError("took %r" % bad)
        except ValueError:
            pass
    try:
        local_commands.configure(kv, w.settings, w.outbox, None, clk, {"nope": 1})
        raise AssertionError("unknown key taken")
    except ValueError as e:
        assert "nope" in str(e)


def test_bad_values_on_flash_give_the_defaults_reported_once():
    from chf.logs import EventLog

    flashfs.fresh()
    st = Store(flashfs.ROOT + "/data")
    planted = {"ping_ms": "x", "port": "x", "host": 5, "idle_timeout_ms": -1, "signal_ms": None, "apn": ["a"],
               "on_exhausted": "zz", "timings": {"cmd": "x"}, "crit_retries": "9", "retry_ms": 2000}
    st.kv("wan").update(planted)  # as an older firmware could have stored them
    ev = EventLog(st, "event", 40, utc=lambda: 1000)
    _, w, _ = _wan(ev)  # the outbox is built from them: no exception
    s = w.settings
    for k in planted:
        want = planted[k] if k == "retry_ms" else settings.defaults()[k]
        assert s[k] == want, (k, s[k])
        assert s.get(k) == want
    assert w.outbox.setting("on_exhausted") == "keep" and w.outbox.setting("crit_retries") == settings.spec("crit_retries")[4] == 8
    assert dict(s.items())["ping_ms"] == 60000
    for _ in range(3):
        s["ping_ms"]
    bad = [r for r in ev.rows() if r[1] == EV_BAD_SETTING]
    assert sorted(r[2] for r in bad) == sorted(k.encode() for k in planted if k != "retry_ms"), bad
    assert all(r[3] == 1 for r in bad)  # once each
    # a correction through wan_config takes effect at once
    local_commands.configure(w.store.kv("wan"), s, w.outbox, None, Clock(board.utc, board.set_utc, board.ticks_ms),
                       {"ping_ms": 30000, "port": 4059})
    assert s["ping_ms"] == 30000 and s["port"] == 4059


def test_the_settings_hold_no_empty_lists():
    # docs/proof.md (branch wanws): the names reported bad (and those not
    # yet in the event log) are tuples, empty the shared () until a bad
    # stored value is read: 128 -> 64 bytes on the 32-bit build, 256 -> 128
    # on the 64-bit port. Branch wanpk: the names not yet in the event log
    # are the reported ones while it is not given (no tuple of their own):
    # 64 -> 48, 128 -> 96
    import gc
    import sys

    W = 8 if sys.maxsize > 2**31 else 4
    flashfs.fresh()
    kv = Store(flashfs.ROOT + "/data").kv("wan")
    gc.collect()
    a = gc.mem_alloc()
    s = settings.WanSettings(kv)
    gc.collect()
    n = gc.mem_alloc() - a
    assert n <= 12 * W, n
    assert s["ping_ms"] > 0
    kv.set("ping_ms", "x")
    assert s["ping_ms"] != "x" and list(s.bad) == ["ping_ms"]
    assert s["ping_ms"] != "x" and list(s.bad) == ["ping_ms"]  # reported once
