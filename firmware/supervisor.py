# The task tree: every long-lived job runs under the supervisor, which logs a
# job that raises and restarts it with exponential back-off. A job that
# returns normally is finished and not restarted.
#
# No coroutine waits on a job: flag.on_end (asyncio's task-end hook, the one
# its own gather() uses) has the scheduler call the supervisor once the job's
# task ends, so a running job holds its task and its record only. A restart
# waits in a short-lived task during the back-off only.
#
# The watchdog (watchdog(), then feed() once a second from the hub's ticks,
# app.Hub.run: no task of its own) feeds the board's hardware WDT while every
# critical job makes progress: it runs, or it failed less than stall_ms ago
# after its last stable run. A frozen VM runs no task and feeds nothing.
import asyncio

from micropython import const

import mono
from flag import on_end
from log import log, log_exc


# the jobs' records, one after another in one list (a list and a table
# entry per job cost a 32-bit board ~60 bytes more): each is _REC slots from
# its offset i: name, task, factory, started ticks, the state word, last
# error, failing since (mono ms) or None. The state word is one small int:
# the state (its index in _STATES) in bits 0-2, the back-off's doublings
# (the next wait is backoff_ms << d, at most backoff_max_ms) in bits 3-7,
# the restarts from bit 8 (7 slots a job; 9 when these were three).
# `jobs` (the status view) is made when asked for
_TASK = const(1)
_FACTORY = const(2)
_STARTED = const(3)
_ST = const(4)
_ERROR = const(5)
_FAILING = const(6)
_REC = const(7)
_STATES = const(("starting", "running", "backoff", "done", "stopped"))
_RUNNING = const(1)
_BACKOFF = const(2)
_DONE = const(3)
_STOPPED = const(4)
_MASK = const(7)  # the state's bits
_D1 = const(8)  # one doubling
_DMASK = const(0xF8)  # the doublings' bits
_R1 = const(256)  # one restart


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
        self._r = []  # the records (above); a stopped job keeps its record
        self._ended = self._end  # one bound method for every task
        self._wdt = None
        self._critical = ()
        self._stall_ms = 300000

    @property
    def jobs(self):
        """name -> {"restarts": n, "state": str, "last_error": str or None}"""
        r = self._r
        return dict((r[i], {"restarts": r[i + _ST] >> 8, "state": _STATES[r[i + _ST] & _MASK],
                            "last_error": r[i + _ERROR]})
                    for i in range(0, len(r), _REC))

    def _find(self, name):
        # the offset of the job's record, or -1
        r = self._r
        for i in range(0, len(r), _REC):
            if r[i] == name:
                return i
        return -1

    def spawn(self, name, factory):
        """Run factory() (returns a coroutine) under supervision. A job of
        that name is replaced (its task, if it still runs, is no longer
        supervised)."""
        r = self._r
        i = self._find(name)
        if i < 0:
            i = len(r)
            # extended by a list: the records' list then grows by what it
            # needs (+4 slots), not by doubling as append or a tuple does
            r.extend([name, None, factory, 0, 0, None, None])
        else:
            r[i + _TASK : i + _REC] = (None, factory, 0, 0, None, None)
        self._start(i)

    def _start(self, i):
        r = self._r
        t = asyncio.create_task(r[i + _FACTORY]())
        on_end(t, self._ended)
        r[i + _TASK] = t
        r[i + _STARTED] = asyncio.ticks()
        r[i + _ST] = r[i + _ST] & ~_MASK | _RUNNING

    def _end(self, t, er):
        # called by the scheduler: it must not raise
        try:
            r = self._r
            for i in range(0, len(r), _REC):
                if r[i + _TASK] is t:
                    break
            else:
                return  # stopped or replaced
            r[i + _TASK] = None
            st = r[i + _ST] & ~_MASK
            if isinstance(er, asyncio.CancelledError):
                r[i + _ST] = st | _STOPPED
                return
            if isinstance(er, StopIteration):
                r[i + _ST] = st | _DONE
                return
            st += _R1
            r[i + _ERROR] = repr(er)
            if r[i + _FAILING] is None:
                r[i + _FAILING] = mono.ms()
            if asyncio.ticks_diff(asyncio.ticks(), r[i + _STARTED]) > self.stable_ms:
                st &= ~_DMASK  # after a stable run the back-off starts again
            r[i + _ST] = st | _BACKOFF
            log_exc(r[i], er)
            delay = min(self.backoff_ms << (st >> 3 & 31), self.backoff_max_ms)
            log("supervisor", "restart %s in %d ms" % (r[i], delay))
            asyncio.create_task(self._restart(i, r[i + _FACTORY], delay))
        except Exception as e:  # noqa: BLE001 - never into the scheduler
            print("supervisor:", repr(e))

    async def _restart(self, i, factory, delay):
        r = self._r
        await asyncio.sleep_ms(delay)
        # not stopped, restarted or replaced meanwhile
        st = r[i + _ST]
        if st & _MASK == _BACKOFF and r[i + _TASK] is None and r[i + _FACTORY] is factory:
            if delay < self.backoff_max_ms and st & _DMASK != _DMASK:
                r[i + _ST] = st + _D1  # the next wait doubles
            self._start(i)

    def stop(self, name):
        i = self._find(name)
        r = self._r
        if i >= 0 and r[i + _ST] & _MASK < _DONE:  # starting, running or in its back-off
            r[i + _ST] = r[i + _ST] & ~_MASK | _STOPPED
            t = r[i + _TASK]
            r[i + _TASK] = None
            if t is not None:
                t.cancel()

    # ---- the watchdog ----

    def watchdog(self, wdt, critical, stall_ms=300000):
        """Keep wdt (feed(); None: no hardware watchdog) for feed(), which
        the hub's ticks call once a second, and the jobs named in
        `critical`."""
        self._wdt = wdt
        self._critical = critical
        self._stall_ms = stall_ms

    def feed(self):
        """Feed the WDT if every critical job makes progress."""
        mono.ms()  # keeps the monotonic count right across the ticks wrap
        r = self._r
        for name in self._critical:
            # progress: the job runs (or ended), or it failed less than
            # stall_ms ago counting from its last stable run (stable_ms
            # without an error)
            i = self._find(name)
            if i < 0:
                return
            since = r[i + _FAILING]
            if since is None:
                continue
            if r[i + _ST] & _MASK == _RUNNING and asyncio.ticks_diff(asyncio.ticks(), r[i + _STARTED]) > self.stable_ms:
                r[i + _FAILING] = None
                continue
            if mono.ms() - since >= self._stall_ms:
                return
        if self._wdt is not None:
            self._wdt.feed()
