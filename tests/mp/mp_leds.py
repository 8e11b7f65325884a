# firmware/leds.py under micropython: the hub's state -> the status LED
# pattern names (docs/wiring.md), then StatusLeds on a real Device Log and a
# real outbox on LittleFS2 (the file-backed block device in the cwd), handing
# its result to the unix board's set_leds.
import board
import leds as L
from chf import device_log as DL
from flashfs import ROOT
from flashfs import fresh as _fresh_fs
from han.install_code import add_crc
from store import Store
from wan.outbox import KIND_ALERT, KIND_RESPONSE, Outbox

HEAP = "256k"

EUI_A = "0011223344556601"
EUI_B = "0011223344556602"
EUI_GPF = "00112233445566FF"


def test_csq_from_dbm():
    # 27.007: CSQ 0 = -113 dBm or less, 31 = -51 dBm or more, 2 dB a step
    assert L.csq_of(None) is None
    assert L.csq_of(-113) == 0 and L.csq_of(-120) == 0
    assert L.csq_of(-109) == 2 and L.csq_of(-95) == 9 and L.csq_of(-93) == 10
    assert L.csq_of(-85) == 14 and L.csq_of(-83) == 15 and L.csq_of(-51) == 31 and L.csq_of(-40) == 31


def test_wan_signal_bands():
    assert L.wan_pattern(None) == "off" and L.wan_pattern(99) == "off" and L.wan_pattern(1) == "off"
    assert L.wan_pattern(2) == "slow" and L.wan_pattern(9) == "slow"
    assert L.wan_pattern(10) == "fast" and L.wan_pattern(14) == "fast"
    assert L.wan_pattern(15) == "on" and L.wan_pattern(31) == "on"


def test_han_slot_patterns():
    assert L.han_pattern(None) == "off"
    assert L.han_pattern("joined") == "on" and L.han_pattern("restored") == "on"
    assert L.han_pattern("joined", 60) == "on"
    assert L.han_pattern("joined", L.STALE_S - 1) == "on" and L.han_pattern("joined", L.STALE_S) == "slow"
    assert L.han_pattern("joined", 0, han_up=False) == "flash"
    assert L.han_pattern("join window open") == "fast"
    assert L.han_pattern("whitelisted") == "flash" and L.han_pattern("left") == "flash"
    # joined in the log but not heard since the hub started: not lit steadily
    assert L.han_pattern("not heard since start") == "slow"
    assert L.han_pattern("not heard since start", han_up=False) == "flash"


def test_patterns_from_state():
    devs = [
        {"type": 1, "join_state": "joined", "last_comm": 1000},
        {"type": 3, "join_state": "joined", "last_comm": 1000},  # the GPF: no LED
        {"type": 0, "join_state": "join window open", "last_comm": None},
        {"type": 5, "join_state": "joined", "last_comm": 1000 - L.STALE_S},
        {"type": 0, "join_state": "joined", "last_comm": 0},  # stats without a receive yet
    ]
    p = L.patterns(devs, 1000)
    assert p == {"power": "on", "han": ["on", "fast", "slow", "on"], "alert": "off",
                 "wan_signal": "off", "data": "off"}, p
    p = L.patterns(devs, 1000, han_up=False, alert=True, csq=20, data=True, on_battery=True)
    assert p == {"power": "blink", "han": ["flash", "fast", "flash", "flash"], "alert": "on",
                 "wan_signal": "on", "data": "on"}, p
    assert L.patterns([], 0)["han"] == []
    for name in ("on", "slow", "blink", "fast", "flash", "off"):
        assert name in L.PATTERNS


class _Hub:
    """What StatusLeds reads, built from the real parts (no WAN job, no HAN
    job: those are the HIL test's, tests/test_hil_leds.py)."""

    def __init__(self):
        _fresh_fs(96)
        st = Store(ROOT + "/data")
        self.t = 5000
        self.device_log = DL.DeviceLog(st, lambda: self.t)
        self.outbox = Outbox(st.journal("outbox"))
        self.han = _Han()
        self.wan = _Wan(self.outbox)

    def leds(self):
        return L.StatusLeds(self.device_log, self.han, self.wan, None)


class _Han:
    state = "up"  # the coordinator's state the HAN LEDs read


class _Wan:
    # the WAN service's outbox, no session yet (no signal, no link)
    def __init__(self, outbox):
        self.outbox = outbox
        self.session = None


def test_status_leds_follow_the_device_log_and_the_outbox():
    hub = _Hub()
    s = hub.leds()
    d = s.refresh()
    assert d == {"power": "on", "han": [], "alert": "off", "wan_signal": "off", "data": "off"}
    assert board.leds == d and s.updates == 1
    s.refresh()
    assert s.updates == 1  # no change: the board is not told again
    dl = hub.device_log
    assert dl.add(EUI_B, 0, add_crc(b"\x22" * 16), 60) == (DL.OK, False)
    assert dl.add(EUI_A, 1, add_crc(b"\x11" * 16), 0) == (DL.OK, False)
    assert dl.add(EUI_GPF, 3, add_crc(b"\x33" * 16), 0) == (DL.OK, False)
    assert s.refresh()["han"] == ["flash", "fast"]  # EUI order: A whitelisted, B join window open
    dl.record_join(EUI_A, 0x1234)
    dl.record_rx(EUI_A, -60, 200, hub.t)
    assert board.leds["han"] == ["flash", "fast"]  # the board keeps what it was last given
    assert s.refresh()["han"] == ["on", "fast"] and board.leds["han"] == ["on", "fast"]
    hub.t += 61  # B's join window ended without a join
    assert s.refresh()["han"] == ["on", "flash"]
    hub.t += L.STALE_S  # A silent for two hours
    assert s.refresh()["han"] == ["slow", "flash"]
    dl.record_rx(EUI_A, -60, 200, hub.t)
    assert s.refresh()["han"] == ["on", "flash"]
    dl.remove(EUI_B)
    assert s.refresh()["han"] == ["on"]
    # the alert LED: alerts waiting in the outbox, not responses
    box = hub.outbox
    r = box.add(b"\xdd\x00resp", kind=KIND_RESPONSE)
    assert s.refresh()["alert"] == "off"
    a1 = box.add(b"\xdd\x00al1", kind=KIND_ALERT)
    assert s.refresh()["alert"] == "on"
    box.acked(a1)
    a2 = box.add(b"\xdd\x00al2", kind=KIND_ALERT)  # same count as before: the journal is read again
    assert s.refresh()["alert"] == "on"
    box.acked(a2)
    assert s.refresh()["alert"] == "off"
    box.acked(r)
    assert s.refresh()["alert"] == "off" and len(box) == 0
    assert board.leds == {"power": "on", "han": ["on"], "alert": "off", "wan_signal": "off", "data": "off"}
