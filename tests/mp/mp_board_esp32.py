# The ESP32 boards' hardware-free logic (boards/esp32_common/board_map.py)
# under the real MicroPython: the shipped pin maps pass the checks, broken
# maps fail naming the role and pin, LED patterns and the RTC epoch.
import json
import sys
import time

HEAP = "768k"  # test_console_release_reaches_the_repl imports the whole hub (app) from source

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


def test_map_reserves_s3_usb_and_wrover_psram_pins():
    cfg = _cfg("esp32_s3_devkitc")
    cfg["leds"]["data"]["pin"] = 19  # native USB D-
    _raises(cfg, ("leds.data", "GPIO19", "USB"))
    cfg["leds"]["data"]["pin"] = 20  # native USB D+
    _raises(cfg, ("leds.data", "GPIO20", "USB"))
    cfg = _cfg("esp32_devkitc")
    cfg["psram"] = "quad"  # a WROVER: its PSRAM takes GPIO16/17, the devkitc's NCP UART pins
    _raises(cfg, ("ncp.tx", "GPIO17", "PSRAM"))


# ---- the board module on stand-ins of the esp32 port (tests/mp/esp32_standins.py)

import asyncio  # noqa: E402

import esp32_standins as S  # noqa: E402


def _board(name="esp32_devkitc", console=None):
    S.install(name)
    return S.boot(console)


def _run(coro, ms):
    async def main():
        t = asyncio.create_task(coro)
        await asyncio.sleep_ms(ms)
        t.cancel()
        await asyncio.sleep_ms(0)
    asyncio.run(main())


def _status_frame(seq, body=b""):
    from local_frame import encode_frame

    return encode_frame(bytes([seq]) + b'{"cmd":"echo","x":"' + body + b'"}')


def _answers(out):
    # response frames (seq, status, json) in what the hub wrote
    import local_port as lp

    fr = lp.FrameReader()
    got = []
    off = 0
    while True:
        off = fr.feed(out, off)
        if fr.event is None:
            break
        if fr.event == lp.OK:
            b = bytes(fr.body)
            got.append((b[0], b[1], json.loads(b[2:])))
    return got


async def _echo(req):
    return {"x": req.get("x")}


def test_local_port_reads_what_poll_promises():
    # a 22-byte request is answered: the reader does not wait for a chunk's
    # worth of bytes (the whole hub would stop until 128 arrived)
    import local_port as lp

    con = S.Console()
    B = _board(console=con)

    async def go():
        r, w = await B.open_uart("local")
        t = asyncio.create_task(lp.serve(r, w, _echo))
        con.send(_status_frame(5))
        await asyncio.sleep_ms(100)
        t.cancel()

    asyncio.run(go())
    assert S.VIOLATIONS == [], S.VIOLATIONS
    assert _answers(con.take()) == [(5, 0, {"x": ""})]


def test_a_stalled_frame_on_the_console_is_answered_truncated():
    # half a frame, then nothing: the frame's deadline (local_port.serve,
    # flag.wake_after) wakes the console reader's wait on stdin and the hub
    # answers TRUNCATED; the next frame is answered as usual
    import local_port as lp

    con = S.Console()
    B = _board(console=con)
    f = _status_frame(7)

    async def go():
        r, w = await B.open_uart("local")
        t = asyncio.create_task(lp.serve(r, w, _echo, timeout_ms=300))
        con.send(f[: len(f) // 2])
        await asyncio.sleep_ms(900)
        con.send(_status_frame(8))
        await asyncio.sleep_ms(200)
        t.cancel()

    asyncio.run(go())
    assert S.VIOLATIONS == [], S.VIOLATIONS
    got = _answers(con.take())
    assert [(a[0], a[1]) for a in got] == [(0, lp.TRUNCATED), (8, 0)], got


async def _client(con, frame, ms=20000):
    # the installer's client as docs/local-port.md says: at most WINDOW bytes
    # of a frame beyond what the hub acknowledged (status MORE, seq 0)
    import local_port as lp

    sent = 0
    have = 0
    fr = lp.FrameReader()
    t0 = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), t0) < ms:
        if sent < len(frame) and sent < have + 256:  # local_port._WINDOW
            end = min(len(frame), have + 256)
            con.send(frame[sent:end])
            sent = end
        out = con.take()
        off = 0
        while out:
            off = fr.feed(out, off)
            if fr.event is None:
                break
            if fr.event != lp.OK:
                continue
            b = bytes(fr.body)
            if b[1] == 9:  # local_port._MORE
                have = max(have, json.loads(b[2:])["have"])
            else:
                return b[0], b[1], json.loads(b[2:])
        await asyncio.sleep_ms(2)
    raise AssertionError("no answer; sent %d, acked %d, dropped %d" % (sent, have, con.dropped))


