# flag.Flag: an Event one task waits on, with a timed wait that needs no
# helper task (asyncio.wait_for makes a Task and two coroutines a wait), and
# flag.on_end, the task-end hook, and flag.acquire/release, the lock the
# ASH and AT channels take (a list, no asyncio.Lock: asyncio.lock stays out of
# the boot import set). mp_asyncio_internals.py checks the asyncio internals
# they rely on.
import asyncio
import gc
import sys

from flag import Flag, on_end


def _run(coro):
    return asyncio.run(coro)


def test_set_before_the_wait_returns_at_once():
    async def main():
        f = Flag()
        f.set()
        t0 = asyncio.ticks()
        assert await f.wait_ms(1000) is True
        assert asyncio.ticks_diff(asyncio.ticks(), t0) < 20
        f.clear()
        assert not f.is_set()

    _run(main())


def test_set_wakes_the_waiter_early_and_a_timeout_says_false():
    async def main():
        f = Flag()

        async def later():
            await asyncio.sleep_ms(30)
            f.set()

        asyncio.create_task(later())
        t0 = asyncio.ticks()
        assert await f.wait_ms(2000) is True
        dt = asyncio.ticks_diff(asyncio.ticks(), t0)
        assert 25 <= dt < 500, dt
        f.clear()
        t0 = asyncio.ticks()
        assert await f.wait_ms(40) is False
        dt = asyncio.ticks_diff(asyncio.ticks(), t0)
        assert 35 <= dt < 500, dt
        # the flag was set while nobody waited: the next wait sees it
        f.set()
        assert await f.wait_ms(0) is True
        # set after wait_ms() is called but before it is awaited
        f.clear()
        w = f.wait_ms(2000)
        f.set()
        t0 = asyncio.ticks()
        assert await w is True
        assert asyncio.ticks_diff(asyncio.ticks(), t0) < 50
        # wait() without a limit
        f.clear()
        asyncio.create_task(later())
        await f.wait()
        assert f.is_set()

    _run(main())


def test_a_real_cancel_is_not_taken_for_a_wake():
    async def main():
        f = Flag()
        out = []

        async def waiter():
            try:
                out.append(await f.wait_ms(5000))
            except asyncio.CancelledError:
                out.append("cancelled")
                raise

        for order in ("cancel", "cancel-then-set", "set-then-cancel"):
            f.clear()
            out.clear()
            t = asyncio.create_task(waiter())
            await asyncio.sleep_ms(10)
            if order == "cancel":
                t.cancel()
            elif order == "cancel-then-set":
                t.cancel()
                f.set()  # must not turn the cancel into a wake
            else:
                f.set()
                t.cancel()  # the cancel wins: the task is told it was cancelled
            try:
                await t
            except asyncio.CancelledError:
                pass
            assert out == ["cancelled"], (order, out)
        # the flag is free for the next waiter after a cancel
        f.clear()

        async def later():
            await asyncio.sleep_ms(10)
            f.set()

        asyncio.create_task(later())
        assert await f.wait_ms(1000) is True

    _run(main())


def test_one_waiter_at_a_time():
    async def main():
        f = Flag()

        async def first():
            return await f.wait_ms(1000)

        t = asyncio.create_task(first())
        await asyncio.sleep_ms(5)
        try:
            await f.wait_ms(10)
            raise AssertionError("a second waiter was let in")
        except RuntimeError:
            pass
        f.set()
        assert await t is True

    _run(main())


def test_a_timed_wait_costs_less_than_wait_for():
    # what the waits hold while they wait (the hub has several standing ones)
    def held(make_wait):
        out = []

        async def main():
            gc.collect()
            before = gc.mem_alloc()
            ws = [make_wait() for _ in range(10)]
            ts = [asyncio.create_task(w) for w in ws]
            await asyncio.sleep_ms(5)
            gc.collect()
            out.append((gc.mem_alloc() - before) / 10)
            for t in ts:
                t.cancel()
            await asyncio.sleep_ms(5)

        asyncio.run(main())
        return out[0]

    async def via_flag(f):
        return await f.wait_ms(10000)

    async def via_wait_for(e):
        try:
            await asyncio.wait_for_ms(e.wait(), 10000)
            return True
        except asyncio.TimeoutError:
            return False

    async def via_sleep(f):  # the waiter's own frame and task, and nothing else
        await asyncio.sleep_ms(10000)
        return f

    flag = held(lambda: via_flag(Flag()))
    wait_for = held(lambda: via_wait_for(asyncio.Event()))
    bare = held(lambda: via_sleep(Flag()))
    # a wait_for holds a Task, its coroutine, wait_for's frame and
    # Event.wait's; a Flag's wait holds its waiter's frame and task only.
    # The margins are in machine words: measured flag / wait_for / bare
    # 259 / 1232 / 256 bytes on the 64-bit unix port, 130 / 613 / 128 on the
    # 32-bit one (boards/unix32)
    W = 8 if sys.maxsize > 2**31 else 4
    assert flag < wait_for - 100 * W, (flag, wait_for, W)
    assert flag - bare < 5 * W, (flag, bare, W)


