# The GPF's copy of the gas meter's data: the ZSE Metering-cluster mirror the
# GSME asks for (RequestMirror -> mirror endpoint, ConfigureMirror) and keeps
# up to date with attribute reports, plus the logs the GPF builds from it
# (daily gas consumption, prepayment daily snapshots the GSME publishes).
#
# Data model (docs/gpf.md):
#   attrs[cluster][attr id] = (ZCL type, value)   Metering 0x0702, Prepayment
#                                                 0x0705, Price 0x0700, ...
#   upd[cluster] = (UTC seconds since 2000, DLMS clock status) of the last
#       update: status 00 when the hub's clock was valid (GPF time), 04 when
#       the time is the GSME's own ReadingSnapShotTime (hub clock not valid),
#       02 when neither is known to be right.
#   day = [first day (days since 2000), summation at its first report,
#          3-byte daily consumption samples ...]
#   snaps = up to 31 prepayment snapshots (time, cause, payload type, body)
#
# Persistence: one KV "gpf_mirror" (endpoint, GSME, config, attributes as
# compact ZCL attribute records in hex, update times) rewritten once per
# report (one atomic file write), and KV "gpf_logs" (daily log, snapshots)
# rewritten only when a day closes or a snapshot arrives.

from micropython import const

from ids import hex_bytes, hex_text
from gbcs.usecase_base import CLOCK_DOUBTFUL, CLOCK_OK, CLOCK_OTHER_BASE
from han import zcl, zcl_clusters

METERING = const(0x0702)
PREPAYMENT = const(0x0705)
PRICE = const(0x0700)

_MIRROR_ENDPOINT = const(2)
_DAY_LOG_MAX = const(731)
_SNAP_MAX = const(31)
_SUMMATION = const(0x0000)
_SNAPSHOT_TIME = const(0x0007)  # Metering ReadingSnapShotTime (UTC)
_UTC_INVALID = const(0xFFFFFFFF)
_MAX_ATTRS = const(64)  # per cluster: a bound on what a device can make us store
# ZSE Functional Notification Flags bit "Tunnelled Message Pending"
_FLAG_TUNNEL_PENDING = const(0x00008000)

# Prepayment commands
_PP_PUBLISH_SNAPSHOT = const(0x01)  # server -> client

# fields of the records kept in memory and in the KV (lists and tuples)
_ATTR_TYPE = const(0)  # attrs[cluster][attr id] = (ZCL type, value)
_ATTR_VALUE = const(1)
_UPD_TIME = const(0)  # upd[cluster] = (UTC seconds since 2000, clock status)
_UPD_STATUS = const(1)
_CFG_NOTIFY = const(2)  # config = ConfigureMirror's [issuer event id, reporting interval, notify, scheme]
_CFG_SCHEME = const(3)
_DAY_FIRST = const(0)  # day = [first day, summation at its first report, samples ...]
_DAY_START = const(1)
_DAY_SAMPLES = const(2)
_SNAP_TIME = const(0)  # snaps[i] = [time, cause, payload type, body in hex]


class MirrorError(ValueError):
    pass


