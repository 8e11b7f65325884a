# The CHF's use cases run (chf.usecases.Chf.handle): the command checked
# against its message code's specifications and each one run against the
# CHF's COSEM objects. Loaded for each command and dropped after it
# (firmware/lazy.py): the hub does not hold this code between commands.
# The functions take the Chf (`self`), whose state they read and change.
from micropython import const

import codes
import lazy
from gbcs import dlms, dlms_apdu
from gbcs import frame as gframe
from gbcs.security import ROLE_ACB
from gbcs.usecase_base import EV_PAYLOAD_MISMATCH, EV_UNSUPPORTED, UseCaseError, accept, date_time, log_event
from han.install_code import add_crc
from ids import hex_text

_GET = const(1)
_SET = const(2)
_ACTION = const(3)
_GET_SEL = const(4)

# data-access-result / action-result codes
_OK = const(0)
_HARDWARE_FAULT = const(1)
_READ_WRITE_DENIED = const(3)
_OBJECT_UNDEFINED = const(4)
_TYPE_UNMATCHED = const(12)
_OTHER_REASON = const(250)
# identity strings returned by ECS26i/ECS26n (0-0:96.1.4.255, 0-0:96.1.6.255)
_DEVICE_TYPE = const(b"OpenChub")
_CH_TYPE = const(b"CSW ")

_CLS_DATA = const(1)
_CLS_PROFILE = const(7)
_CLS_ZB_NETWORK = const(104)

OBIS_EUI = b"\x00\x00\x60\x01\x01\xff"  # 0-0:96.1.1.255 device ID (EUI-64)
OBIS_DEVICE_TYPE = b"\x00\x00\x60\x01\x04\xff"  # 0-0:96.1.4.255
OBIS_CH_TYPE = b"\x00\x00\x60\x01\x06\xff"  # 0-0:96.1.6.255
OBIS_EVENT_LOG = b"\x00\x00\x63\x62\x00\xff"  # 0-0:99.98.0.255
OBIS_SECURITY_LOG = b"\x00\x00\x63\x62\x01\xff"  # 0-0:99.98.1.255
OBIS_DEVICE_LOG = b"\x00\x00\x1e\x03\x00\xff"  # 0-0:30.3.0.255
OBIS_HISTORIC_LOG = b"\x00\x00\x1e\x03\x01\xff"  # 0-0:30.3.1.255
# Sub GHz objects (chf.subghz, loaded on first use)
OBIS_SUBGHZ_CONFIG = b"\x00\x00\x5e\x2c\x0a\x00"  # 0-0:94.44.10.0 configuration
OBIS_SUBGHZ_SCAN = b"\x00\x00\x5e\x2c\x0a\x01"  # 0-0:94.44.10.1 channel scan request
OBIS_SUBGHZ_CHANNEL = b"\x00\x00\x5e\x2c\x0a\x02"  # 0-0:94.44.10.2 operating channel
OBIS_SUBGHZ_LOG = b"\x00\x00\x5e\x2c\x0a\x03"  # 0-0:94.44.10.3 channel log

OBIS_IMAGE_TRANSFER = b"\x00\x00\x2c\x00\x00\xff"  # 0-0:44.0.0.255 Image transfer (class 18)
_CLS_IMAGE_TRANSFER = const(18)
_MC_CS05A = const(0x7F05)
# the meters' images (han.ota_wan; docs/ota-han.md): project-local message
# codes and Image transfer instances, E = 1 CS05b (ESME/GSME), 2 CS05c (PPMID)
_MC_CS05B = const(0x7F06)
_MC_CS05C = const(0x7F07)
OBIS_CS05B = b"\x00\x00\x2c\x00\x01\xff"  # 0-0:44.0.1.255
OBIS_CS05C = b"\x00\x00\x2c\x00\x02\xff"  # 0-0:44.0.2.255

