# The provisioning steps (docs/provisioning.md; the protocol is described in
# chf/provision.py, which loads this module on the first prov_* command so
# that a provisioned hub never holds it in its heap).
import os

from chf.prov_store import (
    DEVICES, cert_path, discard_staged, link_pop_message, pop_message, roll_forward, stage_path, write_json,
)
from gbcs import p256
from ids import hex_bytes, hex_text
from gbcs.security import ROLES

USAGES = ("ka", "ds")
MAX_CERT = 1200  # DER bytes


class ProvisionError(ValueError):
    pass


class Provisioning:
    def __init__(self, store, identity, chf, rand=os.urandom, utc=None):
        self.store = store
        self.identity = identity
        self.chf = chf
        self.rand = rand
        self.utc = utc
        self.kv = self.store.kv("prov", keep=False)
        self.stage_kv = self.store.kv("prov_stage", keep=False)

    # --- steps ----------------------------------------------------------------
    def begin(self, req):
        st = self.kv.get("state")
        if st is not None and not req.get("force"):
            raise ProvisionError("already provisioned (generation %d, CHF %s): re-provisioning needs force"
                                 % (st["gen"], st["chf"]["eui"]))
        chf = _eui(req, "chf_eui")
        gpf = _eui(req, "gpf_eui")
        if chf == gpf:
            raise ProvisionError("the CHF and GPF need different EUI-64s")
        nonce = _bytes(req, "nonce", 16, 32)
        gen = (st["gen"] if st else 0) + 1
        self.stage_kv.delete("stage")
        discard_staged(self.store)
        stage = {"gen": gen, "certs": {}, "anchors": [], "installer": None}
        keys = {}
        out = {"gen": gen}
        for name, eui in (("chf", chf), ("gpf", gpf)):
            ka_d, ka_q = p256.generate(self.rand)
            ds_d, ds_q = p256.generate(self.rand)
            keys[name] = {"eui": hex_text(eui), "ka_d": hex_text(ka_d), "ka_q": hex_text(ka_q),
                          "ds_d": hex_text(ds_d), "ds_q": hex_text(ds_q)}
            stage[name] = {"eui": hex_text(eui), "ka_q": hex_text(ka_q), "ds_q": hex_text(ds_q)}
            pop = p256.sign(ds_d, pop_message(nonce, eui, ka_q, ds_q))
            out[name] = {"eui": hex_text(eui), "ka_pub": hex_text(ka_q), "ds_pub": hex_text(ds_q), "pop": hex_text(pop)}
        # the head-end link's TLS key (KV "link", wan.linkcred): applied with the rest
        link_d, link_q = p256.generate(self.rand)
        keys["link"] = {"d": hex_text(link_d), "q": hex_text(link_q)}
        stage["link_q"] = hex_text(link_q)
        out["link"] = {"pub": hex_text(link_q), "pop": hex_text(p256.sign(link_d, link_pop_message(nonce, chf, link_q)))}
        write_json(stage_path(self.store, "keys"), keys)
        self.stage_kv.set("stage", stage)
        return out

    def _stage(self, req):
        stage = self.stage_kv.get("stage")
        if stage is None:
            raise ProvisionError("nothing staged: prov_begin first")
        if req.get("gen") != stage["gen"]:
            raise ProvisionError("stale provisioning run (generation %r, staged %d)" % (req.get("gen"), stage["gen"]))
        return stage

    def stage(self, req):
        stage = dict(self._stage(req))
        if "cert" in req:
            c = req["cert"]
            link = isinstance(c, dict) and c.get("device") == "chf" and c.get("usage") == "link"
            if not isinstance(c, dict) or c.get("device") not in DEVICES or c.get("usage") not in USAGES and not link:
                raise ProvisionError("cert needs device chf|gpf and usage ka|ds (or chf and link)")
            der = _unhex_arg(c.get("der"), "cert der")
            if not 64 < len(der) <= MAX_CERT or der[0] != 0x30:
                raise ProvisionError("cert is not a DER certificate of at most %d bytes" % MAX_CERT)
            dev = stage[c["device"]]
            # the certificate must carry this run's public key and the EUI-64
            q = stage.get("link_q") if link else dev[c["usage"] + "_q"]
            if q is None or hex_bytes(q) not in der or hex_bytes(dev["eui"]) not in der:
                raise ProvisionError("%s %s certificate is not for the staged key and EUI-64" % (c["device"], c["usage"]))
            name = c["device"] + "_" + c["usage"]
            with open(cert_path(self.store, name, staged=True), "wb") as f:
                f.write(der)
            certs = dict(stage["certs"])
            certs[name] = len(der)
            stage["certs"] = certs
        elif "anchors" in req:
            dev = req.get("device")
            if dev not in DEVICES:
                raise ProvisionError("anchors need device chf|gpf")
            lst = _anchors(req["anchors"])
            if dev == "chf" and not lst:
                raise ProvisionError("the CHF needs trust anchors")
            write_json(stage_path(self.store, "anchors_" + dev), lst)
            if dev not in stage["anchors"]:
                stage["anchors"] = stage["anchors"] + [dev]
        elif "link_anchor" in req:
            # the head-end link CA: the only anchor the hub accepts the head-end by
            der = _unhex_arg(req["link_anchor"], "link_anchor")
            if not 64 < len(der) <= MAX_CERT or der[0] != 0x30:
                raise ProvisionError("link_anchor is not a DER certificate of at most %d bytes" % MAX_CERT)
            with open(cert_path(self.store, "link_anchor", True), "wb") as f:
                f.write(der)
            certs = dict(stage["certs"])
            certs["link_anchor"] = len(der)
            stage["certs"] = certs
        elif "installer" in req:
            i = req["installer"]
            if not isinstance(i, dict) or not isinstance(i.get("id"), str) or not 0 < len(i["id"]) <= 32:
                raise ProvisionError("installer needs an id of 1-32 characters")
            key = _unhex_arg(i.get("key"), "installer key")
            if len(key) != 32:
                raise ProvisionError("installer key must be 32 bytes")
            stage["installer"] = {"id": i["id"], "key": hex_text(key)}
        else:
            raise ProvisionError("prov_stage needs cert, anchors, link_anchor or installer")
        self.stage_kv.set("stage", stage)
        return {"gen": stage["gen"], "missing": _missing(stage)}

    def commit(self, req):
        stage = self._stage(req)
        missing = _missing(stage)
        if missing:
            raise ProvisionError("cannot commit, missing: " + ", ".join(missing))
        rec = {"gen": stage["gen"], "at": self.utc() if self.utc else None, "chf": {"eui": stage["chf"]["eui"]},
               "gpf": {"eui": stage["gpf"]["eui"]}, "certs": stage["certs"], "installer": stage["installer"]}
        self.kv.set("state", rec)  # THE commit: one atomic write
        self.stage_kv.delete("stage")
        out = {"gen": rec["gen"], "chf_eui": rec["chf"]["eui"], "gpf_eui": rec["gpf"]["eui"], "applied": True}
        try:
            roll_forward(self.store)
        except MemoryError:
            import gc

            gc.collect()
            try:
                roll_forward(self.store)  # idempotent: goes on where it stopped
            except MemoryError:
                # committed: the next boot applies it before anything else
                out["applied"] = False
                return out
        self._reload()
        return out

    def abort(self):
        discard_staged(self.store)
        return {"discarded": self.stage_kv.delete("stage")}

    def _reload(self):
        self.identity.reload()
        self.chf.parties = self.identity.parties("chf")


