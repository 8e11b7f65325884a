# Last gasp and restoration (docs/headend-link.md "Power"): on the board's
# power-fail signal the hub puts a power-outage alert at the front of the
# outbox (durable at once; the WAN job sends it within one loop turn while
# the hold-up supply lasts) and notes the outage in KV "wan_power"; at the
# next start of the WAN job it queues a power-restored alert.
#
# PROTOCOLS.md gives no CH power alert codes: 0x8FF0 (outage) and 0x8FF1
# (restored) are project-local codes in the 0x8Fxx space, sent as a DLMS
# DataNotification {alert code, date-time} like CS14, with message code
# 0x0000 (project-local "CHF alert"), MAC'd to the ACB with the CHF's own
# alert counter. The same codes go to the CHF event log.
from micropython import const

import codes
from ids import EPOCH_2000

_MC_CHF_ALERT = const(0x0000)


def build_alert(chf, code, utc):
    """The CHF's alert frame for `code` at `utc` (raises when the CHF cannot
    protect alerts yet, e.g. no ACB anchor)."""
    from chf.usecases import date_time
    from gbcs import dlms

    p = chf.parties
    counter = p.own_counter() + 1
    dt = (dlms.OCTET_STRING, date_time(utc - EPOCH_2000))
    body = (dlms.STRUCTURE, [(dlms.LONG_UNSIGNED, code), dt])
    payload = dlms.data_notification(0x20000000 | (counter & 0xFFFFFF), body)
    return bytes(p.protect_alert(_MC_CHF_ALERT, payload))


class LastGasp:
    """Its parts: the store (KV "wan_power"), the CHF (builds and MACs the
    alert), the CHF event log, emit and the outbox (the alert goes first in
    line), utc() in Unix seconds, and log(tag, text) or None."""

    def __init__(self, store, chf, event_log, emit, outbox, utc, log=None):
        self.chf = chf
        self.event_log = event_log
        self.emit = emit
        self.outbox = outbox
        self.utc = utc
        self.kv = store.kv("wan_power", keep=False)  # read at boot and at a power fail
        self.log = log
        self.outage_id = None
        self.restored_id = None

    def _queue(self, code):
        t = self.utc()
        try:
            self.event_log.append(code)
        except ValueError:
            pass
        try:
            frame = build_alert(self.chf, code, t)
        except Exception as e:  # no ACB yet, crypto trouble: the event log has it
            if self.log:
                self.log("power", "alert 0x%04X not built: %r" % (code, e))
            return None
        seq = self.emit(frame, "alert", critical=True)
        self.outbox.prioritise(seq)
        return seq

    def power_failed(self):
        """The board's power-fail signal: note the outage, queue the alert first in line."""
        self.kv.set("lost", self.utc())
        self.outage_id = self._queue(codes.ALERT_POWER_OUTAGE)
        if self.log:
            self.log("power", "power fail: outage alert %r queued" % self.outage_id)
        return self.outage_id

    def restored(self):
        """At start: if the last run ended with a power-fail signal, queue the
        restoration alert (then forget the outage). -> frame id or None."""
        if self.kv.get("lost") is None:
            return None
        self.restored_id = self._queue(codes.ALERT_POWER_RESTORED)
        self.kv.delete("lost")
        if self.log:
            self.log("power", "power restored: alert %r queued" % self.restored_id)
        return self.restored_id
