# Local-port commands of the WAN (fn(hub, req): docs/local-port.md):
#   wan_status, wan_config {set: {...}}, transactions {before?}
# in wan.local_commands: loaded for each call and dropped after it
# (app.Hub.run_command: a command given as its module's name). The settings
# and the transaction log belong to the WAN service, so wan_config and
# transactions answer also before the job's session runs.

# req["_from"] of a request that came over the head-end's management channel
# (wan.mgmt, loaded on first use: the marker lives here, with the hub for
# good); no JSON value is it, so req.get("_from") is HEADEND tells a request
# of the channel
HEADEND = object()

# a constant tuple, in flash when frozen
COMMANDS = (("wan_status", "wan.local_commands"), ("wan_config", "wan.local_commands"),
            ("transactions", "wan.local_commands"))