def test_a_4kb_request_survives_a_busy_hub():
    # the hub's loop stalls 60 ms at a time (flash erase, ECDH): the 259-byte
    # ring fills in 22 ms, so the client may only be WINDOW bytes ahead
    import local_port as lp

    con = S.Console()
    B = _board(console=con)
    big = b"a" * 3900

    async def stall():
        while True:
            time.sleep_ms(60)
            await asyncio.sleep_ms(20)

    async def go():
        r, w = await B.open_uart("local")
        t = asyncio.create_task(lp.serve(r, w, _echo))
        s = asyncio.create_task(stall())
        res = await _client(con, _status_frame(9, big))
        t.cancel()
        s.cancel()
        return res

    seq, status, res = asyncio.run(go())
    assert con.dropped == 0, con.dropped
    assert (seq, status, res["x"]) == (9, 0, big.decode())
    assert S.VIOLATIONS == [], S.VIOLATIONS


def test_a_4kb_reply_does_not_hold_the_loop():
    # stdout busy-waits for room in the 128-byte FIFO: a reply goes out in
    # pieces at the wire rate, the loop never waits more than a piece's time
    import local_port as lp

    con = S.Console()
    B = _board(console=con)
    big = b"b" * 3900

    async def go():
        r, w = await B.open_uart("local")
        t = asyncio.create_task(lp.serve(r, w, _echo))
        res = await _client(con, _status_frame(3, big))
        t.cancel()
        return res

    assert asyncio.run(go())[2]["x"] == big.decode()
    assert con.max_block_us <= 2000, con.max_block_us


def test_console_release_reaches_the_repl():
    # machine.soft_reset is sys.exit (SystemExit: a frozen main.py boots the
    # hub again); the release is a flag in RTC memory and a hard reset, and
    # the next boot's app.main() returns (MicroPython then runs the REPL)
    B = _board()
    assert not B.console_released()
    try:
        B.release_console()
    except S.HardReset:
        pass
    else:
        raise AssertionError("release_console returned")
    B = S.boot()  # the reset
    assert B.console_released()
    assert S.RTC.mem == b""  # cleared: the reset after flashing boots the hub
    sys.modules["board"] = B
    import app

    assert app.main() is None  # returns: no hub, the REPL has the console
    B = S.boot()
    assert not B.console_released()


def test_ncp_write_with_cts_held_cannot_block_the_vm():
    B = _board()

    async def go():
        r, w = await B.open_uart("ncp")
        uart = w.s
        uart.cts = False  # the NCP is missing or holds CTS
        t0 = time.ticks_ms()
        err = None
        try:
            for _ in range(20):
                w.write(b"\x7e" * 100)
                await w.drain()
        except OSError as e:
            err = e
        dt = time.ticks_diff(time.ticks_ms(), t0)
        assert err is not None, "20 writes with CTS held went through"
        assert dt < 3000, dt
        uart.cts = True  # the NCP is back: writes go through again
        w.write(b"\x7e" * 1500)
        await w.drain()
        for _ in range(400):
            if uart.txdone():
                break
            await asyncio.sleep_ms(5)
        return uart

    uart = asyncio.run(go())
    assert S.VIOLATIONS == [], S.VIOLATIONS
    assert uart.sent.endswith(b"\x7e" * 1500)


