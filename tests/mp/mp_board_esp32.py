# The ESP32 boards' hardware-free logic (boards/esp32_common/board_map.py)
# under the real MicroPython: the shipped pin maps pass the checks, broken
# maps fail naming the role and pin, LED patterns and the RTC epoch.
import json
import sys

ROOT = None
for p in sys.path:
    if p.endswith("tests/mp"):
        ROOT = p[: -len("tests/mp")]
sys.path.append(ROOT + "boards/esp32_common")

import board_map as BM  # noqa: E402


def _cfg(name):
    with open(ROOT + "boards/" + name + "/board.json") as f:
        return json.load(f)


def _raises(cfg, words):
    try:
        BM.check(cfg)
    except BM.BoardMapError as e:
        msg = str(e)
        for w in words:
            assert w in msg, (w, msg)
        return
    raise AssertionError("accepted a bad map: expected %r" % (words,))


def test_shipped_maps_are_valid():
    for name in ("esp32_s3_devkitc", "esp32_devkitc"):
        cfg = _cfg(name)
        used = BM.check(cfg)
        # every role has its own pin: 2 console + 5 ncp (tx rx rts cts reset)
        # + 4 modem (tx rx reset pwrkey) + 4 LEDs + the HAN LEDs + power fail
        n = 2 + 5 + 4 + 4 + len(cfg["leds"]["han"]) + 1
        assert len(used) == n, (name, len(used), n)
        assert cfg["uarts"]["ncp"]["rts"] is not None and cfg["uarts"]["ncp"]["cts"] is not None


def test_duplicate_pin_is_refused():
    cfg = _cfg("esp32_s3_devkitc")
    cfg["leds"]["alert"]["pin"] = cfg["uarts"]["ncp"]["tx"]
    _raises(cfg, ("leds.alert", "GPIO17", "ncp.tx"))


def test_flash_and_psram_pins_are_refused():
    cfg = _cfg("esp32_devkitc")
    cfg["leds"]["data"]["pin"] = 9
    _raises(cfg, ("leds.data", "SPI flash"))
    cfg = _cfg("esp32_s3_devkitc")
    cfg["leds"]["data"]["pin"] = 35
    _raises(cfg, ("leds.data", "PSRAM"))
    cfg["psram"] = None  # without octal PSRAM GPIO35 is free
    BM.check(cfg)


def test_input_only_pin_cannot_drive():
    cfg = _cfg("esp32_devkitc")
    cfg["uarts"]["ncp"]["reset"] = 36
    _raises(cfg, ("ncp.reset", "input-only"))
    cfg = _cfg("esp32_devkitc")
    cfg["power_fail"]["pull"] = "up"  # GPIO34 has no pull resistors
    _raises(cfg, ("power_fail", "no internal pull"))


def test_ncp_needs_flow_control_and_distinct_uarts():
    cfg = _cfg("esp32_s3_devkitc")
    cfg["uarts"]["ncp"]["rts"] = None
    _raises(cfg, ("ncp.rts", "no pin"))
    cfg = _cfg("esp32_s3_devkitc")
    cfg["uarts"]["modem"]["uart"] = 1
    _raises(cfg, ("uarts.modem", "UART1", "ncp"))
    cfg["uarts"]["modem"]["uart"] = 3
    _raises(cfg, ("UART 3",))
    cfg = _cfg("esp32_s3_devkitc")
    cfg["chip_family"] = "esp8266"
    _raises(cfg, ("unknown chip family",))


def test_strapping_outputs_listed_for_the_wiring_doc():
    assert BM.strapping_outputs(_cfg("esp32_devkitc")) == [(2, "leds.alert"), (15, "leds.data")]
    assert BM.strapping_outputs(_cfg("esp32_s3_devkitc")) == []


def test_led_levels_follow_the_hubs_patterns_and_time():
    # what each LED shows is the hub's (tests/mp/mp_leds.py); here: names ->
    # GPIO levels over time
    cfg = _cfg("esp32_s3_devkitc")
    leds = BM.Leds(cfg["leds"])
    pins = dict(leds.levels(0))
    han = [x["pin"] for x in cfg["leds"]["han"]]
    assert pins[38] == 1 and pins[47] == 0 and pins[21] == 0 and pins[14] == 0  # before the hub: power only
    assert all(pins[p] == 0 for p in han)
    leds.set({"han": ["on", "fast", "flash", "slow", "on"], "alert": "on", "wan_signal": "fast", "data": "on"})
    a, b = dict(leds.levels(0)), dict(leds.levels(130))
    assert a[han[0]] == 1 and b[han[0]] == 1  # steady
    assert a[han[1]] == 1 and b[han[1]] == 0  # 4 Hz
    assert a[han[2]] == 1 and b[han[2]] == 0 and dict(leds.levels(1000))[han[2]] == 0  # short flash
    assert a[han[3]] == 1 and dict(leds.levels(1500))[han[3]] == 0  # 0.5 Hz
    assert len(leds.levels(0)) == 4 + len(han)  # a fifth HAN device has no LED on this board
    assert a[47] == 1 and a[14] == 1
    assert a[21] == 1 and b[21] == 0
    leds.set({"han": ["on"]})  # a device removed: its slot goes dark
    assert dict(leds.levels(0))[han[1]] == 0 and dict(leds.levels(0))[47] == 1
    leds.on_battery = True  # the power-fail input overrides the hub's "on"
    assert dict(leds.levels(100))[38] == 1 and dict(leds.levels(600))[38] == 0
    for bad in ({"colour": "on"}, {"alert": "purple"}, {"han": "on"}, {"han": ["on", "strobe"]}):
        try:
            leds.set(bad)
        except ValueError:
            pass
        else:
            raise AssertionError("accepted %r" % (bad,))
    assert dict(leds.levels(0))[han[0]] == 1  # a refused set changes nothing


def test_active_low_led_is_inverted():
    cfg = _cfg("esp32_s3_devkitc")
    cfg["leds"]["alert"]["active_low"] = True
    assert dict(BM.Leds(cfg["leds"]).levels(0))[47] == 1  # off = high


def test_rtc_epoch():
    assert BM.unix_offset(1970) == 0
    assert BM.unix_offset(2000) == 946684800
