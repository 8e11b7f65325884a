# CHF event and security logs (GBCS ECS35c/d read them): bounded, persisted,
# FIFO-overwriting, on top of the store's ring log (Store.ringlog). See docs/device-log.md.
#
# Entry on flash (ring "log2_NAME"): u32 time (UTC seconds since 2000-01-01)
# | u16 event code | u16 count | data (0..255 bytes), little-endian; one
# ring-log record per entry. Repeats of an entry (same code, same data)
# within `window_s` of the last one collapse into its entry with a count,
# also when other entries come in between: the entry is
# rewritten (appended anew, the old record acked) when its count doubles
# and when the run ends, so a flood costs a few writes and keeps the older
# evidence. Entries the FIFO drops are counted (`lost`, KV "log_lost").
import struct

from micropython import const

import codes
from log import KindError

_MAX_DATA = const(255)
_HEAD = const(8)
_RUNS = const(4)  # open runs (codes) followed at once

# the security-log codes that count as malformed, out-of-order or unexpected
# input for 0x8F60
COMMAND_FAULTS = (codes.EV_MALFORMED, codes.EV_NOT_PROTECTED, codes.EV_BAD_SIGNATURE, codes.EV_UNKNOWN_ORIGINATOR, codes.EV_AUTH_FAILED,
                  codes.EV_UNKNOWN_RECIPIENT)


class MalformedWatch:
    """MalformedWatch(threshold=20, window_s=60, quiet_s=3600): counts the
    security log's COMMAND_FAULTS entries (each repeat of a collapsed entry
    too); `threshold` of them within `window_s` (from the first) write
    0x8F60 to the security log (data: the count, u16 BE) and call
    send(0x8F60) (the wiring's alert to the head-end), at most once per
    `quiet_s`. `send` is set by the wiring once the WAN exists."""

    def __init__(self, threshold=20, window_s=60, quiet_s=3600):
        self.threshold = threshold
        self.window_s = window_s
        self.quiet_s = quiet_s
        self.send = None
        self.n = 0
        self.t0 = None
        self.last = None
        self.raised = 0
        self.send_errors = 0

    def note(self, log, code, t):
        if code not in COMMAND_FAULTS:
            return
        if self.t0 is None or not 0 <= t - self.t0 <= self.window_s:
            self.t0 = t
            self.n = 0
        self.n += 1
        if self.n < self.threshold or (self.last is not None and 0 <= t - self.last < self.quiet_s):
            return
        n, self.n, self.t0, self.last = self.n, 0, None, t
        self.raised += 1
        log.append(codes.EV_MALFORMED_FLOOD, bytes(((n >> 8) & 0xFF, n & 0xFF)) if n < 0x10000 else b"\xff\xff", t)
        if self.send is not None:
            try:
                self.send(codes.EV_MALFORMED_FLOOD)
            except Exception:
                self.send_errors += 1  # no ACB yet, flash trouble: the security log has it


