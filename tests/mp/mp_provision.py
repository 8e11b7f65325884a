# Provisioning on the hub's side under the real MicroPython: a committed
# record a power cut left unapplied is applied at boot by chf.identity (the
# roll-forward), once; and the installer-authentication guard's rules.
import asyncio
import os

from store import Store

from chf import prov_store as PV
from chf import gbcs_commands
from chf.identity import Identity
from gbcs import p256
from ids import hex_text as _hex
import local_auth as la
import local_port as lp
from gbcs.p256 import hmac_sha256


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
    before = gbcs_commands.public(Identity(st))  # factory identity (random EUI)
    rec, keys = _record(st)
    st.kv("prov").set("state", rec)  # the commit happened; the power went before the apply
    st2 = Store("prov_roll")  # reboot
    ident = Identity(st2)
    assert gbcs_commands.public(ident)["chf"]["eui"] == "02cb0f0000000000" != before["chf"]["eui"]
    assert gbcs_commands.public(ident)["gpf"]["ka_pub"] == keys["gpf"]["ka_q"]
    assert ident.anchors("chf")[0]["role"] == "acb"
    for n in ("chf_ka", "gpf_ds"):  # the DER certificates from provisioning, in place
        with open(PV.cert_path(st2, n), "rb") as f:
            assert f.read() == b"\x30\x82"
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


def _auth(key, clock, sec=None, ev=None):
    return lp.InstallerAuth(lambda: key, lambda n: b"\x5a" * n, lambda: clock[0], sec, ev)


def _tagged(s, n, req):
    req = dict(req)
    req["auth"] = [n, la.request_tag(s, n, req).hex()]
    return req


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
        run({"cmd": "auth", "mac": hmac_sha256(key, b"chub-auth", nonce).hex()})
        raise AssertionError("second answer to one challenge accepted")
    except lp.NotAuthorised:
        pass
    clock[0] += la.BACKOFF_MS  # the back-off after the wrong answer
    nonce = bytes.fromhex(run({"cmd": "auth_challenge"})["nonce"])
    run({"cmd": "auth", "mac": hmac_sha256(key, b"chub-auth", nonce).hex()})
    s = hmac_sha256(key, b"chub-session", nonce)
    run(_tagged(s, 1, {"cmd": "write"}))
    refused(_tagged(s, 1, {"cmd": "write"}), "stale")
    refused({"cmd": "write", "auth": [2, la.request_tag(s, 2, {"cmd": "other"}).hex()]}, "bad session tag")
    refused({"cmd": "write", "auth": [3, "zz"]}, "bad session tag")
    refused({"cmd": "write", "auth": "x"}, "session tag")
    clock[0] += la.IDLE_MS + 1  # idle too long
    refused(_tagged(s, 4, {"cmd": "write"}), "expired")
    assert calls == ["status", "nope", "write"]


def _session(g, key):
    nonce = bytes.fromhex(asyncio.run(g({"cmd": "auth_challenge"}))["nonce"])
    asyncio.run(g({"cmd": "auth", "mac": hmac_sha256(key, b"chub-auth", nonce).hex()}))
    return hmac_sha256(key, b"chub-session", nonce)


def _refused(g, req, words):
    try:
        asyncio.run(g(req))
    except lp.NotAuthorised as e:
        assert words in str(e), (words, str(e))
        return
    raise AssertionError("allowed: %r" % req)


