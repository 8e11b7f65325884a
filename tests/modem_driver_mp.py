# ruff: noqa: UP031  (MicroPython code: %-formatting is the cheap one there)
# MicroPython side of tests/test_modem_sim7600.py: drives wan.sim7600 over
# TCP to the CPython SIM7600 emulator. Faults are requested from the test over
# a control connection (one JSON line per call). Usage:
#   micropython modem_driver_mp.py <scenario> <uart_port> <ctl_port> <echo_port>
import asyncio
import json
import sys
import time

from wan import modem as M
from wan.at import ATError
from wan import sim7600_up as U  # the bring-up steps (Sim7600.UP)
from wan.sim7600 import Sim7600

FAST = {"cmd": 1500, "at": 300, "at_retries": 2, "cpin_retries": 3, "cpin_interval": 20,
        "netopen": 3000, "netclose": 2000, "cipopen": 3000, "cipsend": 3000, "cipclose": 2000,
        "boot": 3000, "reg_poll": 20, "signal_window": 400, "grace": 50}


class Ctl:
    def __init__(self, r, w):
        self.r = r
        self.w = w

    async def __call__(self, op, *args):
        self.w.write(json.dumps({"op": op, "args": args}).encode() + b"\n")
        await self.w.drain()
        res = json.loads(await self.r.readline())
        if "error" in res:
            raise AssertionError("ctl %s: %s" % (op, res["error"]))
        return res.get("result")


