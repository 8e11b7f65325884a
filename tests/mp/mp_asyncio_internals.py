# The asyncio internals that flag.Flag and flag.on_end rely on, checked
# directly against the MicroPython in use (not through flag.py): flag.py's
# docstring lists them as items 1-6, and each failure here names the item.
# A failure means this MicroPython's asyncio works differently from the one
# flag.py was written for; flag.py (and its docstring) must change with it.
import asyncio
import sys

from asyncio import core


def check(ok, item, what, *got):
    if not ok:
        raise AssertionError("asyncio internal %d (flag.py docstring) changed in %s: %s%s"
                             % (item, sys.version, what, (" -- got %r" % (got,)) if got else ""))


class _Marker(Exception):
    pass


class Probe:
    """An awaitable built the way flag.Flag is: its first step is
    sleep_ms's first step, and it records how the scheduler comes back."""

    def __init__(self, ms):
        self.ms = ms
        self.steps = 0
        self.task = None
        self.yielded = "nothing"
        self.thrown = None
        self.data_on_throw = "unset"

    def __iter__(self):
        return self

    def __next__(self):
        self.steps += 1
        if self.steps == 1:
            self.task = asyncio.current_task()
            self.yielded = next(asyncio.sleep_ms(self.ms))
            return self.yielded
        raise StopIteration("slept")

    def throw(self, exc, *args):
        self.thrown = exc
        self.data_on_throw = asyncio.current_task().data
        if exc is _Marker or isinstance(exc, _Marker):
            raise StopIteration("woken")
        raise exc


async def _asleep_in_a_probe():
    """A task asleep in a Probe(5000): the probe, the list its await's
    value (or "cancelled") goes to, and the task."""
    p = Probe(5000)
    out = []

    async def waiter():
        try:
            out.append(await p)
        except asyncio.CancelledError:
            out.append("cancelled")
            raise

    w = asyncio.create_task(waiter())
    await asyncio.sleep_ms(10)
    return p, out, w


def _cancelled(data):
    return data is asyncio.CancelledError or isinstance(data, asyncio.CancelledError)


def _run(coro):
    # an error inside asyncio itself (an assert in its core, a missing
    # attribute) is a changed internal too: say so under its traceback
    try:
        asyncio.run(coro)
    except Exception as e:
        if str(e).startswith("asyncio internal"):
            raise
        sys.print_exception(e)
        raise AssertionError("asyncio internals (flag.py docstring) changed in %s: %r" % (sys.version, e))


def test_the_parts_flag_uses_exist():
    async def main():
        check(hasattr(asyncio, "current_task") and hasattr(asyncio, "sleep_ms"), 1,
              "asyncio.current_task and asyncio.sleep_ms")
        check(core.CancelledError is asyncio.CancelledError, 4, "core.CancelledError is asyncio.CancelledError")
        q = core._task_queue
        for name in ("push", "pop", "peek", "remove"):
            check(hasattr(q, name), 1, "core._task_queue." + name)
        check(core.cur_task is asyncio.current_task(), 1, "core.cur_task is the running task")

        async def idle():
            await asyncio.sleep_ms(0)

        t = asyncio.create_task(idle())
        check(t.data is None, 3, "a new Task's data is None", t.data)
        check(t.state is True, 6, "a new Task's state is True", t.state)
        check(isinstance(t.ph_key, int), 1, "Task.ph_key is its ticks key", t.ph_key)
        await t

    _run(main())


def test_sleep_ms_queues_the_current_task_at_its_deadline():
    async def main():
        p = Probe(60)

        async def waiter():
            return await p

        t0 = asyncio.ticks()
        w = asyncio.create_task(waiter())
        await asyncio.sleep_ms(10)
        check(p.task is w, 1, "current_task() in an awaitable's __next__ is the awaiting task", p.task, w)
        check(p.yielded is None, 1, "next(sleep_ms(ms)) returns None", p.yielded)
        key = asyncio.ticks_diff(w.ph_key, t0)
        check(55 <= key <= 70, 1, "sleep_ms(ms) queues the task with key ticks() + ms", key)
        check(p.steps == 1, 1, "a task whose coroutine yields None stays asleep (not queued again)", p.steps)
        check(w.data is None, 3, "a sleeping task's data is None", w.data)
        check(not w.done(), 1, "the task is still waiting")
        out = await w  # sleep_ms's generator is free again: the main task's own sleeps keep working
        dt = asyncio.ticks_diff(asyncio.ticks(), t0)
        check(out == "slept" and p.steps == 2, 2, "after the sleep the scheduler sends None (a second __next__)",
              out, p.steps)
        check(p.thrown is None, 2, "nothing is thrown into a task whose data is None", p.thrown)
        check(55 <= dt < 500, 1, "the task wakes at its deadline", dt)

    _run(main())