# message code, (name, allowed specs as (kind, class, OBIS, attribute/method)), ...
# (a constant tuple, in flash when frozen: the OBIS codes are written out as
# the OBIS_ names above give them; tests/mp/mp_gbcs_usecases.py checks they match)
USE_CASES = (
    0x0092, (
        "ECS26i",
        ((_GET, _CLS_DATA, b"\x00\x00\x60\x01\x01\xff", 2), (_GET, _CLS_DATA, b"\x00\x00\x60\x01\x04\xff", 2), (_GET, _CLS_DATA, b"\x00\x00\x60\x01\x06\xff", 2)),  # OBIS_EUI, OBIS_DEVICE_TYPE, OBIS_CH_TYPE
    ),
    0x00FA, ("ECS26n", ((_GET, _CLS_DATA, b"\x00\x00\x60\x01\x04\xff", 2), (_GET, _CLS_DATA, b"\x00\x00\x60\x01\x06\xff", 2))),  # OBIS_DEVICE_TYPE, OBIS_CH_TYPE
    0x0093, ("ECS35c", ((_GET_SEL, _CLS_PROFILE, b"\x00\x00\x63\x62\x00\xff", 2),)),  # OBIS_EVENT_LOG
    0x0094, ("ECS35d", ((_GET_SEL, _CLS_PROFILE, b"\x00\x00\x63\x62\x01\xff", 2),)),  # OBIS_SECURITY_LOG
    0x0001, (
        "CCS01",
        (
            (_ACTION, _CLS_ZB_NETWORK, b"\x00\x00\x1e\x03\x00\xff", 1),  # OBIS_DEVICE_LOG
            (_SET, _CLS_ZB_NETWORK, b"\x00\x00\x1e\x03\x00\xff", 3),  # OBIS_DEVICE_LOG
            (_SET, _CLS_ZB_NETWORK, b"\x00\x00\x1e\x03\x00\xff", 2),  # OBIS_DEVICE_LOG
        ),
    ),
    0x0002, ("CCS02", ((_ACTION, _CLS_ZB_NETWORK, b"\x00\x00\x1e\x03\x00\xff", 2),)),  # OBIS_DEVICE_LOG
    0x0003, ("CCS03", ((_ACTION, _CLS_ZB_NETWORK, b"\x00\x00\x1e\x03\x00\xff", 5),)),  # OBIS_DEVICE_LOG
    0x0004, ("CCS05/CCS04", ((_GET, _CLS_ZB_NETWORK, b"\x00\x00\x1e\x03\x00\xff", 4),)),  # OBIS_DEVICE_LOG
    0x010F, ("CCS06", ((_GET, _CLS_ZB_NETWORK, b"\x00\x00\x1e\x03\x00\xff", 4),)),  # OBIS_DEVICE_LOG
    0x010A, ("DBCH01", ((_GET, _CLS_DATA, b"\x00\x00\x5e\x2c\x0a\x02", 2),)),  # OBIS_SUBGHZ_CHANNEL
    0x010B, ("DBCH02", ((_GET_SEL, _CLS_PROFILE, b"\x00\x00\x5e\x2c\x0a\x03", 2),)),  # OBIS_SUBGHZ_LOG
    0x010C, ("DBCH03", ((_GET, _CLS_DATA, b"\x00\x00\x5e\x2c\x0a\x00", 2),)),  # OBIS_SUBGHZ_CONFIG
    0x010D, ("DBCH04", ((_SET, _CLS_DATA, b"\x00\x00\x5e\x2c\x0a\x00", 2),)),  # OBIS_SUBGHZ_CONFIG
    0x010E, ("DBCH05", ((_SET, _CLS_DATA, b"\x00\x00\x5e\x2c\x0a\x01", 2),)),  # OBIS_SUBGHZ_SCAN
    # the hub's own image (update.ota; docs/firmware-update.md): CS05a has no
    # GBCS message code in our tables, 0x7F05 is the project's; CS06 is GBCS's
    _MC_CS05A, ("CS05a", ((_ACTION, _CLS_IMAGE_TRANSFER, b"\x00\x00\x2c\x00\x00\xff", 2),)),  # OBIS_IMAGE_TRANSFER
    0x0012, ("CS06", ((_ACTION, _CLS_IMAGE_TRANSFER, b"\x00\x00\x2c\x00\x00\xff", 4),)),  # OBIS_IMAGE_TRANSFER
    # the meters' images for the HAN OTA server: CS05b and CS05c have no GBCS
    # message code in our tables either, 0x7F06 / 0x7F07 are the project's
    _MC_CS05B, ("CS05b", ((_ACTION, _CLS_IMAGE_TRANSFER, b"\x00\x00\x2c\x00\x01\xff", 2),)),  # OBIS_CS05B
    _MC_CS05C, ("CS05c", ((_ACTION, _CLS_IMAGE_TRANSFER, b"\x00\x00\x2c\x00\x02\xff", 2),)),  # OBIS_CS05C
    0x00FE, (
        "CCS07",
        ((_ACTION, _CLS_ZB_NETWORK, b"\x00\x00\x1e\x03\x00\xff", 4), (_ACTION, _CLS_ZB_NETWORK, b"\x00\x00\x1e\x03\x01\xff", 4)),  # OBIS_DEVICE_LOG, OBIS_HISTORIC_LOG
    ),
)

