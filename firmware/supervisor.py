# The task tree: every long-lived job runs under the supervisor, which logs a
# job that raises and restarts it with exponential back-off. A job that
# returns normally is finished and not restarted.
#
# No coroutine waits on a job: MicroPython's asyncio calls a task's `state`,
# when it is callable, as state(task, exc) once the task ends (the hook its
# own gather() uses). A waiting wrapper coroutine cost a ~220-byte frame per
# job for the hub's life (docs/proof.md); the hook costs nothing while the
# job runs. A restart waits in a short-lived task during the back-off only.
import asyncio

from log import log, log_exc


class Supervisor:
    def __init__(self, backoff_ms=100, backoff_max_ms=30000, stable_ms=60000):
        self.backoff_ms = backoff_ms
        self.backoff_max_ms = backoff_max_ms
        self.stable_ms = stable_ms
        self.jobs = {}  # name -> {"restarts": n, "state": str, "last_error": str}
        self._tasks = {}  # name -> [task, factory, started ticks, next back-off ms]
        self._ended = self._end  # one bound method for every task

    def spawn(self, name, factory):
        """Run factory() (returns a coroutine) under supervision."""
        self.jobs[name] = {"restarts": 0, "state": "starting", "last_error": None}
        self._start(name, factory, self.backoff_ms)

    def _start(self, name, factory, delay):
        t = asyncio.create_task(factory())
        t.state = self._ended
        self._tasks[name] = [t, factory, asyncio.ticks(), delay]
        self.jobs[name]["state"] = "running"

    def _end(self, t, er):
        # called by the scheduler: it must not raise
        try:
            for name, rec in self._tasks.items():
                if rec[0] is t:
                    break
            else:
                return  # stopped
            job = self.jobs[name]
            if isinstance(er, asyncio.CancelledError):
                job["state"] = "stopped"
                return
            if isinstance(er, StopIteration):
                job["state"] = "done"
                return
            job["restarts"] += 1
            job["last_error"] = repr(er)
            job["state"] = "backoff"
            log_exc(name, er)
            delay = rec[3]
            if asyncio.ticks_diff(asyncio.ticks(), rec[2]) > self.stable_ms:
                delay = self.backoff_ms
            rec[3] = delay
            log("supervisor", "restart %s in %d ms" % (name, delay))
            asyncio.create_task(self._restart(name, rec))
        except Exception as e:  # noqa: BLE001 - never into the scheduler
            print("supervisor:", repr(e))

    async def _restart(self, name, rec):
        delay = rec[3]
        await asyncio.sleep_ms(delay)
        if self._tasks.get(name) is rec:  # not stopped meanwhile
            self._start(name, rec[1], min(delay * 2, self.backoff_max_ms))

    def stop(self, name):
        rec = self._tasks.pop(name, None)
        if rec:
            rec[0].cancel()
            self.jobs[name]["state"] = "stopped"
