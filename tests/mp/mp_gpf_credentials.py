# CS02b on the GPF under MicroPython (gpf.function + chf.credentials with
# device "gpf"): the RTDS supplier-by-supplier and network-operator-by-
# network-operator payloads, MAC'd by the ACB and signed with the key of the
# current authorising cell (the RTDS GPF holds the ACB's certificates in its
# supplier and NO cells). Accepted: cells (incl. the prepayment top-up cell)
# replaced and persisted, specialist floor kept, response signed with the
# GPF's DS key. Refused as a whole (bad signature, mode not the message
# code's, stale sequence number): nothing answered, nothing changed, security
# log entry. A replacement whose certificate does not fit its cell: answered,
# status Bad Certificate (5) for that cell, the others replaced.
import os
from binascii import unhexlify

from chf import credentials as cred
from chf.identity import Identity
from chf.logs import open_logs
from gbcs import der, frame, gcm, kdf, p256
from gbcs.usecase_base import EV_PAYLOAD_MISMATCH
from log import kind_of
from gpf.function import Gpf
from gpf.mirror import Mirror
from mp_gbcs_keys import private as _private
from store import Store

HEAP = "512k"
V = os.getenv("CHUB_VECTORS") + "/gbcs/"
ACB = unhexlify("90B3D51F30000002")
SUPPLIER = unhexlify("90B3D51F30010000")
T0 = 473385600  # 2015-01-01 00:00 UTC, seconds since 2000
SUP = "rtds/6.21_CS02bSupplierBySupplierHandover/CS02bSupplierBySupplierHandover_6.21_SUCCESS_COMMAND_GBCS.HEX"
NO = "rtds/6.21_CS02bNOByNOHandover/CS02bNOByNOHandover_6.21_SUCCESS_COMMAND_GBCS.HEX"
# subject key identifiers: the ACB's certificates (the cells before), the new ones (RTDS responses)
ACB_DS_SKI, ACB_KA_SKI = "42693535d3dde101", "4a9ce02c39ab910b"
SUP_DS_SKI, SUP_KA_SKI, SUP_PP_SKI = "44899792d196f4b8", "405b8c62687d8f70", "41fb49221588c570"
NO_DS_SKI, NO_KA_SKI = "48cf97fa9f827fb5", "4bc9d38d1cb49f2a"


def _pub(d):
    return p256.encode_point(p256.public_key(d)).hex()


def _setup(root="data"):
    st = Store(root)
    ident = Identity(st)
    k = {
        "acb_ka": _private("90b3d51f30000002-ka"),
        "acb_ds": _private("90b3d51f30000002-ds"),
        "sup_ds": _private("90b3d51f30010000-ds"),
    }
    sup_ka = _pub(_private("90b3d51f30010000-ka"))
    ident.set_anchors(
        [
            {"eui": ACB.hex(), "role": "acb", "ka_pub": _pub(k["acb_ka"])},
            {"eui": SUPPLIER.hex(), "role": "supplier", "ka_pub": sup_ka},
        ],
        "gpf",
    )
    ev, sec = open_logs(st, 40)
    gpf = Gpf(ident, st, Mirror(st, lambda: (T0, True)), lambda: (T0, True), sec, ev)
    acb_cells = {
        "eui": ACB.hex(),
        "ds_pub": _pub(k["acb_ds"]),
        "ds_ski": ACB_DS_SKI,
        "ka_pub": _pub(k["acb_ka"]),
        "ka_ski": ACB_KA_SKI,
    }
    sup = dict(acb_cells, role="supplier", pp_ka_pub=acb_cells["ka_pub"], pp_ka_ski=ACB_KA_SKI)
    gpf.credentials.provision([sup, dict(acb_cells, role="network_operator")])
    return st, ident, gpf, sec, k


def _build(ident, src, counter, signer, acb_ka, payload=None, message_code=None):
    f = frame.parse(unhexlify(open(V + src).read().strip()))
    rec = ident.gpf["eui"]
    mc = message_code or f.message_code
    payload = bytes(f.payload) if payload is None else payload
    plain = frame.build(1, counter, ACB, rec, mc, payload)
    sig = p256.sign(signer, frame.parse(plain).signed_data())
    key = kdf.derive_key(p256.ecdh(acb_ka, ident.key("gpf", "ka_q")), ACB, 1, counter, rec)

    def mac_fn(pre, body, iv):
        return gcm.gmac(key, iv, (pre, body))

    return bytes(frame.build(1, counter, ACB, rec, mc, payload, signature=sig, mac_fn=mac_fn))