# the CHF's image transfer (its own firmware and the meters') takes commands
# only from the ACB as originator (the RTDS's CHF DLMS use cases all come
# from it; the ACB MACs every command, whoever originates it)
ACB_ONLY = (_MC_CS05A, 0x0012, _MC_CS05B, _MC_CS05C)


_MC_CS02A = const(0x0008)
_MC_CS02B_WP = const(0x0105)
# ASN.1 use cases handled by chf.credentials
DER_CASES = (_MC_CS02A, _MC_CS02B_WP)  # CS02a, CS02b


def handle(self, data):
    # Chf._handle: one command, under answer_once
    def signed(f):
        # CS02a may come protected by its originator's signature alone
        if f.message_code == _MC_CS02A and self.credentials is not None:
            try:
                lazy.load("gbcs.signed").authenticate_signed(self.parties, f, self.credentials.ds_pub_for(f.originator))
            finally:
                lazy.drop("gbcs.signed")
            return True
        return False

    f = accept(self.parties, data, self.security_log, self.utc2000, signed=signed)
    if f.message_code in DER_CASES and self.credentials is not None:
        return _handle_credentials(self, f)
    uc = USE_CASES[USE_CASES.index(f.message_code) + 1] if f.message_code in USE_CASES else None
    if uc is None:
        log_event(self.event_log, EV_UNSUPPORTED, f.message_code.to_bytes(2, "big"), self.utc2000)
        raise UseCaseError("UnsupportedUseCase", "message code 0x%04x is not a CHF use case here" % f.message_code)
    if f.message_code in ACB_ONLY and self.parties.role_of(f.originator) != ROLE_ACB:
        log_event(self.security_log, codes.EV_NO_AUTHORITY, bytes(f.originator) + f.message_code.to_bytes(2, "big"), self.utc2000)
        raise UseCaseError("NoAuthority", "%s only from the ACB, not %s" % (uc[0], hex_text(f.originator)))
    try:
        if gframe.payload_kind(f) != gframe.KIND_DLMS:
            raise UseCaseError("PayloadMismatch", "payload is not DLMS")
        a = dlms_apdu.parse_apdu(f.payload)
        if a.tag != dlms.ACCESS_REQUEST:
            raise UseCaseError("PayloadMismatch", "payload is not an access-request")
        _check_specs(a, uc[1])
    except (dlms.DlmsError, UseCaseError) as e:  # a UseCaseError here is a PayloadMismatch
        log_event(self.security_log, EV_PAYLOAD_MISMATCH, f.message_code.to_bytes(2, "big"), self.utc2000)
        if isinstance(e, UseCaseError):
            raise
        raise UseCaseError("PayloadMismatch", "bad DLMS payload for %s: %s" % (uc[0], e))
    self.executed += 1
    alerts = []
    cmd = self._cmd = [_find_set(a, 3)]  # Chf._on_change notes the Device Log's changes after it
    try:
        data_out = []
        results = []
        for i, spec in enumerate(a.specs):
            kind = spec[0]
            rkind = _GET if kind == _GET_SEL else kind
            code, value = _run(self, spec, a.data[i] if i < len(a.data) else (dlms.NULL, None), alerts)
            data_out.append(value if value is not None else (dlms.NULL, None))
            results.append((rkind, code))
    finally:
        self._cmd = None
    payload = dlms_apdu.access_response(a.invoke_id, data_out, results)
    resp = bytes(self.parties.protect_response(f, payload))
    if len(cmd) > 1:
        alerts.append(_cs14_alert(self, [c[1] for c in cmd[1:] if c[0] == "duplicate"]))
    return resp, alerts

