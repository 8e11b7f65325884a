# The WAN's local-port commands (wan.commands names them): loaded for each
# call and dropped after it (app.Hub.run_command), with the transaction log's
# read-out (page).
import struct

from micropython import const

from wan import settings
from wan.commands import HEADEND
from wan.outbox import TX_NAMES

_LINK_KEYS = const(("host", "port", "apn"))  # a change of these cuts the link: applied with a fall-back
_LOCAL_ONLY = const(("remote_mgmt",))  # not settable over the management channel


def configure(kv, wan_settings, outbox, modem, clock, changes):
    """Check `changes` ({name: value}) against wan.settings.SCHEMA, store them and apply
    them to the outbox, the modem's timings and the clock -> the effective
    settings. ValueError names the first setting refused; nothing is stored
    then."""
    if not isinstance(changes, dict):
        raise ValueError("set must be an object")
    for k in changes:
        why = settings.check(k, changes[k])
        if why is not None:
            raise ValueError("wan setting %s %s" % (k, why))
    c = dict(wan_settings.items())  # the outbox's retry policy too (outbox.configure takes it from them)
    c.update(changes)
    for a, b in (("crit_backoff_ms", "crit_backoff_max_ms"), ("noncrit_backoff_ms", "noncrit_backoff_max_ms")):
        if c[a] > c[b]:
            raise ValueError("wan setting %s must not be over %s" % (a, b))
    if c["retry_ms"] > c["retry_max_ms"]:
        raise ValueError("wan setting retry_ms must not be over retry_max_ms")
    if c["report_period_s"] and c["report_period_s"] * 1000 < c["sched_window_ms"]:
        raise ValueError("wan setting report_period_s must not be shorter than sched_window_ms")
    if "timings" in changes and modem is not None:
        modem.set_timings(changes["timings"] or {})
    if changes:
        kv.update(changes)
        outbox.configure(wan_settings)
    c = dict(wan_settings.items())
    settings.apply_clock(clock, c)
    return c



async def wan_status(hub, req):
    if hub.wan.session is None:
        return {"state": "starting", "connected": False, "outbox_pending": None}
    return hub.wan.session.status()


async def wan_config(hub, req):
    """The same for the installer and the head-end (wan.mgmt): one schema,
    one check; a change is logged with its origin."""
    w = hub.wan
    modem = w.session.modem if w.session is not None else None
    changes = req.get("set") or {}
    origin = "local"
    if req.get("_from") is HEADEND:  # over the management channel
        origin = "headend"
        for k in changes if isinstance(changes, dict) else ():
            if k in _LOCAL_ONLY:
                raise ValueError("wan setting %s is set on the local port only" % k)
    before = dict(w.settings.items()) if changes else None
    c = configure(w.store.kv("wan"), w.settings, w.outbox, modem, hub.clock, changes)
    if changes:
        # the event log says who changed what; a change of host, port or apn
        # goes to the session, which makes the link again with a fall-back
        from codes import EV_SETTINGS_CHANGED
        from log import log

        names = ",".join(sorted(changes))
        if w.event_log is not None:
            try:
                w.event_log.append(EV_SETTINGS_CHANGED, (origin + " " + names).encode()[:96])
            except Exception as e:  # noqa: BLE001 - no clock yet: the console has it
                log("wan", "settings change not logged: %r" % e)
        log("wan", "settings %s changed by %s" % (names, origin))
        keys = [k for k in _LINK_KEYS if k in changes and changes[k] != before[k]]
        if keys and w.session is not None:
            w.session.relink(keys, before, origin)
    return c


async def transactions(hub, req):
    """{before?: seq} -> the newest entries older than `before` that fit
    ~1.5 KB, oldest first, each with its seq; `total` = entries held. Page
    back with before = the first seq of the previous page."""
    before = req.get("before")
    if before is not None:
        from local_args import int_arg

        before = int_arg(req, "before", 0, 0xFFFFFFFF)
    tx = hub.wan.txlog
    return {"total": len(tx), "entries": page(tx, before)}


def page(tx, before=None, room=1500):
    """The transaction log tx's entries with seq < before (all when None), newest first until
    about `room` bytes of JSON, returned oldest first. Reads only the
    records it returns."""
    r = tx.ring
    out = []
    for seq in reversed(r.seqs()):
        if before is not None and seq >= before:
            continue
        p = r.read(seq)
        e = _entry(seq, p) if p is not None else None
        if e is None:
            continue
        room -= 56 + len(e["event"]) + len(e["detail"])
        if room < 0:
            break
        out.append(e)
    out.reverse()
    return out


def _entry(seq, p):
    # a transaction log record as the entry page() gives (None: too short)
    if len(p) < 9:
        return None
    t, ev, fid = struct.unpack(">IBI", p[:9])
    try:
        d = str(bytes(p[9:]), "utf-8")
    except UnicodeError:
        d = ""
    name = TX_NAMES[ev - 1] if 0 < ev <= len(TX_NAMES) else ev
    return {"seq": seq, "utc": t, "event": name, "id": fid, "detail": d}


COMMANDS = (("wan_status", wan_status), ("wan_config", wan_config), ("transactions", transactions))
