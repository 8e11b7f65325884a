# Flag: an asyncio.Event for one waiter at a time, whose timed wait needs no
# helper task. asyncio.wait_for(ev.wait(), t) runs the wait in a Task of its
# own: a Task and three coroutine frames (~0.6 KB on the 64-bit unix port)
# for as long as it waits, and the hub has waits standing all the time (the
# router's, the HAN's fault watch, the modem's receive) and one per EZSP
# command in flight.
#
# How: the waiter sleeps; set() wakes it early with Task.cancel() (which moves
# a sleeping task to the front of the run queue) and replaces the cancellation
# with a private exception class, as asyncio.wait_for does with its own waiter. A
# real cancel is never taken for a wake: set() only wakes a task that is
# plainly asleep (no exception pending), and a cancel after the wake replaces
# the wake.
import asyncio


class _Wake(Exception):
    pass


_FOREVER_MS = 3600000


class Flag:
    def __init__(self):
        self.state = False
        self._t = None  # the task in wait_ms

    def is_set(self):
        return self.state

    def clear(self):
        self.state = False

    def set(self):
        self.state = True
        t = self._t
        if t is not None:
            self._t = None
            if t.data is None and t.cancel():
                # the class, not one shared instance: an instance thrown again
                # and again grows its traceback by an entry each time
                t.data = _Wake

    async def wait_ms(self, ms):
        """True once set (at once if it is), False after ms without."""
        if self.state or ms <= 0:
            return self.state
        if self._t is not None:
            raise RuntimeError("Flag has a waiter")
        t = self._t = asyncio.current_task()
        try:
            await asyncio.sleep_ms(int(ms))
        except _Wake:
            return True
        finally:
            if self._t is t:
                self._t = None
        return self.state

    async def wait(self):
        while not await self.wait_ms(_FOREVER_MS):
            pass