def test_wakes_do_not_accumulate_memory():
    # a wake must not leave anything behind (a reused exception instance
    # grows its traceback by an entry each time it is thrown)
    async def main():
        f = Flag()

        async def waker():
            for _ in range(300):
                await asyncio.sleep_ms(0)
                f.set()

        async def waits(n):
            for _ in range(n):
                f.clear()
                assert await f.wait_ms(1000) is True

        asyncio.create_task(waker())
        await waits(20)
        gc.collect()
        before = gc.mem_alloc()
        await waits(250)
        gc.collect()
        grown = gc.mem_alloc() - before
        assert grown < 512, grown

    _run(main())


def test_on_end_calls_back_once_the_task_ends():
    async def main():
        seen = []

        async def job(x):
            await asyncio.sleep_ms(5)
            if x == "raise":
                raise ValueError(x)
            if x == "sleep":
                await asyncio.sleep_ms(5000)
            return x

        ts = {}
        for x in ("return", "raise", "sleep"):
            ts[x] = t = asyncio.create_task(job(x))
            on_end(t, lambda t, er: seen.append((t, er)))
        # polled, not timed: on a loaded machine a fixed wait let the cancel
        # reach the sleeper before the others had ended
        for _ in range(200):
            if ts["return"].done() and ts["raise"].done():
                break
            await asyncio.sleep_ms(5)
        ts["sleep"].cancel()
        for _ in range(200):
            if len(seen) == 3:
                break
            await asyncio.sleep_ms(5)
        assert len(seen) == 3, seen
        by_task = dict((t, er) for t, er in seen)
        er = by_task[ts["return"]]
        assert isinstance(er, StopIteration) and er.value == "return", er
        assert isinstance(by_task[ts["raise"]], ValueError), by_task
        assert isinstance(by_task[ts["sleep"]], asyncio.CancelledError), by_task
        # a task that is done, or that another task awaits, takes no hook
        done = ts["return"]
        awaited = asyncio.create_task(job("sleep"))
        waiter = asyncio.create_task(_awaits(awaited))
        # polled, not timed: on a loaded machine 1 ms passed before the
        # waiter ran and began to await (CI, with a bench beside it)
        for _ in range(200):
            if awaited.state is not True:
                break
            await asyncio.sleep_ms(1)
        for t in (done, awaited):
            try:
                on_end(t, print)
                raise AssertionError("on_end took a task that is done or awaited")
            except RuntimeError:
                pass
        awaited.cancel()
        # polled: on a loaded machine the cancel took longer than a 1 ms
        # sleep, and the test ran again before the waiter
        for _ in range(200):
            if waiter.done():
                break
            await asyncio.sleep_ms(1)
        assert waiter.done()

    _run(main())


async def _awaits(t):
    try:
        await t
    except asyncio.CancelledError:
        pass


def test_the_lock_lets_one_in_at_a_time_in_order_and_survives_cancels():
    from flag import acquire, release

    async def main():
        lk = [False]
        seen = []

        async def user(n, hold_ms):
            await acquire(lk)
            try:
                seen.append(("in", n))
                await asyncio.sleep_ms(hold_ms)
                seen.append(("out", n))
            finally:
                release(lk)

        # free: taken at once, no task switch
        await acquire(lk)
        assert lk[0] is True
        ts = [asyncio.create_task(user(n, 10)) for n in range(3)]
        await asyncio.sleep_ms(5)
        assert seen == [] and len(lk) == 4  # three waiting, in order
        # a waiter cancelled while it waits leaves the queue
        ts[1].cancel()
        await asyncio.sleep_ms(1)
        assert len(lk) == 3
        release(lk)
        for t in (ts[0], ts[2]):
            await _awaits(t)
        assert seen == [("in", 0), ("out", 0), ("in", 2), ("out", 2)], seen
        assert lk == [False]
        # a waiter handed the lock but cancelled before it ran passes it on
        await acquire(lk)
        seen.clear()
        a = asyncio.create_task(user("a", 1))
        b = asyncio.create_task(user("b", 1))
        await asyncio.sleep_ms(5)
        release(lk)  # a is handed the lock ...
        a.cancel()  # ... and cancelled before it runs
        await _awaits(b)
        assert seen == [("in", "b"), ("out", "b")], seen
        assert lk == [False]
        # an exception inside releases it
        try:
            await acquire(lk)
            try:
                raise ValueError()
            finally:
                release(lk)
        except ValueError:
            pass
        assert lk == [False]

    _run(main())


def test_the_ash_and_at_channels_do_not_load_asyncio_lock():
    # asyncio.lock (0.28 KB on the 32-bit frozen build) was loaded at boot
    # only for the Lock() of wan.at.ATChannel and han.ash.Ash
    sys.modules.pop("asyncio.lock", None)
    from han.ash import Ash
    from wan.at import ATChannel

    Ash(None, None)
    ATChannel(None, None)
    assert "asyncio.lock" not in sys.modules
