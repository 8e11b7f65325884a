# The status LEDs (docs/wiring.md): the hub's ticks (app.Hub.run) read its
# state once a second and hands the board one pattern name per LED through
# board.set_leds(d), the same function on every board:
#
#   {"power": p, "han": [p, ...], "alert": p, "wan_signal": p, "data": p}
#
# p is one of PATTERNS; "han" has one entry per HAN device in the Device Log
# (EUI order, the GPF left out), the board lights as many as it has LEDs.
# The ESP32 boards render the patterns on their GPIOs (board_map.Leds), the
# unix board reports them to the rig. What each LED says:
#   power      on; "blink" once the power-fail input has fired (hold-up)
#   han[i]     joined: on ("slow" when silent for STALE_S, "flash" while the
#              HAN is down); joined but not heard since the hub started:
#              "slow" (as a silent one); join window open: "fast";
#              whitelisted or left: "flash"
#   alert      on while an alert waits in the outbox for the head-end
#   wan_signal from the modem's last CSQ: off < 2 (or unknown), "slow" 2-9,
#              "fast" 10-14, on >= 15
#   data       on while the head-end session is up
# The pure functions below are the policy; StatusLeds applies it (refresh(),
# called by the hub's ticks once a second; `status` shows what is lit).
from micropython import const

import board

PATTERNS = ("off", "on", "slow", "blink", "fast", "flash")
_NOT_HEARD = const("not heard since start")  # chf.device_log.NOT_HEARD
STALE_S = 7200  # a joined device silent this long: its LED blinks slowly
_GPF = const(3)  # Device Log type of the GPF (the hub's own half: no LED)


def csq_of(dbm):
    """Modem signal in dBm (None: unknown) -> CSQ 0..31 or None (3GPP 27.007:
    dBm = -113 + 2 * CSQ)."""
    if dbm is None:
        return None
    c = (dbm + 113) // 2
    return 0 if c < 0 else (31 if c > 31 else c)


def wan_pattern(csq):
    if csq is None or csq == 99 or csq < 2:
        return "off"
    if csq < 10:
        return "slow"
    if csq < 15:
        return "fast"
    return "on"


def han_pattern(join_state, silent_s=None, han_up=True):
    """One Device Log entry -> its LED. silent_s: seconds since the device
    was last heard (None: not heard since the stats began)."""
    if join_state is None:
        return "off"
    if join_state in ("joined", "restored", _NOT_HEARD):
        if not han_up:
            return "flash"
        if join_state == _NOT_HEARD or silent_s is not None and silent_s >= STALE_S:
            return "slow"
        return "on"
    if join_state == "join window open":
        return "fast"
    return "flash"


def patterns(devices, now, han_up=True, alert=False, csq=None, data=False, on_battery=False):
    """devices: Device Log views ({type, join_state, last_comm}) in slot
    order; now: the Device Log's clock (seconds, same base as last_comm)."""
    han = []
    for d in devices:
        if d.get("type") == _GPF:
            continue
        lc = d.get("last_comm")
        # last_comm 0: stats kept (a send) but nothing received yet
        han.append(han_pattern(d.get("join_state"), now - lc if lc else None, han_up))
    return {
        "power": "blink" if on_battery else "on",
        "han": han,
        "alert": "on" if alert else "off",
        "wan_signal": wan_pattern(csq),
        "data": "on" if data else "off",
    }


class StatusLeds:
    """Its parts: the CHF Device Log, the HAN coordinator, the WAN service
    (session state, outbox) and the board's power-fail signal (or None)."""

    def __init__(self, device_log, coordinator, wan, power_fail):
        self.device_log = device_log
        self.coordinator = coordinator
        self.wan = wan
        self.power_fail = power_fail
        self.shown = None  # the last dict given to the board
        self.updates = 0
        self._alert_key = None
        self._alert = False

    def alert(self):
        """An alert is waiting in the outbox; the journal is read again only
        when its pending set changed (count or next sequence number)."""
        box = self.wan.outbox
        n = len(box)
        if not n:
            self._alert_key = None
            self._alert = False
            return False
        key = (n, getattr(box.j, "next_seq", None))
        if key != self._alert_key:
            from wan.outbox import KIND_ALERT

            self._alert = False
            for _, p in box.j.pending():
                if p and p[0] == KIND_ALERT:
                    self._alert = True
                    break
            self._alert_key = key
        return self._alert

    def compute(self):
        dl = self.device_log
        han_up = self.coordinator.state == "up"
        w = self.wan.session
        csq = csq_of(w.signal) if w is not None else None
        data = bool(w is not None and w.connected)
        pf = self.power_fail
        on_batt = pf is not None and pf.is_set()
        return patterns(dl.entries(), dl.utc(), han_up, self.alert(), csq, data, on_batt)

    def refresh(self):
        d = self.compute()
        if d != self.shown:
            self.shown = d
            self.updates += 1
            board.set_leds(d)
        return d