class EventLog:
    """EventLog(store, "event"|"security", capacity=40, utc=None,
    window_s=60, watch=None).

    append(code, data=b"", t=None): t in UTC seconds since 2000 (defaults to
    utc() when a clock was given). entries(t_from, t_to) -> [(t, code, data)]
    oldest first, both bounds inclusive; rows(...) the same with the count
    as a fourth field. `lost`: entries the FIFO dropped (persisted). `watch`
    (a MalformedWatch) sees every append."""

    def __init__(self, store, name, capacity=40, utc=None, window_s=60, watch=None):
        if capacity < 1:
            raise KindError("EventLogError", "eventlog: capacity must be >= 1")
        self.name = name
        self.capacity = capacity
        self.window_s = window_s
        self.watch = watch
        self._utc = utc
        # one spare record: an entry is rewritten before its old record goes
        self._log = store.ringlog("log2_" + name, capacity + 1, keep_open=False)  # appended now and then
        # the KV store "log_lost" (cold) is asked for when an entry is lost:
        # a KV object held by each log cost 32 bytes (a 32-bit board)
        self._store = store
        self.lost = store.kv("log_lost", keep=False).get(name) or 0
        self._runs = {}  # (code, data) -> [seq, t first, count, data, t last, count on flash]

    def append(self, event_code, data=b"", t=None):
        if t is None:
            if self._utc is None:
                raise KindError("EventLogError", "eventlog: no time given")
            t = self._utc()
        if not 0 <= event_code <= 0xFFFF:
            raise KindError("EventLogError", "eventlog: event code out of range")
        if not 0 <= t <= 0xFFFFFFFF:
            raise KindError("EventLogError", "eventlog: time out of range")
        if len(data) > _MAX_DATA:
            raise KindError("EventLogError", "eventlog: data too long")
        key = (event_code, bytes(data))
        runs = self._runs
        run = runs.get(key)
        if run is not None and 0 <= t - run[4] <= self.window_s:
            # the same event again within the window: its run counts it
            run[2] += 1
            run[4] = t
            if run[2] >= 2 * run[5] and run[2] <= 0xFFFF:
                self._rewrite(run, event_code)
            seq = run[0]
        else:
            # runs whose window ended get their final count on flash and are
            # forgotten; at most _RUNS stay open
            for k in list(runs):
                if not 0 <= t - runs[k][4] <= self.window_s:
                    self._close(k)
            while len(runs) >= _RUNS:
                oldest = None
                for k in runs:
                    if oldest is None or runs[k][4] < runs[oldest][4]:
                        oldest = k
                self._close(oldest)
            seq = self._write(t, event_code, 1, data)
            self._runs[key] = [seq, t, 1, key[1], t, 1]
            lg = self._log
            while len(lg) > self.capacity:  # the oldest records go
                seqs = lg.seqs()
                lg.ack(seqs[0])
                for k in list(runs):
                    if runs[k][0] == seqs[0]:
                        del runs[k]
                self.lost += 1
                self._store.kv("log_lost", keep=False).set(self.name, self.lost)
        if self.watch is not None:
            self.watch.note(self, event_code, t)
        return seq

    def _write(self, t, code, count, data):
        rec = bytearray(_HEAD + len(data))
        struct.pack_into("<IHH", rec, 0, t, code, count if count < 0xFFFF else 0xFFFF)
        rec[_HEAD:] = data
        return self._log.append(rec)

    def _rewrite(self, run, code):
        old = run[0]
        run[0] = self._write(run[1], code, run[2], run[3])  # the spare record holds it meanwhile
        run[5] = run[2]
        self._log.ack(old)

    def _close(self, key):
        run = self._runs.pop(key)
        if run[2] > run[5] and run[0] in self._log.seqs():
            self._rewrite(run, key[0])

    def flush(self):
        """Write every open run's count (e.g. before a planned restart)."""
        for key in list(self._runs):
            self._close(key)

    def rows(self, t_from=None, t_to=None):
        out = []
        counted = {}  # seq -> count of an open run (counted since it was last written)
        for run in self._runs.values():
            counted[run[0]] = run[2]
        for seq, rec in self._log.pending():
            if len(rec) < _HEAD:
                continue  # cannot happen for records we wrote; never raise on read
            t, code, n = struct.unpack_from("<IHH", rec, 0)
            if t_from is not None and t < t_from:
                continue
            if t_to is not None and t > t_to:
                continue
            out.append((t, code, bytes(rec[_HEAD:]), counted.get(seq, n), seq))
        for i in range(1, len(out)):
            if out[i][0] < out[i - 1][0]:
                out.sort(key=lambda r: (r[0], r[4]))  # a rewritten entry keeps its first time; then seq (MicroPython's sort is not stable)
                break
        return [r[:4] for r in out]

    def entries(self, t_from=None, t_to=None):
        return [r[:3] for r in self.rows(t_from, t_to)]

    def clear(self):
        self._log.ack_upto(self._log.next_seq)
        self._runs = {}

    def __len__(self):
        return len(self._log)


def open_logs(store, capacity=40, security_capacity=None, utc=None, watch=None):
    """-> (event_log, security_log) named "event" and "security"; `watch`
    (a MalformedWatch) follows the security log."""
    return (EventLog(store, "event", capacity, utc),
            EventLog(store, "security", security_capacity or capacity, utc, watch=watch))
