# The WAN's settings: names, defaults, the one schema every value passes
# before it is stored AND when it is read back (flash may hold a value an
# older firmware let through: it is reported once in the event log and the
# default is used); wan_config's configure() is wan.local_commands'. KV "wan" holds them; the
# outbox's retry policy lives in the same KV and the same schema.
# The clock's hold and step limits are WAN settings too: the wiring applies
# them to the hub's clock (apply_clock).
from micropython import const

from codes import EV_BAD_SETTING
from log import log
from store.kv import Settings


_DAY_MS = const(86400000)
_TICKS_MAX = const(0x3FFFFFFF)  # the largest ms span the hub's monotonic and tick maths hold

# name, (kind, a, b, may be None, default), ... (a constant tuple: in flash
# when frozen; spec() finds a name's; defaults() makes the dict of defaults
# for whoever needs one). kind "int": a..b; "str": the text's
# length a..b and its characters in _HOST/_APN/_PIN; "bool"; "choice": one of
# a (a tuple, or "radio": wan.sim7600.RADIO_MODES); "timings": an object of
# wan.sim7600.TIMINGS names -> int 0..b.
SCHEMA = (
    "host", ("host", 1, 253, False, "headend.chub.test"), "port", ("int", 1, 65535, False, 4059),
    "apn", ("apn", 0, 62, False, "chub.m2m"), "pin", ("pin", 4, 8, True, None),
    "radio", ("choice", "radio", None, True, None),
    "retry_ms", ("int", 100, 600000, False, 2000), "retry_max_ms", ("int", 100, _DAY_MS, False, 60000),
    "reg_timeout_ms", ("int", 1000, 3600000, False, 120000), "hello_timeout_ms", ("int", 1000, 600000, False, 15000),
    "ping_ms", ("int", 1000, _DAY_MS, False, 60000), "idle_timeout_ms", ("int", 5000, _DAY_MS, False, 180000),
    "signal_ms", ("int", 100, _DAY_MS, False, 10000), "rx_poll_ms", ("int", 100, _DAY_MS, False, 10000),
    "time_step_s", ("int", 1, 86400, False, 10), "clock_hold_s", ("int", 0, 31536000, False, 432000),
    # modem health: PDP refresh, periodic re-init (hardware reset), a reset
    # after max_errors failed sessions in a row or stuck_ms without a link
    "pdp_refresh_ms", ("int", 1000, _TICKS_MAX, False, 86400000),
    "reinit_ms", ("int", 1000, _TICKS_MAX, False, 604800000),
    "max_errors", ("int", 1, 1000, False, 6), "stuck_ms", ("int", 1000, _TICKS_MAX, False, 1800000),
    "critical_alerts", ("bool", None, None, False, True), "timings", ("timings", None, 600000, True, None),
    # remote management (wan.mgmt): the head-end may use it (set locally
    # only); a change of host, port or apn made while the link is up returns
    # to the old value when the link is not back within fallback_ms
    "remote_mgmt", ("bool", None, None, False, True), "fallback_ms", ("int", 5000, _DAY_MS, False, 600000),
    # the send window (wan.window): it opens window_start_s after UTC
    # midnight, every report_period_s (0: no periodic report), for
    # sched_window_ms; each hub sends at its own semi-random time inside it
    "window_start_s", ("int", 0, 86399, False, 7200), "report_period_s", ("int", 0, 31536000, False, 86400),
    # the outbox's (wan.outbox)
    "crit_retries", ("int", 0, 1000, False, 8), "crit_backoff_ms", ("int", 100, _DAY_MS, False, 10000),
    "crit_backoff_max_ms", ("int", 100, _DAY_MS, False, 600000),
    "noncrit_retries", ("int", 0, 1000, False, 3), "noncrit_backoff_ms", ("int", 100, _DAY_MS, False, 60000),
    "noncrit_backoff_max_ms", ("int", 100, _DAY_MS, False, 3600000),
    "on_exhausted", ("choice", ("keep", "drop"), None, False, "keep"),
    "sched_window_ms", ("int", 0, _TICKS_MAX, False, 1800000),
)

_HOST = const("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")
_APN = const("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")
_PIN = const("0123456789")


