# The watchdog (firmware/supervisor.py Supervisor.watchdog, Supervisor.feed):
# the hub's ticks (app.Hub.run) have the supervisor feed the board's WDT once
# a second, only while every critical job makes progress (runs, or recovers
# from a failure within stall_ms); a frozen loop feeds nothing. Here a tick
# loop of the test's own stands in for the hub's.
import asyncio
import time

from supervisor import Supervisor


class Wdt:
    """machine.WDT's interface: feed(); here the feeds are recorded."""

    def __init__(self):
        self.feeds = []

    def feed(self):
        self.feeds.append(time.ticks_ms())


async def _steady():
    while True:
        await asyncio.sleep_ms(10)


async def _fails():
    await asyncio.sleep_ms(5)
    raise RuntimeError("NCP missing")


def _run(sup, wdt, jobs, ms, stall_ms=300):
    async def main():
        for name, fn in jobs:
            sup.spawn(name, fn)
        sup.watchdog(wdt, [n for n, _ in jobs if not n.startswith("extra")], stall_ms=stall_ms)
        t0 = time.ticks_ms()
        while time.ticks_diff(time.ticks_ms(), t0) < ms:
            sup.feed()  # the hub's ticks: once a second (here every 20 ms)
            await asyncio.sleep_ms(20)

    asyncio.run(main())


def test_fed_while_every_critical_job_runs():
    sup, wdt = Supervisor(backoff_ms=10, backoff_max_ms=20), Wdt()
    _run(sup, wdt, [("han", _steady), ("wan", _steady), ("extra", _fails)], 400)
    assert len(wdt.feeds) >= 15, wdt.feeds  # a failing job that is not critical does not matter


def test_the_watchdog_holds_no_task():
    # the feeding runs in the hub's ticks (its main task): watchdog() only
    # keeps the WDT, the critical names and stall_ms (no job, task or
    # coroutine frame: ~150 bytes on a 32-bit board)
    import gc

    sup, wdt = Supervisor(), Wdt()
    critical = ("han", "wan")

    async def main():
        sup.spawn("han", _steady)
        sup.spawn("wan", _steady)
        await asyncio.sleep_ms(5)
        gc.collect()
        before = gc.mem_alloc()
        sup.watchdog(wdt, critical, stall_ms=300)
        await asyncio.sleep_ms(5)
        gc.collect()
        out.append(gc.mem_alloc() - before)
        sup.feed()

    out = []
    asyncio.run(main())
    assert "watchdog" not in sup.jobs, sup.jobs
    assert out[0] <= 16, out  # nothing held but what the attributes already had room for
    assert len(wdt.feeds) == 1, wdt.feeds


def test_not_fed_once_a_critical_job_fails_for_stall_ms():
    sup, wdt = Supervisor(backoff_ms=10, backoff_max_ms=20), Wdt()
    t0 = time.ticks_ms()
    _run(sup, wdt, [("han", _fails), ("wan", _steady)], 700, stall_ms=300)
    assert wdt.feeds, "never fed"
    last = time.ticks_diff(wdt.feeds[-1], t0)
    assert 250 <= last <= 420, last  # fed while han could still recover, then no more


def test_a_job_that_recovers_keeps_it_fed():
    sup, wdt = Supervisor(backoff_ms=10, backoff_max_ms=20, stable_ms=50), Wdt()
    runs = []

    async def flaky():
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("once or twice")
        await _steady()

    t0 = time.ticks_ms()
    _run(sup, wdt, [("han", flaky)], 700, stall_ms=300)
    assert time.ticks_diff(wdt.feeds[-1], t0) >= 600, wdt.feeds[-1]


def test_a_frozen_loop_feeds_nothing():
    # a VM stuck in a blocking call (UART.write with CTS held) runs no task
    sup, wdt = Supervisor(), Wdt()

    async def freeze():
        await asyncio.sleep_ms(100)
        time.sleep_ms(300)

    _run(sup, wdt, [("han", _steady), ("extra", freeze)], 500)
    gaps = [time.ticks_diff(wdt.feeds[i + 1], wdt.feeds[i]) for i in range(len(wdt.feeds) - 1)]
    assert max(gaps) >= 290, gaps