class Mirror:
    """Mirror(store, now): now() -> (UTC seconds since 2000, clock valid)."""

    def __init__(self, store, now):
        self._kv = store.kv("gpf_mirror")
        self._lkv = store.kv("gpf_logs")
        self.now = now
        self.writes = 0  # KV commits (flash writes) made by the mirror
        self.reports = 0
        self.tunnel_pending = False
        self.attrs = {}
        self.upd = {}
        for k, v in self._kv.items():
            try:
                if k[0] == "c":
                    self.attrs[int(k[1:], 16)] = _decode_records(hex_bytes(v))
                elif k[0] == "u":
                    self.upd[int(k[1:], 16)] = (int(v[_UPD_TIME]), int(v[_UPD_STATUS]))
            except (ValueError, TypeError, IndexError, zcl.ZclError):
                pass  # a damaged entry is dropped: the GSME reports it again
        self.endpoint = self._kv.get("ep")
        self.gsme = self._kv.get("gsme")
        self.config = self._kv.get("cfg")
        day = self._lkv.get("day")
        self.day = day if isinstance(day, list) and len(day) >= _DAY_SAMPLES else None
        snaps = self._lkv.get("snaps")
        self.snaps = snaps if isinstance(snaps, list) else []

    # --- state ----------------------------------------------------------------

    def get(self, cluster, attr):
        """(type, value) or None."""
        c = self.attrs.get(cluster)
        return None if c is None else c.get(attr)

    def updated(self, clusters):
        """(time, clock status) of the oldest last update among the clusters;
        the worst status wins (02 over 04 over 00). None when never updated."""
        t, st = None, CLOCK_OK
        for c in clusters:
            u = self.upd.get(c)
            if u is None:
                return None
            if t is None or u[_UPD_TIME] < t:
                t = u[_UPD_TIME]
            st = _worse(st, u[_UPD_STATUS])
        return t, st

    def _stamp(self, snapshot_time):
        t, valid = self.now()
        if valid:
            return t, CLOCK_OK
        if snapshot_time is not None and snapshot_time != _UTC_INVALID:
            return snapshot_time, CLOCK_OTHER_BASE
        return t, CLOCK_DOUBTFUL

    def set_attrs(self, cluster, records, stamp=None):
        """Store (attr, type, value) records for a cluster and persist them in
        one commit. stamp: (time, status) or None to stamp it now."""
        c = self.attrs.get(cluster)
        if c is None:
            c = {}
        for a, t, v in records:
            if a not in c and len(c) >= _MAX_ATTRS:
                raise MirrorError("too many attributes for cluster 0x%04x" % cluster)
            c[a] = (t, v)
        self.attrs[cluster] = c
        if stamp is None:
            # the GSME's ReadingSnapShotTime (Metering) times all its clusters
            snap = self.get(METERING, _SNAPSHOT_TIME)
            stamp = self._stamp(snap[_ATTR_VALUE] if snap is not None else None)
        self.upd[cluster] = stamp
        when = stamp[_UPD_TIME]
        self._kv.update({"c%04x" % cluster: hex_text(_encode_records(c)), "u%04x" % cluster: [when, stamp[_UPD_STATUS]]})
        self.writes += 1
        if cluster == METERING:
            s = c.get(_SUMMATION)
            if s is not None and any(a == _SUMMATION for a, _t, _v in records):
                self._day_log(when, s[_ATTR_VALUE])

    def _day_log(self, t, summation):
        # daily consumption: the difference of the summation at the first
        # report of consecutive days (UTC); days without a report get 0
        day = t // 86400
        d = self.day
        if d is None:
            self.day = [day, summation]
            self._save_logs()
            return
        last_day = d[_DAY_FIRST] + len(d) - _DAY_SAMPLES  # the day whose start reading is d[_DAY_START]
        if day <= last_day:
            return
        used = max(0, summation - d[_DAY_START]) & 0xFFFFFF
        samples = d[_DAY_SAMPLES:] + ["%06x" % used] + ["000000"] * (day - last_day - 1)
        first = d[_DAY_FIRST]
        if len(samples) > _DAY_LOG_MAX:
            first += len(samples) - _DAY_LOG_MAX
            samples = samples[-_DAY_LOG_MAX:]
        self.day = [first, summation] + samples
        self._save_logs()

    def daily_samples(self):
        """(first day number, [consumption per day]) of the closed days."""
        d = self.day
        if d is None or len(d) <= _DAY_SAMPLES:
            return None, []
        return d[_DAY_FIRST], [int(s, 16) for s in d[_DAY_SAMPLES:]]

    def add_snapshot(self, payload):
        """A PublishPrepaySnapshot payload from the GSME: keep (time, cause,
        payload type, sub-payload) of its snapshot, the last _SNAP_MAX."""
        p = payload
        if len(p) < 18:
            raise MirrorError("PublishPrepaySnapshot of %d bytes" % len(p))
        t = _u32(p, 4)
        body = [t, _u32(p, 11), p[15], hex_text(p[16:])]
        snaps = [s for s in self.snaps if s[_SNAP_TIME] != t] + [body]
        snaps.sort(key=_snap_time)
        self.snaps = snaps[-_SNAP_MAX:]
        self._save_logs()

    def _save_logs(self):
        self._lkv.update({"day": self.day, "snaps": self.snaps})
        self.writes += 1

    def set_mirror(self, eui_hex, endpoint):
        self.gsme = eui_hex
        self.endpoint = endpoint
        self._kv.update({"gsme": eui_hex, "ep": endpoint})
        self.writes += 1

    def status(self):
        return {
            "gsme": self.gsme,
            "mirror_endpoint": self.endpoint,
            "clusters": dict(("%04x" % c, len(a)) for c, a in self.attrs.items()),
            "reports": self.reports,
            "mirror_writes": self.writes,
            "daily_samples": len(self.day) - _DAY_SAMPLES if self.day else 0,
            "snapshots": len(self.snaps),
        }

    def notification_flags(self):
        return _FLAG_TUNNEL_PENDING if self.tunnel_pending else 0

    # --- ZCL server (coordinator.zcl_servers[cluster]) -------------------------

    async def zcl_server(self, eui_hex, src_ep, header, payload, cluster=METERING):
        """Handle one ZCL frame for a mirrored cluster: returns the reply ZCL
        frame (bytes) or None. Never raises on bad input (a Default Response
        with MALFORMED_COMMAND instead)."""
        if not isinstance(header, zcl.Header):
            header, off = zcl.parse_header(header)
            if payload is None:
                payload = b""
        try:
            return self._zcl(eui_hex, header, payload, cluster)
        except (zcl.ZclError, MirrorError, IndexError, ValueError):
            return _status_rsp(header, zcl.MALFORMED_COMMAND)

    def _zcl(self, eui, h, p, cluster):
        eui = eui.lower() if isinstance(eui, str) else hex_text(eui)
        if h.frame_type == zcl.FT_GLOBAL:
            if h.command_id == zcl.DEFAULT_RSP:
                return None  # never answered (ZCL), whatever it says
            fn = _GLOBAL_COMMANDS.get(h.command_id)
            if fn is None:
                return _status_rsp(h, zcl.UNSUP_GENERAL_COMMAND)
            return fn(self, eui, h, p, cluster)
        # cluster-specific commands come from the GSME's servers (server ->
        # client); only RequestMirror may come from a device not mirrored yet
        fn = _CLUSTER_COMMANDS.get(cluster << 8 | h.command_id) if h.direction else None
        if fn is None or (fn is not _request_mirror and eui != self.gsme):
            return _status_rsp(h, zcl.UNSUP_CLUSTER_COMMAND)
        return fn(self, eui, h, p, cluster)


