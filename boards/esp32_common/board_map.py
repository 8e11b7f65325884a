# The ESP32 boards' hardware-free logic: pin map checking (board.json, stamped
# into the image as board_cfg.CONFIG by `chub build`), the status LED patterns
# and the RTC epoch. Pure: no `machine`, so the unix port tests it.

# GPIOs per chip family: the highest number, the ones wired to the SPI flash
# (and PSRAM), the S3's native USB pins, the input-only ones (no output driver, no pull resistors)
# and the strapping pins (an output there must not fight the boot level).
CHIPS = {
    "esp32": {
        "gpio_max": 39,
        "absent": (20, 24, 28, 29, 30, 31),
        "flash": (6, 7, 8, 9, 10, 11),
        "psram_octal": (),
        "psram_quad": (16, 17),  # a WROVER module's PSRAM (CS, CLK)
        "usb": (),
        "input_only": (34, 35, 36, 37, 38, 39),
        "strapping": (0, 2, 5, 12, 15),
        "uarts": (0, 1, 2),
    },
    "esp32s3": {
        "gpio_max": 48,
        "absent": (22, 23, 24, 25),
        "flash": (26, 27, 28, 29, 30, 31, 32),
        "psram_octal": (33, 34, 35, 36, 37),
        "psram_quad": (),  # quad PSRAM shares the flash pins
        "usb": (19, 20),  # the native USB (D-, D+): MicroPython's USB console
        "input_only": (),
        "strapping": (0, 3, 45, 46),
        "uarts": (0, 1, 2),
    },
}

EPOCH_2000 = 946684800  # 2000-01-01 in UTC seconds since 1970


class BoardMapError(ValueError):
    pass


def _pin(role, v, chip, out, used, optional=False):
    if v is None:
        if optional:
            return
        raise BoardMapError("%s: no pin given" % role)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0 or v > chip["gpio_max"] or v in chip["absent"]:
        raise BoardMapError("%s: %r is not a GPIO of this chip" % (role, v))
    if v in chip["flash"]:
        raise BoardMapError("%s: GPIO%d is wired to the SPI flash" % (role, v))
    if v in chip["psram"]:
        raise BoardMapError("%s: GPIO%d is wired to the PSRAM" % (role, v))
    if v in chip["usb"]:
        raise BoardMapError("%s: GPIO%d is the native USB (D-/D+)" % (role, v))
    if out and v in chip["input_only"]:
        raise BoardMapError("%s: GPIO%d is input-only and cannot drive an output" % (role, v))
    if v in used:
        raise BoardMapError("%s: GPIO%d is already used by %s" % (role, v, used[v]))
    used[v] = role


def check(cfg):
    """Validate a board config; returns {gpio: role} of every pin it uses.
    Raises BoardMapError naming the role and the pin at the first problem."""
    fam = cfg.get("chip_family")
    if fam not in CHIPS:
        raise BoardMapError("unknown chip family %r" % (fam,))
    chip = dict(CHIPS[fam])
    psram = cfg.get("psram")
    chip["psram"] = chip["psram_octal"] if psram == "octal" else (chip["psram_quad"] if psram else ())
    used = {}
    con = cfg.get("console") or {}
    uart_ids = {}
    if con:
        _pin("console.tx", con.get("tx"), chip, True, used)
        _pin("console.rx", con.get("rx"), chip, False, used)
        uart_ids[con.get("uart")] = "console"
    uarts = cfg.get("uarts") or {}
    for name in ("ncp", "modem"):
        u = uarts.get(name)
        if not u:
            raise BoardMapError("uarts.%s missing" % name)
        uid = u.get("uart")
        if uid not in chip["uarts"]:
            raise BoardMapError("uarts.%s: UART %r does not exist" % (name, uid))
        if uid in uart_ids:
            raise BoardMapError("uarts.%s: UART%d is already used by %s" % (name, uid, uart_ids[uid]))
        uart_ids[uid] = name
        _pin(name + ".tx", u.get("tx"), chip, True, used)
        _pin(name + ".rx", u.get("rx"), chip, False, used)
        _pin(name + ".rts", u.get("rts"), chip, True, used, name != "ncp")
        _pin(name + ".cts", u.get("cts"), chip, False, used, name != "ncp")
        _pin(name + ".reset", u.get("reset"), chip, True, used)
        if name == "modem":
            _pin("modem.pwrkey", u.get("pwrkey"), chip, True, used)
        b = u.get("baud", 115200)
        if not isinstance(b, int) or b < 1200 or b > 5000000:
            raise BoardMapError("uarts.%s: bad baud rate %r" % (name, b))
    leds = cfg.get("leds") or {}
    for name in ("power", "alert", "wan_signal", "data"):
        led = leds.get(name)
        if not led:
            raise BoardMapError("leds.%s missing" % name)
        _pin("leds." + name, led.get("pin"), chip, True, used)
    han = leds.get("han")
    if not isinstance(han, list) or not han:
        raise BoardMapError("leds.han must list one LED per HAN device slot")
    for i, led in enumerate(han):
        _pin("leds.han[%d]" % i, led.get("pin"), chip, True, used)
    pf = cfg.get("power_fail")
    if not pf:
        raise BoardMapError("power_fail missing")
    _pin("power_fail", pf.get("pin"), chip, False, used)
    if pf.get("pull") and pf["pin"] in chip["input_only"]:
        raise BoardMapError("power_fail: GPIO%d has no internal pull resistor (fit one, set pull null)" % pf["pin"])
    return used


