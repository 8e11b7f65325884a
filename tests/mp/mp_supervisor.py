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
