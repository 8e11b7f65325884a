# chf.credentials + the signed-command path of chf.usecases under
# MicroPython: CS02a signed by the Transitional CoS only (no MAC) is accepted
# with its DS trust anchor and answered signed; a bad signature, an unknown
# signer, a signed-only command of another use case, a replay and a wrong
# recipient are refused, logged and change nothing; CS02a whose authorising
# cell is not the originator's is refused; CS02b (RTDS payload) replaces the
# WAN provider's DS cell only with the current WAN provider's signature, the
# cell survives reopening the store and the old key cannot authorise again.
# Remote-party keys are the RTDS keystore's private keys.
import os
from binascii import unhexlify

import codes

from chf import credentials as cred
from chf.device_log import DeviceLog
from chf.identity import Identity
from chf.logs import open_logs
from chf.usecases import Chf
from gbcs import der, frame, gcm, kdf, p256
from mp_gbcs_keys import refused
from mp_gbcs_keys import pem as _b64
from mp_gbcs_keys import private as _private
from store import Store

HEAP = "384k"  # compiling the GBCS modules from source; 20% margin (CHUB_MP_HEAP_SCALE=0.8)
V = os.getenv("CHUB_VECTORS") + "/gbcs/"
ACB = unhexlify("90B3D51F30000002")
TCOS = unhexlify("90B3D51F30000004")
WP = unhexlify("90B3D51F30000007")
CS02A_ERR = "rtds/NA_CS02aSignature/CS02aSignature_NA_ERROR_COMMAND_GBCS.HEX"
CS02B = "rtds/NA_CS02bWPByWP/CS02bWPByWP_NA_SUCCESS_COMMAND_GBCS.HEX"
ECS26N = "rtds/6.2.4_ECS26n/ECS26n_6.2.4_SUCCESS_COMMAND_GBCS.HEX"
WP_OLD_SKI = "4947bad00b1b12c5"  # keystore 90b3d51f30000007-ds.pem
WP_NEW_SKI = "43cf62e6b35e4986"  # the certificate in the CS02b command




def _rtds(path):
    return frame.parse(unhexlify(open(V + path).read().strip()))


def _setup(root="data"):
    st = Store(root)
    ident = Identity(st)
    acb = _private("90b3d51f30000002-ka")
    keys = {"acb": acb, "tcos": _private("90b3d51f30000004-ds"), "wp": _private("90b3d51f30000007-ds")}
    wp_cert = cred.Certificate(_b64("90b3d51f30000007-ds.pem"))
    assert wp_cert.pub == p256.encode_point(p256.public_key(keys["wp"]))
    anchors = [
        {"eui": ACB.hex(), "role": "acb", "ka_pub": p256.encode_point(p256.public_key(acb)).hex(), "ka_ski": "01" * 8},
        {"eui": TCOS.hex(), "role": "transitional_cos", "ds_pub": p256.encode_point(p256.public_key(keys["tcos"])).hex()},
        {"eui": WP.hex(), "role": "wan_provider", "ds_pub": wp_cert.pub.hex(), "ds_ski": wp_cert.ski.hex()},
    ]
    ident.set_anchors(anchors)
    creds = cred.Credentials(st, ident)
    creds.provision(anchors)
    ev, sec = open_logs(st, 40)
    chf = Chf(ident, ev, sec, DeviceLog(st, lambda: 500000000), utc2000=lambda: 500000000, credentials=creds)
    return st, ident, chf, keys


def _build(ident, src, counter, originator, signer=None, mac_key_d=None, recipient=None, tamper_sig=False):
    f = _rtds(src)
    rec = recipient if recipient is not None else ident.chf["eui"]
    payload = bytearray(f.payload)
    if payload[0] == 0xD9:
        payload[1:5] = (0x20000000 | (counter & 0xFFFFFF)).to_bytes(4, "big")
    sig = None
    if signer is not None:
        plain = frame.build(1, counter, originator, rec, f.message_code, payload)
        sig = bytearray(p256.sign(signer, frame.parse(plain).signed_data()))
        if tamper_sig:
            sig[5] ^= 1
        sig = bytes(sig)
    mac_fn = None
    if mac_key_d is not None:
        key = kdf.derive_key(p256.ecdh(mac_key_d, ident.key("chf", "ka_q")), originator, 1, counter, rec)

        def mac_fn(pre, body, iv):
            return gcm.gmac(key, iv, (pre, body))

    return bytes(
        frame.build(
            1,
            counter,
            originator,
            rec,
            f.message_code,
            payload,
            supp_party=f.supp_party,
            supp_counter=f.supp_counter or 0,
            signature=sig,
            mac_fn=mac_fn,
        )
    )


