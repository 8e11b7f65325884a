# The task tree: every long-lived job runs under the supervisor, which logs a
# job that raises and restarts it with exponential back-off. A job that
# returns normally is finished and not restarted.
import asyncio

from log import log, log_exc


class Supervisor:
    def __init__(self, backoff_ms=100, backoff_max_ms=30000, stable_ms=60000):
        self.backoff_ms = backoff_ms
        self.backoff_max_ms = backoff_max_ms
        self.stable_ms = stable_ms
        self.jobs = {}  # name -> {"restarts": n, "state": str, "last_error": str}
        self._tasks = {}

    def spawn(self, name, factory):
        """Run factory() (returns a coroutine) under supervision."""
        self.jobs[name] = {"restarts": 0, "state": "starting", "last_error": None}
        self._tasks[name] = asyncio.create_task(self._run(name, factory))

    async def _run(self, name, factory):
        job = self.jobs[name]
        delay = self.backoff_ms
        while True:
            started = asyncio.ticks()
            job["state"] = "running"
            try:
                await factory()
                job["state"] = "done"
                return
            except asyncio.CancelledError:
                job["state"] = "stopped"
                raise
            except Exception as e:  # noqa: BLE001 - the supervisor must survive anything
                job["restarts"] += 1
                job["last_error"] = repr(e)
                job["state"] = "backoff"
                log_exc(name, e)
                if asyncio.ticks_diff(asyncio.ticks(), started) > self.stable_ms:
                    delay = self.backoff_ms
                log("supervisor", "restart %s in %d ms" % (name, delay))
                await asyncio.sleep_ms(delay)
                delay = min(delay * 2, self.backoff_max_ms)

    def stop(self, name):
        t = self._tasks.pop(name, None)
        if t:
            t.cancel()
