# chf.subghz through chf.usecases under MicroPython: the Sub GHz
# configuration set by DBCH04 (RTDS payload) is read back by DBCH03 after
# reopening the store and raises DBCH09 with the new values; a configuration
# of the wrong shape is refused with type-unmatched and changes nothing; a
# channel change persists, lands in the channel log (RTDS data layout) and is
# read by DBCH02's range; the CCS08 alert is signed with the CHF's DS key.
import os
from binascii import unhexlify

from chf import subghz as sg
from chf.device_log import DeviceLog
from chf.identity import Identity
from chf.logs import open_logs
from chf.usecases import OK, TYPE_UNMATCHED, Chf
from gbcs import der, dlms, dlms_apdu, frame, gcm, kdf, p256
from mp_gbcs_keys import private
from store import Store

HEAP = "384k"  # compiling the GBCS modules from source; 20% margin (CHUB_MP_HEAP_SCALE=0.8)
V = os.getenv("CHUB_VECTORS") + "/gbcs/rtds/"
ACB = unhexlify("90B3D51F30000002")
DBCH04 = "6.28_DBCH04/DBCH04_6.28_SUCCESS_COMMAND_GBCS.HEX"
DBCH03 = "6.30_DBCH03/DBCH03_6.30_SUCCESS_COMMAND_GBCS.HEX"
DBCH02 = "6.32_DBCH02/DBCH02_6.32_SUCCESS_COMMAND_GBCS.HEX"
T = 500000000


def _acb_private():
    return private("90b3d51f30000002-ka")


def _open(acb_d, provision=True):
    st = Store("data")
    ident = Identity(st)
    if provision:
        acb_q = p256.encode_point(p256.public_key(acb_d)).hex()
        ident.set_anchors(
            [
                {"eui": ACB.hex(), "role": "acb", "ka_pub": acb_q},
                {"eui": "90b3d51f30010000", "role": "supplier", "ka_pub": None},
            ]
        )
    ev, sec = open_logs(st, 40)
    sub = sg.SubGhz(st, 40, lambda: T)
    chf = Chf(ident, ev, sec, DeviceLog(st, lambda: T), utc2000=lambda: T, subghz=sub)
    return st, ident, chf


def _cmd(ident, acb_d, src, counter, payload=None):
    f = frame.parse(unhexlify(open(V + src).read().strip()))
    me = ident.chf["eui"]
    p = bytearray(f.payload if payload is None else payload)
    p[1:5] = (0x20000000 | (counter & 0xFFFFFF)).to_bytes(4, "big")
    key = kdf.derive_key(p256.ecdh(acb_d, ident.key("chf", "ka_q")), ACB, 1, counter, me)
    return bytes(
        frame.build(
            1,
            counter,
            ACB,
            me,
            f.message_code,
            p,
            supp_party=f.supp_party,
            supp_counter=f.supp_counter or 0,
            mac_fn=lambda pre, body, iv: gcm.gmac(key, iv, (pre, body)),
        )
    )


def _result(resp):
    a = dlms_apdu.parse_apdu(frame.parse(resp).payload)
    return a.results[0][1], (a.data[0] if a.data else None)


def _plain(v):
    if v[0] in (dlms.STRUCTURE, dlms.ARRAY):
        return [_plain(x) for x in v[1]]
    if v[0] == dlms.BIT_STRING:
        return (v[1][0], bytes(v[1][1]))
    return v[1] if isinstance(v[1], int) else bytes(v[1])


def test_config_set_persists_and_alerts():
    acb_d = _acb_private()
    st, ident, chf = _open(acb_d)
    new = dlms_apdu.parse_apdu(frame.parse(unhexlify(open(V + DBCH04).read().strip())).payload).data[0]
    resp, alerts = chf.handle(_cmd(ident, acb_d, DBCH04, 10))
    assert _result(resp)[0] == OK and len(alerts) == 1
    al = frame.parse(alerts[0])
    assert al.cra == 3 and al.message_code == 0x0113
    body = dlms_apdu.parse_apdu(al.payload).value[1]
    assert body[0] == (dlms.LONG_UNSIGNED, sg.ALERT_CONFIG_CHANGED)
    assert _plain(body[2]) == _plain(new)
    # reopen everything from the store: DBCH03 reads the new configuration
    st, ident, chf = _open(acb_d, provision=False)
    code, v = _result(chf.handle(_cmd(ident, acb_d, DBCH03, 11))[0])
    assert code == OK and _plain(v) == _plain(new)