def _statuses(payload):
    return [(der.to_int(rd[1][0][1]), der.to_int(rd[1][1][1])) for rd in der.decode(payload)[1]]


def test_signed_cs02a_accepted_answered_signed_and_replayrefused():
    st, ident, chf, k = _setup()
    resp, alerts = chf.handle(_build(ident, CS02A_ERR, 7000, TCOS, signer=k["tcos"]))
    assert not alerts and chf.executed == 1
    r = frame.parse(resp)
    assert r.mac is None and r.signature is not None and r.cra == 2 and bytes(r.recipient) == TCOS
    assert p256.verify(ident.key("chf", "ds_q"), r.signed_data(), r.signature)
    # network operator: no anchor here -> Trust Anchor Not Found; WAN provider: success
    assert _statuses(r.payload) == [(3, cred.ST_TA_NOT_FOUND), (6, cred.ST_SUCCESS)]
    e = refused(chf, _build(ident, CS02A_ERR, 7000, TCOS, signer=k["tcos"]), "ReplayedCounter")
    assert e[1] == codes.EV_REPLAYED_COUNTER


def test_signed_bad_signature_unknown_signer_other_use_case_wrong_recipient():
    st, ident, chf, k = _setup()
    e = refused(chf, _build(ident, CS02A_ERR, 10, TCOS, signer=k["tcos"], tamper_sig=True), "BadSignature")
    assert e[1] == codes.EV_BAD_SIGNATURE
    # signed by a key no DS trust anchor holds
    refused(chf, _build(ident, CS02A_ERR, 10, unhexlify("90B3D51F30000099"), signer=k["tcos"]), "UnknownOriginator")
    # only CS02a may come signed without a MAC
    refused(chf, _build(ident, ECS26N, 10, TCOS, signer=k["tcos"]), "NotProtected")
    refused(chf, _build(ident, CS02A_ERR, 10, TCOS, signer=k["tcos"], recipient=ident.gpf["eui"]), "WrongRecipient")
    # none of those advanced the counter
    chf.handle(_build(ident, CS02A_ERR, 10, TCOS, signer=k["tcos"]))
    assert chf.executed == 1


def test_cs02a_authorising_cell_must_be_the_originators():
    st, ident, chf, k = _setup()
    # MAC'd by the ACB, but the payload names the Transitional CoS DS cell
    refused(chf, _build(ident, CS02A_ERR, 20, ACB, mac_key_d=k["acb"]), "PayloadMismatch")


def test_cs02b_needs_the_current_wan_provider_and_persists():
    st, ident, chf, k = _setup()
    # signed by another key: refused, cell unchanged
    refused(chf, _build(ident, CS02B, 100, WP, signer=k["tcos"], mac_key_d=k["acb"]), "PayloadMismatch")
    assert chf.credentials.cell("wan_provider", "ds")[3] == WP_OLD_SKI
    resp, _ = chf.handle(_build(ident, CS02B, 101, WP, signer=k["wp"], mac_key_d=k["acb"]))
    r = frame.parse(resp)
    assert r.mac is None and p256.verify(ident.key("chf", "ds_q"), r.signed_data(), r.signature)
    assert r.date_time is not None
    assert chf.credentials.cell("wan_provider", "ds")[3] == WP_NEW_SKI
    # the old WAN provider key can no longer authorise a replacement
    refused(chf, _build(ident, CS02B, 102, WP, signer=k["wp"], mac_key_d=k["acb"]), "PayloadMismatch")
    # the new cell is in the store
    assert cred.Credentials(Store("data"), None).cell("wan_provider", "ds")[3] == WP_NEW_SKI
