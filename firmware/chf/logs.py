# CHF event and security logs (GBCS ECS35c/d read them): bounded, persisted,
# FIFO-overwriting, on top of the store's RingLog. See docs/device-log.md.
#
# Entry on flash: u32 time (UTC seconds since 2000-01-01) | u16 event code |
# data (0..255 bytes), little-endian; one RingLog record per entry.
import struct

from micropython import const

from ids import EPOCH_2000, utc2000  # noqa: F401 (the log's time base)

_MAX_DATA = const(255)



class EventLogError(ValueError):
    pass




class EventLog:
    """EventLog(store, "event"|"security", capacity=40, utc=None).

    append(code, data=b"", t=None): t in UTC seconds since 2000 (defaults to
    utc() when a clock was given). entries(t_from, t_to) -> [(t, code, data)]
    oldest first, both bounds inclusive."""

    def __init__(self, store, name, capacity=40, utc=None):
        if capacity < 1:
            raise EventLogError("eventlog: capacity must be >= 1")
        self.name = name
        self.capacity = capacity
        self._utc = utc
        self._log = store.ringlog("log_" + name, capacity, keep_open=False)  # appended now and then

    def append(self, event_code, data=b"", t=None):
        if t is None:
            if self._utc is None:
                raise EventLogError("eventlog: no time given")
            t = self._utc()
        if not 0 <= event_code <= 0xFFFF:
            raise EventLogError("eventlog: event code out of range")
        if not 0 <= t <= 0xFFFFFFFF:
            raise EventLogError("eventlog: time out of range")
        if len(data) > _MAX_DATA:
            raise EventLogError("eventlog: data too long")
        rec = bytearray(6 + len(data))
        struct.pack_into("<IH", rec, 0, t, event_code)
        rec[6:] = data
        return self._log.append(rec)

    def entries(self, t_from=None, t_to=None):
        out = []
        for _seq, rec in self._log.pending():
            if len(rec) < 6:
                continue  # cannot happen for records we wrote; never raise on read
            t, code = struct.unpack_from("<IH", rec, 0)
            if t_from is not None and t < t_from:
                continue
            if t_to is not None and t > t_to:
                continue
            out.append((t, code, bytes(rec[6:])))
        return out

    def clear(self):
        self._log.ack_upto(self._log.next_seq)

    def __len__(self):
        return len(self._log)


def open_logs(store, capacity=40, security_capacity=None, utc=None):
    """-> (event_log, security_log) named "event" and "security"."""
    return (EventLog(store, "event", capacity, utc),
            EventLog(store, "security", security_capacity or capacity, utc))
