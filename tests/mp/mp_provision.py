# Provisioning on the hub's side under the real MicroPython: a committed
# record a power cut left unapplied is applied at boot by chf.identity (the
# roll-forward), once; and the installer-authentication guard's rules.
import asyncio
import os

from store import Store

from chf import prov_store as PV
from chf.identity import Identity
from gbcs import p256
from gbcs.security import _hex
import local_port as lp


def _fresh(name):
    root = "prov_" + name
    try:
        for f in os.listdir(root):
            os.remove(root + "/" + f)
    except OSError:
        pass
    return Store(root)


def _record(st, gen=1):
    """Stage files and the commit record of a run, as prov_commit leaves them."""
    rec = {"gen": gen, "at": 1, "certs": {"chf_ka": 2, "chf_ds": 2, "gpf_ka": 2, "gpf_ds": 2},
           "installer": {"id": "alice", "key": "11" * 32}}
    keys = {}
    for name, eui in (("chf", "02cb0f0000000000"), ("gpf", "02cb0f0000000001")):
        ka_d, ka_q = p256.generate()
        ds_d, ds_q = p256.generate()
        keys[name] = {"eui": eui, "ka_d": _hex(ka_d), "ka_q": _hex(ka_q), "ds_d": _hex(ds_d), "ds_q": _hex(ds_q)}
        rec[name] = {"eui": eui}
    PV.write_json(PV.stage_path(st, "keys"), keys)
    _, acb = p256.generate()
    PV.write_json(PV.stage_path(st, "anchors_chf"), [{"eui": "90b3d51f30000002", "role": "acb", "ka_pub": _hex(acb)}])
    for n in rec["certs"]:
        with open(PV.cert_path(st, n, True), "wb") as f:
            f.write(b"\x30\x82")
    return rec, keys


def test_committed_record_is_applied_at_boot():
    st = _fresh("roll")
    before = Identity(st).public()  # factory identity (random EUI)
    rec, keys = _record(st)
    st.kv("prov").set("state", rec)  # the commit happened; the power went before the apply
    st2 = Store("prov_roll")  # reboot
    ident = Identity(st2)
    assert ident.public()["chf"]["eui"] == "02cb0f0000000000" != before["chf"]["eui"]
    assert ident.public()["gpf"]["ka_pub"] == keys["gpf"]["ka_q"]
    assert ident.anchors("chf")[0]["role"] == "acb"
    assert ident.certificate("chf", "ka") == b"\x30\x82" and ident.certificate("gpf", "ds") == b"\x30\x82"
    assert not [n for n in os.listdir("prov_roll") if n.endswith(".stg")]  # applied: the stage is gone
    assert st2.kv("auth").get("installer")["id"] == "alice"
    assert PV.installer_key(st2) == b"\x11" * 32
    prov = st2.kv("prov")
    assert prov.get("applied") == 1 and "installer" not in prov.get("state")
    # applied once: a second boot changes nothing
    writes = st2.stats["kv_writes"]
    Identity(Store("prov_roll"))
    info = PV.info(Store("prov_roll"))
    assert info["provisioned"] and info["gen"] == 1 and info["chf_eui"] == "02cb0f0000000000"
    assert st2.stats["kv_writes"] == writes


def test_unprovisioned_store_is_left_alone():
    st = _fresh("blank")
    assert not PV.roll_forward(st)
    assert PV.info(st)["provisioned"] is False and PV.installer_key(st) is None


def _auth(key, clock):
    return lp.InstallerAuth(lambda: key, lambda n: b"\x5a" * n, lambda: clock[0])


def test_guard_rules():
    clock = [0]
    key = b"\x42" * 32
    auth = _auth(key, clock)
    calls = []

    async def dispatch(req):
        calls.append(req["cmd"])
        return {}

    g = lp.guard(dispatch, auth, ("status",), ("prov_begin",), ("status", "write", "prov_begin"))

    def run(req):
        return asyncio.run(g(req))

    def refused(req, words):
        try:
            run(req)
        except lp.NotAuthorised as e:
            assert words in str(e), (words, str(e))
            return
        raise AssertionError("allowed: %r" % req)

    run({"cmd": "status"})
    run({"cmd": "nope"})  # unknown: answered as unknown by dispatch
    refused({"cmd": "write"}, "needs an authenticated installer")
    refused({"cmd": "prov_begin"}, "needs an authenticated installer")  # the hub has a credential
    nonce = bytes.fromhex(run({"cmd": "auth_challenge"})["nonce"])
    try:
        run({"cmd": "auth", "mac": "00" * 32})
        raise AssertionError("wrong mac accepted")
    except lp.NotAuthorised:
        pass
    try:  # one try per challenge
        run({"cmd": "auth", "mac": lp.hmac_sha256(key, b"chub-auth", nonce).hex()})
        raise AssertionError("second answer to one challenge accepted")
    except lp.NotAuthorised:
        pass
    nonce = bytes.fromhex(run({"cmd": "auth_challenge"})["nonce"])
    run({"cmd": "auth", "mac": lp.hmac_sha256(key, b"chub-auth", nonce).hex()})
    s = lp.hmac_sha256(key, b"chub-session", nonce)
    run({"cmd": "write", "auth": [1, lp.request_tag(s, 1, "write").hex()]})
    refused({"cmd": "write", "auth": [1, lp.request_tag(s, 1, "write").hex()]}, "stale")
    refused({"cmd": "write", "auth": [2, lp.request_tag(s, 2, "other").hex()]}, "bad session tag")
    refused({"cmd": "write", "auth": [3, "zz"]}, "bad session tag")
    refused({"cmd": "write", "auth": "x"}, "session tag")
    clock[0] = lp.IDLE_S + 1  # idle too long
    refused({"cmd": "write", "auth": [4, lp.request_tag(s, 4, "write").hex()]}, "expired")
    assert calls == ["status", "nope", "write"]


def test_hmac_matches_rfc4231_case_2():
    mac = lp.hmac_sha256(b"Jefe", b"what do ya want ", b"for nothing?")
    assert mac.hex() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def test_blank_hub_lets_first_provisioning_through():
    auth = _auth(None, [0])

    async def dispatch(req):
        return {"ok": 1}

    g = lp.guard(dispatch, auth, (), ("prov_begin",))
    assert asyncio.run(g({"cmd": "prov_begin"})) == {"ok": 1}
    assert asyncio.run(g({"cmd": "auth_challenge"}))["credential"] is False
    try:
        asyncio.run(g({"cmd": "write"}))
        raise AssertionError("write on a blank hub accepted")
    except lp.NotAuthorised:
        pass


def test_roll_forward_finishes_after_a_cut_at_any_step():
    # a cut after the staged files were deleted but before "applied" was
    # written: the next boot finishes the run without undoing anything
    st = _fresh("cut")
    Identity(st)
    rec, keys = _record(st)
    st.kv("prov").set("state", rec)
    assert PV.roll_forward(st)
    ident_before = Identity(st).public()
    st.kv("prov").update({"state": rec, "applied": 0})  # as if the last write never happened
    st.kv("auth").delete("installer")
    assert PV.roll_forward(Store("prov_cut"))
    st3 = Store("prov_cut")
    assert Identity(st3).public() == ident_before
    assert PV.installer_key(st3) == b"\x11" * 32 and st3.kv("prov").get("applied") == 1
