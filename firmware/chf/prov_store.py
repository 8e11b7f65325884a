# The provisioning records on flash (docs/provisioning.md): where staged
# parts and certificates live, applying a committed record (roll_forward,
# redone at boot by chf.identity until it is applied), the installer
# credential and the summary prov_info reports.
import os

from ids import hex_bytes

# the CHF's credentials code (with its DER and P-256), loaded by apply for the
# anchor cells and dropped after it
_CRED_CODE = ("chf.credentials", "gbcs.der", "gbcs.p256")

DEVICES = ("chf", "gpf")
POP_LABEL = b"chub-prov-pop"


def pop_message(nonce, eui, ka_q, ds_q):
    """What each device's DS key signs to prove the hub holds both keys."""
    return POP_LABEL + bytes(nonce) + bytes(eui) + bytes(ka_q) + bytes(ds_q)


def link_pop_message(nonce, eui, q):
    """What the head-end link key signs at provisioning (its proof of possession)."""
    return b"chub-link-pop" + bytes(nonce) + bytes(eui) + bytes(q)


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
        link = keys.pop("link", None)  # the head-end link's key (wan.linkcred): KV "link"
        if link is not None:
            store.kv("link", keep=False).set("key", link)
        store.kv("identity").update(keys)
    for dev in DEVICES:
        a = read_json(stage_path(store, "anchors_" + dev))
        if a is None:
            continue
        # Identity keeps what gbcs.security needs (as set_anchors does); the
        # public keys and SKIs of every cell go to the CHF's anchor cells
        store.kv("anchors").set(dev, [{"eui": x["eui"], "role": x["role"], "ka_pub": x.get("ka_pub")} for x in a])
        if dev == "chf":
            import lazy

            b = lazy.borrow(*_CRED_CODE)  # its code goes after (a module held before stays)
            try:
                from chf.credentials import Credentials
            except ImportError:
                Credentials = None
            try:
                if Credentials is not None:
                    # the CHF's trust anchor cells (CS02a/b) start from the same anchors
                    Credentials(store, None).provision(a)
                    Credentials = None
            finally:
                lazy.give_back(b)
    for name in st["certs"]:
        try:
            os.rename(cert_path(store, name, staged=True), cert_path(store, name))
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
    return hex_bytes(k) if k else None


def installer_key(store):
    """The hub's installer credential: the provisioned one, else the board's
    factory one, else None."""
    rec = store.kv("auth", keep=False).get("installer")
    if rec:
        return hex_bytes(rec["key"])
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


# --- first boot: the identity (chf.identity) -------------------------------


def _new_eui(rand):
    # a random, locally administered, unicast EUI-64 for the CHF; the GPF
    # takes the next value (CHF ...A2 / GPF ...A3 in the RTDS)
    b = bytearray(rand(8))
    b[0] = (b[0] | 0x02) & 0xFE
    if b[7] == 0xFF:
        b[7] = 0xFE
    return bytes(b)


def generate_identity(kv, rand, eui):
    """First boot (chf.identity): the CHF's EUI-64 (`eui`, else a random
    one) and the GPF's next to it, a KA and a DS key pair each, into KV
    "identity" in one commit."""
    import lazy
    from ids import hex_text
    from log import KindError

    chf = bytes(eui) if eui is not None else _new_eui(rand)
    if len(chf) != 8:
        raise KindError("IdentityError", "EUI-64 must be 8 bytes")
    gpf = chf[:7] + bytes(((chf[7] + 1) & 0xFF,))
    recs = {}
    b = lazy.borrow("gbcs.p256")  # P-256 goes after unless something held it before
    try:
        p256 = lazy.load("gbcs.p256")
        for name, e in (("chf", chf), ("gpf", gpf)):
            ka_d, ka_q = p256.generate(rand)
            ds_d, ds_q = p256.generate(rand)
            recs[name] = {
                "eui": hex_text(e),
                "ka_d": hex_text(ka_d),
                "ka_q": hex_text(ka_q),
                "ds_d": hex_text(ds_d),
                "ds_q": hex_text(ds_q),
            }
        p256 = None
    finally:
        lazy.give_back(b)
    kv.update(recs)  # one atomic commit: both or neither
