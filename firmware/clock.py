# The CH clock (docs/clock.md): UTC from the board's RTC, corrected only by
# an authenticated time source (the head-end's time over the TLS link);
# the cellular network's time via the modem is a cross-check that never moves
# it. Pure: the board's clock functions are injected.
#
#   Clock(utc, set_utc, ticks_ms, hold_s=..., step_s=10, on_step=None, ticks_diff=None)
#   now() -> UTC seconds since 1970; valid -> bool; from_source(name, utc)
#   (authenticated); cross_check(name, utc) (not authenticated)
#
# Validity: never valid until a source has been seen (since boot); valid
# while the last source is younger than hold_s (the RTC's drift over that
# time stays inside the CHTS +-10 s); then invalid until the next source.
# GBCS: a valid clock is adjusted by at most step_s (0x8145); a larger
# adjustment is refused (0x8F0C) unless the source gives the same offset
# _CONFIRM times in a row (then the RTC, not the source, is wrong: the clock is
# set, 0x8FF2, as it is when not valid).
from micropython import const
import time

import codes

# 5 days: a 20 ppm crystal drifts 1.7 s a day, so < 10 s in that time
_HOLD_S = const(432000)
_STEP_S = const(10)  # a valid clock is not adjusted by more than this at once (GBCS)
_CONFIRM = const(3)  # authenticated readings in a row giving the same larger offset set the clock
_MIN_UTC = const(1577836800)  # 2020-01-01: anything earlier is not a real time
_MAX_UTC = const(4102444800)  # 2100-01-01


class Clock:
    def __init__(self, utc, set_utc=None, ticks_ms=None, hold_s=_HOLD_S, step_s=_STEP_S, on_step=None,
                 ticks_diff=None):
        self._utc = utc
        self._set = set_utc
        self._ticks = ticks_ms or time.ticks_ms
        self._diff = ticks_diff or time.ticks_diff
        self.hold_s = hold_s
        self.step_s = step_s
        self.on_step = on_step  # fn(source name, seconds, outcome: the event code)
        self.source = None  # name of the last source seen
        self.syncs = 0
        self.steps = 0  # corrections larger than step_s (the clock set)
        self.refused = 0  # adjustments over step_s refused (0x8F0C)
        self.rejected = 0  # implausible times offered by a source
        self.last_step_s = None
        self._offset = None  # the larger offset refused last, and how often in a row
        self._insist = 0
        self.net_diff_s = None  # the network's time minus the clock at the last cross-check
        self.disagreements = 0
        self._disagree = False
        # seconds since the last source, accumulated from tick differences so
        # hold_s may exceed the ticks period (call age_s() at least every few
        # days: the hub's ticks call it every 10 minutes, app.Hub.run)
        self._age_ms = 0
        self._t = self._ticks()

    def now(self):
        return self._utc()

    def age_s(self):
        """Seconds since the last source (None: never synchronised)."""
        t = self._ticks()
        self._age_ms += self._diff(t, self._t)
        self._t = t
        if self.source is None:
            return None
        return self._age_ms // 1000

    @property
    def valid(self):
        a = self.age_s()
        return a is not None and a < self.hold_s

    def from_source(self, name, utc):
        """An authenticated source says it is `utc` now. A correction of 2 s
        or more is applied (1 s is the jitter of whole seconds): up to step_s
        as an adjustment (0x8145); a larger one sets a clock that is not
        valid (0x8FF2) and is refused on a valid one (0x8F0C) until _CONFIRM
        readings in a row agree on it. -> the correction in seconds, or None
        (refused, or an implausible time: ignored, counted)."""
        utc = int(utc)
        if not _MIN_UTC <= utc < _MAX_UTC:
            self.rejected += 1
            return None
        step = utc - self._utc()
        big = step > self.step_s or step < -self.step_s
        outcome = codes.EV_CLOCK_ADJUSTED
        if big:
            outcome = codes.EV_CLOCK_STEP
            if self.valid:
                o = self._offset
                self._insist = self._insist + 1 if o is not None and -self.step_s <= step - o <= self.step_s else 1
                self._offset = step
                if self._insist < _CONFIRM:
                    self.refused += 1
                    self._report(name, step, codes.EV_CLOCK_NOT_ADJUSTED)
                    return None
        self._offset = None
        self._insist = 0
        if step > 1 or step < -1:
            if self._set is not None:
                self._set(utc)
            self.last_step_s = step
            if big:
                self.steps += 1
            self._report(name, step, outcome)
        self.source = name
        self.syncs += 1
        self.age_s()
        self._age_ms = 0
        return step

    def cross_check(self, name, utc):
        """A source nothing authenticates (the network's time) says it is
        `utc`: never moves the clock. A difference over step_s while the
        clock is valid is reported (0x81C6) once, until they agree again.
        -> the difference in seconds (None: an implausible time)."""
        utc = int(utc)
        if not _MIN_UTC <= utc < _MAX_UTC:
            self.rejected += 1
            return None
        diff = self.net_diff_s = utc - self._utc()
        if diff > self.step_s or diff < -self.step_s:
            if self.valid and not self._disagree:
                self._disagree = True
                self.disagreements += 1
                self._report(name, diff, codes.EV_CLOCK_DISAGREES)
        else:
            self._disagree = False
        return diff

    def _report(self, name, step, outcome):
        if self.on_step is not None:
            self.on_step(name, step, outcome)

    def status(self):
        return {"utc": self._utc(), "valid": self.valid, "source": self.source, "age_s": self.age_s(),
                "hold_s": self.hold_s, "syncs": self.syncs, "steps": self.steps, "refused": self.refused,
                "last_step_s": self.last_step_s, "rejected": self.rejected, "net_diff_s": self.net_diff_s,
                "disagreements": self.disagreements}