def _handle_credentials(self, f):
    """CS02a / CS02b (ASN.1): refused commands are logged and raised."""
    from chf import credentials as cred
    from gbcs import der

    c = self.credentials
    ds_d = self.identity.key("chf", "ds_d")
    try:
        if gframe.payload_kind(f) != gframe.KIND_DER:
            raise UseCaseError("PayloadMismatch", "payload is not ASN.1")
        if f.message_code == _MC_CS02A:
            role, usage = c.authorising_cell(f.payload)
            signed = f.mac is None
            orig_role = self.parties.role_of(f.originator)
            if signed:
                orig_role = next((x[0] for x in c.cells() if x[1] == cred.DS and x[2] == hex_text(f.originator)), None)
            if role != orig_role or usage != (cred.DS if signed else cred.KA):
                raise UseCaseError("PayloadMismatch", "authorising cell is not the originator's")
            payload = c.provide_details(f.payload)
            self.executed += 1
            if signed:
                try:
                    resp = lazy.load("gbcs.signed").protect_signed(
                        self.parties, gframe.CRA_RESPONSE, f.counter, f.originator, f.message_code, payload, ds_d)
                finally:
                    lazy.drop("gbcs.signed")
            else:
                resp = self.parties.protect_response(f, payload)
            return bytes(resp), []

        t = self.utc2000() if self.utc2000 else 0
        resp = c.answer_update(f, ds_d, date_time(t))
        self.parties = self.identity.parties("chf")
    except (cred.CredentialError, UseCaseError, der.DerError) as e:  # a UseCaseError here is a PayloadMismatch
        log_event(self.security_log, EV_PAYLOAD_MISMATCH, f.message_code.to_bytes(2, "big"), self.utc2000)
        if isinstance(e, UseCaseError):
            raise
        raise UseCaseError("PayloadMismatch", "%s refused: %s" % ("CS02a" if f.message_code == _MC_CS02A else "CS02b", e))
    self.executed += 1
    return resp, []


def _run(self, spec, arg, alerts):
    kind, cls, obis, idx, sel, params = spec
    obis = bytes(obis)
    fault = self.faults.get((obis, idx))
    if fault is not None:
        return fault, None
    if kind == _GET:
        return _get(self, cls, obis, idx)
    if kind == _GET_SEL:
        return _get_sel(self, cls, obis, idx, sel, params)
    if kind == _SET:
        if obis in (OBIS_SUBGHZ_CONFIG, OBIS_SUBGHZ_SCAN):
            return _set_subghz(self, obis, arg, alerts), None
        return _set(self, obis, idx, arg), None
    return _action(self, obis, idx, arg)

_MC_CS14 = const(0x0018)


def _cs14_alert(self, no_hash):
    """CS14 0x8F12 Device Log Changed: the current backup of the Device
    Log (a device re-added with CCS01 shows a zero-length hash)."""
    t, xpan, act = self.device_log.backup()[0]
    rows = []
    for eui, h in sorted(act):
        if hex_text(eui).upper() in no_hash:
            h = b""
        rows.append((dlms.STRUCTURE, [(dlms.OCTET_STRING, eui), (dlms.OCTET_STRING, h)]))
    dt = (dlms.OCTET_STRING, date_time(t))
    backup = (dlms.STRUCTURE, [dt, (dlms.OCTET_STRING, xpan), (dlms.ARRAY, rows)])
    return self.dlms_alert(_MC_CS14, codes.ALERT_DEVICE_LOG_CHANGED, backup, t)


def _set_subghz(self, obis, v, alerts):
    from chf import subghz as sg

    if self.subghz is None:
        return _HARDWARE_FAULT
    try:
        if obis == OBIS_SUBGHZ_CONFIG:
            alerts.append(sg.alert(self, sg.ALERT_CONFIG_CHANGED, self.subghz.set_config(v)))
        else:
            alerts.append(sg.alert(self, sg.ALERT_SCAN_OUTCOME, self.subghz.request_scan(v)))
    except (sg.SubGhzError, TypeError, IndexError, AttributeError):
        return _TYPE_UNMATCHED
    return _OK