async def wait_event(events, kind, value=None, ms=2000):
    for _ in range(ms // 10):
        for k, v in events:
            if k == kind and (value is None or v == value):
                return
        await asyncio.sleep_ms(10)
    raise AssertionError("no event %s %r in %r" % (kind, value, events))


async def raises(kind, coro):
    """The error raised: a ModemError of that kind (wan.modem has one class,
    raised with a kind), or an instance of that class."""
    try:
        await coro
    except Exception as e:  # noqa: BLE001 - checked here
        if isinstance(kind, str):
            assert isinstance(e, M.ModemError) and e.args[0] == kind, repr(e)
        elif not isinstance(e, kind):
            raise
        return e
    raise AssertionError("expected %s" % kind)


async def up(m, pin=None):
    await U.init(m)
    assert await U.sim_ready(m, pin)
    assert M.registered(await U.wait_registered(m, 2000))


BLOCKS = []  # the size of each block recv() returned


async def recv_n(m, n, ms=3000):
    got = b""
    while len(got) < n:
        d = await m.recv(ms)
        assert d, "timeout after %d/%d" % (len(got), n)
        BLOCKS.append(len(d))
        got += d
    return got


async def sc_startup(m, ctl, ev, echo):
    for _ in range(100):  # boot URCs come first
        if m.pb_done:
            break
        await asyncio.sleep_ms(10)
    assert m.pb_done and m.sim == b"READY", (m.pb_done, m.sim)
    assert (M.EV_SIM, b"READY") in ev
    rev = await U.init(m)
    assert rev == b"LE20B04SIM7600G22", rev  # logged, not kept
    assert await U.sim_ready(m)
    cmds = await ctl("commands")
    assert cmds[:5] == ["AT", "ATE0", "AT+CMEE=2", "AT+CGMR", "AT+CREG=2"], cmds
    for c in ("AT+CGREG=2", "AT+CEREG=2", "AT+CTZU=1", "AT+CPIN?"):
        assert c in cmds, c
    assert not [c for c in cmds if c.startswith("AT+CPIN=")]
    assert m.at.p.garbled == 0 and m.at.p.stray == 0


async def sc_pin(m, ctl, ev, echo):
    await wait_event(ev, M.EV_SIM, b"SIM PIN")
    await U.init(m)
    assert await U.registration(m) == M.REG_NONE
    await raises("PinRequired", U.sim_ready(m))
    assert await U.sim_ready(m, "1234")
    await wait_event(ev, M.EV_REG, M.REG_HOME)  # +CxREG URCs after unlock
    assert await U.registration(m) == M.REG_HOME
    # wrong PIN after a reboot: one attempt only, then stop
    ev.clear()
    await ctl("hw_reset")
    await wait_event(ev, M.EV_BOOT)
    await U.init(m)
    await raises("WrongPin", U.sim_ready(m, "9999"))
    await raises("PinRequired", U.sim_ready(m, "9999"))  # the same wrong PIN is not tried again
    assert await ctl("get", "pin_left") == 2
    assert await U.sim_ready(m, "1234")  # a new PIN (configured remotely) gets its one try
    assert await ctl("get", "pin_left") == 3


async def sc_registration(m, ctl, ev, echo):
    await up(m)
    await ctl("lose_registration", 2)
    await wait_event(ev, M.EV_REG, M.REG_SEARCHING)
    assert m.reg_stat == M.REG_SEARCHING
    await ctl("regain_registration", 5)
    await wait_event(ev, M.EV_REG, M.REG_ROAMING)
    assert await U.registration(m) == M.REG_ROAMING
    # a URC between a reply's information line and its OK
    await ctl("inject_urc", "+CREG: 2", True)
    assert await m.signal_dbm() == -71
    assert m._reg & 15 == 2 and m.reg_stat == M.REG_ROAMING  # CREG in bits 0-3
    await ctl("deny_registration")
    await wait_event(ev, M.EV_REG, M.REG_DENIED)
    await raises("RegistrationDenied", U.wait_registered(m, 500))


async def sc_signal(m, ctl, ev, echo):
    await up(m)
    for rssi, dbm in ((21, -71), (10, -93), (0, -113), (31, -51), (99, None)):
        await ctl("set_csq", rssi)
        assert await m.signal_dbm() == dbm, (rssi, dbm)
    assert m.signal_avg_dbm() == (-71 - 93 - 113 - 51) / 4, m.signal_avg_dbm()
    await asyncio.sleep_ms(450)  # older than the window
    assert m.signal_avg_dbm() is None
    await ctl("set_csq", 18)
    await m.signal_dbm()
    assert m.signal_avg_dbm() == -77


async def sc_cell(m, ctl, ev, echo):
    await up(m)
    assert await U.cell_id(m) == ("LTE", "234-50", 0x1A2D, 27447574), await U.cell_id(m)
    await ctl("deny_registration")
    assert await U.cell_id(m) is None
    await U.set_radio_mode(m, "lte")
    assert await ctl("get", "cnmp") == 38
    await U.set_radio_mode(m, 2)
    assert await ctl("get", "cnmp") == 2


async def sc_data(m, ctl, ev, echo):
    await up(m)
    assert await U.attach(m, "iot.example") == "10.64.12.34"
    assert await U.attach(m, "iot.example") == "10.64.12.34"  # "already opened" is success
    await U.open_socket(m, "headend.example.net", echo)
    payload = bytes(range(256)) * 12 + b"\r\nOK\r\n>\r\n+CIPRXGET: 1,0\r\n"
    assert await m.send(payload) == len(payload)
    assert await recv_n(m, len(payload)) == payload
    # the modem's data is read in blocks of at most 512 bytes: each is a
    # buffer of its size (1460-byte reads were the WAN's largest transient
    # piece, and failed first on a full heap)
    assert max(BLOCKS) <= 512, BLOCKS
    await ctl("server_send", "0d0a4f4b0d0a3e")  # server -> hub
    assert await recv_n(m, 7) == b"\r\nOK\r\n>"
    assert await m.recv(100) == b""  # nothing more: timeout gives b""
    await ctl("server_close")
    await wait_event(ev, M.EV_SOCKET_CLOSED, 1)
    await raises("SocketClosed", m.recv(500))
    await raises("SocketClosed", m.send(b"x"))
    await U.open_socket(m, "headend.example.net", echo)
    await m.send(b"ping")
    assert await recv_n(m, 4) == b"ping"
    await m.close_socket()
    assert not await ctl("link_open", 0)
    await U.detach(m)
    assert not await ctl("get", "netopen")
    assert m.at.p.garbled == 0


async def sc_wake(m, ctl, ev, echo):
    # wake() ends a waiting recv() at once with b"" (the WAN job's loop then
    # sends what hub.emit just queued instead of sleeping out its poll)
    await up(m)
    await U.attach(m, "iot.example")
    await U.open_socket(m, "headend.example.net", echo)
    t0 = time.ticks_ms()

    async def later():
        await asyncio.sleep_ms(50)
        m.wake()

    asyncio.create_task(later())
    assert await m.recv(5000) == b""
    assert time.ticks_diff(time.ticks_ms(), t0) < 2500  # woken, not timed out
    # data still arrives normally afterwards, and a wake with nothing waiting is harmless
    await m.send(b"ping")
    assert await recv_n(m, 4) == b"ping"
    await m.close_socket()


async def sc_rx_race(m, ctl, ev, echo):
    # "+CIPRXGET: 1,0" right behind the OK of the read that emptied the
    # buffer (same burst on the UART): the driver must not lose it
    await up(m)
    await U.attach(m, "iot.example")
    await U.open_socket(m, "h.example", echo)
    for i in range(5):
        await ctl("data_after_read", "%02x" % i * 8)
        await m.send(b"first%d" % i)
        assert await recv_n(m, 6, 1000) == b"first%d" % i
        got = await m.recv(1000)  # announced only by the URC behind the read
        assert got == bytes([i]) * 8, (i, got)
    assert m.at.p.garbled == 0


async def sc_remote_close(m, ctl, ev, echo):
    await up(m)
    await U.attach(m, "iot.example")
    await U.open_socket(m, "headend.example.net", echo)
    await ctl("remote_close", 0)
    await wait_event(ev, M.EV_SOCKET_CLOSED, 1)
    m.socket_open = True  # pretend we missed the URC: the modem says +CIPERROR: 4
    await raises("SocketClosed", m.send(b"x"))
    assert not m.socket_open
    await U.open_socket(m, "headend.example.net", echo)
    await m.send(b"again")
    assert await recv_n(m, 5) == b"again"


async def sc_network_drop(m, ctl, ev, echo):
    await up(m)
    await U.attach(m, "iot.example")
    await U.open_socket(m, "headend.example.net", echo)
    await ctl("drop_network")
    await wait_event(ev, M.EV_NET_LOST)
    await wait_event(ev, M.EV_SOCKET_CLOSED)
    assert m.net_lost and not m.socket_open
    assert await U.attach(m, "iot.example") == "10.64.12.34"
    cmds = await ctl("commands")
    i = cmds.index("AT+NETOPEN?")
    assert cmds[i - 1] == "AT+CIPCLOSE=0" and cmds[i + 1] == "AT+NETCLOSE", cmds[i - 1:i + 2]
    await U.open_socket(m, "headend.example.net", echo)
    await m.send(b"back")
    assert await recv_n(m, 4) == b"back"


async def sc_pdp_fail(m, ctl, ev, echo):
    await up(m)
    await ctl("fail_pdp", "urc")
    await raises("AttachFailed", U.attach(m, "wrong.apn"))
    assert not await ctl("get", "netopen")
    await ctl("fail_pdp", "error")
    await raises("AttachFailed", U.attach(m, "wrong.apn"))
    await ctl("fail_pdp", None)
    assert await U.attach(m, "iot.example") == "10.64.12.34"


async def sc_socket_fail(m, ctl, ev, echo):
    await up(m)
    e = await raises("SocketOpenFailed", U.open_socket(m, "h.example", echo))
    assert e.args[2] == 2, e.args  # network not opened
    await U.attach(m, "iot.example")
    await ctl("fail_socket_open", 10)
    e = await raises("SocketOpenFailed", U.open_socket(m, "h.example", echo))
    assert e.args[2] == 10
    e = await raises("SocketOpenFailed", U.open_socket(m, "no-such-host.invalid", echo))
    assert e.args[2] == 11
    e = await raises("SocketOpenFailed", U.open_socket(m, "h.example", 1))  # nothing listens
    assert e.args[2] == 10
    await U.open_socket(m, "h.example", echo)
    await m.send(b"ok")
    assert await recv_n(m, 2) == b"ok"


async def sc_no_sim(m, ctl, ev, echo):
    await U.init(m)
    await raises("NoSim", U.sim_ready(m, "1234"))
    cmds = await ctl("commands")
    assert cmds.count("AT+CPIN?") == FAST["cpin_retries"], cmds
    assert not [c for c in cmds if c.startswith("AT+CPIN=")]
    assert await U.registration(m) == M.REG_NONE


async def sc_silent(m, ctl, ev, echo):
    await up(m)
    await U.attach(m, "iot.example")
    await U.open_socket(m, "h.example", echo)
    await ctl("go_silent")
    assert (await raises(ATError, m.send(b"x" * 10))).args[0] == "ATTimeout"
    assert not await U.alive(m)
    await U.hw_reset(m)
    assert (M.EV_BOOT, None) in ev
    assert not m.socket_open and not m.attached
    assert await U.alive(m)
    await U.sim_ready(m)
    await U.wait_registered(m, 2000)
    await U.attach(m, "iot.example")
    await U.open_socket(m, "h.example", echo)
    await m.send(b"alive")
    assert await recv_n(m, 5) == b"alive"


async def sc_garbled(m, ctl, ev, echo):
    await up(m)
    await ctl("garble")
    assert await m.signal_dbm() == -71
    assert m.at.p.garbled >= 3, m.at.p.garbled
    await ctl("inject_urc", "+CGREG: 2,\"zz", False)  # a URC that does not parse
    assert await m.signal_dbm() == -71
    assert m.at.p.garbled >= 4


async def sc_time(m, ctl, ev, echo):
    await up(m)
    assert await U.network_time(m) is None  # never set: year 80
    utc = 1736953200 + 12345
    await ctl("set_clock", utc, 4)
    t = await U.network_time(m)
    assert utc <= t <= utc + 2, (t, utc)
    await ctl("set_clock", utc, -20)
    t = await U.network_time(m)
    assert utc <= t <= utc + 2, (t, utc)
    await ctl("network_time", utc + 86400, 8)
    await wait_event(ev, M.EV_TIME)
    t = await U.network_time(m)
    assert utc + 86400 <= t <= utc + 86402, t


async def sc_unexpected_boot(m, ctl, ev, echo):
    await up(m)
    await U.attach(m, "iot.example")
    ev.clear()
    await ctl("hw_reset")  # the modem reboots on its own
    await wait_event(ev, M.EV_BOOT)
    assert not m.attached
    await up(m)
    assert await U.attach(m, "iot.example") == "10.64.12.34"


async def main(name, uart, ctlp, echo):
    r, w = await asyncio.open_connection("127.0.0.1", uart)
    cr, cw = await asyncio.open_connection("127.0.0.1", ctlp)
    ctl = Ctl(cr, cw)
    ev = []

    async def reset():
        await ctl("hw_reset")

    m = Sim7600(r, w, reset=reset, timings=FAST)
    m.listener = lambda k, v: ev.append((k, v))
    m.at.start()
    await globals()["sc_" + name](m, ctl, ev, echo)
    print("PASS", name)


asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