# --- the ZCL commands the mirror serves -----------------------------------------
# handler(mirror, eui hex, header, payload, cluster) -> reply frame or None


def _read_attributes(mirror, eui, h, p, cluster):
    if h.direction:
        return _status_rsp(h, zcl.UNSUP_GENERAL_COMMAND)
    ids = zcl.decode_read_attributes(p)
    recs = []
    c = mirror.attrs.get(cluster, {})
    for a in ids:
        v = c.get(a)
        if v is None:
            recs.append((a, zcl.UNSUPPORTED_ATTRIBUTE, 0, None))
        else:
            recs.append((a, zcl.SUCCESS, v[_ATTR_TYPE], v[_ATTR_VALUE]))
    rh = zcl.Header(zcl.READ_ATTRIBUTES_RSP, h.tsn, zcl.FT_GLOBAL, 1, disable_default_response=True)
    return zcl.build_frame(rh, zcl.encode_read_attributes_rsp(recs))


def _report_attributes(mirror, eui, h, p, cluster):
    if mirror.gsme is None or eui != mirror.gsme:
        return _default_rsp(h, zcl.FAILURE)
    mirror.set_attrs(cluster, zcl.decode_attribute_records(p))
    mirror.reports += 1
    cfg = mirror.config
    if cluster == METERING and cfg and cfg[_CFG_NOTIFY]:
        rh = zcl.Header(zcl_clusters.MET_MIRROR_REPORT_ATTRIBUTE_RSP, h.tsn, zcl.FT_CLUSTER, 0, disable_default_response=True)
        body = zcl_clusters.encode_mirror_report_attribute_rsp(cfg[_CFG_SCHEME], [mirror.notification_flags()])
        return zcl.build_frame(rh, body)
    return _status_rsp(h, zcl.SUCCESS)


