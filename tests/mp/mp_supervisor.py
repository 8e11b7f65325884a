# Supervisor: a failing job is restarted with back-off; the supervisor survives.
import asyncio

from supervisor import Supervisor


def test_restarts_failing_job_with_backoff():
    sup = Supervisor(backoff_ms=10, backoff_max_ms=40)
    runs = []

    async def flaky():
        runs.append(asyncio.ticks())
        if len(runs) < 5:
            raise ValueError("bad input %d" % len(runs))

    async def main():
        sup.spawn("flaky", flaky)
        for _ in range(100):
            await asyncio.sleep_ms(10)
            if sup.jobs["flaky"]["state"] == "done":
                break

    asyncio.run(main())
    assert len(runs) == 5, runs
    job = sup.jobs["flaky"]
    assert job["state"] == "done" and job["restarts"] == 4, job
    assert "bad input 4" in job["last_error"]
    gaps = [asyncio.ticks_diff(runs[i + 1], runs[i]) for i in range(4)]
    # 10, 20, 40, 40 ms back-off (capped)
    assert gaps[1] >= 18 and gaps[2] >= 38 and gaps[3] >= 38, gaps
    assert gaps[3] < 200, gaps


def test_other_jobs_keep_running_while_one_fails():
    sup = Supervisor(backoff_ms=5, backoff_max_ms=5)
    ticks = []

    async def always_fails():
        raise RuntimeError("boom")

    async def steady():
        while True:
            ticks.append(1)
            await asyncio.sleep_ms(5)

    async def main():
        sup.spawn("bad", always_fails)
        sup.spawn("good", steady)
        await asyncio.sleep_ms(120)

    asyncio.run(main())
    assert sup.jobs["bad"]["restarts"] >= 5
    assert sup.jobs["good"]["state"] == "running" and len(ticks) >= 10


def test_stop_cancels_and_a_stopped_job_is_not_restarted():
    sup = Supervisor(backoff_ms=5, backoff_max_ms=5)
    runs = []

    async def forever():
        runs.append(1)
        await asyncio.sleep(100)

    async def main():
        sup.spawn("f", forever)
        await asyncio.sleep_ms(20)
        assert sup.jobs["f"]["state"] == "running"
        sup.stop("f")
        await asyncio.sleep_ms(50)

    asyncio.run(main())
    assert sup.jobs["f"]["state"] == "stopped" and len(runs) == 1 and sup.jobs["f"]["restarts"] == 0


def test_backoff_starts_again_after_a_stable_run():
    sup = Supervisor(backoff_ms=10, backoff_max_ms=1000, stable_ms=30)
    runs = []

    async def job():
        runs.append(asyncio.ticks())
        n = len(runs)
        if n == 3:
            await asyncio.sleep_ms(60)  # a stable run: longer than stable_ms
        if n < 5:
            raise ValueError("run %d" % n)

    async def main():
        sup.spawn("j", job)
        for _ in range(100):
            await asyncio.sleep_ms(10)
            if sup.jobs["j"]["state"] == "done":
                break

    asyncio.run(main())
    assert len(runs) == 5, runs
    gaps = [asyncio.ticks_diff(runs[i + 1], runs[i]) for i in range(4)]
    # 10, 20, then (after the stable third run) 10 again: not 40
    assert gaps[1] >= 18 and gaps[2] >= 60 and gaps[3] < 35, gaps


def test_supervision_costs_no_coroutine_frame_per_job():
    # a supervised job holds what a bare task of the same coroutine holds,
    # plus its record: no wrapper coroutine frame waits on each job
    import gc

    ev = asyncio.Event()

    async def idle():
        await ev.wait()

    def cost(spawn):
        async def main():
            await asyncio.sleep_ms(1)
            gc.collect()
            before = gc.mem_alloc()
            for i in range(10):
                spawn(i)
            await asyncio.sleep_ms(5)
            gc.collect()
            out.append(gc.mem_alloc() - before)
            ev.set()
            await asyncio.sleep_ms(5)

        out = []
        asyncio.run(main())
        ev.clear()
        return out[0] / 10

    tasks = []
    bare = cost(lambda i: tasks.append(asyncio.create_task(idle())))
    sup = Supervisor()
    names = ["job%d" % i for i in range(10)]
    supervised = cost(lambda i: sup.spawn(names[i], idle))
    # a job adds its record (7 slots of one list for every job: its name,
    # task, factory, start, state word, error, failing since); the bound
    # leaves no room for a list or a table entry of its own, a status dict
    # or a coroutine frame per job. Main's 9 slots (state, restarts and
    # back-off apart): 8 words a job (list slack included); now 6
    import sys

    word = 8 if sys.maxsize > 2**32 else 4
    assert supervised - bare < 7 * word, (supervised, bare)
    # the status view is made when asked for
    assert sup.jobs["job3"] == {"restarts": 0, "state": "done", "last_error": None}, sup.jobs["job3"]


def test_a_job_spawned_again_during_its_back_off_replaces_it():
    sup = Supervisor(backoff_ms=20, backoff_max_ms=20)
    runs = []

    async def old():
        runs.append("old")
        raise ValueError("fails")

    async def new():
        runs.append("new")

    async def main():
        sup.spawn("j", old)
        await asyncio.sleep_ms(5)  # old failed: waiting out its back-off
        assert sup.jobs["j"]["state"] == "backoff"
        sup.spawn("j", new)
        await asyncio.sleep_ms(60)
        sup.stop("j")

    asyncio.run(main())
    assert runs == ["old", "new"], runs
    assert sup.jobs["j"]["state"] == "done"
