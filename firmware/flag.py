# Flag: an asyncio.Event for one waiter at a time, whose timed wait needs no
# helper task and no coroutine frame. asyncio.wait_for(ev.wait(), t) runs the
# wait in a Task of its own: a Task and three coroutine frames (~0.8 KB on
# the 64-bit unix port) for as long as it waits, and the hub has waits
# standing all the time (the router's, the HAN's fault watch, the modem's
# receive) and one per EZSP command and HAN request in flight.
#
# How: `await flag.wait_ms(ms)` awaits the Flag itself (wait_ms returns it):
# its first step puts the task to sleep for ms (asyncio's own sleep), and
# set() wakes it early with Task.cancel(), which moves a sleeping task to the
# front of the run queue; the cancellation is replaced by a private
# exception class, as asyncio.wait_for does with its own waiter, and the
# Flag's throw() turns that into the value True. A real cancel is never
# taken for a wake: set() only wakes a task that is plainly asleep (no
# exception pending), and a cancel after the wake replaces the wake.
import asyncio


class _Wake(Exception):
    pass


_FOREVER_MS = 3600000


class Flag:
    def __init__(self):
        self.state = False
        # None: no waiter; an int: the ms of a wait about to start; a Task: its waiter
        self._t = None

    def is_set(self):
        return self.state

    def clear(self):
        self.state = False

    def set(self):
        self.state = True
        t = self._t
        if t is not None and not isinstance(t, int):
            self._t = None
            if t.data is None and t.cancel():
                # the class, not one shared instance: an instance thrown again
                # and again grows its traceback by an entry each time
                t.data = _Wake

    def wait_ms(self, ms):
        """Awaitable: True once set (at once if it is), False after ms
        without. Await it at once, in the task that waits."""
        if self._t is not None:
            raise RuntimeError("Flag has a waiter")
        if not self.state and ms > 0:
            self._t = int(ms)
        return self

    async def wait(self):
        while not await self.wait_ms(_FOREVER_MS):
            pass

    # -- the awaitable (one wait at a time, so the Flag is its own iterator) --

    def __iter__(self):
        return self

    def __next__(self):
        t = self._t
        if t is None:  # set already, or no time to wait
            raise StopIteration(self.state)
        if isinstance(t, int):
            if self.state:  # set between wait_ms() and the await
                self._t = None
                raise StopIteration(True)
            self._t = asyncio.current_task()
            return next(asyncio.sleep_ms(t))  # queues this task to wake at the deadline
        # back after the whole sleep: no wake came
        self._t = None
        raise StopIteration(self.state)

    def close(self):  # the awaiting coroutine was closed
        self._t = None

    def throw(self, exc, *args):
        self._t = None
        if exc is _Wake or isinstance(exc, _Wake):
            raise StopIteration(True)
        raise exc