def test_power_fail_irq_only_sets_a_flag():
    B = _board()
    seen = []
    B.on_control("power_fail", lambda v: seen.append(v))

    async def go():
        waiter = asyncio.create_task(B.power_fail.wait())
        ctl = asyncio.create_task(B.control_task())
        await asyncio.sleep_ms(700)  # the modem's power-on pulse first
        pin = B.CONFIG["power_fail"]["pin"]
        assert not B.power_fail.is_set()
        S.irq(pin)
        assert seen == []  # handlers run from the control task, not the IRQ
        await asyncio.sleep_ms(120)
        assert waiter.done() and B.power_fail.is_set() and seen == [True]
        ctl.cancel()

    asyncio.run(go())
    assert S.VIOLATIONS == [], S.VIOLATIONS


def test_hard_reset_does_not_block_the_loop():
    B = _board()

    async def go():
        t0 = time.ticks_ms()
        B.hard_reset("modem")
        dt = time.ticks_diff(time.ticks_ms(), t0)
        await asyncio.sleep_ms(1400)
        return dt

    dt = asyncio.run(go())
    assert dt < 20, dt
    m = B.CONFIG["uarts"]["modem"]
    rst = S.Pin.pins[m["reset"]].history
    key = S.Pin.pins[m["pwrkey"]].history
    # RESET high for 100 ms, then PWRKEY high for 600 ms after 500 ms
    assert [v for _, v in rst] == [1, 0] and 90 <= time.ticks_diff(rst[1][0], rst[0][0]) <= 200
    assert [v for _, v in key] == [1, 0] and 590 <= time.ticks_diff(key[1][0], key[0][0]) <= 700


def test_watchdog_is_machine_wdt():
    B = _board()
    w = B.watchdog(8000)
    assert isinstance(w, S.WDT) and w.timeout == 8000
    assert B.watchdog().timeout == B.CONFIG.get("watchdog_ms", 30000)


def test_wan_restart_reopens_the_modem_uart():
    # the board keeps one UART object per port; a WAN job that ended (any
    # exception) must have stopped its AT reader, or the next job's reader
    # trips asyncio ("assert sm[idx] is None") and the WAN is gone until reboot
    import flashfs

    B = _board()
    sys.modules["board"] = B
    from clock import Clock
    from store import Store
    from wan import service

    flashfs.fresh()
    st = Store(flashfs.ROOT + "/data")
    clk = Clock(B.utc, B.set_utc, B.ticks_ms)
    w = service.WanService(st, None, clk, B.utc, B.power_fail, asyncio.Event())
    w.ready.set()
    errors = []

    async def go():
        for run in range(2):
            t = asyncio.create_task(w.run())
            await asyncio.sleep_ms(50)
            B._uarts["modem"].feed(b"\r\nRDY\r\n")  # the modem's boot URC reaches the current reader
            await asyncio.sleep_ms(50)
            rx = w.session.modem.at._task
            if rx is None:
                errors.append("run %d: no AT reader" % run)
            t.cancel()  # the job ends (the supervisor restarts it)
            await asyncio.sleep_ms(10)
            # (a build with asserts stops at asyncio's assert; without, the
            # old reader would sit on the stream, never woken)
            if rx is not None and not rx.done():
                errors.append("run %d: its AT reader still waits on the UART" % run)

    def handler(loop, ctx):
        errors.append(repr(ctx["exception"]))

    asyncio.get_event_loop().set_exception_handler(handler)
    asyncio.run(go())
    assert S.UART.made == {1: 1}, S.UART.made  # one UART object, reused
    assert errors == [], errors
