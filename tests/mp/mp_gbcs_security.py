# gbcs.security + chf.usecases under MicroPython: replayed/stale counters, bad
# MAC, wrong recipient, unknown originator are rejected with their own error,
# logged in the security log and nothing is executed; counters persist across
# reopening the store. Commands are MAC'd here with the ACB's *private* key
# from the RTDS keystore (the other side of the ECDH), independently of the
# device's RemoteParties code path.
import os
from binascii import unhexlify

import codes
from log import kind_of

from chf.device_log import DeviceLog
from chf import gbcs_commands
from chf.identity import Identity
from chf.logs import open_logs
from chf.usecases import Chf
from gbcs import frame, gcm, kdf, p256
from mp_gbcs_keys import refused
from mp_gbcs_keys import private
from store import Store

HEAP = "384k"  # compiling the GBCS modules from source; 20% margin (CHUB_MP_HEAP_SCALE=0.8)
V = os.getenv("CHUB_VECTORS") + "/gbcs/"
ACB = unhexlify("90B3D51F30000002")
SUPPLIER = unhexlify("90B3D51F30010000")
ECS26N = "rtds/6.2.4_ECS26n/ECS26n_6.2.4_SUCCESS_COMMAND_GBCS.HEX"


def _acb_private():
    return private("90b3d51f30000002-ka")


def _setup(root="data"):
    st = Store(root)
    ident = Identity(st)
    acb_d = _acb_private()
    acb_q = p256.encode_point(p256.public_key(acb_d))
    sup_q = p256.encode_point(p256.public_key(p256.generate()[0]))
    ident.set_anchors(
        [
            {"eui": ACB.hex(), "role": "acb", "ka_pub": acb_q.hex()},
            {"eui": SUPPLIER.hex(), "role": "supplier", "ka_pub": sup_q.hex()},
        ]
    )
    ev, sec = open_logs(st, 40)
    chf = Chf(ident, ev, sec, DeviceLog(st, lambda: 500000000), utc2000=lambda: 500000000)
    return st, ident, chf, acb_d


def _command(ident, acb_d, counter, recipient=None, originator=ACB, tamper=False):
    f = frame.parse(unhexlify(open(V + ECS26N).read().strip()))
    rec = recipient if recipient is not None else ident.chf["eui"]
    z = p256.ecdh(acb_d, ident.key("chf", "ka_q"))
    key = kdf.derive_key(z, originator, 1, counter, rec)
    payload = bytearray(f.payload)
    payload[1:5] = (0x20000000 | (counter & 0xFFFFFF)).to_bytes(4, "big")
    out = bytearray(
        frame.build(
            1,
            counter,
            originator,
            rec,
            f.message_code,
            payload,
            supp_party=f.supp_party,
            supp_counter=f.supp_counter,
            mac_fn=lambda pre, body, iv: gcm.gmac(key, iv, (pre, body)),
        )
    )
    if tamper:
        out[-20] ^= 0x01
    return bytes(out)


def test_accept_then_reject_replay_and_stale():
    st, ident, chf, acb_d = _setup()
    resp, alerts = chf.handle(_command(ident, acb_d, 5000))
    assert chf.executed == 1 and not alerts
    r = frame.parse(resp)
    assert r.cra == 2 and r.counter == 5000 and bytes(r.recipient) == ACB
    e = refused(chf, _command(ident, acb_d, 5000), "ReplayedCounter")
    assert e[1] == codes.EV_REPLAYED_COUNTER
    refused(chf, _command(ident, acb_d, 4999), "ReplayedCounter")
    chf.handle(_command(ident, acb_d, 5001))
    assert chf.executed == 2


def test_bad_mac_wrong_recipient_unknown_originator():
    st, ident, chf, acb_d = _setup()
    e = refused(chf, _command(ident, acb_d, 10, tamper=True), "BadMac")
    assert e[1] == codes.EV_BAD_MAC
    # a bad MAC must not advance the counter: the genuine command still works
    refused(chf, _command(ident, acb_d, 10, recipient=ident.gpf["eui"]), "WrongRecipient")
    refused(chf, _command(ident, acb_d, 10, originator=unhexlify("90B3D51F30000099")), "UnknownOriginator")
    chf.handle(_command(ident, acb_d, 10))
    assert chf.executed == 1


