# The CHF and GPF identities: EUI-64s, key-agreement (KA) and digital-signing
# (DS) P-256 key pairs generated on the device at first boot (chf.prov_store) and persisted in
# the store (KV "identity"), and the remote-party trust anchors each accepts
# (KV "anchors"). Nothing here leaves the device except public keys.
# `chub provision` (chf/provision.py) replaces the EUI-64s and key pairs with
# ones made on the device for certificates from the installer's CA; a
# committed provisioning record is applied here at boot if it was not yet.
import os

from ids import hex_bytes, hex_text
from log import KindError
from gbcs.security import RemoteParties

DEVICES = ("chf", "gpf")


class Identity:
    """Identity(store, rand=os.urandom, eui=None).

    chf / gpf: dicts with "eui" and "ka_d" (bytes), used with every
    command; key(name, k) -> any of "eui", "ka_d", "ka_q", "ds_d", "ds_q"
    (bytes; the last three read from KV "identity" at each use: the public
    keys and the signing keys serve rare requests).
    parties(name) -> the RemoteParties of that device (trust anchors loaded,
    counters in KV "sec_<name>")."""

    def __init__(self, store, rand=os.urandom, eui=None):
        from chf import prov_store  # dropped by chf.provision.installer_auth

        self.store = store
        prov_store.roll_forward(store)  # a provisioning commit a power cut left unapplied
        # KV "identity" (the devices dicts hold what is used) and "anchors"
        # (read when a device's parties load): cold stores (no RAM copy), a
        # KV object made at each use
        kv = store.kv("identity", keep=False)
        if "chf" not in kv:
            prov_store.generate_identity(kv, rand, eui)  # first boot
        self.chf = {}
        self.gpf = {}
        self.reload()

    def reload(self):
        """Re-read the records (after provisioning; every key checked); the
        device dicts are updated in place, so holders of identity.chf see
        the new values."""
        kv = self.store.kv("identity", keep=False)
        for name in DEVICES:
            rec = kv.get(name)
            try:
                new = [(k, hex_bytes(rec[k])) for k in ("eui", "ka_d", "ka_q", "ds_d", "ds_q")]
            except (AttributeError, KeyError, ValueError, TypeError):
                raise KindError("IdentityError", "identity record %s is damaged" % name)
            d = self.chf if name == "chf" else self.gpf
            d.clear()
            for k, v in new[:2]:  # "eui", "ka_d": held
                d[k] = v
        self._parties = {}

    def key(self, name, k):
        """The device's key `k` (bytes): "eui" and "ka_d" as held, "ka_q",
        "ds_d" and "ds_q" from KV "identity" (a damaged record: IdentityError)."""
        d = self.chf if name == "chf" else self.gpf
        v = d.get(k)
        if v is None:
            try:
                v = hex_bytes(self.store.kv("identity", keep=False).get(name)[k])
            except (AttributeError, KeyError, ValueError, TypeError):
                raise KindError("IdentityError", "identity record %s is damaged" % name)
        return v

    # the public keys as the identity command gives them: chf.gbcs_commands.public
    # --- trust anchors ------------------------------------------------------

    def anchors(self, name="chf"):
        """[{eui, role, ka_pub}] (hex) stored for a device."""
        return list(self.store.kv("anchors", keep=False).get(name, []))

    def set_anchors(self, anchors, name="chf"):
        """Replace the device's trust anchors: [{eui, role, ka_pub}] hex."""
        if name not in DEVICES:
            raise KindError("IdentityError", "unknown device %r" % name)
        d = self.chf if name == "chf" else self.gpf
        rp = RemoteParties(d["eui"], d["ka_d"], self.store.kv("sec_" + name))
        clean = []
        for a in anchors:
            try:
                eui, role, ka = hex_bytes(a["eui"]), a["role"], a.get("ka_pub")
                rp.add_anchor(eui, role, hex_bytes(ka) if ka else None)
            except (KeyError, TypeError, ValueError) as e:
                raise KindError("IdentityError", "bad trust anchor %r: %s" % (a, e))
            clean.append({"eui": hex_text(eui), "role": role, "ka_pub": ka.lower() if ka else None})
        self.store.kv("anchors", keep=False).set(name, clean)
        self._parties[name] = rp

    def parties(self, name="chf"):
        rp = self._parties.get(name)
        if rp is None:
            d = self.chf if name == "chf" else self.gpf
            rp = RemoteParties(d["eui"], d["ka_d"], self.store.kv("sec_" + name))
            for a in self.store.kv("anchors", keep=False).get(name, []):
                ka = a.get("ka_pub")
                rp.add_anchor(hex_bytes(a["eui"]), a["role"], hex_bytes(ka) if ka else None)
            self._parties[name] = rp
        return rp