def _set(self, obis, attr, v):
    if obis != OBIS_DEVICE_LOG or self.device_log is None:
        return _OBJECT_UNDEFINED
    if attr == 3 and v[0] == dlms.LONG_UNSIGNED:
        self.join_timeout = v[1]
        return _OK
    if attr == 2 and v[0] == dlms.BOOLEAN:
        return _OK  # joining follows the join windows opened by register_device
    return _TYPE_UNMATCHED

def _action(self, obis, method, v):
    if obis == OBIS_IMAGE_TRANSFER:
        # image_action(method, data) -> (result, value): the hub's update (update.ota), wired by app
        return self.image_action(method, v) if self.image_action else (_HARDWARE_FAULT, None)
    if obis in (OBIS_CS05B, OBIS_CS05C):
        f = self.meter_image_action
        return f(obis[4], method, v) if f else (_HARDWARE_FAULT, None)
    dl = self.device_log
    if dl is None:
        return _HARDWARE_FAULT, None
    try:
        if obis == OBIS_DEVICE_LOG and method == 1:  # register_device
            p = v[1]
            code, _dup = dl.add(bytes(p[0][1]), p[1][1], add_crc(bytes(p[2][1])), self._cmd[0])
            return (_OK if code == 0 else _OTHER_REASON), None
        if obis == OBIS_DEVICE_LOG and method == 2:  # unregister_device
            return (_OK if dl.remove(bytes(v[1])) == 0 else _OTHER_REASON), None
        if obis == OBIS_DEVICE_LOG and method == 5:  # restore_PAN
            p = v[1]
            devs = [(bytes(e[1][0][1]), bytes(e[1][1][1])) for e in p[1][1]]
            return (_OK if dl.restore(bytes(p[0][1]), devs) == 0 else _OTHER_REASON), None
        if method == 4 and obis in (OBIS_DEVICE_LOG, OBIS_HISTORIC_LOG):  # backup_PAN
            t, xpan, rows = dl.backup()[0 if obis == OBIS_DEVICE_LOG else 1]
            arr = [(dlms.STRUCTURE, [(dlms.OCTET_STRING, e), (dlms.OCTET_STRING, h)]) for e, h in sorted(rows)]
            return _OK, (
                dlms.STRUCTURE,
                [(dlms.OCTET_STRING, date_time(t)), (dlms.OCTET_STRING, xpan), (dlms.ARRAY, arr)],
            )
    except (ValueError, TypeError, IndexError, AttributeError):
        return _TYPE_UNMATCHED, None
    return _OBJECT_UNDEFINED, None

def _get(self, cls, obis, attr):
    ident = self.identity
    if obis == OBIS_DEVICE_LOG and attr == 4:
        if self.device_log is None:
            return _HARDWARE_FAULT, None
        fn = self.versions
        rows = [_active_row(e, fn(e["eui"]) if fn is not None else None) for e in self.device_log.entries()]
        return _OK, (dlms.ARRAY, rows)
    if obis in (OBIS_SUBGHZ_CONFIG, OBIS_SUBGHZ_CHANNEL):
        if self.subghz is None:
            return _HARDWARE_FAULT, None
        return _OK, (self.subghz.config_value() if obis == OBIS_SUBGHZ_CONFIG else self.subghz.channel_value())
    if obis == OBIS_EUI:
        return _OK, (dlms.OCTET_STRING, ident.chf["eui"])
    if obis == OBIS_DEVICE_TYPE:
        return _OK, (dlms.OCTET_STRING, _DEVICE_TYPE)
    if obis == OBIS_CH_TYPE:
        return _OK, (dlms.OCTET_STRING, _CH_TYPE)
    return _OBJECT_UNDEFINED, None

def _get_sel(self, cls, obis, attr, sel, params):
    if obis == OBIS_EVENT_LOG:
        log, with_data = self.event_log, True
    elif obis == OBIS_SECURITY_LOG:
        log, with_data = self.security_log, False
    elif obis == OBIS_SUBGHZ_LOG:
        log, with_data = (self.subghz.log if self.subghz else None), True
    else:
        return _OBJECT_UNDEFINED, None
    if log is None:
        return _HARDWARE_FAULT, None
    rng = _range(sel, params)
    if rng is None:
        return _TYPE_UNMATCHED, None
    items = []
    for t, code, data in log.entries(rng[0], rng[1]):
        row = [(dlms.DOUBLE_LONG_UNSIGNED, t), (dlms.LONG_UNSIGNED, code)]
        if with_data:
            row.append((dlms.OCTET_STRING, data))
        items.append((dlms.STRUCTURE, row))
    td = (dlms.STRUCTURE, [dlms.DOUBLE_LONG_UNSIGNED, dlms.LONG_UNSIGNED] + ([dlms.OCTET_STRING] if with_data else []))
    return _OK, (dlms.COMPACT_ARRAY, (td, items))