def strapping_outputs(cfg):
    """Output pins on strapping GPIOs: allowed, but the wiring doc warns."""
    chip = CHIPS[cfg["chip_family"]]
    out = []
    for pin, role in check(cfg).items():
        if pin in chip["strapping"] and not role.endswith(".rx") and not role.endswith(".cts") and role != "power_fail":
            out.append((pin, role))
    return sorted(out)


def unix_offset(gmtime0_year):
    """Seconds to add to time.time() for UTC since 1970: ports whose epoch is
    2000 report gmtime(0) in year 2000."""
    return EPOCH_2000 if gmtime0_year == 2000 else 0


# --- status LEDs -------------------------------------------------------------

# What each LED shows is decided by the hub (firmware/leds.py), which calls
# board.set_leds({"power": name, "han": [name, ...], "alert": name,
# "wan_signal": name, "data": name}); this renders the pattern names.
# A pattern is (period ms, on ms): steady on = (0, 1), off = (0, 0).
OFF = (0, 0)
ON = (0, 1)
SLOW = (2000, 1000)  # 0.5 Hz
BLINK = (1000, 500)  # 1 Hz
FAST = (250, 125)  # 4 Hz
FLASH = (2000, 100)  # a short flash every 2 s
PATTERNS = {"off": OFF, "on": ON, "slow": SLOW, "blink": BLINK, "fast": FAST, "flash": FLASH}
_SINGLE = ("power", "alert", "wan_signal", "data")


def level(pattern, t_ms):
    period, on = pattern
    if period == 0:
        return 1 if on else 0
    return 1 if (t_ms % period) < on else 0


class Leds:
    """The status LEDs: `set(d)` takes the hub's pattern names,
    `levels(t_ms)` -> [(gpio, 0/1 electrical level)]. Until the hub's first
    set() only the power LED is on. `on_battery` (the power-fail input, kept
    by the board's control task) makes the power LED blink at once, whatever
    the hub last said."""

    def __init__(self, leds_cfg):
        self.cfg = leds_cfg
        self.on_battery = False
        self.pats = {"power": ON, "han": [], "alert": OFF, "wan_signal": OFF, "data": OFF}

    def set(self, d):
        """d: {led: pattern name}, "han": [names] (one per HAN slot, extra
        entries beyond the board's LEDs are ignored); missing keys keep their
        pattern. Unknown LEDs or pattern names raise ValueError."""
        new = dict(self.pats)
        for k, v in d.items():
            if k == "han":
                if not isinstance(v, (list, tuple)):
                    raise ValueError("han must be a list of pattern names")
                new["han"] = [self._pat(x) for x in v]
            elif k in _SINGLE:
                new[k] = self._pat(v)
            else:
                raise ValueError("no LED %r" % (k,))
        self.pats = new

    @staticmethod
    def _pat(name):
        p = PATTERNS.get(name)
        if p is None:
            raise ValueError("no LED pattern %r" % (name,))
        return p

    def patterns(self):
        c = self.cfg
        p = self.pats
        out = [(c["power"], BLINK if self.on_battery else p["power"])]
        han = p["han"]
        for i, led in enumerate(c["han"]):
            out.append((led, han[i] if i < len(han) else OFF))
        for k in _SINGLE[1:]:
            out.append((c[k], p[k]))
        return out

    def levels(self, t_ms):
        res = []
        for led, pat in self.patterns():
            v = level(pat, t_ms)
            if led.get("active_low"):
                v ^= 1
            res.append((led["pin"], v))
        return res
