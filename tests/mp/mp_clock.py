# firmware/clock.py under micropython with injected board time and ticks.
from clock import Clock

HEAP = "128k"
PERIOD = 1 << 30  # ticks_ms period of the ESP32 port (the unix port's is 2^62)


def diff(a, b):  # time.ticks_diff for that period
    return ((a - b + PERIOD // 2) & (PERIOD - 1)) - PERIOD // 2
T0 = 1763780000  # 2025-11-22


class Board:
    def __init__(self, utc=T0, ticks=PERIOD - 5000):
        self.t = utc
        self.ms = ticks  # starts just before the ticks wrap

    def utc(self):
        return self.t

    def set_utc(self, t):
        self.t = t

    def ticks(self):
        return self.ms % PERIOD

    def run(self, s):
        self.t += s
        self.ms += s * 1000


def make(**kw):
    b = Board()
    steps = []
    c = Clock(b.utc, b.set_utc, b.ticks, on_step=lambda n, s, v: steps.append((n, s, v)), ticks_diff=diff, **kw)
    return b, c, steps


def test_not_valid_until_a_source():
    b, c, steps = make()
    assert not c.valid and c.source is None and c.age_s() is None
    b.run(3600)
    assert not c.valid
    assert c.now() == b.t
    assert c.from_source("headend", b.t) == 0
    assert c.valid and c.source == "headend" and steps == []
    st = c.status()
    assert st["valid"] and st["syncs"] == 1 and st["utc"] == b.t and st["age_s"] == 0


def test_steps_over_10_s_corrected_and_reported():
    b, c, steps = make()
    assert c.from_source("network", T0 + 30) == 30
    assert b.t == T0 + 30 and steps == [("network", 30, False)]  # not valid before it
    assert c.from_source("headend", T0 + 30 - 11) == -11
    assert b.t == T0 + 19 and steps[-1] == ("headend", -11, True)
    # within 10 s: corrected, not reported; 1 s: jitter, left alone
    assert c.from_source("network", T0 + 24) == 5 and b.t == T0 + 24
    assert c.from_source("network", T0 + 25) == 1 and b.t == T0 + 24
    assert c.from_source("network", T0 + 34) == 10 and b.t == T0 + 34
    assert len(steps) == 2 and c.steps == 2 and c.last_step_s == 10


def test_invalid_after_hold_without_a_source_across_ticks_wrap():
    b, c, _ = make(hold_s=8 * 86400)
    c.from_source("network", b.t)
    for _ in range(3):  # 6 days in 2-day hops, the ticks counter wraps meanwhile
        b.run(2 * 86400)
        assert c.valid, c.age_s()
    b.run(2 * 86400 - 1)
    assert c.valid and c.age_s() == 8 * 86400 - 1
    b.run(1)
    assert not c.valid and c.status()["valid"] is False
    c.from_source("headend", b.t)
    assert c.valid and c.age_s() == 0


def test_implausible_times_ignored():
    b, c, steps = make()
    for bad in (0, 315964800 + 5, 4102444800):  # 1970, the modem's 1980 default, 2100
        assert c.from_source("network", bad) is None
    assert not c.valid and c.rejected == 3 and b.t == T0 and steps == []
