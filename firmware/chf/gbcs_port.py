# The CHF as the rest of the hub sees it: build() makes it (identity, use
# cases) from its parts; the local-port commands of the HHT role are
# chf.gbcs_commands's:
#   identity                  -> {chf: {eui, ka_pub, ds_pub}, gpf: {...}} (hex)
#   send_gbcs {frame: hex}    -> {response: hex, alerts: [hex...]}: one
#                                pre-protected command, exactly as from the
#                                WAN; a tunnel delivery is awaited;
#                                {hht: true}: a GSME's response comes later
#                                to the HHT (route_replies), not the WAN
from chf.identity import Identity
from chf.usecases import Chf


def build(store, event_log, security_log, device_log, utc2000, versions=None, log_capacity=40):
    """-> Chf. utc2000() -> UTC seconds since 2000; versions(eui) -> the
    device's (app, stack) versions the HAN read (CCS04/05/06), or None.
    Sub GHz state and trust anchor cells load on first use (chf.subghz,
    chf.credentials)."""
    chf = Chf(Identity(store), event_log, security_log, device_log, utc2000=utc2000, store=store,
              log_capacity=log_capacity)
    if versions is not None:
        chf.versions = versions
    return chf


# Local-port commands (fn(hub, req): docs/local-port.md), in chf.gbcs_commands:
# loaded for each call and dropped after it (app.Hub.run_command: a command
# given as its module's name). A constant tuple, in flash when frozen.
COMMANDS = (("identity", "chf.gbcs_commands"), ("send_gbcs", "chf.gbcs_commands"))
