# The WAN as the rest of the hub sees it (hub.wan), built by the wiring
# before any job runs: the transaction log, the outbox and emit() (so a
# message is queued durably also before the link is up), last gasp, and the
# job "wan" that runs the modem and head-end session (wan.session, loaded
# when the job first runs).
from micropython import const

import lazy
from log import log
from wan import outbox as ob
from wan.linkcred import LinkCredentials
from wan.settings import WanSettings

# emit's kind names: a name's place + 1 is its wan.outbox KIND_ (1, 2, 3)
_KINDS = const(("response", "alert", "scheduled"))


class WanService:
    """Its parts: the store, the identity (for the session), the hub's clock,
    utc() (UTC Unix seconds, for the logs), the board's power-fail signal
    and `ready` (an Event: the local port is up, its buffer taken before this
    job's allocations split the heap). The router's route(frame, tag) and
    the CHF with its event log (last-gasp alerts) are given by the wiring
    after the router is built: `route`, `attach_chf`."""

    def __init__(self, store, identity, clock, utc, power_fail, ready):
        self.store = store
        self.identity = identity
        self.route = None
        self.clock = clock
        self.utc = utc
        self.power_fail = power_fail
        self.ready = ready
        # read through and checked as read: a bad stored value gives its default
        self.settings = WanSettings(store.kv("wan"))
        self.txlog = ob.TxLog(store.ringlog("transactions", 100, keep_open=False), utc)  # appended now and then
        self.outbox = ob.Outbox(store.journal("outbox"), self.settings, self.txlog)
        self.link = LinkCredentials(store, identity)  # the head-end link's key, certificate, anchor
        self.session = None  # wan.session.Wan once the job has started
        self.manage = None  # wan.mgmt.Channel, given by the wiring (it holds the local-port commands)
        self.chf = self.event_log = self.security_log = None
        self._last_gasp = None

    def emit(self, frame, kind, critical=None):
        """Persist one GBCS response, alert or scheduled-data message for the
        head-end (durable when it returns, also before the link is up) ->
        its outbox frame id. critical None: a response or alert by its GBCS
        use case's criticality (wan.critical; an alert the table does not
        name per `critical_alerts`), scheduled data non-critical. Scheduled
        data leaves at a random time inside `sched_window_ms`. The wiring
        hands the bound method on (hub.emit, the router's emit)."""
        k = _KINDS.index(kind) + 1 if kind in _KINDS else None
        if k is None:
            raise ValueError("emit: kind must be alert, response or scheduled")
        if critical is None:
            if k == ob.KIND_SCHEDULED:
                critical = False
            else:
                from wan.critical import is_critical

                critical = is_critical(frame, k == ob.KIND_ALERT, self.settings["critical_alerts"])
        fid = self.outbox.add(bytes(frame), ob.CRITICAL if critical else ob.NON_CRITICAL, k)
        self.wake()  # the link loop sends it now instead of at its next poll
        return fid

    def attach_chf(self, chf, event_log, security_log):
        self.chf = chf
        self.event_log = event_log
        self.security_log = security_log
        self.settings.report_to(event_log)  # a bad stored setting is reported there

    def wake(self):
        if self.session is not None and self.session.modem is not None:
            self.session.modem.wake()

    def last_gasp(self):
        if self._last_gasp is None:
            from wan.lastgasp import LastGasp

            self._last_gasp = LastGasp(self.store, self.chf, self.event_log, self.emit, self.outbox, self.utc, log)
        return self._last_gasp

    async def watch_power(self):
        """Job "last_gasp": the outage alert goes first in line at a power fail."""
        await self.power_fail.wait()
        self.last_gasp().power_failed()

    async def report(self):
        """Job "report": the periodic signal/health report in the send
        window (wan.report), once the local port is up and the hub has link
        credentials (and so its identity). wan.report and wan.window are
        loaded for each step (wan.report.step) and dropped for the nap
        between (firmware/lazy.py)."""
        await self.ready.wait()
        import asyncio

        while not self.link.ready():
            await asyncio.sleep_ms(5000)
        eui = self.identity.chf["eui"]
        while True:
            try:
                wait = await lazy.load("wan.report").step(self, self.utc, eui)
            finally:
                lazy.drop("wan.report")
                lazy.drop("wan.window")
            await asyncio.sleep_ms(wait)

    async def run(self):
        """Job "wan": the session runs once the local port is up."""
        await self.ready.wait()
        if self.session is None:
            from wan.session import Wan

            self.session = Wan(self)  # its parts are this service's, read through it
            if self.store.kv("wan_power", keep=False).get("lost") is not None:
                self.last_gasp().restored()
        await self.session.run()
