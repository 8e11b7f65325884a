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


ADJUSTED, DISAGREES, REFUSED, SET = 0x8145, 0x81C6, 0x8F0C, 0x8FF2  # GBCS codes, 0x8FF2 private


def test_first_time_sets_the_clock_then_gbcs_tolerance():
    b, c, steps = make()
    assert c.from_source("headend", T0 + 30) == 30  # not valid before it: set
    assert b.t == T0 + 30 and steps == [("headend", 30, SET)] and c.valid
    # within 10 s: adjusted (0x8145); 1 s: jitter, left alone
    assert c.from_source("headend", T0 + 35) == 5 and b.t == T0 + 35 and steps[-1] == ("headend", 5, ADJUSTED)
    assert c.from_source("headend", T0 + 36) == 1 and b.t == T0 + 35 and len(steps) == 2
    assert c.from_source("headend", T0 + 45) == 10 and b.t == T0 + 45 and steps[-1] == ("headend", 10, ADJUSTED)
    assert c.steps == 1 and c.last_step_s == 10


def test_valid_clock_refuses_a_step_over_10_s_until_confirmed():
    b, c, steps = make()
    c.from_source("headend", T0)
    assert c.from_source("headend", T0 - 11) is None and b.t == T0  # refused: 0x8F0C
    assert steps[-1] == ("headend", -11, REFUSED) and c.refused == 1
    assert c.from_source("headend", T0 + 3600) is None  # another offset: counts afresh
    assert c.from_source("headend", T0 + 3605) is None and b.t == T0 and c.refused == 3
    # the third reading in a row agreeing on the offset: the RTC is the one that is wrong
    assert c.from_source("headend", T0 + 3601) == 3601 and b.t == T0 + 3601
    assert steps[-1] == ("headend", 3601, SET) and c.steps == 1
    assert c.from_source("headend", T0 + 3601 - 20) is None  # counting starts again


def test_network_time_never_moves_the_clock():
    b, c, steps = make()
    assert c.cross_check("network", T0 + 30) == 30 and b.t == T0 and not c.valid and steps == []
    c.from_source("headend", T0)
    assert c.cross_check("network", T0 + 8) == 8 and b.t == T0 and steps == []  # within tolerance
    assert c.cross_check("network", T0 - 40) == -40 and b.t == T0
    assert steps == [("network", -40, DISAGREES)]  # an event, not a step
    assert c.cross_check("network", T0 - 41) == -41 and len(steps) == 1  # once per disagreement
    c.cross_check("network", T0 + 2)  # they agree again
    c.cross_check("network", T0 + 60)
    assert steps[-1] == ("network", 60, DISAGREES) and c.status()["disagreements"] == 2
    assert c.status()["net_diff_s"] == 60 and b.t == T0 and c.source == "headend"


def test_invalid_after_hold_without_a_source_across_ticks_wrap():
    b, c, _ = make(hold_s=8 * 86400)
    c.from_source("headend", b.t)
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
        assert c.from_source("headend", bad) is None and c.cross_check("network", bad) is None
    assert not c.valid and c.rejected == 6 and b.t == T0 and steps == []
