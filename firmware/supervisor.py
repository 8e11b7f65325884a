# The task tree: every long-lived job runs under the supervisor, which logs a
# job that raises and restarts it with exponential back-off. A job that
# returns normally is finished and not restarted.
#
# No coroutine waits on a job: flag.on_end (asyncio's task-end hook, the one
# its own gather() uses) has the scheduler call the supervisor once the job's
# task ends, so a running job holds its task and its record only. A restart
# waits in a short-lived task during the back-off only.
#
# The watchdog job (watchdog()) feeds the board's hardware WDT while every
# critical job makes progress: it runs, or it failed less than stall_ms ago
# after its last stable run. A frozen VM runs no task and feeds nothing.
import asyncio

from micropython import const

import mono
from flag import on_end
from log import log, log_exc


# a job's record: [task, factory, started ticks, next back-off ms, state,
# restarts, last error, failing since (mono ms) or None]; `jobs` (the status
# view) is made when asked for
_TASK = const(0)
_FACTORY = const(1)
_STARTED = const(2)
_DELAY = const(3)
_STATE = const(4)
_RESTARTS = const(5)
_ERROR = const(6)
_FAILING = const(7)


def gc_policy():
    """The GC runs after each sixteenth of the heap allocated, besides when an
    allocation finds no room. Between two collections the allocator walks up
    the free heap, and whatever stays alive lands where it was then: with
    collections only at exhaustion the hub's records lay spread over the
    whole free heap, which broke into pieces too small for a 2 KB local-port
    frame with 20 KB free (docs/proof.md, the heap floor)."""
    import gc

    gc.threshold((gc.mem_free() + gc.mem_alloc()) >> 4)


class Supervisor:
    def __init__(self, backoff_ms=100, backoff_max_ms=30000, stable_ms=60000):
        self.backoff_ms = backoff_ms
        self.backoff_max_ms = backoff_max_ms
        self.stable_ms = stable_ms
        self._jobs = {}  # name -> record (above); a stopped job keeps its record
        self._ended = self._end  # one bound method for every task
        self._wdt = None
        self._critical = ()
        self._period_ms = 1000
        self._stall_ms = 300000

    @property
    def jobs(self):
        """name -> {"restarts": n, "state": str, "last_error": str or None}"""
        return dict((n, {"restarts": r[_RESTARTS], "state": r[_STATE], "last_error": r[_ERROR]})
                    for n, r in self._jobs.items())

    def spawn(self, name, factory):
        """Run factory() (returns a coroutine) under supervision."""
        rec = [None, factory, 0, self.backoff_ms, "starting", 0, None, None]
        self._jobs[name] = rec
        self._start(rec)

    def _start(self, rec):
        t = asyncio.create_task(rec[_FACTORY]())
        on_end(t, self._ended)
        rec[_TASK] = t
        rec[_STARTED] = asyncio.ticks()
        rec[_STATE] = "running"

    def _end(self, t, er):
        # called by the scheduler: it must not raise
        try:
            for name, rec in self._jobs.items():
                if rec[_TASK] is t:
                    break
            else:
                return  # stopped
            rec[_TASK] = None
            if isinstance(er, asyncio.CancelledError):
                rec[_STATE] = "stopped"
                return
            if isinstance(er, StopIteration):
                rec[_STATE] = "done"
                return
            rec[_RESTARTS] += 1
            rec[_ERROR] = repr(er)
            if rec[_FAILING] is None:
                rec[_FAILING] = mono.ms()
            rec[_STATE] = "backoff"
            log_exc(name, er)
            delay = rec[_DELAY]
            if asyncio.ticks_diff(asyncio.ticks(), rec[_STARTED]) > self.stable_ms:
                delay = rec[_DELAY] = self.backoff_ms
            log("supervisor", "restart %s in %d ms" % (name, delay))
            asyncio.create_task(self._restart(name, rec))
        except Exception as e:  # noqa: BLE001 - never into the scheduler
            print("supervisor:", repr(e))

    async def _restart(self, name, rec):
        delay = rec[_DELAY]
        await asyncio.sleep_ms(delay)
        if rec[_STATE] == "backoff" and self._jobs.get(name) is rec:  # not stopped or replaced meanwhile
            rec[_DELAY] = min(delay * 2, self.backoff_max_ms)
            self._start(rec)

    def stop(self, name):
        rec = self._jobs.get(name)
        if rec is not None and rec[_STATE] in ("running", "backoff", "starting"):
            rec[_STATE] = "stopped"
            t = rec[_TASK]
            rec[_TASK] = None
            if t is not None:
                t.cancel()

    # ---- the watchdog ----

    def progressing(self, name):
        """The job runs (or ended), or it failed less than stall_ms ago
        counting from its last stable run (stable_ms without an error)."""
        rec = self._jobs.get(name)
        if rec is None:
            return False
        since = rec[_FAILING]
        if since is None:
            return True
        if rec[_STATE] == "running" and asyncio.ticks_diff(asyncio.ticks(), rec[_STARTED]) > self.stable_ms:
            rec[_FAILING] = None
            return True
        return mono.ms() - since < self._stall_ms

    def watchdog(self, wdt, critical, period_ms=1000, stall_ms=300000):
        """Feed wdt (feed(); None: no hardware watchdog) every period_ms
        while every job named in `critical` makes progress: the job
        "watchdog"."""
        self._wdt = wdt
        self._critical = tuple(critical)
        self._period_ms = period_ms
        self._stall_ms = stall_ms
        self.spawn("watchdog", self._feed)

    async def _feed(self):
        while True:
            mono.ms()  # keeps the monotonic count right across the ticks wrap
            for name in self._critical:
                if not self.progressing(name):
                    break
            else:
                if self._wdt is not None:
                    self._wdt.feed()
            await asyncio.sleep_ms(self._period_ms)
