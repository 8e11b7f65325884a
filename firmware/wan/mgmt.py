# The management channel on the head-end link (docs/headend-link.md,
# "Remote management"): the head-end sends MGMT frames, each a JSON request
# {cmd, ...args}; the hub answers MGMT_REPLY with the same id and
# {status, result | error} (the local port's status numbers). The requests
# run the local-port command functions themselves (fn(hub, req), handed by
# the wiring), so a setting has one schema, one check and one store for the
# installer and the head-end.
#
# Authorisation, on top of the link's mutual TLS (only a head-end whose
# certificate chains to the link anchor reaches this): the channel serves
# only ALLOWED commands, only while the setting `remote_mgmt` is true (set on
# the local port only), and wan_config refuses the settings in
# wan.local_commands._LOCAL_ONLY from it. Every request is written to the
# transaction log (`mgmt` with the command, or `mgmt_refused` with why).
import json

from log import log, log_exc
from wan.commands import HEADEND

ALLOWED = ("wan_config", "wan_status", "transactions", "logs", "device_log_list")

_OK = 0
_UNKNOWN_COMMAND = 4
_BAD_ARGS = 5
_NOT_AUTHORISED = 6
_INTERNAL = 7
_MAX_REPLY = 4000  # a link frame's payload is at most 4096 bytes


class Channel:
    """Channel(hub, commands, settings, txlog): commands holds the local-port
    commands' names (hub.commands; hub.run_command(cmd, req) runs one, its
    module loaded if it is one loaded on first use); settings (wan.settings.WanSettings) says
    whether `remote_mgmt` is on. await channel(payload) -> reply bytes."""

    def __init__(self, hub, commands, settings, txlog):
        self.hub = hub
        self.commands = commands
        self.settings = settings
        self.tx = txlog

    def _refuse(self, fid, status, why):
        self.tx.add("mgmt_refused", fid, why)
        log("wan", "management request %d refused: %s" % (fid, why))
        return json.dumps({"status": status, "error": why}).encode()

    async def __call__(self, fid, payload):
        try:
            req = json.loads(str(bytes(payload), "utf-8"))
        except (ValueError, UnicodeError):
            return self._refuse(fid, _BAD_ARGS, "request is not JSON")
        cmd = req.get("cmd") if isinstance(req, dict) else None
        if not isinstance(cmd, str):
            return self._refuse(fid, _BAD_ARGS, "request is not a JSON object with a string 'cmd'")
        if not self.settings["remote_mgmt"]:
            return self._refuse(fid, _NOT_AUTHORISED, "remote management is off (remote_mgmt)")
        fn = self.commands.get(cmd) if cmd in ALLOWED else None
        if fn is None:
            return self._refuse(fid, _UNKNOWN_COMMAND, "not a management command: %s" % cmd[:24])
        for k in req:
            if k.startswith("_"):
                return self._refuse(fid, _BAD_ARGS, "argument %s not allowed" % k[:24])
        req["_from"] = HEADEND
        try:
            res = await self.hub.run_command(cmd, req)  # loads a command's module if it is not (app.Hub)
            out = json.dumps({"status": _OK, "result": res}).encode()
        except (ValueError, TypeError, KeyError) as e:
            return self._refuse(fid, _BAD_ARGS, str(e) or type(e).__name__)
        except Exception as e:  # noqa: BLE001 - a fault in the hub: answered, not fatal to the link
            log_exc("wan", e)
            return self._refuse(fid, _INTERNAL, "internal error: %s" % type(e).__name__)
        if len(out) > _MAX_REPLY:
            return self._refuse(fid, _INTERNAL, "reply of %d bytes is too long" % len(out))
        self.tx.add("mgmt", fid, cmd)
        return out
