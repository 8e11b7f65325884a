# Local-port commands for GBCS (the HHT role and the rig's hooks):
#   identity                  -> {chf: {eui, ka_pub, ds_pub}, gpf: {...}} (hex)
#   provision_test_dcc        {anchors: [{eui, role, ka_pub, ka_ski?, ds_pub?,
#                                ds_ski?}], device?: "chf"}: trust anchors
#                                (KA ones to Identity, every cell to
#                                chf.credentials)
#   send_gbcs {frame: hex}    -> {response: hex, alerts: [hex...]}: one
#                                pre-protected command, exactly as from the WAN
#   gbcs_fault {obis, index, code} / {clear: true}: rig fault injection (unix
#                                board only)
#   subghz_event {event, ...}  -> {alerts: [hex...]}: the emulated Sub GHz
#                                radio reports an event (unix board only):
#                                channel_changed {channel}, duty_cycle_limited
#                                {eui}, no_capacity {eui}, message_discarded
#                                {originator, target, cra, counter}
#   chf_event {event: "fw_transfer", eui, version, code?} -> {alerts: [hex]}:
#                                a HAN device firmware transfer finished
#                                (CCS08; rig hook until HAN OTA exists)
# install(hub) builds the CHF (identity, logs, use cases) on hub.store and
# registers the commands in hub.commands.
import binascii

from chf.identity import Identity
from chf.logs import EPOCH_2000, open_logs
from chf.usecases import Chf

try:
    import board
except ImportError:  # tests with a Hub-like object
    board = None


def _utc2000():
    if board is None:
        import time

        return int(time.time()) - EPOCH_2000
    return board.utc() - EPOCH_2000


def _unhex(s, what):
    if not isinstance(s, str):
        raise ValueError("%s must be a hex string" % what)
    try:
        return binascii.unhexlify(s.replace(" ", ""))
    except ValueError:
        raise ValueError("%s is not valid hex" % what)


def _hexs(b):
    return binascii.hexlify(b).decode()


def _late_alert(hub, frame):
    """An alert no command caused goes to the head-end through hub.emit (the
    WAN outbox) once that exists; returned for the caller too."""
    emit = getattr(hub, "emit", None)
    if emit is not None:
        emit(frame, "alert")
    return frame


# The commands: module functions fn(hub, req), so the hub holds no closure
# (and no cells) per command.

async def cmd_identity(hub, req):
    return hub.identity.public()


async def cmd_provision(hub, req):
    anchors = req.get("anchors")
    if not isinstance(anchors, list) or not anchors:
        raise ValueError("anchors must be a non-empty list")
    dev = req.get("device", "chf")
    ident, chf = hub.identity, hub.chf
    ident.set_anchors(anchors, dev)
    if dev == "chf":
        chf.credentials.provision(anchors)
        chf.parties = ident.parties("chf")
    return {"device": dev, "anchors": len(anchors)}


async def cmd_send(hub, req):
    data = _unhex(req.get("frame"), "frame")
    # the HHT wants the answer in hand: a tunnel delivery is awaited here
    # (from the WAN it runs as its own task and the answer goes to the outbox)
    router = getattr(hub, "router", None)
    route = router.route_wait if router is not None else getattr(hub, "route", None)
    resp, alerts = await route(data) if route is not None else hub.chf.handle(data)
    return {"response": _hexs(resp) if resp is not None else None, "alerts": [_hexs(a) for a in alerts]}


async def cmd_fault(hub, req):
    chf = hub.chf
    if req.get("clear"):
        chf.faults.clear()
    else:
        obis = _unhex(req.get("obis"), "obis")
        if len(obis) != 6:
            raise ValueError("obis must be 6 bytes")
        chf.faults[(obis, int(req["index"]))] = int(req["code"]) & 0xFF
    return {"faults": len(chf.faults)}


async def cmd_subghz(hub, req):
    from chf import subghz as sg

    chf = hub.chf
    sub = chf.subghz
    ev = req.get("event")
    if ev == "channel_changed":
        a = chf.subghz_alert(sg.ALERT_CHANNEL_CHANGED, sub.change_channel(int(req["channel"])))
    elif ev in ("duty_cycle_limited", "no_capacity"):
        code = sg.ALERT_DUTY_CYCLE_LIMITED if ev == "duty_cycle_limited" else sg.ALERT_NO_CAPACITY
        a = chf.subghz_alert(code, sg.eui_body(_unhex(req.get("eui"), "eui")))
    elif ev == "message_discarded":
        body = sg.discarded_body(
            _unhex(req.get("originator"), "originator"),
            _unhex(req.get("target"), "target"),
            int(req.get("cra", 1)),
            int(req["counter"]),
        )
        a = chf.subghz_alert(sg.ALERT_MESSAGE_DISCARDED, body)
    else:
        raise ValueError("unknown Sub GHz event %r" % ev)
    return {"alerts": [_hexs(_late_alert(hub, a))]}


async def cmd_chf_event(hub, req):
    if req.get("event") != "fw_transfer":
        raise ValueError("unknown CHF event %r" % req.get("event"))
    a = hub.chf.firmware_alert(
        _unhex(req.get("eui"), "eui"), _unhex(req.get("version"), "version"), int(req.get("code", 0))
    )
    return {"alerts": [_hexs(_late_alert(hub, a))]}


def install(hub, device_log=None, log_capacity=40, allow_faults=None):
    if device_log is None:
        device_log = getattr(hub, "device_log", None)
    if device_log is None:
        from chf.device_log import DeviceLog

        device_log = DeviceLog(hub.store, _utc2000)
        hub.device_log = device_log
    ident = Identity(hub.store)
    ev, sec = getattr(hub, "event_log", None), getattr(hub, "security_log", None)
    if ev is None or sec is None:
        ev, sec = open_logs(hub.store, log_capacity, utc=_utc2000)
        hub.event_log, hub.security_log = ev, sec
    # Sub GHz state and trust anchor cells load on first use (chf.subghz,
    # chf.credentials): they cost heap only once a use case needs them
    chf = Chf(ident, ev, sec, device_log, utc2000=_utc2000, store=hub.store, log_capacity=log_capacity)
    hub.identity = ident
    hub.chf = chf

    def _versions(eui):
        # CCS04/05/06: the app/stack versions the HAN read from the device's Basic cluster
        c = getattr(hub, "coordinator", None)
        return c.device_versions(eui) if c is not None and hasattr(c, "device_versions") else None

    chf.versions = _versions
    if allow_faults is None:
        allow_faults = board is None or getattr(board, "NAME", "") == "unix"

    hub.commands["identity"] = cmd_identity
    hub.commands["provision_test_dcc"] = cmd_provision
    hub.commands["send_gbcs"] = cmd_send
    if allow_faults:
        hub.commands["gbcs_fault"] = cmd_fault
        hub.commands["subghz_event"] = cmd_subghz
        hub.commands["chf_event"] = cmd_chf_event
    return chf