def spec(name):
    """(kind, a, b, may be None, default) of WAN setting `name`; None: no such setting."""
    return SCHEMA[SCHEMA.index(name) + 1] if name in SCHEMA else None


def defaults():
    """{name: default} of every WAN setting, the outbox's too (a dict made for the call)."""
    return {SCHEMA[i]: SCHEMA[i + 1][4] for i in range(0, len(SCHEMA), 2)}


def check(name, v):
    """None when v is a valid value for setting `name`, else the reason."""
    sp = spec(name)
    if sp is None:
        return "unknown wan setting"
    kind, a, b, nullable, _ = sp
    if v is None:
        return None if nullable else "must not be null"
    if kind == "int":
        if not isinstance(v, int) or isinstance(v, bool):
            return "must be an integer"
        if not a <= v <= b:
            return "must be %d..%d" % (a, b)
    elif kind == "bool":
        if not isinstance(v, bool):
            return "must be true or false"
    elif kind == "host" or kind == "apn" or kind == "pin":
        allowed = _HOST if kind == "host" else _APN if kind == "apn" else _PIN
        ok = isinstance(v, str) and a <= len(v) <= b
        if ok:
            for c in v:
                if c not in allowed:
                    ok = False
                    break
        if not ok:
            return "must be %d..%d characters of %s" % (a, b, "digits" if kind == "pin" else "letters, digits . -")
        if kind == "host" and (v[0] in ".-" or v[-1] in ".-" or ".." in v):
            return "is not a host name or IPv4 address"
    elif kind == "choice":
        allowed = a
        if a == "radio":
            from wan.sim7600 import RADIO_MODES

            allowed = RADIO_MODES
        if not isinstance(v, str) or v not in allowed:
            return "must be one of %s" % ", ".join(sorted(allowed))
    elif kind == "timings":
        if not isinstance(v, dict):
            return "must be an object"
        from wan.sim7600 import TIMINGS

        for k in v:
            t = v[k]
            if k not in TIMINGS:
                return "has an unknown modem timing %s" % k
            if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t <= b:
                return "%s must be an integer 0..%d" % (k, b)
    return None


class WanSettings(Settings):
    """WanSettings(kv): the defaults (SCHEMA's, the outbox's too) overlaid by
    KV "wan", read through, each stored value checked as it is read: one
    that fails is reported once (the console, and the event log once the
    wiring gave it, EV_BAD_SETTING with the name) and its default is used
    instead."""

    def __init__(self, kv):
        Settings.__init__(self, SCHEMA, kv)  # `in` finds a name among SCHEMA's (no dict of defaults)
        self.event_log = None
        # names reported since boot: a tuple, the shared () until a bad
        # stored value is read (those reported before the event log was
        # given go there when it is: report_to)
        self.bad = ()

    def report_to(self, event_log):
        """The event log for the reports (the wiring gives it once the CHF's
        logs exist); reports made before go there now."""
        first = self.event_log is None
        self.event_log = event_log
        if first:
            for k in self.bad:
                self._log_bad(k)

    def _log_bad(self, key):
        if self.event_log is None:
            return  # report_to logs it
        try:
            self.event_log.append(EV_BAD_SETTING, key.encode()[:32])
        except Exception:
            pass  # no clock yet: the console has it

    def _default(self, key):
        sp = spec(key)
        if sp is None:
            raise KeyError(key)
        return sp[4]

    def _checked(self, key, v):
        why = check(key, v)
        if why is None:
            return v
        if key not in self.bad:
            self.bad += (key,)
            log("wan", "stored setting %s %s: the default is used" % (key, why))
            self._log_bad(key)
        return self._default(key)

    def __getitem__(self, key):
        kv = self.kv
        if key in kv:
            return self._checked(key, kv.get(key))
        return self._default(key)  # the outbox's keys too (sched_window_ms, ...)

    def get(self, key, default=None):
        kv = self.kv
        if key in kv:
            return self._checked(key, kv.get(key))
        sp = spec(key)
        return default if sp is None else sp[4]

    def items(self):
        d = defaults()
        for k, v in self.kv.items():
            d[k] = self._checked(k, v) if k in SCHEMA else v
        return d.items()


def apply_clock(clock, cfg):
    clock.hold_s = cfg["clock_hold_s"]
    clock.step_s = cfg["time_step_s"]