def _refused(gpf, sec, data):
    before, n = gpf.executed, sum(r[3] for r in sec.rows())  # a repeat collapses into its entry's count
    try:
        gpf.handle(data)
    except ValueError as e:
        assert kind_of(e) == "PayloadMismatch", repr(e)
    else:
        raise AssertionError("CS02b not refused")
    assert gpf.executed == before and sum(r[3] for r in sec.rows()) == n + 1
    assert sec.entries()[-1][1] == EV_PAYLOAD_MISMATCH


def _outcomes(resp_payload):
    d = der.decode(resp_payload)
    assert d[1][0][0] == der.NULL
    return [der.to_int(o[1][1][1]) for o in d[1][1][1][3][1]]


def _skis(gpf, role):
    c = gpf.credentials
    out = [c.cell(role, "ds")[3], c.cell(role, "ka")[3]]
    if role == "supplier":
        out.append(c.cell(role, "ka", cred.CELL_TOP_UP)[3])
    return out


def test_supplier_handover_replaces_cells_and_persists():
    st, ident, gpf, sec, k = _setup()
    resp, alerts = gpf.handle(_build(ident, SUP, 2000, k["acb_ds"], k["acb_ka"]))
    assert not alerts
    r = frame.parse(resp)
    assert r.mac is None and r.cra == 2 and bytes(r.recipient) == ACB and r.message_code == 0x0102
    assert p256.verify(ident.key("gpf", "ds_q"), r.signed_data(), r.signature)
    assert bytes(r.date_time) == bytes.fromhex("07df0101ff0000000080 00ff".replace(" ", ""))
    assert _outcomes(r.payload) == [0, 0, 0]
    assert _skis(gpf, "supplier") == [SUP_DS_SKI, SUP_KA_SKI, SUP_PP_SKI]
    assert _skis(gpf, "network_operator") == [ACB_DS_SKI, ACB_KA_SKI]
    assert gpf.credentials.seq("supplier/0") == 0
    # the top-up cell is not a MAC/encryption anchor: the supplier anchor is the management KA key
    sup = [a for a in ident.anchors("gpf") if a["role"] == "supplier"][0]
    assert sup["ka_pub"] == gpf.credentials.cell("supplier", "ka")[4]
    # persisted; the CHF's cells are another KV
    again = cred.Credentials(Store("data"), None, "gpf")
    assert again.cell("supplier", "ka", cred.CELL_TOP_UP)[3] == SUP_PP_SKI
    assert cred.Credentials(Store("data"), None).cells() == []
    # the ACB's key no longer authorises a supplier replacement (the new supplier's does)
    _refused(gpf, sec, _build(ident, SUP, 2001, k["acb_ds"], k["acb_ka"]))


def test_refused_cs02b_answers_nothing_and_changes_nothing():
    st, ident, gpf, sec, k = _setup()
    # signed with a key that is not the current supplier cell's
    _refused(gpf, sec, _build(ident, SUP, 3000, k["sup_ds"], k["acb_ka"]))
    # a network-operator replacement under the supplier-by-supplier message code
    _refused(gpf, sec, _build(ident, NO, 3001, k["acb_ds"], k["acb_ka"], message_code=0x0102))
    assert _skis(gpf, "supplier") == [ACB_DS_SKI, ACB_KA_SKI, ACB_KA_SKI]
    assert _skis(gpf, "network_operator") == [ACB_DS_SKI, ACB_KA_SKI]
    # the genuine command is still accepted afterwards
    gpf.handle(_build(ident, NO, 3002, k["acb_ds"], k["acb_ka"]))
    assert _skis(gpf, "network_operator") == [NO_DS_SKI, NO_KA_SKI]


def test_bad_certificate_answered_with_status_5():
    st, ident, gpf, sec, k = _setup()
    f = frame.parse(unhexlify(open(V + NO).read().strip()))
    p = bytes(f.payload)
    ds_target = bytes.fromhex("300702010303020780")  # the DS replacement's target cell
    assert p.count(ds_target) == 1
    bad = p.replace(ds_target, bytes.fromhex("300702010303020308"))  # a DS certificate for the KA cell
    resp, _ = gpf.handle(_build(ident, NO, 4000, k["acb_ds"], k["acb_ka"], payload=bad))
    assert _outcomes(frame.parse(resp).payload) == [5, 0]  # GBCS StatusCode badCertificate, success
    assert _skis(gpf, "network_operator") == [ACB_DS_SKI, NO_KA_SKI]


def test_stale_sequence_number_refused():
    st, ident, gpf, sec, k = _setup()
    seqs = dict(gpf.credentials._kv.get("seq", {}))
    seqs["network_operator"] = 1301  # the RTDS command's sequence number
    gpf.credentials._kv.set("seq", seqs)
    _refused(gpf, sec, _build(ident, NO, 5000, k["acb_ds"], k["acb_ka"]))
    assert _skis(gpf, "network_operator") == [ACB_DS_SKI, ACB_KA_SKI]