def _find_set(a, attr):
    # the join_timeout set in the same CCS01 request applies to register_device
    for i, s in enumerate(a.specs):
        if s[0] == _SET and s[3] == attr and i < len(a.data) and a.data[i][0] == dlms.LONG_UNSIGNED:
            return a.data[i][1]
    return 0


# active_devices status bit string (8 bits, bit 0 = the first/most
# significant bit): bit 0 = the device has joined (is on the network with its
# key); bits 1-7 are sent as 0 -- their meaning is not in any public source we
# have (the RTDS rows show 0xC8 for two joined meters).
_STATUS_JOINED = const(0x80)


def _active_row(e, versions):
    """One active_devices entry (14 elements, the RTDS CCS05 shape, DLMS
    class 104 attribute 4): EUI-64, status bits, RSSI max/average/min, LQI
    max/average/min, last communication, number of hops, transmission
    failures, successes, application version, stack version. Statistics not
    yet measured are 0 (last communication: all FF, not specified); the number
    of hops is 1: the coordinator does not learn route lengths from the NCP,
    and a device it hears is counted as its direct neighbour. versions =
    (application, stack) from the device's Basic cluster (HAN coordinator);
    a version not known is 0."""
    rssi = e.get("rssi") or (0, 0, 0)
    lqi = e.get("lqi") or (0, 0, 0)
    status = _STATUS_JOINED if e.get("join_state") == "joined" else 0
    last = e.get("last_comm")
    app, stack = versions if versions else (None, None)
    return (
        dlms.STRUCTURE,
        [
            (dlms.OCTET_STRING, bytes(int(e["eui"][i : i + 2], 16) for i in range(0, 16, 2))),
            (dlms.BIT_STRING, (8, bytes((status,)))),
            (dlms.INTEGER, max(-128, min(127, rssi[2]))),
            (dlms.INTEGER, max(-128, min(127, rssi[1]))),
            (dlms.INTEGER, max(-128, min(127, rssi[0]))),
            (dlms.UNSIGNED, lqi[2] & 0xFF),
            (dlms.UNSIGNED, lqi[1] & 0xFF),
            (dlms.UNSIGNED, lqi[0] & 0xFF),
            (dlms.OCTET_STRING, date_time(last) if last else b"\xff" * 12),
            (dlms.UNSIGNED, 1),
            (dlms.UNSIGNED, min(255, e.get("tx_fail", 0))),
            (dlms.UNSIGNED, min(255, e.get("tx_ok", 0))),
            (dlms.UNSIGNED, (app or 0) & 0xFF),
            (dlms.UNSIGNED, (stack or 0) & 0xFF),
        ],
    )


def _range(sel, params):
    """Range descriptor (selector 1): structure {restricting object, from,
    to, selected values}; from/to double-long-unsigned UTC seconds since 2000.
    Returns (from, to) or None when malformed."""
    if sel != 1 or params is None or params[0] != dlms.STRUCTURE or len(params[1]) != 4:
        return None
    lo, hi = params[1][1], params[1][2]
    if lo[0] != dlms.DOUBLE_LONG_UNSIGNED or hi[0] != dlms.DOUBLE_LONG_UNSIGNED:
        return None
    return lo[1], hi[1]


def _check_specs(a, allowed):
    if len(a.specs) != len(allowed):
        raise UseCaseError("PayloadMismatch", "%d specifications, the use case has %d" % (len(a.specs), len(allowed)))
    if len(a.data) != len(a.specs):
        raise UseCaseError("PayloadMismatch", "%d data items for %d specifications" % (len(a.data), len(a.specs)))
    for s, want in zip(a.specs, allowed):
        if s[0] != want[0] or s[1] != want[1] or bytes(s[2]) != want[2] or s[3] != want[3]:
            raise UseCaseError("PayloadMismatch", "specification does not match the message code")
