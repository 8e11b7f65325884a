# One line per event on the console: "<ms> <source> <message>". The rig
# timestamps and prefixes these lines in the DUT log.
import sys
import time

_t0 = time.ticks_ms()


def log(source, msg):
    print(time.ticks_diff(time.ticks_ms(), _t0), source, msg)


def log_exc(source, exc):
    print(time.ticks_diff(time.ticks_ms(), _t0), source, "error", repr(exc))
    sys.print_exception(exc)
