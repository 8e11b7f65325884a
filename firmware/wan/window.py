# The send window (docs/headend-link.md, "Send window"): what the hub sends
# on a schedule leaves inside a window that opens `start_s` seconds after
# UTC midnight and again every `period_s`, and lasts `length_ms`. Each hub
# sends at its own semi-random time inside it: an offset drawn from SHA-256
# over its EUI-64 and the window's number, so a fleet spreads evenly over
# the window, one hub's place changes from window to window, and a hub that
# reboots keeps its time (it does not draw again and send twice).
# Pure functions: the fleet check (tests/mp/mp_window.py) runs these.
import hashlib
import struct


def offset_ms(eui, k, length_ms):
    """This hub's send time in window number k, ms after it opens: 0..length_ms-1."""
    if length_ms <= 0:
        return 0
    h = hashlib.sha256(bytes(eui) + struct.pack(">I", k & 0xFFFFFFFF)).digest()
    return struct.unpack(">I", h[:4])[0] % length_ms


def next_send(now_ms, eui, start_s, period_s, length_ms):
    """-> (UTC ms of this hub's next send after now_ms, the window's number k),
    or None when period_s is 0 (no schedule). Windows open at start_s +
    k * period_s (seconds since 1970, the first at or after midnight of
    1970-01-01); a window longer than the period is cut to it."""
    if not period_s:
        return None
    period = period_s * 1000
    start = start_s * 1000
    length = min(length_ms, period)
    k = (now_ms - start) // period
    while True:
        t = start + k * period + offset_ms(eui, k, length)
        if t > now_ms:
            return t, k
        k += 1