def test_counters_and_identity_persist_across_reopen():
    st, ident, chf, acb_d = _setup("p")
    chf.handle(_command(ident, acb_d, 77))
    own0 = chf.parties.own_counter()
    chf.parties.protect_alert(0x0018, b"\x0f")
    pub = gbcs_commands.public(ident)
    st.close()
    st2 = Store("p")
    ident2 = Identity(st2)
    assert gbcs_commands.public(ident2) == pub
    ev, sec = open_logs(st2, 40)
    chf2 = Chf(ident2, ev, sec)
    try:
        chf2.handle(_command(ident2, acb_d, 77))
    except ValueError as e:
        assert kind_of(e) == "ReplayedCounter", repr(e)
    else:
        raise AssertionError("replay accepted after reopen")
    assert chf2.parties.own_counter() == own0 + 1
    assert chf2.parties.own_counter() >= 4000
    chf2.handle(_command(ident2, acb_d, 78))


def test_response_mac_checks_with_acb_key():
    st, ident, chf, acb_d = _setup()
    resp, _ = chf.handle(_command(ident, acb_d, 2 ** 40 + 3))
    r = frame.parse(resp)
    z = p256.ecdh(acb_d, ident.key("chf", "ka_q"))
    key = kdf.derive_key(z, r.originator, 2, r.counter, r.recipient)
    assert gcm.gmac_verify(key, kdf.iv_for(r.originator), (kdf.AAD_PREFIX, r.buf[r.gh_start:r.sig_end]), r.mac)


def test_response_to_the_supplier_is_maced_with_the_suppliers_key():
    """A direct supplier command (MAC'd by the ACB) is answered with a MAC
    keyed by ECDH(supplier KA, device KA), as the RTDS device responses to
    the supplier are; an alert to the ACB keeps the ACB's key."""
    st = Store("data")
    ident = Identity(st)
    acb_d = _acb_private()
    sup_d, sup_q = p256.generate()
    ident.set_anchors(
        [
            {"eui": ACB.hex(), "role": "acb", "ka_pub": p256.encode_point(p256.public_key(acb_d)).hex()},
            {"eui": SUPPLIER.hex(), "role": "supplier", "ka_pub": sup_q.hex()},
        ]
    )
    ev, sec = open_logs(st, 40)
    chf = Chf(ident, ev, sec, DeviceLog(st, lambda: 500000000), utc2000=lambda: 500000000)
    resp, _ = chf.handle(_command(ident, acb_d, 77, originator=SUPPLIER))
    r = frame.parse(resp)
    assert bytes(r.recipient) == SUPPLIER
    me = ident.chf["eui"]

    def tag(d):
        key = kdf.derive_key(p256.ecdh(d, ident.key("chf", "ka_q")), me, 2, 77, SUPPLIER)
        return gcm.gmac(key, kdf.iv_for(me), (kdf.AAD_PREFIX, r.buf[r.gh_start:r.sig_end]))

    assert tag(sup_d) == bytes(r.mac)
    assert tag(acb_d) != bytes(r.mac)


def _replayed(chf, data, tag):
    n_sec = sum(r[3] for r in chf.security_log.rows())
    before = chf.executed
    try:
        chf.handle(data, tag)
    except ValueError as e:
        assert kind_of(e) == "ReplayedCounter", repr(e)
    else:
        raise AssertionError("replay answered")
    assert chf.executed == before and sum(r[3] for r in chf.security_log.rows()) == n_sec + 1


def test_exact_resend_under_the_same_link_tag_is_answered_from_the_record():
    st, ident, chf, acb_d = _setup("r")
    cmd = _command(ident, acb_d, 600)
    resp, alerts = chf.handle(cmd, b"\x00\x00\x00\x07")
    n_sec = len(chf.security_log)
    # the same bytes under the same link frame id: the same answer, not run again
    assert chf.handle(cmd, b"\x00\x00\x00\x07") == (resp, alerts)
    assert chf.executed == 1 and len(chf.security_log) == n_sec
    # under another frame id, from the local port (no tag), an older counter: replays
    _replayed(chf, cmd, b"\x00\x00\x00\x08")
    _replayed(chf, cmd, None)
    _replayed(chf, _command(ident, acb_d, 599), b"\x00\x00\x00\x07")
    # a power cycle: the counter and the answer come back from the flash
    st.close()
    st2 = Store("r")
    ident2 = Identity(st2)
    ev, sec = open_logs(st2, 40)
    chf2 = Chf(ident2, ev, sec)
    assert chf2.handle(cmd, b"\x00\x00\x00\x07") == (resp, alerts) and chf2.executed == 0
    _replayed(chf2, cmd, b"\x00\x00\x00\x09")
    # a newer command replaces the stored answer; the old one is a replay now
    resp2, _ = chf2.handle(_command(ident2, acb_d, 601), b"\x00\x00\x00\x0a")
    assert resp2 != resp and chf2.executed == 1
    _replayed(chf2, cmd, b"\x00\x00\x00\x07")


