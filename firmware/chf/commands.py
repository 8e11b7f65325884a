# Local-port commands for the CHF Device Log and the event/security logs; the
# HAN's trust centre (hub.coordinator.tc, once the HAN job made it) is synced
# after a change.
# Replies stay well under the local port's 4 KB body: list rows are arrays
# (field order in docs/device-log.md) and the active log comes in pages.
from micropython import const
from chf import device_log as DL
from local_args import eui_arg, hex_arg, int_arg, str_arg
from log import log

_PAGE = const(8)


def _message(code):
    # the text of a Device Log result code
    if code == DL.OK:
        return "ok"
    if code == DL.INCOMPATIBLE:
        return "incompatible with an existing entry"
    if code == DL.FULL:
        return "Device Log full"
    if code == DL.WRITE_FAILURE:
        return "write failure"
    return "error"


def _row(v):
    return [v["eui"], v["type"], v["key_state"], v["key_hash"], v["node_id"], v["join_state"],
            v["window_end"], v["rssi"], v["lqi"], v["last_comm"], v["tx_ok"], v["tx_fail"]]


async def _sync(hub):
    tc = hub.coordinator.tc
    if tc is not None:
        try:
            await tc.sync()
        except Exception:
            pass  # the trust centre's own loop retries within a second


# Local-port commands (fn(hub, req): docs/local-port.md).

async def device_log_list(hub, req):
    dl = hub.device_log
    off = int_arg(req, "offset", 0, 0xFFFF, 0)
    rows = dl.entries()
    res = {"total": len(rows), "capacity": dl.capacity, "offset": off, "utc": dl.utc(),
           "entries": [_row(v) for v in rows[off:off + _PAGE]]}
    if off == 0:
        res["historic"] = [[h["eui"], h["type"], h["key_hash"], h["removed"]] for h in dl.historic()]
    return res


def _install_code_refused(e):
    # a ValueError of device_log_add's checks: a bad install code CRC is the
    # reply INVALID_CODE, a bad length a bad argument (ValueError), any
    # other error goes on as it is
    kind = e.args[0] if e.args else None
    if kind == "InstallCodeCrcError":
        return {"code": DL.INVALID_CODE, "message": "install code CRC invalid: " + str(e)}
    if kind == "InstallCodeLengthError":
        raise ValueError(str(e))
    raise e


async def device_log_add(hub, req):
    eui = eui_arg(req)
    typ = int_arg(req, "type", 0, len(DL.TYPE_NAMES) - 1)
    code = hex_arg(req, "install_code", 18)
    timeout = int_arg(req, "join_timeout", 0, 0xFFFF, 3600)
    DL.device_eui(eui)  # all ones / all zeros: bad arguments (DeviceLogError is a ValueError)
    # GBCS CCS01 ignores the key of a device already in the log; the
    # installer is told when the code differs from the one it holds
    # han.install_code's errors are told by their kind (its module is loaded
    # per check and dropped: a class held here would not match the next copy's)
    try:
        same = hub.device_log.install_code_matches(eui, code)
    except ValueError as e:
        return _install_code_refused(e)
    if same is False:
        log("chf", "device_log_add %s refused: a different install code" % eui)
        return {"code": DL.INCOMPATIBLE, "duplicate": True,
                "message": "already in the Device Log with a different install code: "
                           "remove it first to change its code"}
    try:
        code_n, dup = hub.device_log.add(eui, typ, code, timeout)
    except ValueError as e:
        return _install_code_refused(e)
    msg = _message(code_n)
    if dup:
        msg = "already in the Device Log: key ignored"
    await _sync(hub)
    return {"code": code_n, "message": msg, "duplicate": dup}


async def device_log_remove(hub, req):
    code_n = hub.device_log.remove(eui_arg(req))
    await _sync(hub)
    msg = "not in the Device Log" if code_n == DL.INCOMPATIBLE else _message(code_n)
    return {"code": code_n, "message": msg}


async def logs(hub, req):
    which = str_arg(req, "which", 8, "event")
    if which == "event":
        lg = hub.event_log
    elif which == "security":
        lg = hub.security_log
    else:
        raise ValueError("'which' must be event or security")
    t_from = int_arg(req, "from", 0, 0xFFFFFFFF, 0)
    t_to = int_arg(req, "to", 0, 0xFFFFFFFF, 0xFFFFFFFF)
    ent = lg.rows(t_from, t_to)
    out = []
    room = 3200  # newest first until the reply would get near 4 KB
    for i in range(len(ent) - 1, -1, -1):
        t, c, d, n = ent[i]
        room -= 2 * len(d) + 34
        if room < 0:
            break
        # a collapsed entry carries its count (docs/device-log.md)
        out.append([t, c, d.hex(), n] if n > 1 else [t, c, d.hex()])
    out.reverse()
    return {"which": which, "capacity": lg.capacity, "total": len(ent), "lost": lg.lost, "entries": out}


COMMANDS = (("device_log_list", device_log_list), ("device_log_add", device_log_add),
            ("device_log_remove", device_log_remove), ("logs", logs))
