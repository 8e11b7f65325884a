# Drives firmware/update (Updater, slots) under micropython for
# tests/test_hub_update.py: the scenario named in args.json, on LittleFS2
# over the unix board's file-backed block device in the cwd. Prints one
# RESULT line (JSON).
import json
import sys

from blockdev import PowerLost
from flashfs import ROOT, fresh, remount
from update import slots
from update.image import Refused, Updater

A = json.load(open("args.json"))
BLOCKS = 256


class KV:
    def __init__(self, d):
        self.d = d

    def get(self, k, default=None):
        return self.d.get(k, default)

    def update(self, d):
        self.d.update(d)

    def set(self, k, v):
        self.d[k] = v


class Ev:
    def __init__(self):
        self.rows = []

    def append(self, code, data=b""):
        self.rows.append([code, data.decode()])


class Resets(Exception):
    pass


def reset():
    raise Resets()


def updater(ev, alerts, running=None):
    return Updater(ROOT, "unix", KV(A["kv"]), ev, alerts.append, lambda: A.get("utc", 1000), reset, running)


def send(u, blob, chunk, start=None):
    off = u.received if start is None else start
    while off < len(blob):
        off2 = u.write(off, blob[off:off + chunk])
        if off2 == off:
            break
        off = off2
    return off


def install(blob, chunk):
    # download, end, activate now, switch: True when the reset came
    ev, alerts = Ev(), []
    u = updater(ev, alerts)
    send(u, blob, chunk)
    u.end()
    u.activate(u.manifest["total"], 0)
    if u.due():
        try:
            u.switch()
        except Resets:
            return True
    return False


def each_image(feed):
    # each image on a fresh flash: feed(updater, blob) sends it (Refused
    # ends it); what the hub kept and reported
    import os

    out = {}
    for name in A["images"]:
        fresh(BLOCKS)
        before = slots.read_state(ROOT)
        ev, alerts = Ev(), []
        u = updater(ev, alerts)
        err, extra = None, {}
        try:
            feed(u, open(name, "rb").read(), extra)
        except Refused as e:
            err = str(e)
        out[name] = {"error": err, "alerts": alerts, "events": ev.rows, "state": u.state,
                     "boot_before": before, "boot_after": slots.read_state(ROOT),
                     "img": sorted(os.listdir(ROOT + "/img"))}
        out[name].update(extra.get("after", lambda: {})())
    return out


def scenario_hostile():
    def feed(u, blob, extra):
        send(u, blob, A["chunk"])
        u.end()

    return each_image(feed)


def scenario_cs05a():
    # the CS05a form through update.ota.Cs05a (as the CHF's Image transfer
    # actions hand it over), each file from offset 0
    from update.ota import Cs05a

    def feed(u, blob, extra):
        c = Cs05a(u)
        extra["after"] = lambda: {"received": c.received()}
        off = 0
        while off < len(blob):
            n = c.block(off, blob[off:off + A["chunk"]])
            if n == off:
                break
            off = n

    return each_image(feed)


def scenario_good():
    fresh(BLOCKS)
    blob = open(A["images"][0], "rb").read()
    ev, alerts = Ev(), []
    u = updater(ev, alerts)
    # a piece at the wrong offset is not taken: the answer says where to go on
    r0 = u.write(5, blob[5:10])
    # a header begun (held in RAM) and then another image from offset 0: it restarts
    partial = u.write(0, b"CHIM\x01\x00\x00\x10" + b"{" * 20)
    restart = u.write(0, blob[:1000])
    send(u, blob, A["chunk"])
    res = {"wrong_offset": r0, "partial": partial, "restart": restart, "alerts": list(alerts), "status": u.status()}
    # resent from the start: the same image continues, nothing restarts
    res["resend"] = u.write(0, blob[:100])
    u.end()
    u.activate(u.manifest["total"], 5000)  # CS06: in the future
    res["due_early"] = u.due()
    A["utc"] = 6000
    remount(BLOCKS)
    u = updater(Ev(), [])
    res["after_reboot"] = u.status()
    res["due"] = u.due()
    try:
        u.switch()
    except Resets:
        res["reset"] = True
    res["boot"] = slots.read_state(ROOT)
    res["choose1"] = slots.choose(ROOT)
    res["boot1"] = slots.read_state(ROOT)
    if A.get("confirm"):
        u = updater(Ev(), [], running=res["choose1"])
        res["on_trial"] = u.on_trial()
        res["confirmed"] = u.confirm()
        res["kv_after_confirm"] = dict(A["kv"])
        if len(A["images"]) > 1:  # an older image after the confirm: below the raised minimum
            ev2, alerts2 = Ev(), []
            u2 = updater(ev2, alerts2, running=res["choose1"])
            try:
                send(u2, open(A["images"][1], "rb").read(), A["chunk"])
                res["older"] = None
            except Refused as e:
                res["older"] = str(e)
            res["older_alerts"] = alerts2
    res["choose2"] = slots.choose(ROOT)
    ev, alerts = Ev(), []
    u = updater(ev, alerts, running=res["choose2"])
    res["notes"] = u.boot_notes()
    res["notes_alerts"] = alerts
    res["notes_events"] = ev.rows
    res["boot2"] = slots.read_state(ROOT)
    res["check"] = slots.check_slot(ROOT, "a")
    return res


def scenario_sweep():
    blob = open(A["images"][0], "rb").read()
    chunk = A["chunk"]
    dev = fresh(BLOCKS)
    base = dev.writes
    assert install(blob, chunk)
    total = dev.writes - base
    rows = []
    counts = {}
    for n in range(1, total + 1):
        dev = fresh(BLOCKS)
        dev.cut_after = dev.writes + n
        phase = "download"
        try:
            ev, alerts = Ev(), []
            u = updater(ev, alerts)
            send(u, blob, chunk)
            u.end()
            phase = "activate"
            u.activate(u.manifest["total"], 0)
            u.switch()
            counts["no cut"] = counts.get("no cut", 0) + 1
            continue
        except PowerLost:
            pass
        except Resets:
            counts["no cut"] = counts.get("no cut", 0) + 1
            continue
        # power back: first the boot chooser, then the hub resumes the job
        remount(BLOCKS)
        first = slots.choose(ROOT)
        ok_first = first is None or (first == "a" and slots.check_slot(ROOT, "a"))
        u = updater(Ev(), [], running=first)
        resumed_at = u.received
        switched = first == "a"
        if not switched:
            send(u, blob, chunk)
            u.end()
            u.activate(u.manifest["total"], 0)
            try:
                u.switch()
            except Resets:
                switched = True
        final = slots.choose(ROOT)
        row = [n, phase, first, resumed_at, ok_first, switched, final, slots.check_slot(ROOT, "a")]
        counts[phase] = counts.get(phase, 0) + 1
        if resumed_at:
            counts["resumed"] = counts.get("resumed", 0) + 1
        if first == "a":
            counts["new_at_once"] = counts.get("new_at_once", 0) + 1
        if not (ok_first and switched and final == "a" and row[7]):
            rows.append(row)  # only the failures: the report stays small
    return {"writes": total, "counts": counts, "failures": rows}


try:
    res = globals()["scenario_" + A["scenario"]]()
except Exception as e:
    sys.print_exception(e)
    res = {"exception": repr(e)}
print("RESULT " + json.dumps(res))
