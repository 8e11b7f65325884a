# The Gas Proxy Function: its own GBCS identity (hub.identity.gpf), GBZ use
# cases answered from the mirror of the GSME's data (gpf.mirror), the GPF
# Device Log (GCS59 restore, GCS62 0x8071 backup alert, CS03B / CS04B Method
# B join and unjoin).
#
# The tap-off is not here: gpf.service loads gpf.tapoff alone for it.
#
# Gpf.handle(frame) -> (response, [alerts]): parse -> authenticate (the CHF's
# rules, gbcs.usecase_base.accept; a supplementary remote party with its own
# certificate is allowed) -> check the payload is what the message code allows
# -> answer -> MAC'd response. Refusals are logged and raised; an
# authentication refusal (gbcs.security.SecurityError) is also alerted with
# its GBCS code, at most once per code per hour (take_alerts()).
from micropython import const

from codes import ALERT_GPF_DEVICE_LOG_CHANGED
from gbcs import der, gbz, p256
from gbcs import frame as gframe
from ids import hex_text
from gbcs.security import SecurityError, answer_once
from gbcs import usecase_base as U  # its names as U.X: one global instead of 13
from han import zcl

_DEVICE_MGMT = const(0x0708)

_READ = const("read")
_COT = const("cot")
_SNAP = const("snap")
_SAMPLED = const("sampled")
_RESTORE = const("restore")
_JOIN = const("join")
_UNJOIN = const("unjoin")

# the clusters (gpf.mirror's METERING, PREPAYMENT, PRICE)
_METERING = const(0x0702)
_PREPAYMENT = const(0x0705)
_PRICE = const(0x0700)
# message code, (name, kind, ((cluster, allowed attribute ids), ...), encrypted
# clusters, response ZCL frame control), ... -- shapes as the RTDS shows them.
# A constant tuple (in flash when frozen); the reads of Metering start with
# its formatting attributes: divisor, multiplier, unit of measure (0x0302,
# 0x0301, 0x0300); GCS13c's then 0x0100-0x015E (every other), GCS13b's
# 0x0700-0x070F.
USE_CASES = (
    0x0072, ("GCS09", _COT, None, (), 0x00),
    0x0074, ("GCS13a", _READ, ((_METERING, (0x0302, 0x0301, 0x0300, 0x0000)),), (_METERING,), 0x18),
    0x00B6, ("GCS13c", _READ, ((_METERING, (
        0x0302, 0x0301, 0x0300, 0x0100, 0x0102, 0x0104, 0x0106, 0x0108, 0x010A, 0x010C,
        0x010E, 0x0110, 0x0112, 0x0114, 0x0116, 0x0118, 0x011A, 0x011C, 0x011E, 0x0120,
        0x0122, 0x0124, 0x0126, 0x0128, 0x012A, 0x012C, 0x012E, 0x0130, 0x0132, 0x0134,
        0x0136, 0x0138, 0x013A, 0x013C, 0x013E, 0x0140, 0x0142, 0x0144, 0x0146, 0x0148,
        0x014A, 0x014C, 0x014E, 0x0150, 0x0152, 0x0154, 0x0156, 0x0158, 0x015A, 0x015C,
        0x015E,
    )),), (_METERING,), 0x18),
    0x00B8, ("GCS13b", _READ, ((_METERING, (
        0x0302, 0x0301, 0x0300, 0x0700, 0x0701, 0x0702, 0x0703, 0x0704, 0x0705, 0x0706,
        0x0707, 0x0708, 0x0709, 0x070A, 0x070B, 0x070C, 0x070D, 0x070E, 0x070F,
    )),), (_METERING,), 0x18),
    0x0075, (
        "GCS14",
        _READ,
        ((_PRICE, (0x0617, 0x0616)), (_PREPAYMENT, (0x0005, 0x0002, 0x0001, 0x0211, 0x0221, 0x0231))),
        (_PREPAYMENT,),
        0x08,
    ),
    0x012A, ("GCS60a", _READ, ((_METERING, (0x0A00,)), (_PREPAYMENT, (0x0001,))), (), 0x08),
    0x0096, ("GCS16b", _SNAP, ((_PREPAYMENT, ()),), (_PREPAYMENT,), 0x19),
    0x00A0, ("GCS61", _SAMPLED, ((_METERING, ()),), (_METERING,), 0x19),
    0x008C, ("GCS59", _RESTORE, None, (), 0),
    0x000E, ("CS03B", _JOIN, None, (), 0),
    0x0010, ("CS04B", _UNJOIN, None, (), 0),
)

