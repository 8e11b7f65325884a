# The WAN's settings: names, defaults, and the checks a change passes before
# it is stored (KV "wan"; the outbox's retry policy lives in the same KV).
# The clock's hold and step limits are WAN settings too: the wiring applies
# them to the hub's clock (apply_clock).
DEFAULTS = {
    "host": "headend.chub.test", "port": 4059, "apn": "chub.m2m", "pin": None, "radio": None,
    "retry_ms": 2000, "retry_max_ms": 60000, "reg_timeout_ms": 120000, "hello_timeout_ms": 15000,
    "ping_ms": 60000, "idle_timeout_ms": 180000, "signal_ms": 10000, "rx_poll_ms": 10000,
    "time_step_s": 10, "clock_hold_s": 432000,
    # modem health: PDP refresh, periodic re-init (hardware reset), a reset
    # after max_errors failed sessions in a row or stuck_ms without a link
    "pdp_refresh_ms": 86400000, "reinit_ms": 604800000, "max_errors": 6, "stuck_ms": 1800000,
    "critical_alerts": True, "timings": None,
}


def apply_clock(clock, cfg):
    clock.hold_s = cfg["clock_hold_s"]
    clock.step_s = cfg["time_step_s"]


def configure(kv, settings, outbox, modem, clock, changes):
    """Check `changes` ({name: value}), store them and apply them to the
    outbox, the modem's timings and the clock -> the effective settings.
    ValueError names the first setting refused; nothing is stored then."""
    from wan import outbox as ob

    if not isinstance(changes, dict):
        raise ValueError("set must be an object")
    for k in changes:
        if k not in DEFAULTS and k not in outbox.cfg:
            raise ValueError("unknown wan setting %s" % k)
    trial = dict(outbox.cfg)
    trial.update({k: v for k, v in changes.items() if k in trial})
    ob.Outbox(None, trial)  # validates the outbox policy
    r = changes.get("radio")
    if r is not None:
        from wan.sim7600 import RADIO_MODES

        if r not in RADIO_MODES:
            raise ValueError("radio must be one of %s" % ", ".join(sorted(RADIO_MODES)))
    if "timings" in changes:
        tm = changes["timings"]
        if tm is not None and not isinstance(tm, dict):
            raise ValueError("timings must be an object")
        if modem is not None:
            modem.set_timings(tm or {})  # refuses unknown names before changing any
    if changes:
        kv.update(changes)
        outbox.configure(settings)
    c = dict(settings.items())
    apply_clock(clock, c)
    c.update(outbox.cfg)
    return c
