# Tap-off (TOM) commands: when a command for the GSME that changes data the
# GPF also holds is buffered, the GPF keeps a copy; it applies the copy to its
# own data only when the GSME says the command succeeded -- its response, or
# for a future-dated command the 0x8F66 "future-dated command actioned" alert
# (message code 0x00CD) -- and otherwise discards it and raises alert 0x819E.
#
# Pending copies live in KV "gpf_tap" (one commit per change, so a copy taken
# before a power cut is still there after it); applied command data in KV
# "gpf_tom" (per cluster/command, the payloads of the latest command that
# carried it: a hex string, or a list of them when one command carried several,
# as GCS01a's Publish Day Profiles) and, for Publish Tariff Information, the
# mirrored Price attributes currency and trailing digit.
from micropython import const

from codes import ALERT_FD_OK, ALERT_TAP_OFF_FAILED
from gbcs import frame as gframe
from gbcs import gbz
from ids import hex_text
from han import zcl

# PROTOCOLS.md 3: the TOM commands
TOM = {
    0x006B: "GCS01a",
    0x006F: "GCS05",  # calendar part only
    0x0071: "GCS07",
    0x0015: "CS11",
    0x007C: "GCS23",
    0x007E: "GCS25",
    0x0088: "GCS44",
    0x00A3: "GCS01b",
}
_CALENDAR = const(0x0707)
_PRICE = const(0x0700)
_PREPAYMENT = const(0x0705)
_EVENTS = const(0x0709)
MC_FUTURE_DATED = const(0x00CD)
MC_GENERIC_NON_CRITICAL = const(0x1001)
_PENDING_MAX = const(32)
_CANCEL = const(0xFFFFFFFE)  # start times 0xFFFFFFFE/0xFFFFFFFF: a cancellation
_CANCEL_PART = 2

# (cluster, command) -> offset of the UTC start time in the ZCL payload
_START = {
    (_CALENDAR, 0x00): 12,  # Publish Calendar
    (_CALENDAR, 0x04): 12,  # Publish Special Days
    (_PRICE, 0x04): 12,  # Publish Tariff Information
    (_PRICE, 0x05): 8,  # Publish Price Matrix
    (_PRICE, 0x06): 8,  # Publish Block Thresholds
    (_PREPAYMENT, 0x03): 4,  # Emergency Credit Setup
}


def _u32le(p, o):
    return p[o] | (p[o + 1] << 8) | (p[o + 2] << 16) | (p[o + 3] << 24)


