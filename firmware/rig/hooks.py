# Local-port commands of the emulated board only (the rig's hooks); the
# ESP32 images do not carry this module (`chub build` checks it):
#   provision_test_dcc {anchors: [{eui, role, ka_pub, ka_ski?, ds_pub?,
#                       ds_ski?}], device?: "chf"|"gpf", cells?: [...]}:
#                       test DCC trust anchors (KA ones to the identity,
#                       every cell to the credentials; for the GPF also its
#                       trust anchor cells, from "cells" when they differ)
#   gbcs_fault {obis, index, code} / {clear: true}: a DLMS access result to
#                       answer with
#   subghz_event {event, ...} -> {alerts: [hex...]}: the emulated Sub GHz
#                       radio reports an event: channel_changed {channel},
#                       duty_cycle_limited {eui}, no_capacity {eui},
#                       message_discarded {originator, target, cra, counter}

import lazy
from ids import hex_bytes, hex_text

# the modules a Credentials brings in (chf.credentials imports gbcs.der and gbcs.p256)
_CRED_MODULES = ("chf.credentials", "gbcs.der", "gbcs.p256")


def _late_alert(hub, frame):
    """An alert no command caused goes to the head-end through the WAN
    outbox; returned for the caller too."""
    hub.emit(frame, "alert")
    return frame


async def cmd_provision(hub, req):
    anchors = req.get("anchors")
    if not isinstance(anchors, list) or not anchors:
        raise ValueError("anchors must be a non-empty list")
    dev = req.get("device", "chf")
    ident = hub.identity
    ident.set_anchors(anchors, dev)
    if dev in ("chf", "gpf"):
        # the cells (KV ta_cells / ta_cells_gpf: a Credentials keeps no RAM
        # copy, so the CHF's own and a loaded Gpf's read what is written here)
        # through a Credentials of this call's: the credentials code goes with
        # it, unless something held it before (the GPF's use cases do not load)
        b = lazy.borrow(*_CRED_MODULES)
        try:
            from chf.credentials import Credentials

            Credentials(hub.store, ident, dev).provision((req.get("cells") or anchors) if dev == "gpf" else anchors)
        finally:
            lazy.give_back(b)
        if dev == "chf":
            hub.chf.parties = ident.parties("chf")
    return {"device": dev, "anchors": len(anchors)}


async def cmd_fault(hub, req):
    chf = hub.chf
    if req.get("clear"):
        chf.faults.clear()
    else:
        obis = hex_bytes(req.get("obis"), "obis")
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
        a = sg.alert(chf, sg.ALERT_CHANNEL_CHANGED, sub.change_channel(int(req["channel"])))
    elif ev in ("duty_cycle_limited", "no_capacity"):
        code = sg.ALERT_DUTY_CYCLE_LIMITED if ev == "duty_cycle_limited" else sg.ALERT_NO_CAPACITY
        a = sg.alert(chf, code, sg.eui_body(hex_bytes(req.get("eui"), "eui")))
    elif ev == "message_discarded":
        body = sg.discarded_body(
            hex_bytes(req.get("originator"), "originator"),
            hex_bytes(req.get("target"), "target"),
            int(req.get("cra", 1)),
            int(req["counter"]),
        )
        a = sg.alert(chf, sg.ALERT_MESSAGE_DISCARDED, body)
    else:
        raise ValueError("unknown Sub GHz event %r" % ev)
    return {"alerts": [hex_text(_late_alert(hub, a))]}


COMMANDS = (("provision_test_dcc", cmd_provision), ("gbcs_fault", cmd_fault), ("subghz_event", cmd_subghz))