def test_tag_covers_every_argument():
    """A tagged request with any argument changed, added or removed is
    refused (the tag covers the canonical request), and logged."""
    from chf.logs import EventLog
    from codes import EV_AUTH_FAILED

    sec = EventLog(_fresh("tag"), "security", 40, utc=lambda: 100)
    key = b"\x42" * 32
    calls = []

    async def dispatch(req):
        calls.append(req)
        return {}

    g = lp.guard(dispatch, _auth(key, [0], sec), (), (), None)
    s = _session(g, key)
    req = {"cmd": "device_log_add", "eui": "00DB1234567890A0", "type": 1, "install_code": "11" * 18,
           "set": {"b": [1, "x\u00e9\"\n"], "a": None, "c": True}}
    good = _tagged(s, 1, req)
    for k, v in (("eui", "00DB1234567890A1"), ("type", 2), ("install_code", "22" * 18), ("extra", 1),
                 ("set", {"b": [1, "x"], "a": None, "c": True}), ("set", {"b": [1, "x\u00e9\"\n"], "a": 0, "c": True})):
        forged = dict(good)
        forged[k] = v
        _refused(g, forged, "bad session tag")
    forged = dict(good)
    del forged["type"]
    _refused(g, forged, "bad session tag")
    assert calls == []
    asyncio.run(g(good))
    assert calls == [good]
    assert [e[1:] for e in sec.entries()][0] == (EV_AUTH_FAILED, b"tag")
    assert sum(r[3] for r in sec.rows()) == 7  # every forgery counted, collapsed into one entry
    try:  # a float cannot be put in canonical form: refused as a bad argument
        req = _tagged(s, 3, {"cmd": "x"})
        req["v"] = 1.5
        asyncio.run(g(req))
        raise AssertionError("float accepted")
    except (ValueError, TypeError, lp.NotAuthorised):
        pass


def test_canonical_form():
    assert la.canonical({"cmd": "a", "auth": [1, "x"], "z": [1, True, None], "b": {"y": "\u00e9\\\"\x01", "x": -5}}) == (
        b'{"b":{"x":-5,"y":"\xc3\xa9\\\\\\"\\u0001"},"cmd":"a","z":[1,true,null]}')
    try:
        la.canonical({"cmd": "a", "f": 0.5})
        raise AssertionError("float accepted")
    except ValueError:
        pass


def _cjk(i):
    # a character no module names (U+4E00 + i), made without interning it
    return bytes((0xE4, 0xB8, 0x80 + i)).decode()


def _interned(s):
    # an interned string (a qstr) is an immediate object: its id is the
    # tagged value, ending in binary 010 (REPR_A, the ports' default); a
    # string on the heap is a block address (16-byte aligned)
    return id(s) & 7 == 2


def test_the_canonical_form_interns_no_character():
    # iterating a str interns each character as a qstr, a pool entry kept
    # for good (the pools only grow): a request's hex digits were interned
    # one by one, one more heap pool on the 32-bit build (heapdump --gap)
    chars = [_cjk(i) for i in range(4)]
    assert not any(_interned(c) for c in chars)
    req = {"cmd": "x", chars[0] + chars[1]: chars[0] + chars[1], "b": chars[2] + "\x01" + chars[3]}
    text = la.canonical(req)
    assert text == ('{"b":"%s\\u0001%s","cmd":"x","%s":"%s"}' % (
        chars[2], chars[3], chars[0] + chars[1], chars[0] + chars[1])).encode()
    assert not any(_interned(_cjk(i)) for i in range(4))


def test_only_the_session_holder_ends_it():
    """auth_end without the session's tag and a new auth_challenge leave the
    installer's session alone; the holder's tagged auth_end ends it."""
    key = b"\x42" * 32

    async def dispatch(req):
        return {}

    g = lp.guard(dispatch, _auth(key, [0]), (), (), None)
    s = _session(g, key)
    _refused(g, {"cmd": "auth_end"}, "session tag")
    _refused(g, {"cmd": "auth_end", "auth": [1, "00" * 16]}, "bad session tag")
    asyncio.run(g({"cmd": "auth_challenge"}))  # a stranger's challenge
    try:
        asyncio.run(g({"cmd": "auth", "mac": "00" * 32}))  # ... and wrong answer
    except lp.NotAuthorised:
        pass
    asyncio.run(g(_tagged(s, 2, {"cmd": "write"})))  # the session still works
    assert asyncio.run(g(_tagged(s, 3, {"cmd": "auth_end"}))) == {"ended": True}
    _refused(g, _tagged(s, 4, {"cmd": "write"}), "needs an authenticated installer")
    assert asyncio.run(g({"cmd": "auth_end"})) == {"ended": False}


