# MicroPython side of a rig-driven scenario: the test process (CPython) runs
# the emulators and reads our stdout; a line "RIG <words>" asks it to act and
# its one-line answer comes back on stdin. See tests/mpy.py run_rig_scenario.
import asyncio
import sys


def ask(cmd):
    print("RIG " + cmd)
    return sys.stdin.readline().strip()


async def until(cond, ms=3000):
    for _ in range(ms // 10):
        if cond():
            return
        await asyncio.sleep_ms(10)
    raise AssertionError("timed out")