# CS02b Update Security Credentials on the GPF (chf.credentials, device "gpf")
MC_CS02B = (0x0102, 0x0103)  # supplier by supplier, network operator by network operator
_MC_GCS62 = const(0x00B2)
_MC_GENERIC_NON_CRITICAL = const(0x1001)  # message code of an alert with no use case of its own
_ALERT_QUIET_S = const(3600)  # one refusal alert per GBCS code per hour
_ALERTS_MAX = const(8)
_DEVICE_LOG_MAX = const(16)
# join response codes (PROTOCOLS.md 2)
_JOIN_OK = const(0)
_JOIN_INCOMPATIBLE = const(3)
_JOIN_LOG_FULL = const(4)
_JOIN_INVALID_METHOD = const(2)
_JOIN_WRITE_FAILURE = const(5)
_JOIN_KE_BASE = const(5)  # 6-10: the device's key establishment ended with Terminate status 1-5
_JOIN_BAD_CERTIFICATE = const(11)  # its CBKE: Terminate INVALID_CERTIFICATE (6)
_JOIN_NO_KE = const(13)  # no key establishment with the hub on record
_UNJOIN_NOT_IN_LOG = const(1)  # the RTDS CS04B ERROR response: "Not in Device Log"
_METHOD_B = const(2)
_GPF_LOG_TYPES = (0, 1, 4, 5, 6)  # GSME, ESME, HCALCS, PPMID, Type 2

_CMD_GET_PREPAY_SNAPSHOT = const(0x07)
_CMD_PUBLISH_PREPAY_SNAPSHOT = const(0x01)
_CMD_GET_SAMPLED_DATA = const(0x08)
_CMD_GET_SAMPLED_DATA_RSP = const(0x07)
_CMD_PUBLISH_COT = const(0x00)
_NOT_FOUND = const(0x8B)


def _u32le(p, o):
    return p[o] | (p[o + 1] << 8) | (p[o + 2] << 16) | (p[o + 3] << 24)


def _le(v, n):
    return bytes((v >> (8 * i)) & 0xFF for i in range(n))


