# The WAN outbox: every GBCS response and alert waits in a store Journal
# until the head-end acknowledges its frame id (= the journal seq). Two
# classes, each with its own retry count and back-off; a message that runs
# out of retries is logged in the transaction log and kept (resent after the
# next reconnect) or dropped, as configured. docs/headend-link.md.
from micropython import const
import struct
import time

CRITICAL = const(0)
NON_CRITICAL = const(1)
KIND_RESPONSE = const(1)
KIND_ALERT = const(2)
KIND_SCHEDULED = const(3)  # scheduled data: leaves at a random time inside sched_window_ms
KIND_REPORT = const(4)  # the hub's own JSON report (installation, signal/health): link frame REPORT
# hub.emit's kind names are wan.service's _KINDS: a name's place + 1 is its KIND_

# the outbox's settings: KV "wan" keys of the same name override their
# defaults (in wan.settings.SCHEMA, with their checks)
_KEYS = const(("crit_retries", "crit_backoff_ms", "crit_backoff_max_ms", "noncrit_retries", "noncrit_backoff_ms",
               "noncrit_backoff_max_ms", "on_exhausted", "sched_window_ms"))

# transaction log events, by name: event n (u8 in the record) is the name at
# place n - 1 (a constant tuple, in flash when frozen; TxLog.add takes the name)
TX_NAMES = const(("pdp_up", "pdp_fail", "link_up", "link_drop", "ack", "reject", "exhausted", "dropped",
                   "duplicate", "modem_reset", "time_step", "pdp_refresh", "mgmt", "mgmt_refused", "fallback",
                   "report"))


class TxLog:
    """Transaction log entries: utc u32, event u8, id u32, detail (short
    bytes). add(name, fid, detail): name one of TX_NAMES (pdp_up, pdp_fail,
    link_up, link_drop, ack, reject, exhausted, dropped, duplicate,
    modem_reset, time_step, pdp_refresh, mgmt (a head-end management request
    served; detail: the command), mgmt_refused (detail: why), fallback (link
    settings rolled back: the link did not return with the new ones), report
    (a report queued; detail: install / health))."""

    def __init__(self, ring, utc):
        self.ring = ring
        self.utc = utc

    def add(self, name, fid=0, detail=b""):
        if isinstance(detail, str):
            detail = detail.encode()
        event = TX_NAMES.index(name) + 1  # ValueError for a name it does not have
        self.ring.append(struct.pack(">IBI", self.utc() & 0xFFFFFFFF, event, fid & 0xFFFFFFFF) + detail[:40])

    def __len__(self):
        return len(self.ring)


def pack(kind, cls, he_id, gbcs):
    return struct.pack(">BBI", kind, cls, he_id & 0xFFFFFFFF) + gbcs


def unpack(p):
    if len(p) < 6:
        raise ValueError("outbox record too short")
    kind, cls, he_id = struct.unpack(">BBI", p[:6])
    if not KIND_RESPONSE <= kind <= KIND_REPORT or cls not in (CRITICAL, NON_CRITICAL):
        raise ValueError("bad outbox record header")
    return kind, cls, he_id, p[6:]