def test_cancel_wakes_a_sleeper_and_a_replaced_data_is_thrown_as_is():
    async def main():
        p, out, w = await _asleep_in_a_probe()
        check(w.data is None, 3, "a sleeping task's data is None", w.data)
        t0 = asyncio.ticks()
        check(w.cancel() is True, 4, "cancel() of a sleeping task returns True")
        check(_cancelled(w.data), 4, "cancel() sets data to CancelledError", w.data)
        ahead = asyncio.ticks_diff(w.ph_key, asyncio.ticks())
        check(ahead <= 0, 4, "cancel() brings a task sleeping into the future to the front", ahead)
        w.data = _Marker
        await asyncio.sleep_ms(0)
        dt = asyncio.ticks_diff(asyncio.ticks(), t0)
        check(w.done(), 4, "the cancelled sleeper runs at once, not at its deadline", dt)
        check(dt < 500, 4, "the cancelled sleeper runs at once", dt)
        check(p.thrown is _Marker or isinstance(p.thrown, _Marker), 5,
              "the exception in data reaches the awaitable's throw()", p.thrown)
        check(p.data_on_throw is None, 2, "the scheduler clears data before it throws it", p.data_on_throw)
        check(out == ["woken"], 5, "StopIteration(v) raised by throw() is the await's value", out)

    _run(main())


def test_a_cancel_replaces_a_pending_data():
    async def main():
        p, out, w = await _asleep_in_a_probe()
        check(w.cancel() is True, 4, "cancel() of a sleeping task returns True")
        w.data = _Marker
        check(w.cancel() is True, 4, "cancel() of a task with an exception pending returns True")
        check(_cancelled(w.data), 4, "a cancel() replaces the exception pending", w.data)
        try:
            await w
        except asyncio.CancelledError:
            pass
        check(_cancelled(p.thrown), 5, "the CancelledError reaches the awaitable's throw()", p.thrown)
        check(out == ["cancelled"], 4, "the task is cancelled", out)

    _run(main())


def test_a_callable_state_is_the_task_end_hook():
    async def main():
        seen = []
        handled = []
        asyncio.get_event_loop().set_exception_handler(lambda loop, ctx: handled.append(ctx["exception"]))

        def hook(t, er):
            seen.append((t, er))

        async def returns():
            await asyncio.sleep_ms(5)
            return 7

        boom = ValueError("boom")

        async def raises():
            await asyncio.sleep_ms(5)
            raise boom

        async def sleeps():
            await asyncio.sleep_ms(5000)

        # a failing task without the hook reaches the exception handler: the
        # control for "a hooked task's exception counts as retrieved" below
        asyncio.create_task(raises())
        await asyncio.sleep_ms(30)
        check(len(handled) == 1, 6, "an unretrieved exception reaches the loop's handler", handled)
        del handled[:]

        for case, coro in (("return", returns()), ("raise", raises()), ("cancel", sleeps())):
            t = asyncio.create_task(coro)
            check(t.state is True, 6, "a running task's state is True", t.state)
            t.state = hook
            check(not t.done(), 6, "done() is False while state is a callable")
            try:
                await t
                check(False, 6, "awaiting a task whose state is a callable raises RuntimeError")
            except RuntimeError:
                pass
            if case == "cancel":
                check(t.cancel() is True, 6, "cancel() works while state is a callable")
            await asyncio.sleep_ms(30)
            check(len(seen) == 1, 6, "state(task, er) is called once when the task ends (%s)" % case, seen)
            who, er = seen.pop()
            check(who is t, 6, "the hook's first argument is the task", who, t)
            check(t.state is False and t.done(), 6, "state is False after the hook", t.state)
            if case == "return":
                check(isinstance(er, StopIteration) and er.value == 7, 6,
                      "a return gives the hook a StopIteration with the value", er)
            elif case == "raise":
                check(er is boom, 6, "a raise gives the hook the exception raised", er)
            else:
                check(isinstance(er, asyncio.CancelledError), 6, "a cancel gives the hook a CancelledError", er)
        check(handled == [], 6, "a hooked task's exception counts as retrieved", handled)

    _run(main())
