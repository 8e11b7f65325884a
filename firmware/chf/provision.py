# Provisioning (docs/provisioning.md): the laptop (`chub provision`) gives the
# hub its CHF and GPF EUI-64s, the hub makes new KA and DS key pairs on the
# device and returns only the public keys (with a proof of possession signed
# by each DS key), the laptop returns certificates, the remote-party trust
# anchors and the installer credential, and one commit makes it all true.
#
# Transactional: everything is staged (KV "prov_stage" for the small parts,
# *.stg files for the private keys, anchors and certificates, so the heap
# never holds one big record); a new begin or a reboot before the commit
# throws the stage away: the hub stays as it was. The commit is ONE atomic
# KV write (KV "prov" key "state"); applying the staged parts to the
# identity, anchors and credential KVs is idempotent and is redone at boot
# (roll_forward, called by chf.identity) until KV "prov" says "applied".
# Private keys never leave the device.
#
# Local-port commands:
#   prov_info                       open: {provisioned, gen, chf_eui, gpf_eui, staged, credential}
#   prov_begin {chf_eui, gpf_eui, nonce, force?}
#                                   -> {gen, chf: {eui, ka_pub, ds_pub, pop}, gpf: {...}}
#   prov_stage {gen, cert: {device, usage, der}} | {gen, device, anchors: [...]}
#              | {gen, installer: {id, key}}
#   prov_commit {gen}               -> {gen, chf_eui, gpf_eui}
#   prov_abort
#   link_info                       -> {pub, cert, anchor, fingerprint}: the head-end link's key and certificate
#   link_cert {cert, anchor}        a new link certificate (for the current link key and the CHF EUI-64)
#                                   and link anchor (hex DER); the WAN reconnects with them
# The provisioning commands need an authenticated installer, except while the
# hub has no installer credential at all (a factory-blank board).
import os
from micropython import const

import lazy
from local_port import InstallerAuth, guard

# chf.prov_store (the staged parts, the installer credential, prov_info) is
# loaded for each use and dropped after (firmware/lazy.py): the hub does not
# hold it between installer sessions
_PS = "chf.prov_store"

# commands anyone on the local port may use: no personal data, no change
_OPEN = const(("status", "identity", "han_status", "wan_status", "prov_info", "version"))
# ... and these too while the hub has no installer credential (a factory-blank board)
_FIRST = const(("prov_begin", "prov_stage", "prov_commit", "prov_abort"))


def installer_auth(store, security_log=None, event_log=None):
    """The installer-authentication state for the local port's guard (its
    failures go to the security log, its sessions to the event log). A
    provisioning run that never committed is thrown away here: the hub stays
    as it was."""
    from mono import ms as now_ms  # milliseconds since boot, right across the ticks wrap

    stage = store.kv("prov_stage", keep=False)  # these records are read by rare commands: no RAM copy
    if "stage" in stage:
        stage.delete("stage")
    try:
        lazy.load(_PS).discard_staged(store)
    finally:
        lazy.drop(_PS)  # chf.identity's roll_forward loaded it at boot too

    def key():
        try:
            return lazy.load(_PS).installer_key(store)
        finally:
            lazy.drop(_PS)

    return InstallerAuth(key, os.urandom, now_ms, security_log, event_log)


def guarded(dispatch, auth, commands):
    """dispatch wrapped by the installer guard (local_port.guard)."""
    return guard(dispatch, auth, _OPEN, _FIRST, commands)


# Local-port commands (fn(hub, req): docs/local-port.md), in chf.prov_commands:
# loaded for each call and dropped after it (app.Hub.run_command: a command
# given as its module's name). A constant tuple, in flash when frozen.
COMMANDS = (("console_release", "chf.prov_commands"), ("prov_info", "chf.prov_commands"),
            ("prov_begin", "chf.prov_commands"), ("prov_stage", "chf.prov_commands"),
            ("prov_commit", "chf.prov_commands"), ("prov_abort", "chf.prov_commands"),
            ("link_info", "chf.prov_commands"), ("link_cert", "chf.prov_commands"))