def _missing(stage):
    out = [n + "_" + u + " certificate" for n in DEVICES for u in USAGES if n + "_" + u not in stage["certs"]]
    for name, what in (("chf_link", "head-end link certificate"), ("link_anchor", "head-end link anchor")):
        if name not in stage["certs"]:
            out.append(what)
    if "chf" not in stage["anchors"]:
        out.append("CHF trust anchors")
    if not stage.get("installer"):
        out.append("installer credential")
    return out


def _unhex_arg(v, what):
    if not isinstance(v, str):
        raise ProvisionError("%s must be a hex string" % what)
    try:
        return hex_bytes(v)
    except ValueError:
        raise ProvisionError("%s is not hex" % what)


def _bytes(req, name, lo, hi):
    b = _unhex_arg(req.get(name), name)
    if not lo <= len(b) <= hi:
        raise ProvisionError("%s must be %d-%d bytes" % (name, lo, hi))
    return b


def _eui(req, name):
    b = _bytes(req, name, 8, 8)
    if b[0] & 0x01:
        raise ProvisionError("%s is a group address" % name)
    return b


def _anchors(lst):
    if not isinstance(lst, list):
        raise ProvisionError("anchors must be lists")
    out = []
    for a in lst:
        try:
            eui = hex_bytes(a["eui"])
            role = a["role"]
            ka = a.get("ka_pub")
            if len(eui) != 8 or role not in ROLES:
                raise ValueError("bad EUI-64 or role")
            if ka:
                p256.decode_point(hex_bytes(ka))
        except (KeyError, TypeError, ValueError) as e:
            raise ProvisionError("bad trust anchor %r: %s" % (a, e))
        rec = {"eui": hex_text(eui), "role": role, "ka_pub": ka.lower() if ka else None}
        for k in ("ka_ski", "ds_pub", "ds_ski"):
            v = a.get(k)
            if v:
                try:
                    hex_bytes(v)
                except ValueError:
                    raise ProvisionError("bad trust anchor %s: %s is not hex" % (a.get("eui"), k))
                rec[k] = v.lower()
        if rec.get("ds_pub"):
            try:
                p256.decode_point(hex_bytes(rec["ds_pub"]))
            except ValueError as e:
                raise ProvisionError("bad trust anchor %s: %s" % (a.get("eui"), e))
        out.append(rec)
    return out


