# One line per event on the console: "<ms> <source> <message>". The rig
# timestamps and prefixes these lines in the DUT log.
# The stamp is ms since boot (mono: right across the ticks wrap).
import sys

from mono import ms


def log(source, msg):
    print(ms(), source, msg)


def log_exc(source, exc):
    print(ms(), source, "error", repr(exc))
    sys.print_exception(exc)