class TapOff:
    """TapOff(store, svc): svc is the gpf.service.GpfService (now(),
    alert(message code, payload), mirror(), the counters tap_applied and
    tap_discarded); made for one call and dropped (both KVs are cold: no RAM
    copy held); pending = {key: [message code, counter, [[cluster, fc, cmd,
    body hex, future-dated, confirmed]...]]}, read from flash."""

    def __init__(self, store, svc):
        self._kv = store.kv("gpf_tap", False)
        self._dkv = store.kv("gpf_tom", False)
        self.svc = svc
        self.pending = dict(self._kv.items())

    def _save(self, key, value):
        if value is None:
            self.pending.pop(key, None)
            self._kv.delete(key)
        else:
            self.pending[key] = value
            self._kv.set(key, value)

    def tap_off(self, command_frame):
        """Keep a copy of a TOM command; True when one was kept."""
        try:
            f = gframe.frame_of(command_frame)
            if f.cra != gframe.CRA_COMMAND or f.message_code not in TOM:
                return False
            g = gbz.parse(f.payload, 1, f.message_code)
        except ValueError:
            return False
        t = self.svc.now()[0]
        comps = []
        for c in g.components:
            if f.message_code == 0x006F and c.cluster != _CALENDAR:
                continue
            if c.encrypted():
                continue  # TOM commands carry no encrypted data (PROTOCOLS.md 3)
            body = bytes(c.body)
            off = _START.get((c.cluster, c.cmd))
            start = _u32le(body, off) if off is not None and len(body) >= off + 4 else 0
            if start >= _CANCEL:
                fd = _CANCEL_PART  # cancels the future-dated part not yet actioned
            else:
                fd = start > t or (c.from_dt is not None and c.from_dt > t)
            comps.append([c.cluster, c.zcl_fc, c.cmd, hex_text(body), fd, False])
        if not comps:
            return False
        key = "%s%016x" % (hex_text(f.originator), f.counter)
        if key not in self.pending and len(self.pending) >= _PENDING_MAX:
            oldest = min(self.pending, key=lambda k: self.pending[k][1])
            self._save(oldest, None)
        self._save(key, [f.message_code, f.counter, comps])
        return True

    def on_gsme_message(self, frame):
        """A response or alert from the GSME; returns the GPF's alerts."""
        try:
            f = gframe.frame_of(frame)
        except ValueError:
            return []
        if f.cra == gframe.CRA_RESPONSE:
            key = "%s%016x" % (hex_text(f.recipient), f.counter)
            p = self.pending.get(key)
            if p is None:
                return []
            if not _all_success(f):
                return self._discard(key, p)
            # new lists: the KV holds the old ones (an in-place change would
            # compare equal and never reach flash)
            comps = [c[:5] + [True] for c in p[2]]
            if any(c[4] == _CANCEL_PART for c in comps):
                self._cancel(key, comps)
                return []
            if any(c[4] for c in comps):
                # future-dated: each part is applied when the GSME's 0x8F66
                # alert says it was actioned
                self._save(key, [p[0], p[1], comps])
                return []
            self._apply(comps)
            self._save(key, None)
            return []
        if f.cra == gframe.CRA_ALERT and f.message_code == MC_FUTURE_DATED:
            try:
                g = gbz.parse(f.payload, 3, MC_FUTURE_DATED)
            except ValueError:
                return []
            alerts = []
            for e in g.fd_entries:
                mc = (e[0] << 8) | e[1]
                ctr = gframe.be_int(e, 2, 8)
                cluster, cmd = (e[10] << 8) | e[11], e[13]
                for key in [k for k, v in self.pending.items() if v[1] == ctr and v[0] == mc]:
                    p = self.pending[key]
                    if g.alert_code != ALERT_FD_OK:
                        alerts += self._discard(key, p)
                        continue
                    hit = [c for c in p[2] if c[5] and c[0] == cluster and (c[2] == cmd or _with_calendar(c, cmd))]
                    self._apply(hit)
                    rest = [c for c in p[2] if c not in hit]
                    self._save(key, [p[0], p[1], rest] if rest else None)
            return alerts
        return []

    def _discard(self, key, p):
        # 0x819E as a GPF GBZ alert without use-case-specific components
        # (count 0, alert code, timestamp), the shape of the router's 0x819D
        self._save(key, None)
        self.svc.tap_discarded += 1
        return [self.svc.alert(MC_GENERIC_NON_CRITICAL, gbz.alert(ALERT_TAP_OFF_FAILED, self.svc.now()[0]))]

    def _cancel(self, key, comps):
        # a successful cancellation: the future-dated parts it names, still
        # waiting for their 0x8F66 alert, will never be actioned
        self._save(key, None)
        parts = [(c[0], c[2]) for c in comps if c[4] == _CANCEL_PART]
        for k in list(self.pending):
            p = self.pending[k]
            rest = [c for c in p[2] if not (c[4] and c[5] and (c[0], c[2]) in parts)]
            if len(rest) != len(p[2]):
                self._save(k, [p[0], p[1], rest] if any(c[4] for c in rest) else None)
        self.svc.tap_applied += 1

    def _apply(self, comps):
        if not comps:
            return
        changes = {}
        for c in comps:
            k = "%04x%02x" % (c[0], c[2])
            v = changes.get(k)
            changes[k] = c[3] if v is None else (v if isinstance(v, list) else [v]) + [c[3]]
            if c[0] == _PRICE and c[2] == 0x04:
                self._tariff(bytes(int(c[3][i : i + 2], 16) for i in range(0, len(c[3]), 2)))
        self._dkv.update(changes)
        self.svc.tap_applied += 1

    def _tariff(self, p):
        # Publish Tariff Information: ... start(4) type(1) label(octstr)
        # tiers(1) blocks(1) unit(1) currency(2) trailing digit(1) ...
        o = 17
        if len(p) <= o:
            return
        o += 1 + p[o]
        if len(p) < o + 6:
            return
        currency = p[o + 3] | (p[o + 4] << 8)
        digit = p[o + 5]
        self.svc.mirror().set_attrs(_PRICE, [(0x0616, zcl.T_UINT16, currency), (0x0617, zcl.T_MAP8, digit)])


def _with_calendar(c, cmd):
    # day/week profiles and seasons take effect with their calendar
    return c[0] == _CALENDAR and cmd == 0x00 and c[2] in (0x01, 0x02, 0x03)


def _all_success(f):
    """The GSME's response says success: every component a Default Response
    with status 0 or another (non-error) response."""
    try:
        g = gbz.parse(f.payload, 2, f.message_code)
    except ValueError:
        return False
    for c in g.components:
        if c.encrypted():
            continue
        if c.cmd == zcl.DEFAULT_RSP and (c.zcl_fc & 3) == zcl.FT_GLOBAL:
            if len(c.body) < 2 or c.body[1] != zcl.SUCCESS:
                return False
        elif c.cluster == _EVENTS and c.cmd == 0x02 and (c.zcl_fc & 3) == zcl.FT_CLUSTER:
            # Clear Event Log Response: the bitmap of logs cleared, 0 = none
            if len(c.body) < 1 or c.body[0] == 0:
                return False
    return True
