# Milliseconds since boot as an unbounded int. ticks_ms wraps (at 2**30 ms,
# 12.4 days, on a 32-bit port) and ticks_diff is only right for spans under
# half of that: ms() adds up tick differences, so it must be called at least
# every 6 days (the watchdog's feed in the hub's ticks and every log line call it).
import time

_last = time.ticks_ms()
_ms = 0


def ms():
    global _last, _ms
    t = time.ticks_ms()
    _ms += time.ticks_diff(t, _last)
    _last = t
    return _ms


def s():
    return ms() // 1000
