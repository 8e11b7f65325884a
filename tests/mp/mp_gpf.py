# GPF under micropython: the mirror (ZCL server, persistence, flash writes,
# daily log) and the tap-off of TOM commands with the RTDS GCS01a/GCS05
# command, response and 0x8F66 alert files, on LittleFS2 over the unix
# board's file-backed block device; a remount stands for a power cycle.
import asyncio
import binascii
import os

from flashfs import ROOT
from flashfs import fresh as _fresh_fs
from flashfs import remount as _remount_fs
from chf.identity import Identity
from gbcs import frame as gframe
from gbcs import gbz, p256
from gpf.function import Gpf
from gpf.mirror import Mirror
from han import peer
from han import zcl, zcl_clusters
from store import Store

HEAP = "384k"
GSME = "00db1234567890a1"
T0 = 473385600  # 2015-01-01 00:00 UTC, seconds since 2000
CLOCK = [T0, True]
RTDS = os.getenv("CHUB_VECTORS", "") + "/gbcs/rtds/"


def now():
    return CLOCK[0], CLOCK[1]


def vec(folder, name):
    with open(RTDS + folder + "/" + name + "_GBCS.HEX") as f:
        return binascii.unhexlify(f.read().strip())


def fresh():
    _fresh_fs(128)
    return Store(ROOT + "/data")


def remount():
    _remount_fs(128)
    return Store(ROOT + "/data")


def make_gpf(store):
    ident = Identity(store)
    if not ident.anchors("gpf"):
        _d, q = p256.generate()
        acb = {"eui": "90b3d51f30000002", "role": "acb", "ka_pub": binascii.hexlify(q).decode()}
        ident.set_anchors([acb], "gpf")
    return Gpf(ident, store, Mirror(store, now), now)


def make_svc(store):
    """The GPF as the hub has it (gpf.service): the tap-off, the mirror and
    the use cases loaded on first use, the clock at CLOCK."""
    from gpf import service

    make_gpf(store)  # the ACB anchor
    return service.GpfService(store, Identity(store), _Clock(), None, None)


def tom(g, cluster, cmd):
    """The tapped-off payloads the GPF applied for a cluster/command (KV
    "gpf_tom", as gpf.served reads them), or None."""
    from gpf import served

    return served.payloads(g.store.kv("gpf_tom").get("%04x%02x" % (cluster, cmd)))


def zcl_call(m, cluster, frame, eui=GSME):
    h, off = zcl.parse_header(frame)
    return asyncio.run(m.zcl_server(eui, 1, h, frame[off:], cluster))


def report(attrs):
    return bytes((0x18, 1, zcl.REPORT_ATTRIBUTES)) + zcl.encode_attribute_records(attrs)


def setup_mirror(m):
    CLOCK[0], CLOCK[1] = T0, True
    rsp = zcl_call(m, 0x0702, bytes((0x09, 1, zcl_clusters.MET_REQUEST_MIRROR)))
    h, off = zcl.parse_header(rsp)
    assert h.command_id == zcl_clusters.MET_REQUEST_MIRROR_RSP and peer.decode_request_mirror_rsp(rsp, off) == 2
    cfg = peer.encode_configure_mirror(1, 1800, True, 1)
    assert zcl_call(m, 0x0702, bytes((0x19, 2, zcl_clusters.MET_CONFIGURE_MIRROR)) + cfg) is None


# -- the mirror -------------------------------------------------------------------


def test_mirror_reports_persist_one_write_each():
    store = fresh()
    m = Mirror(store, now)
    setup_mirror(m)
    w = m.writes
    rsp = zcl_call(m, 0x0702, report([(0x0000, peer.T_UINT48, 12345), (0x0302, zcl.T_UINT24, 1000)]))
    assert m.writes == w + 2  # the attributes, and the daily log's first reading
    h, off = zcl.parse_header(rsp)
    assert h.frame_type == zcl.FT_CLUSTER and h.command_id == zcl_clusters.MET_MIRROR_REPORT_ATTRIBUTE_RSP
    assert peer.decode_mirror_report_attribute_rsp(rsp, off) == (1, [0])
    w = m.writes
    zcl_call(m, 0x0702, report([(0x0000, peer.T_UINT48, 12400)]))  # same day: one write
    assert m.writes == w + 1
    m2 = Mirror(remount(), now)  # power cycle
    assert m2.get(0x0702, 0x0000) == (peer.T_UINT48, 12400)
    assert m2.get(0x0702, 0x0302) == (zcl.T_UINT24, 1000)
    assert m2.updated([0x0702]) == (T0, 0) and m2.gsme == GSME and m2.endpoint == 2