class Outbox:
    def __init__(self, journal, config=None, txlog=None, ticks_ms=None, rand=None):
        self.j = journal
        # the retry policy: the _KEYS settings that differ from their
        # defaults (wan.settings.SCHEMA's), None while none does (setting())
        self.cfg = None
        if config:
            self.configure(config)
        self.tx = txlog
        self._ticks = ticks_ms or time.ticks_ms
        if rand is not None:
            self._rand = rand  # rand(n) -> 0 <= int < n (the method's random draw otherwise)
        # RAM only, each made when first needed and None while empty:
        # _tries seq -> (attempts, ticks of last send, class), or None for
        # one exhausted and kept (parked: it waits for the next reconnect);
        # _hold scheduled seq -> ticks when it may leave (drawn again after a
        # reboot); _first the seqs sent before the others (last gasp)
        self._tries = None
        self._hold = None
        self._first = None

    def _rand(self, n):
        import random

        return random.getrandbits(30) % n

    def setting(self, k):
        """The retry policy's setting `k` (one of _KEYS) in effect."""
        c = self.cfg
        if c is not None and k in c:
            return c[k]
        from wan.settings import spec  # here: a name less in this module's dict

        return spec(k)[4]

    def configure(self, cfg):
        """Apply the retry policy's settings that `cfg` (a dict, or the
        WAN settings) has; ValueError, and nothing changed, for a bad
        on_exhausted or sched_window_ms."""
        from wan.settings import spec

        new = dict(self.cfg) if self.cfg else {}
        for k in _KEYS:
            if k in cfg:
                v = cfg[k]
                d = spec(k)[4]
                if v == d and type(v) is type(d):
                    new.pop(k, None)
                else:
                    new[k] = v
        if new.get("on_exhausted", "keep") not in ("keep", "drop"):
            raise ValueError("on_exhausted must be keep or drop")
        w = new.get("sched_window_ms", 0)
        if not isinstance(w, int) or not 0 <= w < (1 << 30):
            raise ValueError("sched_window_ms must be 0..2^30-1")
        self.cfg = new or None

    def __len__(self):
        return len(self.j)

    def add(self, gbcs, cls=CRITICAL, kind=KIND_RESPONSE, he_id=0):
        """Queue a frame; durable when it returns. -> frame id (journal seq)."""
        return self.j.append(pack(kind, cls, he_id, gbcs))

    def read(self, seq):
        return unpack(self.j.read(seq))

    def he_ids(self):
        """Head-end frame ids answered by pending responses (duplicate memory)."""
        out = []
        for _, p in self.j.pending():
            try:
                kind, _, he_id, _ = unpack(p)
            except ValueError:
                continue
            if kind == KIND_RESPONSE:
                out.append(he_id)
        return out

    def reconnected(self):
        """A new link: every pending message gets its full retry budget again."""
        self._tries = None  # the parked ones' too

    def _limits(self, cls):
        if cls == CRITICAL:
            return self.setting("crit_retries"), self.setting("crit_backoff_ms"), self.setting("crit_backoff_max_ms")
        return (self.setting("noncrit_retries"), self.setting("noncrit_backoff_ms"),
                self.setting("noncrit_backoff_max_ms"))

    def _wait(self, cls, n):
        _, base, cap = self._limits(cls)
        return min(base << (n - 1), cap) if n < 24 else cap

    def due(self):
        """Frame ids to (re)send now, oldest first; each call counts a try for
        the ids it returns. First send + `retries` resends, the wait before
        resend n being backoff * 2^(n-1) capped at backoff_max."""
        now = self._ticks()
        out = []
        seqs = self.j.seqs()
        first = self._first
        if first:
            first = [s for s in first if s in seqs]
            self._first = first or None
            seqs = first + [s for s in seqs if s not in first]
        tries = self._tries
        for seq in seqs:
            st = tries.get(seq, 0) if tries else 0
            if st is None:
                continue  # parked
            if not st:
                p = self.j.read(seq)
                try:
                    kind, cls, _, _ = unpack(p)
                except ValueError:
                    self.j.ack(seq)  # unreadable: nothing we can ever deliver
                    continue
                if kind == KIND_SCHEDULED:
                    hold = self._hold
                    rel = hold.get(seq) if hold else None
                    if rel is None:
                        w = self.setting("sched_window_ms")
                        rel = time.ticks_add(now, self._rand(w) if w > 0 else 0)
                        if hold is None:
                            hold = self._hold = {}
                        hold[seq] = rel
                    if time.ticks_diff(rel, now) > 0:
                        continue
                if tries is None:
                    tries = self._tries = {}
                tries[seq] = (1, now, cls)
                out.append(seq)
                continue
            n, last, cls = st
            if time.ticks_diff(now, last) < self._wait(cls, n):
                continue
            if n > self._limits(cls)[0]:  # exhausted: dropped or parked
                if self.tx is not None:
                    self.tx.add("exhausted", seq)
                if self.setting("on_exhausted") == "drop":
                    self.acked(seq, "dropped")
                    tries = self._tries
                else:
                    tries[seq] = None
                continue
            tries[seq] = (n + 1, now, cls)
            out.append(seq)
        return out

    def next_due_ms(self):
        """ms until the next resend or exhaustion check is due (None: nothing waiting)."""
        now = self._ticks()
        best = None
        tries = self._tries
        if self._hold:
            for seq, rel in self._hold.items():
                if not tries or seq not in tries:
                    w = max(0, time.ticks_diff(rel, now))
                    if best is None or w < best:
                        best = w
        if tries:
            for st in tries.values():
                if st is not None:
                    n, last, cls = st
                    w = max(0, self._wait(cls, n) - time.ticks_diff(now, last))
                    if best is None or w < best:
                        best = w
        return best

    def acked(self, seq, event="ack"):
        """The head-end acknowledged frame id seq (event "dropped": it ran out
        of tries and goes). -> False for an unknown or already acknowledged
        id (a duplicate ACK: nothing changes)."""
        if seq not in self.j.seqs():
            return False
        self.j.ack(seq)
        # its tries and hold go; a container left empty goes too
        t = self._tries
        if t and seq in t:
            del t[seq]
            if not t:
                self._tries = None
        t = self._hold
        if t and seq in t:
            del t[seq]
            if not t:
                self._hold = None
        if self.tx is not None:
            self.tx.add(event, seq)
        return True

    def prioritise(self, seq):
        """Send seq before every other pending message (RAM only)."""
        if self._first is None:
            self._first = [seq]
        elif seq not in self._first:
            self._first.append(seq)