class Gpf:
    """Gpf(identity, store, mirror, now, security_log=None, event_log=None).
    now() -> (UTC seconds since 2000, clock valid)."""

    def __init__(self, identity, store, mirror, now, security_log=None, event_log=None, ke_status=None):
        self.identity = identity
        # ke_status(eui_hex) -> the device's last key establishment with the
        # hub (han.cbke: 0 done, else its Terminate status) or None
        self.ke_status = ke_status
        self.mirror = mirror
        self.now = now
        self.security_log = security_log
        self.event_log = event_log
        self._store = store
        self._cred = None
        self._kv = store.kv("gpf")
        self.devices = list(self._kv.get("devlog", []))
        self.executed = 0
        self.rejected = 0
        self._urp = (None, None)  # (certificate KA key, Z) of the last unknown remote party
        self._alert_last = {}  # GBCS code -> time (2000 epoch) of its last refusal alert
        self._alerts = []  # refusal alerts the router has not taken yet
        self.alerts_suppressed = 0

    @property
    def parties(self):
        return self.identity.parties("gpf")

    @property
    def credentials(self):
        """The GPF's trust anchor cells (loaded on first use)."""
        if self._cred is None:
            from chf.credentials import Credentials

            self._cred = Credentials(self._store, self.identity, "gpf")
        return self._cred

    def _t(self):
        return self.now()[0]

    # --- GBCS in --------------------------------------------------------------

    def handle(self, data, tag=None):
        """As Chf.handle: the counter is committed with the answer; an exact
        resend under the same link tag is answered from the stored record."""
        try:
            return answer_once(self.parties, data, tag, self._handle, self._store)
        except SecurityError as e:
            self._refusal_alert(e.event)
            raise

    def _refusal_alert(self, code):
        # GBZ alert (message code 0x1001, count 0, code, timestamp), MAC'd
        # for the ACB as the GPF's alerts are; one per code per _ALERT_QUIET_S
        t = self._t()
        last = self._alert_last.get(code)
        if last is not None and 0 <= t - last < _ALERT_QUIET_S:
            self.alerts_suppressed += 1
            return
        try:
            a = self.alert(_MC_GENERIC_NON_CRITICAL, gbz.alert(code, t))
        except ValueError:  # no ACB anchor yet: the security log has it
            return
        self._alert_last[code] = t
        if len(self._alerts) < _ALERTS_MAX:
            self._alerts.append(a)

    def take_alerts(self):
        """The refusal alerts raised since the last call (the router emits them)."""
        out, self._alerts = self._alerts, []
        return out

    def _handle(self, data):
        parties = self.parties
        f = U.accept(parties, data, self.security_log, self._t, allow_urp=True)
        if f.message_code in MC_CS02B:
            return self._update_credentials(f)
        uc = USE_CASES[USE_CASES.index(f.message_code) + 1] if f.message_code in USE_CASES else None
        if uc is None:
            self.rejected += 1
            U.log_event(self.event_log, U.EV_UNSUPPORTED, f.message_code.to_bytes(2, "big"), self._t)
            raise U.UseCaseError("UnsupportedUseCase", "message code 0x%04x is not a GPF use case here" % f.message_code)
        try:
            if uc[1] == _RESTORE:
                entries = _restore_entries(f.payload)
            elif uc[1] == _JOIN or uc[1] == _UNJOIN:
                join = _join_command(f.payload, uc[1] == _JOIN)
            else:
                g = gbz.parse(f.payload, 1, f.message_code)
                _check_gbz(g, uc)
        except (gbz.GbzError, der.DerError, U.UseCaseError, IndexError, TypeError) as e:  # UseCaseError: PayloadMismatch
            self.rejected += 1
            U.log_event(self.security_log, U.EV_PAYLOAD_MISMATCH, f.message_code.to_bytes(2, "big"), self._t)
            if isinstance(e, U.UseCaseError):
                raise
            raise U.UseCaseError("PayloadMismatch", "bad payload for %s: %s" % (uc[0], e))
        self.executed += 1
        alerts = []
        if uc[1] == _RESTORE:
            payload = self._restore(entries)
            alerts.append(self.backup_alert())
            return bytes(parties.protect_response(f, payload)), alerts
        if uc[1] == _JOIN or uc[1] == _UNJOIN:
            code = self._join(*join) if uc[1] == _JOIN else self._unjoin(join[1])
            if code == _JOIN_OK:
                alerts.append(self.backup_alert())
            return bytes(parties.protect_response(f, der.encode(der.integer(code)))), alerts
        urp = f.supp_cert is not None and f.supp_party is not None and parties.role_of(f.supp_party) is None
        supp_orig = parties.next_own_counter() if urp else None
        enc = _Enc(self, parties, f, supp_orig)
        dt = None
        if uc[1] == _READ:
            comps, dt = self._read(g, uc, enc)
        elif uc[1] == _COT:
            comps = self._cot(g)
        elif uc[1] == _SNAP:
            comps = self._snapshots(g, uc, enc)
        else:
            comps = self._sampled(g, uc, enc)
        comps[-1].control |= gbz.CTRL_LAST
        payload = gbz.build(comps)
        return bytes(parties.protect_response(f, payload, date_time=dt, supp_orig_counter=supp_orig)), alerts

    def _update_credentials(self, f):
        """CS02b: answered signed (not MAC'd) with a date-time, as the RTDS
        GPF responses are; a refused command is security-logged and raised
        (the GBCS response has no rejected form: docs/gpf.md)."""
        from chf.credentials import CredentialError

        try:
            if gframe.payload_kind(f) != gframe.KIND_DER:
                raise U.UseCaseError("PayloadMismatch", "CS02b payload is not ASN.1")
            dt = U.date_time(self._t(), weekday=False)
            resp = self.credentials.answer_update(f, self.identity.key("gpf", "ds_d"), dt)
        except (CredentialError, der.DerError, U.UseCaseError) as e:  # UseCaseError: PayloadMismatch
            self.rejected += 1
            U.log_event(self.security_log, U.EV_PAYLOAD_MISMATCH, f.message_code.to_bytes(2, "big"), self._t)
            if isinstance(e, U.UseCaseError):
                raise
            raise U.UseCaseError("PayloadMismatch", "CS02b refused: %s" % e)
        self.executed += 1
        return resp, []

    # --- use cases ------------------------------------------------------------

    def _read(self, g, uc, enc):
        m = self.mirror
        comps = []
        for c in g.components:
            ids = zcl.decode_read_attributes(c.body)
            recs = []
            for a in ids:
                v = m.get(c.cluster, a)
                if v is None:
                    recs.append((a, zcl.UNSUPPORTED_ATTRIBUTE, 0, None))
                else:
                    recs.append((a, zcl.SUCCESS, v[0], v[1]))
            body = bytes(zcl.encode_read_attributes_rsp(recs))
            comps.append(enc.component(c.cluster, uc[4], c.seq, zcl.READ_ATTRIBUTES_RSP, body, c.cluster in uc[3]))
        upd = m.updated([c.cluster for c in g.components])
        if upd is None:
            upd = (self._t(), U.CLOCK_DOUBTFUL)
        return comps, U.date_time(upd[0], upd[1], weekday=False)

    def _cot(self, g):
        c = g.components[0]
        self._kv.set("cot", hex_text(c.body))
        body = bytes((_CMD_PUBLISH_COT, zcl.SUCCESS))
        return [gbz.component(_DEVICE_MGMT, 0x00, c.seq, zcl.DEFAULT_RSP, body)]

    def _snapshots(self, g, uc, enc):
        snaps = self.mirror.snaps
        comps = []
        for c in g.components:
            p = c.body
            if len(p) != 13:
                raise U.UseCaseError("PayloadMismatch", "GetPrepaySnapshot of %d bytes" % len(p))
            lo, hi, off, cause = _u32le(p, 0), _u32le(p, 4), p[8], _u32le(p, 9)
            found = [s for s in snaps if lo <= s[0] <= hi and (s[1] & cause)]
            if off < len(found):
                s = found[off]
                body = (
                    _le(off, 4)
                    + _le(s[0], 4)
                    + bytes((len(snaps) & 0xFF, 0, 1))
                    + _le(s[1], 4)
                    + bytes((s[2],))
                    + bytes(int(s[3][i : i + 2], 16) for i in range(0, len(s[3]), 2))
                )
                comps.append(enc.component(c.cluster, uc[4], c.seq, _CMD_PUBLISH_PREPAY_SNAPSHOT, body, encrypt=True))
            else:
                comps.append(_not_found(c, _CMD_GET_PREPAY_SNAPSHOT))
        return comps

    def _sampled(self, g, uc, enc):
        c = g.components[0]
        p = c.body
        if len(p) != 9:
            raise U.UseCaseError("PayloadMismatch", "GetSampledData of %d bytes" % len(p))
        sid, t, stype, n = p[0] | (p[1] << 8), _u32le(p, 2), p[6], p[7] | (p[8] << 8)
        first, samples = self.mirror.daily_samples()
        if sid != 1 or stype != 0 or first is None or n == 0:
            return [_not_found(c, _CMD_GET_SAMPLED_DATA)]
        idx = max(0, -(-(t - first * 86400) // 86400))
        if idx >= len(samples):
            return [_not_found(c, _CMD_GET_SAMPLED_DATA)]
        got = samples[idx : idx + n]
        body = bytearray(_le(sid, 2) + _le((first + idx) * 86400, 4) + bytes((stype,)) + _le(0xFFFF, 2))
        body += _le(len(got), 2)
        for v in got:
            body += _le(v, 3)
        return [enc.component(c.cluster, uc[4], c.seq, _CMD_GET_SAMPLED_DATA_RSP, bytes(body), True)]

    # --- the GPF Device Log (GCS59 / GCS62) -------------------------------------

    def _restore(self, entries):
        new, outcomes = [], []
        for eui, typ in entries:
            if typ not in _GPF_LOG_TYPES or any(e[0] == eui for e in new):
                code = _JOIN_INCOMPATIBLE
            elif len(new) >= _DEVICE_LOG_MAX:
                code = _JOIN_LOG_FULL
            else:
                new.append([eui, typ])
                code = _JOIN_OK
            outcomes.append(der.sequence(_entry(eui, typ), der.integer(code)))
        self.devices = new
        self._kv.set("devlog", new)
        return der.encode(der.sequence(der.sequence(*outcomes)))

    def _join(self, method, eui, typ):
        """CS03B on the GPF: the device joins the GPF's Device Log. Its link
        to the GPF is its link to the hub, so it must have completed a key
        establishment (CBKE) with the hub; a failed one gives 6-11, none 13."""
        if method != _METHOD_B:
            return _JOIN_INVALID_METHOD
        old = None
        for e in self.devices:
            if e[0] == eui:
                old = e
        if typ not in _GPF_LOG_TYPES or (old is not None and old[1] != typ):
            return _JOIN_INCOMPATIBLE
        ke = self.ke_status(eui.upper()) if self.ke_status is not None else None
        if ke is None:
            return _JOIN_NO_KE
        if ke:
            return _JOIN_KE_BASE + ke if ke <= 5 else (_JOIN_BAD_CERTIFICATE if ke == 6 else _JOIN_NO_KE)
        if old is not None:
            return _JOIN_OK
        if len(self.devices) >= _DEVICE_LOG_MAX:
            return _JOIN_LOG_FULL
        return self._set_devices(self.devices + [[eui, typ]])

    def _unjoin(self, eui):
        """CS04B on the GPF: the device leaves the GPF's Device Log."""
        rest = [e for e in self.devices if e[0] != eui]
        if len(rest) == len(self.devices):
            return _UNJOIN_NOT_IN_LOG
        return self._set_devices(rest)

    def _set_devices(self, devices):
        try:
            self._kv.set("devlog", devices)
        except OSError:
            return _JOIN_WRITE_FAILURE
        self.devices = devices
        return _JOIN_OK

    def backup_alert(self):
        """GCS62: alert 0x8071 GPF Device Log Changed with the log's backup."""
        body = der.sequence(
            der.integer(ALERT_GPF_DEVICE_LOG_CHANGED),
            der.generalized_time(U.generalized_time(self._t())),
            der.sequence(*[_entry(e, t) for e, t in self.devices]),
        )
        return bytes(self.parties.protect_alert(_MC_GCS62, der.encode(body)))

    def alert(self, message_code, payload):
        return bytes(self.parties.protect_alert(message_code, payload))

    def status(self):
        d = self.mirror.status()
        d.update(
            {
                "eui": hex_text(self.identity.gpf["eui"]),
                "devices": len(self.devices),
                "executed": self.executed,
                "rejected": self.rejected,
            }
        )
        return d


class _Enc:
    # builds response components, encrypting those the use case protects
    def __init__(self, gpf, parties, f, supp_orig):
        self.gpf, self.parties, self.f = gpf, parties, f
        self.count = 0
        self.key = None
        self.supp_orig = supp_orig

    def _key(self):
        if self.key is None:
            f, parties = self.f, self.parties
            party = bytes(f.supp_party if f.supp_party is not None else f.originator)
            if parties.role_of(party) is not None:
                z = parties.z(party)
            elif f.supp_cert is not None:
                q = U.cert_ka_public(f.supp_cert)
                cached = self.gpf._urp
                if cached[0] == q:
                    z = cached[1]
                else:
                    z = p256.ecdh(self.gpf.identity.gpf["ka_d"], q)
                    self.gpf._urp = (q, z)
            else:
                raise U.UseCaseError("PayloadMismatch", "no key-agreement key for %s" % party)
            counter = self.supp_orig if self.supp_orig is not None else f.counter
            self.key = U.encryption_key(z, parties.eui, counter, party)
        return self.key

    def component(self, cluster, fc, seq, cmd, body, encrypt):
        if not encrypt:
            return gbz.component(cluster, fc, seq, cmd, body)
        c = gbz.Component()
        c.control = gbz.CTRL_ENCRYPTED
        c.cluster = cluster
        c.ahc = 0
        c.ahfc = self.count & 0xFF
        self.count += 1
        c.zcl_fc = fc
        c.seq = seq
        c.cmd = cmd
        c.sec_header = U.ENC_SECURITY_HEADER
        c.ciphertext, c.ae_mac = U.seal(self._key(), self.parties.eui, body)
        return c


def _not_found(c, cmd):
    return gbz.component(c.cluster, 0x08, c.seq, zcl.DEFAULT_RSP, bytes((cmd, _NOT_FOUND)))


def _entry(eui, typ):
    b = eui if isinstance(eui, (bytes, bytearray)) else bytes(int(eui[i : i + 2], 16) for i in range(0, 16, 2))
    return der.sequence(der.octets(b), der.integer(typ))


def _restore_entries(payload):
    d = der.decode(payload)
    if d[0] != der.SEQUENCE or len(d[1]) != 1 or d[1][0][0] != der.SEQUENCE:
        raise U.UseCaseError("PayloadMismatch", "GCS59 payload is not a device log restore")
    out = []
    for e in d[1][0][1]:
        if e[0] != der.SEQUENCE or len(e[1]) != 2 or e[1][0][0] != der.OCTET_STRING or e[1][1][0] != der.INTEGER:
            raise U.UseCaseError("PayloadMismatch", "bad GPF device log entry")
        eui = bytes(e[1][0][1])
        if len(eui) != 8:
            raise U.UseCaseError("PayloadMismatch", "device id of %d bytes" % len(eui))
        out.append((hex_text(eui), der.to_int(e[1][1][1])))
    return out


def _join_command(payload, join):
    """CS03B: (join method and role, device id hex, device type); CS04B:
    (None, device id hex, None)."""
    d = der.decode(payload)
    if not join:
        if d[0] != der.OCTET_STRING or len(d[1]) != 8:
            raise U.UseCaseError("PayloadMismatch", "CS04B payload is not a device id")
        return None, hex_text(bytes(d[1])), None
    v = d[1]
    if (d[0] != der.SEQUENCE or len(v) != 3 or v[0][0] != der.INTEGER or v[1][0] != der.OCTET_STRING
            or len(v[1][1]) != 8 or v[2][0] != der.INTEGER):
        raise U.UseCaseError("PayloadMismatch", "CS03B payload is not a join device command")
    return der.to_int(v[0][1]), hex_text(bytes(v[1][1])), der.to_int(v[2][1])


def _check_gbz(g, uc):
    allowed = uc[2]
    if uc[1] == _COT:
        if len(g.components) != 1:
            raise U.UseCaseError("PayloadMismatch", "GCS09 has one component")
        c = g.components[0]
        if c.cluster != _DEVICE_MGMT or c.cmd != _CMD_PUBLISH_COT or c.encrypted() or len(c.body) != 17:
            raise U.UseCaseError("PayloadMismatch", "GCS09 needs a Publish Change of Tenancy")
        return
    for c in g.components:
        if c.encrypted():
            raise U.UseCaseError("PayloadMismatch", "encrypted component in a GPF read")
        ids_ok = None
        for cl, ok in allowed:
            if cl == c.cluster:
                ids_ok = ok
        if ids_ok is None:
            raise U.UseCaseError("PayloadMismatch", "cluster 0x%04x not allowed for %s" % (c.cluster, uc[0]))
        ft = c.zcl_fc & 3
        if uc[1] == _READ:
            if ft != zcl.FT_GLOBAL or c.cmd != zcl.READ_ATTRIBUTES:
                raise U.UseCaseError("PayloadMismatch", "%s needs Read Attributes" % uc[0])
            try:
                ids = zcl.decode_read_attributes(c.body)
            except zcl.ZclError as e:
                raise U.UseCaseError("PayloadMismatch", str(e))
            for a in ids:
                if a not in ids_ok:
                    raise U.UseCaseError("PayloadMismatch", "attribute 0x%04x not allowed for %s" % (a, uc[0]))
        elif uc[1] == _SNAP:
            if ft != zcl.FT_CLUSTER or c.cmd != _CMD_GET_PREPAY_SNAPSHOT:
                raise U.UseCaseError("PayloadMismatch", "GCS16b needs Get Prepay Snapshot")
        elif uc[1] == _SAMPLED:
            if len(g.components) != 1 or ft != zcl.FT_CLUSTER or c.cmd != _CMD_GET_SAMPLED_DATA:
                raise U.UseCaseError("PayloadMismatch", "GCS61 needs one Get Sampled Data")