def _request_mirror(mirror, eui, h, p, cluster):
    if mirror.gsme is not None and mirror.gsme != eui and mirror.endpoint is not None:
        ep = zcl_clusters.MIRROR_REFUSED  # one GSME per GPF
    else:
        ep = _MIRROR_ENDPOINT
        mirror.set_mirror(eui, ep)
    rh = zcl.Header(zcl_clusters.MET_REQUEST_MIRROR_RSP, h.tsn, zcl.FT_CLUSTER, 0, disable_default_response=True)
    return zcl.build_frame(rh, zcl_clusters.encode_request_mirror_rsp(ep))


def _remove_mirror(mirror, eui, h, p, cluster):
    ep = mirror.endpoint if mirror.endpoint is not None else zcl_clusters.MIRROR_REFUSED
    mirror.set_mirror(eui, None)
    rh = zcl.Header(zcl_clusters.MET_MIRROR_REMOVED, h.tsn, zcl.FT_CLUSTER, 0, disable_default_response=True)
    return zcl.build_frame(rh, zcl_clusters.encode_mirror_removed(ep))


def _configure_mirror(mirror, eui, h, p, cluster):
    cfg = list(zcl_clusters.decode_configure_mirror(p))
    mirror.config = cfg
    mirror._kv.set("cfg", cfg)
    mirror.writes += 1
    return _status_rsp(h, zcl.SUCCESS)


def _publish_prepay_snapshot(mirror, eui, h, p, cluster):
    mirror.add_snapshot(p)
    return _status_rsp(h, zcl.SUCCESS)


_GLOBAL_COMMANDS = {
    zcl.READ_ATTRIBUTES: _read_attributes,
    zcl.REPORT_ATTRIBUTES: _report_attributes,
}
# cluster << 8 | command id, server -> client
_CLUSTER_COMMANDS = {
    METERING << 8 | zcl_clusters.MET_REQUEST_MIRROR: _request_mirror,
    METERING << 8 | zcl_clusters.MET_REMOVE_MIRROR: _remove_mirror,
    METERING << 8 | zcl_clusters.MET_CONFIGURE_MIRROR: _configure_mirror,
    PREPAYMENT << 8 | _PP_PUBLISH_SNAPSHOT: _publish_prepay_snapshot,
}


def _status_rsp(h, status):
    """The Default Response with status, unless the sender disabled it."""
    return None if h.disable_default_response else _default_rsp(h, status)


def _default_rsp(h, status):
    rh = zcl.Header(zcl.DEFAULT_RSP, h.tsn, zcl.FT_GLOBAL, 0 if h.direction else 1, disable_default_response=True)
    return zcl.build_frame(rh, zcl.encode_default_rsp(h.command_id, status))


def _snap_time(snap):
    return snap[_SNAP_TIME]


def _worse(a, b):
    rank = {CLOCK_OK: 0, CLOCK_OTHER_BASE: 1, CLOCK_DOUBTFUL: 2}
    return a if rank.get(a, 3) >= rank.get(b, 3) else b


def _u32(p, o):
    return p[o] | (p[o + 1] << 8) | (p[o + 2] << 16) | (p[o + 3] << 24)


def _encode_records(c):
    out = bytearray()
    for a in sorted(c):
        t, v = c[a]
        zcl.encode_attribute_records([(a, t, v)], out)
    return out


def _decode_records(b):
    return dict((a, (t, v)) for a, t, v in zcl.decode_attribute_records(b))
