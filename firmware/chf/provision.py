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
# Local-port commands (installed by install(hub)):
#   prov_info                       open: {provisioned, gen, chf_eui, gpf_eui, staged, credential}
#   prov_begin {chf_eui, gpf_eui, nonce, force?}
#                                   -> {gen, chf: {eui, ka_pub, ds_pub, pop}, gpf: {...}}
#   prov_stage {gen, cert: {device, usage, der}} | {gen, device, anchors: [...]}
#              | {gen, installer: {id, key}}
#   prov_commit {gen}               -> {gen, chf_eui, gpf_eui}
#   prov_abort
# The provisioning commands need an authenticated installer, except while the
# hub has no installer credential at all (a factory-blank board).
import os

from gbcs.security import _unhex
from local_port import InstallerAuth, guard

DEVICES = ("chf", "gpf")
POP_LABEL = b"chub-prov-pop"

# commands anyone on the local port may use: no personal data, no change
OPEN = ("status", "identity", "han_status", "wan_status", "prov_info", "version")
FIRST = ("prov_begin", "prov_stage", "prov_commit", "prov_abort")


def pop_message(nonce, eui, ka_q, ds_q):
    """What each device's DS key signs to prove the hub holds both keys."""
    return POP_LABEL + bytes(nonce) + bytes(eui) + bytes(ka_q) + bytes(ds_q)


def cert_path(store, name, staged=False):
    """A certificate (DER) in the store's folder: cert_<device>_<usage>.der,
    .stg while staged (kept out of the KVs: the heap never holds them all)."""
    return "%s/cert_%s.%s" % (store.root, name, "stg" if staged else "der")


def stage_path(store, part):
    """A staged part of a run: prov_keys.stg (the private keys), prov_anchors_chf.stg, ..."""
    return "%s/prov_%s.stg" % (store.root, part)


def read_json(path):
    import json

    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        return None


def write_json(path, obj):
    import json

    with open(path, "w") as f:
        json.dump(obj, f)


def discard_staged(store):
    """Remove every staged file (certificates, keys, anchors)."""
    for n in os.listdir(store.root):
        if n.endswith(".stg"):
            os.remove(store.root + "/" + n)


def roll_forward(store):
    """Apply a committed provisioning record that was not (fully) applied.
    Each step is redone until the staged files it reads are deleted, which
    happens only after every step: idempotent across power cuts."""
    pkv = store.kv("prov", keep=False)
    st = pkv.get("state")
    if st is None or pkv.get("applied") == st["gen"]:
        return False
    keys = read_json(stage_path(store, "keys"))
    if keys is not None:
        store.kv("identity").update(keys)
    for dev in DEVICES:
        a = read_json(stage_path(store, "anchors_" + dev))
        if a is None:
            continue
        # Identity keeps what gbcs.security needs (as set_anchors does); the
        # public keys and SKIs of every cell go to the CHF's anchor cells
        store.kv("anchors").set(dev, [{"eui": x["eui"], "role": x["role"], "ka_pub": x.get("ka_pub")} for x in a])
        if dev == "chf":
            try:
                from chf.credentials import Credentials
            except ImportError:
                Credentials = None
            if Credentials is not None:
                # the CHF's trust anchor cells (CS02a/b) start from the same anchors
                Credentials(store, None).provision(a)
    for name in st["certs"]:
        try:
            os.rename(cert_path(store, name, True), cert_path(store, name))
        except OSError:
            pass  # renamed before a power cut: the certificate is in place
    store.kv("auth", keep=False).set("installer", st["installer"])
    for part in ("keys", "anchors_chf", "anchors_gpf"):
        try:
            os.remove(stage_path(store, part))
        except OSError:
            pass
    # the applied record keeps what the hub reports, not the credential
    pub = {"gen": st["gen"], "at": st.get("at"), "installer_id": st["installer"]["id"],
           "chf": st["chf"], "gpf": st["gpf"]}
    pkv.update({"applied": st["gen"], "state": pub})
    return True


def factory_key():
    """The board's factory installer credential (the emulated board has a test
    one in its config; a real board has none until provisioned)."""
    try:
        import board

        cfg = board.config() if hasattr(board, "config") else None
    except (ImportError, OSError):
        return None
    k = cfg.get("installer_key") if isinstance(cfg, dict) else None
    return _unhex(k) if k else None


def installer_key(store):
    """The hub's installer credential: the provisioned one, else the board's
    factory one, else None."""
    rec = store.kv("auth", keep=False).get("installer")
    if rec:
        return _unhex(rec["key"])
    return factory_key()


def info(store):
    st = store.kv("prov", keep=False).get("state")
    out = {"provisioned": st is not None, "gen": st["gen"] if st else 0,
           "staged": "stage" in store.kv("prov_stage", keep=False), "credential": installer_key(store) is not None}
    if st:
        out["chf_eui"] = st["chf"]["eui"]
        out["gpf_eui"] = st["gpf"]["eui"]
        out["installer_id"] = st.get("installer_id")
        out["at"] = st.get("at")
    return out


def _board():
    try:
        import board

        return board
    except ImportError:  # tests with a Hub-like object
        return None


# The commands: module functions fn(hub, req), so the hub holds no closure
# (and no cells) per command.

def _prov(hub):
    p = getattr(hub, "provisioning", None)  # chf.provision_steps.Provisioning while a run is open
    if p is None:
        from chf.provision_steps import Provisioning

        board = _board()
        p = hub.provisioning = Provisioning(hub, utc=board.utc if board is not None else None)
    return p


async def prov_info(hub, req):
    return info(hub.store)


async def prov_begin(hub, req):
    return _prov(hub).begin(req)


async def prov_stage(hub, req):
    return _prov(hub).stage(req)


async def prov_commit(hub, req):
    res = _prov(hub).commit(req)
    hub.installer_auth.end()  # the credential changed: the next request authenticates anew
    hub.provisioning = None  # done: the steps module's objects can go
    return res


async def prov_abort(hub, req):
    return _prov(hub).abort()


async def console_release(hub, req):
    # installer only: stop the hub and leave the console to the REPL so
    # that `chub flash` can copy a new app (boards with a REPL console)
    import asyncio

    board = _board()
    fn = getattr(board, "release_console", None) if board is not None else None
    if fn is None:
        raise ValueError("this board's console is not shared with a REPL")

    async def later():
        await asyncio.sleep_ms(200)  # the reply leaves first
        fn()

    asyncio.create_task(later())
    return {"released": True}


def install(hub):
    """Provisioning commands + the installer-authentication guard around
    hub.dispatch (which Hub.local_port serves)."""
    board = _board()
    if board is not None:
        def now_s():
            return board.ticks_ms() // 1000
    else:
        import time

        def now_s():
            return int(time.time())

    store = hub.store
    stage = store.kv("prov_stage", keep=False)  # these records are read by rare commands: no RAM copy
    if "stage" in stage:
        stage.delete("stage")  # a run that never committed: the hub stays as it was
    discard_staged(store)

    def key():
        return installer_key(store)

    auth = InstallerAuth(key, os.urandom, now_s)
    hub.installer_auth = auth
    hub.commands["console_release"] = console_release
    hub.commands["prov_info"] = prov_info
    hub.commands["prov_begin"] = prov_begin
    hub.commands["prov_stage"] = prov_stage
    hub.commands["prov_commit"] = prov_commit
    hub.commands["prov_abort"] = prov_abort
    hub.dispatch = guard(hub.dispatch, auth, OPEN, FIRST, hub.commands)