def test_config_of_wrong_shape_refused_unchanged():
    acb_d = _acb_private()
    st, ident, chf = _open(acb_d)
    before = chf.subghz.config()
    f = frame.parse(unhexlify(open(V + DBCH04).read().strip()))
    bad = bytearray(f.payload)
    # element 4 (long-unsigned 130: 12 00 82) as an unsigned: 11 82 and one byte short
    i = bytes(bad).find(b"\x12\x00\x82")
    bad[i : i + 3] = b"\x11\x82"
    resp, alerts = chf.handle(_cmd(ident, acb_d, DBCH04, 20, payload=bad))
    assert _result(resp)[0] == TYPE_UNMATCHED and not alerts
    assert chf.subghz.config() == before


def test_channel_change_logged_and_read_by_range():
    acb_d = _acb_private()
    st, ident, chf = _open(acb_d)
    body = chf.subghz.change_channel(0xF0000004, t=472570380)
    assert _plain(body) == [(32, b"\xf0\x00\x00\x04"), b"\x02"]
    chf.subghz.change_channel(0xE0000001, t=473331601)  # after the DBCH02 range
    assert chf.subghz.channel() == 0xE0000001
    assert sg.SubGhz(Store("data")).channel() == 0xE0000001
    code, v = _result(chf.handle(_cmd(ident, acb_d, DBCH02, 30))[0])
    assert code == OK and v[0] == dlms.COMPACT_ARRAY
    rows = [_plain(r) for r in v[1][1]]
    # the RTDS data layout: channel bits || 09 01 <channel number>
    assert rows == [[472570380, 0x8F26, b"\xf0\x00\x00\x04\x09\x01\x02"]]


def test_ccs08_alert_signed_with_the_chf_ds_key():
    acb_d = _acb_private()
    st, ident, chf = _open(acb_d)
    raw = chf.firmware_alert(unhexlify("00DB1234567890A4"), unhexlify("0123ABCD"))
    f = frame.parse(raw)
    assert f.mac is None and f.cra == 3 and f.message_code == 0x0128 and bytes(f.recipient) == ACB
    assert p256.verify(ident.key("chf", "ds_q"), f.signed_data(), f.signature)
    seq = der.decode(f.payload)[1]
    assert der.to_int(seq[0][1]) == 0x8F8A and bytes(seq[1][1]) == b"20151105005320Z"
    assert bytes(seq[2][1]) == unhexlify("00DB1234567890A4") and der.to_int(seq[4][1]) == 0


def test_radio_event_alerts_go_to_hub_emit():
    """subghz_event (the unix board's rig hook) alerts are late
    messages: handed to hub.emit (the WAN outbox contract) as well as
    returned to the rig."""
    import asyncio

    from rig import hooks as rig_hooks
    from chf import gbcs_port
    from chf.logs import open_logs

    class Hub:
        # what the rig hooks read: the CHF and emit (the WAN outbox contract)
        def __init__(self):
            st = Store("data")
            ev, sec = open_logs(st, 40, utc=lambda: T)
            self.chf = gbcs_port.build(st, ev, sec, DeviceLog(st, lambda: T), lambda: T)
            self.commands = dict(rig_hooks.COMMANDS)
            self.emitted = []

        def emit(self, frame, kind, critical=None):
            self.emitted.append((bytes(frame), kind))

    hub = Hub()
    chf = hub.chf
    acb_q = p256.encode_point(p256.public_key(_acb_private())).hex()
    chf.identity.set_anchors([{"eui": ACB.hex(), "role": "acb", "ka_pub": acb_q}])
    chf.parties = chf.identity.parties("chf")
    r = asyncio.run(hub.commands["subghz_event"](hub, {"event": "no_capacity", "eui": "00db1234567890a1"}))
    assert hub.emitted == [(unhexlify(r["alerts"][0]), "alert")]
    assert frame.parse(hub.emitted[0][0]).message_code == 0x0115