def test_wrong_credentials_logged_and_slowed():
    """100 wrong credentials: each one evaluated is in the security log
    (0x8F53, collapsed with a count); the back-off doubles with each one in a
    row up to BACKOFF_MAX_MS, answers during it are refused unheard, and a
    right answer resets it (and opens an 0x81A5 session event)."""
    from chf.logs import EventLog
    from codes import EV_AUTH_FAILED, EV_LOCAL_PORT_SESSION

    st = _fresh("slow")
    sec = EventLog(st, "security", 40, utc=lambda: 100)
    ev = EventLog(st, "event", 40, utc=lambda: 100)
    key = b"\x42" * 32
    clock = [1000]
    auth = _auth(key, clock, sec, ev)

    async def dispatch(req):
        return {}

    g = lp.guard(dispatch, auth, (), (), None)
    waits = []
    evaluated = 0
    for i in range(100):
        asyncio.run(g({"cmd": "auth_challenge"}))
        try:
            asyncio.run(g({"cmd": "auth", "mac": "00" * 32}))
        except lp.NotAuthorised as e:
            if "wait" in str(e):
                waits.append(la.backoff_left_ms(auth))
                clock[0] += la.backoff_left_ms(auth)  # the attacker waits it out
                continue
            assert "wrong installer credential" in str(e)
            evaluated += 1
    assert auth.failures == evaluated and auth.slowed == 100 - evaluated
    assert [la.backoff_ms(k) for k in range(1, 9)] == [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]
    assert max(waits) == la.BACKOFF_MAX_MS
    assert sum(r[3] for r in sec.rows()) == evaluated and sec.entries()[0][1:] == (EV_AUTH_FAILED, b"credential")
    asyncio.run(g({"cmd": "auth_challenge"}))
    clock[0] += la.BACKOFF_MAX_MS
    nonce = bytes.fromhex(asyncio.run(g({"cmd": "auth_challenge"}))["nonce"])
    asyncio.run(g({"cmd": "auth", "mac": hmac_sha256(key, b"chub-auth", nonce).hex()}))
    assert auth.failures == 0 and la.backoff_left_ms(auth) == 0
    assert ev.entries()[-1][1] == EV_LOCAL_PORT_SESSION


def test_hmac_matches_rfc4231_case_2():
    mac = hmac_sha256(b"Jefe", b"what do ya want ", b"for nothing?")
    assert mac.hex() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def test_blank_hub_lets_first_provisioning_through():
    auth = _auth(None, [0])

    async def dispatch(req):
        return {"ok": 1}

    g = lp.guard(dispatch, auth, (), ("prov_begin",), None)
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
    ident_before = gbcs_commands.public(Identity(st))
    st.kv("prov").update({"state": rec, "applied": 0})  # as if the last write never happened
    st.kv("auth").delete("installer")
    assert PV.roll_forward(Store("prov_cut"))
    st3 = Store("prov_cut")
    assert gbcs_commands.public(Identity(st3)) == ident_before
    assert PV.installer_key(st3) == b"\x11" * 32 and st3.kv("prov").get("applied") == 1


def test_the_identity_holds_its_euis_and_ka_private_keys_only():
    # What the Identity holds for the hub's life: both devices' EUI-64 and
    # KA private key (every command's routing and its MAC's Z); the public
    # keys (the identity command) and the signing keys (a signed alert or
    # answer, rare) are read from KV "identity" at each use. Measured on the
    # 64-bit port (its two cold KV stores included): 1664 -> 736 bytes (the
    # two dicts of five byte strings each were most of it); its KV objects
    # made at each use (branch routepk): 736 -> 576, 400 -> 320 on the
    # 32-bit build; the bound in words (8, 4)
    import gc
    import sys

    from ids import hex_bytes

    W = 8 if sys.maxsize > 2**31 else 4
    st = _fresh("held")
    Identity(st)  # first boot: the keys made, chf.prov_store loaded
    gc.collect()
    a = gc.mem_alloc()
    ident = Identity(st)
    gc.collect()
    used = gc.mem_alloc() - a
    assert used <= 80 * W, ("identity", used)
    rec = st.kv("identity").get("chf")
    assert ident.chf["eui"] == hex_bytes(rec["eui"]) and ident.chf["ka_d"] == hex_bytes(rec["ka_d"])
    for k in ("ka_q", "ds_d", "ds_q"):
        assert k not in ident.chf and ident.key("chf", k) == hex_bytes(rec[k]), k
    assert ident.key("gpf", "eui") is ident.gpf["eui"]
    assert gbcs_commands.public(ident)["gpf"] == {"eui": _hex(ident.gpf["eui"]), "ka_pub": _hex(ident.key("gpf", "ka_q")),
                                     "ds_pub": _hex(ident.key("gpf", "ds_q"))}