def test_mirror_tunnel_pending_flag_in_report_response():
    m = Mirror(fresh(), now)
    setup_mirror(m)
    m.tunnel_pending = True
    rsp = zcl_call(m, 0x0702, report([(0x0000, peer.T_UINT48, 1)]))
    assert peer.decode_mirror_report_attribute_rsp(rsp, 3) == (1, [0x8000])


def test_mirror_reliability_status():
    m = Mirror(fresh(), now)
    setup_mirror(m)
    CLOCK[1] = False  # hub clock not valid, the GSME gives its reading time
    zcl_call(m, 0x0702, report([(0x0000, peer.T_UINT48, 5), (0x0007, zcl.T_UTC, T0 - 60)]))
    assert m.updated([0x0702]) == (T0 - 60, 0x04)
    m2 = Mirror(fresh(), now)
    setup_mirror(m2)
    CLOCK[1] = False
    zcl_call(m2, 0x0705, report([(0x0001, zcl.T_INT32, -5)]))
    assert m2.updated([0x0705]) == (T0, 0x02)  # nobody's time is known to be right
    CLOCK[1] = True


def test_mirror_daily_log_from_midnight_readings():
    m = Mirror(fresh(), now)
    setup_mirror(m)
    s = 1000
    for i, used in enumerate((10, 20, 30)):
        CLOCK[0] = T0 + i * 86400 + 5
        zcl_call(m, 0x0702, report([(0x0000, peer.T_UINT48, s)]))
        s += used
    CLOCK[0] = T0 + 4 * 86400 + 5  # a day without a reading counts 0
    zcl_call(m, 0x0702, report([(0x0000, peer.T_UINT48, s)]))
    assert m.daily_samples() == (T0 // 86400, [10, 20, 30, 0])
    CLOCK[0] = T0


def test_mirror_refuses_strangers_and_bad_frames():
    m = Mirror(fresh(), now)
    setup_mirror(m)
    rsp = zcl_call(m, 0x0702, bytes((0x08, 3, zcl.REPORT_ATTRIBUTES)) + b"\x00\x00\x25\x01", eui="0011223344556677")
    assert rsp[-1] == zcl.FAILURE and m.get(0x0702, 0) is None
    rsp = zcl_call(m, 0x0702, bytes((0x08, 4, zcl.REPORT_ATTRIBUTES)) + b"\x00\x00\x25\x01")  # truncated
    assert rsp[-1] == zcl.MALFORMED_COMMAND
    # a second GSME asking for a mirror is refused (one per GPF)
    rsp = zcl_call(m, 0x0702, bytes((0x09, 5, zcl_clusters.MET_REQUEST_MIRROR)), eui="0011223344556677")
    assert peer.decode_request_mirror_rsp(rsp, 3) == 0xFFFF


def test_ihd_reads_the_mirror():
    m = Mirror(fresh(), now)
    setup_mirror(m)
    zcl_call(m, 0x0705, report([(0x0001, zcl.T_INT32, -250)]))
    rsp = zcl_call(m, 0x0705, b"\x00\x07\x00\x01\x00\x99\x99", eui="00db123456789099")
    h, off = zcl.parse_header(rsp)
    assert h.command_id == zcl.READ_ATTRIBUTES_RSP and h.direction == 1
    recs = zcl.decode_read_attributes_rsp(rsp, off)
    assert recs[0] == (0x0001, 0, zcl.T_INT32, -250) and recs[1][:2] == (0x9999, zcl.UNSUPPORTED_ATTRIBUTE)


# -- tap-off -------------------------------------------------------------------------


def _alert_code(frame):
    f = gframe.parse(frame)
    assert f.cra == 3 and f.message_code == 0x1001 and f.mac is not None
    p = f.payload
    return (p[3] << 8) | p[4]


def test_tap_off_immediate_success_applies():
    g = make_svc(fresh())
    CLOCK[0] = T0
    cmd = vec("1.1.1_GCS01a", "GCS01a_1.1.1_IMMEDIATE_TOU_SUCCESS_COMMAND")
    assert g.tap_off(cmd) is True
    assert len(g.tap().pending) == 1 and g.mirror().get(0x0700, 0x0616) is None
    rsp = vec("1.1.1_GCS01a", "GCS01a_1.1.1_IMMEDIATE_TOU_SUCCESS_RESPONSE")
    assert g.on_gsme_message(rsp) == []
    assert g.tap().pending == {} and g.tap_applied == 1
    assert g.mirror().get(0x0700, 0x0616) == (zcl.T_UINT16, 826)  # GBP
    assert g.mirror().get(0x0700, 0x0617) == (zcl.T_MAP8, 0x50)
    assert tom(g, 0x0707, 0x00) is not None
    # a second response to the same command changes nothing
    assert g.on_gsme_message(rsp) == [] and g.tap_applied == 1


def test_tap_off_error_response_discards_with_819e():
    g = make_svc(fresh())
    CLOCK[0] = T0
    assert g.tap_off(vec("1.1.1_GCS01a", "GCS01a_1.1.1_FUTURE_DATED_BLOCK_ERROR_COMMAND"))
    alerts = g.on_gsme_message(vec("1.1.1_GCS01a", "GCS01a_1.1.1_FUTURE_DATED_BLOCK_ERROR_RESPONSE"))
    assert len(alerts) == 1 and _alert_code(alerts[0]) == 0x819E
    assert g.tap().pending == {} and g.tap_applied == 0 and g.tap_discarded == 1
    assert g.mirror().get(0x0700, 0x0616) is None and tom(g, 0x0707, 0x00) is None


def test_tap_off_future_dated_waits_for_the_8f66_alerts():
    store = fresh()
    g = make_svc(store)
    CLOCK[0] = T0  # the command's start times are in 2030
    assert g.tap_off(vec("1.1.1_GCS01a", "GCS01a_1.1.1_FUTURE_DATED_BLOCK_SUCCESS_COMMAND"))
    assert g.on_gsme_message(vec("1.1.1_GCS01a", "GCS01a_1.1.1_FUTURE_DATED_BLOCK_SUCCESS_RESPONSE")) == []
    assert g.tap_applied == 0 and len(g.tap().pending) == 1
    g = make_svc(remount())  # a power cut between the response and the alerts
    assert len(g.tap().pending) == 1
    pre = "GCS01a_1.1.1_8F66_FUTURE_DATED_BLOCK_SUCCESS_ALERT_"
    assert g.on_gsme_message(vec("1.1.1_GCS01a", pre + "PUBLISH_CALENDAR")) == []
    assert tom(g, 0x0707, 0x00) is not None and tom(g, 0x0707, 0x01) is not None
    assert tom(g, 0x0700, 0x04) is None
    for part in ("PUBLISH_SPECIAL_DAYS", "PUBLISH_TARIFF_INFORMATION", "PUBLISH_PRICE_MATRIX", "PUBLISH_BLOCK_THRESHOLDS"):
        assert g.on_gsme_message(vec("1.1.1_GCS01a", pre + part)) == []
    assert tom(g, 0x0700, 0x04) is not None and g.tap().pending == {}


def test_tap_off_copy_survives_power_cut():
    g = make_svc(fresh())
    CLOCK[0] = T0
    assert g.tap_off(vec("3.1_GCS07", "GCS07_3.1_SUCCESS_COMMAND"))
    g = make_svc(remount())
    assert len(g.tap().pending) == 1
    g.on_gsme_message(vec("3.1_GCS07", "GCS07_3.1_SUCCESS_RESPONSE"))
    assert g.tap().pending == {} and g.tap_applied == 1


def test_tap_off_gcs05_keeps_the_calendar_part_only():
    g = make_svc(fresh())
    CLOCK[0] = T0
    assert g.tap_off(vec("2.1_GCS05", "GCS05_2.1_IMMEDIATE_SUCCESS_COMMAND"))
    (p,) = g.tap().pending.values()
    assert p[2] and all(c[0] == 0x0707 for c in p[2])
    # not a TOM command: no copy
    assert g.tap_off(vec("6.11_GCS28", "GCS28_6.11_SUCCESS_COMMAND")) is False


def test_tap_off_ignores_garbage():
    g = make_svc(fresh())
    assert g.tap_off(b"\xdd\x00") is False and g.on_gsme_message(b"") == []
    assert g.tap().pending == {}


def test_gbz_alert_shape():
    g = make_svc(fresh())
    a = g.tap()._discard("k", [0x006B, 1, []])[0]
    p = gframe.parse(a).payload
    assert bytes(p[:3]) == b"\x01\x09\x00" and len(p) == 9
    assert gbz.MC_FUTURE_DATED == 0x00CD


def test_tap_off_cancellation_drops_the_future_parts():
    g = make_svc(fresh())
    CLOCK[0] = T0
    g.tap_off(vec("1.1.1_GCS01a", "GCS01a_1.1.1_FUTURE_DATED_BLOCK_SUCCESS_COMMAND"))
    g.on_gsme_message(vec("1.1.1_GCS01a", "GCS01a_1.1.1_FUTURE_DATED_BLOCK_SUCCESS_RESPONSE"))
    assert len(g.tap().pending) == 1
    g.tap_off(vec("1.1.1_GCS01a", "GCS01a_1.1.1_CANCELLATION_BLOCK_SUCCESS_COMMAND"))
    assert g.on_gsme_message(vec("1.1.1_GCS01a", "GCS01a_1.1.1_CANCELLATION_BLOCK_SUCCESS_RESPONSE")) == []
    assert g.tap().pending == {}
    # nothing of either command became the GPF's tariff data
    assert tom(g, 0x0700, 0x04) is None and g.mirror().get(0x0700, 0x0616) is None


def test_mirror_never_answers_a_default_response():
    m = Mirror(fresh(), now)
    setup_mirror(m)
    # the GSME's Default Response to our RequestMirrorResponse: no reply (no ping-pong)
    assert zcl_call(m, 0x0702, bytes((0x00, 1, zcl.DEFAULT_RSP, zcl_clusters.MET_REQUEST_MIRROR_RSP, 0x81))) is None


# -- hostile input ---------------------------------------------------------------------


def test_handle_and_mirror_survive_mutated_input():
    """Authenticated commands with mutated GBZ payloads, and random ZCL
    frames: the GPF answers or refuses with a ValueError, never anything else."""
    from gbcs import gcm, kdf

    store = fresh()
    ident = Identity(store)
    acb_d, acb_q = p256.generate()
    sup_d, sup_q = p256.generate()
    acb, sup = binascii.unhexlify("90b3d51f30000002"), binascii.unhexlify("90b3d51f30010000")
    ident.set_anchors(
        [
            {"eui": "90b3d51f30000002", "role": "acb", "ka_pub": binascii.hexlify(acb_q).decode()},
            {"eui": "90b3d51f30010000", "role": "supplier", "ka_pub": binascii.hexlify(sup_q).decode()},
        ],
        "gpf",
    )
    m = Mirror(store, now)
    setup_mirror(m)
    g = Gpf(ident, store, m, now)
    z = p256.ecdh(acb_d, ident.key("gpf", "ka_q"))
    me = ident.gpf["eui"]
    seeds = [
        (0x0074, "010901010702000B0000000203010300030000"),
        (0x0075, "010902000700000700000017061606" + "010705000F000100050002000100310211022102"),
        (0x00A0, "010901010702000C01000801001B2A1C0000DB02"),
        (0x0096, "010901010705001001000770993 41C804A371C0001000000".replace(" ", "")),
        (0x0072, "010901010708001409000000000000804A371C00206EC61F00020000"),
        (0x008C, "3020301E300D0408001122334455667702010530" + "0D040888 99AABBCCDDEEFF020106".replace(" ", "")),
    ]
    x = [12345]

    def rnd(n):
        x[0] = (x[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return x[0] % n

    counter = 5000
    outcomes = {"ok": 0, "refused": 0}
    for i in range(240):
        mc, hx = seeds[i % len(seeds)]
        p = bytearray(binascii.unhexlify(hx))
        for _ in range(1 + rnd(3)):
            k = rnd(4)
            if k == 0 and p:
                p[rnd(len(p))] = rnd(256)
            elif k == 1 and p:
                p = p[: rnd(len(p))]
            elif k == 2:
                j = rnd(len(p) + 1)
                p = p[:j] + bytes((rnd(256),)) + p[j:]
            elif p:
                j = rnd(len(p))
                p[j] ^= 1 << rnd(8)
        counter += 1
        key = kdf.derive_key(z, sup, 1, counter, me)
        fr = bytes(gframe.build(1, counter, sup, me, mc, p, mac_fn=lambda pre, body, iv: gcm.gmac(key, iv, (pre, body))))
        try:
            resp, _alerts = g.handle(fr)
            assert gframe.parse(resp).cra == 2
            outcomes["ok"] += 1
        except ValueError:
            outcomes["refused"] += 1
    assert outcomes["ok"] > 0 and outcomes["refused"] > 0, outcomes
    for i in range(300):
        n = rnd(12)
        fr = bytes(rnd(256) for _ in range(n))
        for cl in (0x0702, 0x0705, 0x0700):
            try:
                h, off = zcl.parse_header(fr)
            except ValueError:
                continue
            r = asyncio.run(m.zcl_server(GSME, 1, h, fr[off:], cl))
            assert r is None or isinstance(r, bytes)
    assert acb is not None


def _acb_and_supplier():
    """A fresh store whose GPF trusts a new ACB and supplier: (store, the
    identity, the ACB's KA private key); the clock at T0, valid."""
    store = fresh()
    ident = Identity(store)
    acb_d, acb_q = p256.generate()
    _sd, sup_q = p256.generate()
    ident.set_anchors(
        [
            {"eui": "90b3d51f30000002", "role": "acb", "ka_pub": binascii.hexlify(acb_q).decode()},
            {"eui": "90b3d51f30010000", "role": "supplier", "ka_pub": binascii.hexlify(sup_q).decode()},
        ],
        "gpf",
    )
    CLOCK[0], CLOCK[1] = T0, True
    return store, ident, acb_d


def test_refused_commands_raise_rate_limited_gpf_alerts():
    # E2E R06: an authentication failure / an unknown party / no permission
    # is also alerted with its GBCS code (GBZ alert, message code 0x1001,
    # MAC'd as the GPF's alerts), at most once per code per hour
    from gbcs import gcm, kdf
    from gbcs.security import SecurityError

    store, ident, acb_d = _acb_and_supplier()
    g = Gpf(ident, store, Mirror(store, now), now)
    me = ident.gpf["eui"]
    sup = binascii.unhexlify("90b3d51f30010000")
    p = binascii.unhexlify("010901010702000B0000000203010300030000")

    def send(orig, counter, key):
        fr = bytes(gframe.build(1, counter, orig, me, 0x0074, p,
                                mac_fn=lambda pre, body, iv: gcm.gmac(key, iv, (pre, body))))
        try:
            g.handle(fr)
            raise AssertionError("accepted")
        except SecurityError as e:
            return e.event

    assert send(sup, 10, b"\x00" * 16) == 0x8F1E  # the MAC does not verify
    (a,) = g.take_alerts()
    assert _alert_code(a) == 0x8F1E and g.take_alerts() == []
    # the alert is the GPF's, MAC'd with Z(GPF KA, ACB KA)
    f = gframe.parse(a)
    assert bytes(f.originator) == me and f.recipient == binascii.unhexlify("90b3d51f30000002")
    z = p256.ecdh(acb_d, ident.key("gpf", "ka_q"))
    k = kdf.derive_key(z, me, 3, f.counter, bytes(f.recipient))
    assert gcm.gmac(k, bytes(f.originator) + bytes(4), (gframe.AAD_PREFIX, f.buf[f.gh_start:f.sig_end])) == bytes(f.mac)
    # the same code again within the hour: refused and logged, not alerted
    assert send(sup, 11, b"\x00" * 16) == 0x8F1E and g.take_alerts() == []
    # an unknown originator: its own code
    assert send(binascii.unhexlify("90b3d51f300100ff"), 12, b"\x00" * 16) == 0x8F3E
    assert [_alert_code(x) for x in g.take_alerts()] == [0x8F3E]
    CLOCK[0] = T0 + 3601
    assert send(sup, 13, b"\x00" * 16) == 0x8F1E and [_alert_code(x) for x in g.take_alerts()] == [0x8F1E]
    CLOCK[0] = T0


class _Clock:
    valid = True

    def now(self):
        return CLOCK[0] + 946684800


def test_tapped_off_tariff_and_calendar_served_to_han_devices():
    # E2E 4.3.5.3 / HAN03, HAN06: an IHD or PPMID asks the hub's Price and
    # Calendar servers (Get commands); the GPF answers with the Publish
    # command it applied from the tapped-off GCS01a, after a power cut too;
    # what was never applied is Not Found
    from gpf import service

    store = fresh()
    g = make_svc(store)
    CLOCK[0] = T0
    assert g.tap_off(vec("1.1.1_GCS01a", "GCS01a_1.1.1_IMMEDIATE_TOU_SUCCESS_COMMAND"))
    assert g.on_gsme_message(vec("1.1.1_GCS01a", "GCS01a_1.1.1_IMMEDIATE_TOU_SUCCESS_RESPONSE")) == []
    (tariff,), (calendar,) = tom(g, 0x0700, 0x04), tom(g, 0x0707, 0x00)
    store = remount()  # a power cut
    svc = service.GpfService(store, Identity(store), _Clock(), None, None)
    assert 0x0707 in service.SERVED and set(service.MIRRORED) <= set(service.SERVED)

    def ask(cluster, cmd, body=b"\x00\x00\x00\x00\x00\x00\x00\x00\x01"):
        frame = bytes((0x01, 0x42, cmd)) + body
        h, off = zcl.parse_header(frame)
        return asyncio.run(svc.zcl_server(cluster)("70b3d5c11d000003", 1, h, frame[off:]))

    r = ask(0x0700, 0x06)  # GetTariffInformation
    h, off = zcl.parse_header(r)
    assert (h.frame_type, h.direction, h.command_id, h.tsn) == (zcl.FT_CLUSTER, 1, 0x04, 0x42)
    assert r[off:] == tariff
    r = ask(0x0707, 0x00)  # GetCalendar
    h, off = zcl.parse_header(r)
    assert (h.direction, h.command_id) == (1, 0x00) and r[off:] == calendar
    r = ask(0x0700, 0x08)  # GetBlockThresholds: none applied
    h, off = zcl.parse_header(r)
    assert h.command_id == zcl.DEFAULT_RSP and r[off:] == bytes((0x08, 0x8B)), r
    r = ask(0x0700, 0x0C)  # a Get the GPF does not serve
    h, off = zcl.parse_header(r)
    assert h.command_id == zcl.DEFAULT_RSP and r[off + 1] == zcl.UNSUP_CLUSTER_COMMAND
    # Read Attributes on Price still come from the mirror (currency from the tariff)
    frame = bytes((0x00, 0x43, zcl.READ_ATTRIBUTES, 0x16, 0x06))
    h, off = zcl.parse_header(frame)
    r = asyncio.run(svc.zcl_server(0x0700)("70b3d5c11d000003", 1, h, frame[off:]))
    assert r[2] == zcl.READ_ATTRIBUTES_RSP and r[3:] == bytes((0x16, 0x06, 0, zcl.T_UINT16)) + (826).to_bytes(2, "little")


def test_every_publish_of_a_tom_command_is_kept_and_served():
    # a TOM command with several components of one cluster/command (the RTDS
    # GCS01a's Publish Day Profiles, Week Profiles): every payload is kept, in
    # the command's order, after a power cut too, and a Get is answered with
    # all of them (one Publish frame each, the Get's TSN)
    from gpf import service

    store = fresh()
    g = make_svc(store)
    CLOCK[0] = T0
    cmd = vec("1.1.1_GCS01a", "GCS01a_1.1.1_IMMEDIATE_TOU_SUCCESS_COMMAND")
    comps = gbz.parse(gframe.frame_of(cmd).payload, 1, 0x006B).components
    days = [bytes(c.body) for c in comps if (c.cluster, c.cmd) == (0x0707, 0x01)]
    weeks = [bytes(c.body) for c in comps if (c.cluster, c.cmd) == (0x0707, 0x02)]
    assert len(days) > 1 and len(weeks) >= 1, (len(days), len(weeks))
    assert g.tap_off(cmd)
    assert g.on_gsme_message(vec("1.1.1_GCS01a", "GCS01a_1.1.1_IMMEDIATE_TOU_SUCCESS_RESPONSE")) == []
    assert tom(g, 0x0707, 0x01) == days and tom(g, 0x0707, 0x02) == weeks
    store = remount()
    svc = service.GpfService(store, Identity(store), _Clock(), None, None)
    frame = bytes((0x01, 0x51, 0x01)) + bytes(8) + bytes((0, 0))  # GetDayProfiles
    h, off = zcl.parse_header(frame)
    r = asyncio.run(svc.zcl_server(0x0707)("70b3d5c11d000003", 1, h, frame[off:]))
    assert isinstance(r, list) and len(r) == len(days), r
    for f, body in zip(r, days):
        h, off = zcl.parse_header(f)
        assert (h.frame_type, h.direction, h.command_id, h.tsn) == (zcl.FT_CLUSTER, 1, 0x01, 0x51)
        assert f[off:] == body
    # a single payload is still one frame
    frame = bytes((0x01, 0x52, 0x00)) + bytes(9)
    h, off = zcl.parse_header(frame)
    r = asyncio.run(svc.zcl_server(0x0707)("70b3d5c11d000003", 1, h, frame[off:]))
    assert isinstance(r, (bytes, bytearray)) and zcl.parse_header(r)[0].command_id == 0x00


def test_gcs14_returns_the_tapped_off_currency_and_trailing_digit():
    # the GPF use case that reads tapped-off data (GCS14's Price component:
    # trailing digit 0x0617, currency 0x0616) answers from the GCS01a the
    # GSME executed, not from anything the GSME reported
    from gbcs import gcm, kdf

    store, ident, acb_d = _acb_and_supplier()
    from gpf import service

    g = service.GpfService(store, ident, _Clock(), None, None)  # the tap-off and the use cases share its mirror
    setup_mirror(g.mirror())
    me, sup = ident.gpf["eui"], binascii.unhexlify("90b3d51f30010000")
    z = p256.ecdh(acb_d, ident.key("gpf", "ka_q"))
    p = binascii.unhexlify("010902000700000700000017061606" + "010705000F000100050002000100310211022102")

    def price(counter):
        key = kdf.derive_key(z, sup, 1, counter, me)
        fr = bytes(gframe.build(1, counter, sup, me, 0x0075, p,
                                mac_fn=lambda pre, body, iv: gcm.gmac(key, iv, (pre, body))))
        resp, _alerts = g.handle(fr)
        (c,) = [c for c in gbz.parse(gframe.parse(resp).payload, 2, 0x0075).components if c.cluster == 0x0700]
        assert not c.encrypted() and c.cmd == zcl.READ_ATTRIBUTES_RSP
        return bytes(c.body)

    before = price(100)
    assert before == bytes((0x17, 0x06, zcl.UNSUPPORTED_ATTRIBUTE, 0x16, 0x06, zcl.UNSUPPORTED_ATTRIBUTE)), before
    assert g.tap_off(vec("1.1.1_GCS01a", "GCS01a_1.1.1_IMMEDIATE_TOU_SUCCESS_COMMAND"))
    assert g.on_gsme_message(vec("1.1.1_GCS01a", "GCS01a_1.1.1_IMMEDIATE_TOU_SUCCESS_RESPONSE")) == []
    after = price(101)
    assert after == bytes((0x17, 0x06, 0, zcl.T_MAP8, 0x50, 0x16, 0x06, 0, zcl.T_UINT16, 0x3A, 0x03)), after