def test_a_write_cut_before_its_rename_leaves_the_previous_record():
    st, ident, chf, acb_d = _setup("t")
    chf.handle(_command(ident, acb_d, 700), b"\x00\x00\x00\x01")
    path = st.root + "/ans_" + ident.chf["eui"].hex() + ".bin"
    with open(path + ".tmp", "wb") as f:  # the next record, torn before its rename
        f.write(b"\x00\x01\x02garbage")
    st.close()
    st2 = Store("t")
    ident2 = Identity(st2)
    ev, sec = open_logs(st2, 40)
    chf2 = Chf(ident2, ev, sec)
    _replayed(chf2, _command(ident2, acb_d, 700), b"\x00\x00\x00\x02")
    chf2.handle(_command(ident2, acb_d, 701), b"\x00\x00\x00\x03")
    try:
        os.stat(path + ".tmp")
        raise AssertionError("torn record kept")
    except OSError:
        pass


def test_refused_after_authentication_still_advances_the_counter():
    # a command whose MAC is good but whose payload is not the message code's
    st, ident, chf, acb_d = _setup()
    f = frame.parse(_command(ident, acb_d, 800))
    z = p256.ecdh(acb_d, ident.key("chf", "ka_q"))
    key = kdf.derive_key(z, ACB, 1, 800, ident.chf["eui"])
    bad = bytes(frame.build(1, 800, ACB, ident.chf["eui"], 0x0001, f.payload, supp_party=f.supp_party,
                            supp_counter=f.supp_counter, mac_fn=lambda pre, body, iv: gcm.gmac(key, iv, (pre, body))))
    try:
        chf.handle(bad, b"\x00\x00\x00\x01")
    except ValueError as e:
        assert kind_of(e) == "PayloadMismatch", repr(e)
    else:
        raise AssertionError("payload mismatch accepted")
    assert chf.parties.last_counter(ACB) == 800
    _replayed(chf, _command(ident, acb_d, 800), b"\x00\x00\x00\x02")


def test_the_answer_record_is_read_from_flash_not_held():
    # gbcs.security.Answers (the accepted counters and the last answer, one
    # file): read from flash at each use, nothing of it held in RAM between
    # commands but the object and its path (a dict of every originator's
    # counter and the last answer's key were held: 512 -> 160 bytes on the
    # 64-bit port, bound in words (8, 4)). An exact
    # resend is answered from the file, a replay refused, the next accepted.
    import gc
    import sys

    W = 8 if sys.maxsize > 2**31 else 4
    st, ident, chf, acb_d = _setup("ans")
    sup_cmd = _command(ident, acb_d, 6100, originator=SUPPLIER)
    try:
        chf.handle(sup_cmd, b"t0")  # a second originator's counter in the record
    except ValueError:
        pass
    cmd = _command(ident, acb_d, 6000)
    resp, alerts = chf.handle(cmd, b"t1")
    assert chf.handle(cmd, b"t1") == (resp, alerts) and chf.executed <= 2
    refused(chf, cmd, "ReplayedCounter")
    gc.collect()
    m0 = gc.mem_alloc()
    chf.parties.answers = None
    st.answers.clear()
    gc.collect()
    held = m0 - gc.mem_alloc()
    assert held <= 30 * W, ("answers", held)
    chf.handle(_command(ident, acb_d, 6001), b"t2")
    refused(chf, _command(ident, acb_d, 6000), "ReplayedCounter")


def test_remote_parties_hold_an_anchors_z_in_place_of_its_key():
    # gbcs.security.RemoteParties with two anchors (the ACB and a supplier),
    # the ACB's Z computed by a command: each anchor is (role, KA public key)
    # until its Z is computed, then (role, Z) (the key served only to
    # compute Z; a dict of the Zs beside it went). Bounds per word size:
    # 928 -> 736 bytes on the 64-bit port, 416 on the 32-bit build
    import gc
    import sys

    W = 8 if sys.maxsize > 2**31 else 4
    st, ident, chf, acb_d = _setup("rp")
    chf.handle(_command(ident, acb_d, 7000), b"t")
    chf.handle(_command(ident, acb_d, 7001), b"u")  # the cached Z used
    assert chf.executed == 2
    gc.collect()
    m0 = gc.mem_alloc()
    chf.parties = None
    ident._parties.clear()
    gc.collect()
    held = m0 - gc.mem_alloc()
    assert held <= (800 if W == 8 else 448), ("parties", held)  # 736 / 416 bytes measured
