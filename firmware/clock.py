# The CH clock (docs/clock.md): UTC from the board's RTC, corrected by time
# sources (the cellular network's time via the modem, the head-end's TIME
# frames). Pure: the board's clock functions are injected.
#
#   Clock(utc, set_utc, ticks_ms, hold_s=..., step_s=10, on_step=None, ticks_diff=None)
#   now() -> UTC seconds since 1970; valid -> bool; from_source(name, utc)
#
# Validity: never valid until a source has been seen (since boot); valid
# while the last source is younger than hold_s (the RTC's drift over that
# time stays inside the CHTS +-10 s); then invalid until the next source.
import asyncio
import struct
import time

from codes import EV_CLOCK_STEP
from log import log

# 5 days: a 20 ppm crystal drifts 1.7 s a day, so < 10 s in that time
HOLD_S = 432000
STEP_S = 10  # corrections larger than this are logged (on_step)
MIN_UTC = 1577836800  # 2020-01-01: anything earlier is not a real time
MAX_UTC = 4102444800  # 2100-01-01


class Clock:
    def __init__(self, utc, set_utc=None, ticks_ms=None, hold_s=HOLD_S, step_s=STEP_S, on_step=None,
                 ticks_diff=None):
        self._utc = utc
        self._set = set_utc
        self._ticks = ticks_ms or time.ticks_ms
        self._diff = ticks_diff or time.ticks_diff
        self.hold_s = hold_s
        self.step_s = step_s
        self.on_step = on_step  # fn(source name, step seconds, was_valid)
        self.source = None  # name of the last source seen
        self.syncs = 0
        self.steps = 0  # corrections larger than step_s
        self.rejected = 0  # implausible times offered by a source
        self.last_step_s = None
        # seconds since the last source, accumulated from tick differences so
        # hold_s may exceed the ticks period (call age_s() at least every few days)
        self._age_ms = 0
        self._t = self._ticks()

    def now(self):
        return self._utc()

    async def run(self):
        """Job "clock": keeps the age count right over the ticks period."""
        while True:
            self.age_s()
            await asyncio.sleep(600)

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
        """A time source says it is `utc` now. Corrects the RTC when it is
        2 s or more off (1 s is the jitter of whole seconds), reports
        corrections larger than step_s through on_step. -> the correction in
        seconds, or None for an implausible time (ignored, counted)."""
        utc = int(utc)
        if not MIN_UTC <= utc < MAX_UTC:
            self.rejected += 1
            return None
        was_valid = self.valid
        step = utc - self._utc()
        if step > 1 or step < -1:
            if self._set is not None:
                self._set(utc)
            self.last_step_s = step
        if step > self.step_s or step < -self.step_s:
            self.steps += 1
            if self.on_step is not None:
                self.on_step(name, step, was_valid)
        self.source = name
        self.syncs += 1
        self.age_s()
        self._age_ms = 0
        return step

    def status(self):
        return {"utc": self._utc(), "valid": self.valid, "source": self.source, "age_s": self.age_s(),
                "hold_s": self.hold_s, "syncs": self.syncs, "steps": self.steps,
                "last_step_s": self.last_step_s, "rejected": self.rejected}


class StepRecorder:
    """Clock.on_step for the hub: each correction larger than step_s goes to
    the WAN transaction log (as `tx_event`) and the CHF event log."""

    def __init__(self, txlog, tx_event, event_log):
        self.txlog = txlog
        self.tx_event = tx_event
        self.event_log = event_log

    def __call__(self, name, step, was_valid):
        self.txlog.add(self.tx_event, 0, "%+d %s" % (step, name))
        self.event_log.append(EV_CLOCK_STEP, struct.pack(">i", step) + name.encode()[:16])
        log("clock", "stepped %+d s from %s" % (step, name))
