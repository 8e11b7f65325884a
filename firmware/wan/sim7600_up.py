# The SIM7600 driver's bring-up (wan.sim7600): the steps the session runs
# between links, once per modem boot, session or attach: the UART dialogue
# (init), the SIM, registration, the serving cell, the radio mode, the data
# context (attach, detach), the TCP or TLS channel's opening (with the link
# credentials into the modem's TLS stack), the modem's clock, the health
# check and the hardware reset. Functions of the driver `m` (a Sim7600): the
# session loads this module for a bring-up (Sim7600.UP) and drops it once the
# link is up (firmware/lazy.py), so the hub holds only the running link's
# part while connected.
from micropython import const
import asyncio
import time

import lazy
from log import log
from wan import at as A
from wan import modem as md
from wan.at import split_fields, to_int
from wan.sim7600 import RADIO_MODES, last_int, parse_reg

_RADIO_CNMP = const((2, 13, 14, 19, 38, 39, 48, 51, 54))
_CNMP = const((2, 9, 10, 13, 14, 19, 22, 38, 39, 48, 51, 54, 59, 60, 63, 67))


def parse_cpsi(line):
    """+CPSI -> None (no service) or (rat, "mcc-mnc", area, cell)."""
    f = split_fields(line, b"+CPSI:")
    rat = f[0]
    if rat == b"NO SERVICE":
        return None
    if len(f) < 5 or b"-" not in f[2]:
        raise A.ATFormatError("bad +CPSI")
    area = to_int(f[3], 16)
    cell = to_int(f[4])
    if rat.startswith(b"LTE"):
        if len(f) < 7 or f[6].endswith(b"BAND0") or cell > 0xFFFFFFF:
            raise A.ATFormatError("+CPSI LTE garbage")
    elif rat not in (b"GSM", b"WCDMA", b"TDS", b"CDMA", b"EVDO", b"GSM-LIMITED", b"WCDMA-LIMITED"):
        raise A.ATFormatError("bad +CPSI mode")
    if area > 0xFFFF or cell > 0xFFFFFFF:
        raise A.ATFormatError("+CPSI field out of range")
    return _ascii(rat), _ascii(f[2]), area, cell


def _ascii(b):
    try:
        return str(b, "ascii")
    except UnicodeError:
        raise A.ATFormatError("not ASCII: %r" % bytes(b))


def days_from_civil(y, m, d):
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_cclk(line):
    """+CCLK: "yy/MM/dd,hh:mm:ss±zz" (local, zz quarter hours) -> UTC seconds
    since 1970, or None when the clock was never set (year 80)."""
    f = split_fields(line, b"+CCLK:")
    if len(f) != 1:
        raise A.ATFormatError("bad +CCLK")
    v = f[0]
    if len(v) < 17 or v[2:3] != b"/" or v[5:6] != b"/" or v[8:9] != b"," \
            or v[11:12] != b":" or v[14:15] != b":":
        raise A.ATFormatError("bad +CCLK time")
    yy, mo, dd = to_int(v[0:2]), to_int(v[3:5]), to_int(v[6:8])
    hh, mi, ss = to_int(v[9:11]), to_int(v[12:14]), to_int(v[15:17])
    zone = 0
    if len(v) > 17:
        if v[17] not in b"+-" or len(v) > 20:
            raise A.ATFormatError("bad +CCLK zone")
        zone = to_int(v[18:])
        if v[17] == 45:
            zone = -zone
    if yy == 80:
        return None
    if not (1 <= mo <= 12 and 1 <= dd <= 31 and hh < 24 and mi < 60 and ss < 60 and -48 <= zone <= 56):
        raise A.ATFormatError("+CCLK out of range")
    days = days_from_civil(2000 + yy, mo, dd)
    return days * 86400 + hh * 3600 + mi * 60 + ss - zone * 900


async def init(m):
    at = m.at
    at.start()
    t = m.t
    for _ in range(t["at_retries"]):
        try:
            await at.cmd("AT", timeout_ms=t["at"])
            break
        except A.ATError as e:
            if e.args[0] != "ATTimeout":
                raise
    else:
        raise md.ModemError("ModemSilent", "no answer to AT")
    for c in ("ATE0", "AT+CMEE=2"):
        await at.cmd(c)
    lines = await at.cmd("AT+CGMR", b"+CGMR:")
    rev = lines[0][6:].strip() if lines else None
    lines = None
    log("wan", "modem revision %r" % rev)  # not kept: the console has it
    for c in ("AT+CREG=2", "AT+CGREG=2", "AT+CEREG=2", "AT+CTZU=1", "AT+CTZR=1"):
        await at.cmd(c)
    return rev


async def alive(m):
    """AT answered within the retries (False: escalate to hw_reset)."""
    for _ in range(m.t["at_retries"]):
        try:
            await m.at.cmd("AT", timeout_ms=m.t["at"])
            return True
        except A.ATError as e:
            if e.args[0] != "ATTimeout":
                raise
    return False


async def sim_ready(m, pin=None):
    t = m.t
    at = m.at
    err = None
    for _ in range(t["cpin_retries"]):
        try:
            lines = await at.cmd("AT+CPIN?", b"+CPIN:")
        except A.ATError as e:
            if e.args[0] != "CmeError":
                raise
            if e.code in (10, 13, 14):  # not inserted / failure / busy: retry
                err = e
                await asyncio.sleep_ms(t["cpin_interval"])
                continue
            if e.code == 12:
                raise md.ModemError("PukRequired")
            raise
        state = m.sim = lines[-1][6:].strip() if lines else b""
        if state == b"READY":
            m.sim = b"READY"  # the constant (in flash when frozen), not the line's copy
            return True
        if state == b"SIM PIN":
            if pin is None or m._pin_tried == pin:
                raise md.ModemError("PinRequired")
            m._pin_tried = pin
            try:
                await at.cmd('AT+CPIN="%s"' % pin, b"+CPIN:")
            except A.ATError as e:
                if e.args[0] != "CmeError":
                    raise
                if e.code == 16:
                    raise md.ModemError("WrongPin")
                raise
            continue
        if state == b"SIM PUK":
            raise md.ModemError("PukRequired")
        await asyncio.sleep_ms(t["cpin_interval"])
    if err is not None and err.code == 10:
        raise md.ModemError("NoSim")
    raise md.ModemError("ModemError", "SIM not ready: %r" % (err or m.sim))


async def registration(m):
    for i, c, p in ((1, "AT+CGREG?", b"+CGREG:"), (2, "AT+CEREG?", b"+CEREG:")):
        for line in await m.at.cmd(c, p):
            read, stat, _, _ = parse_reg(line, p)
            m.set_reg(i, stat)
    return m.reg_stat


async def wait_registered(m, timeout_ms):
    deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
    while True:
        stat = await registration(m)
        if md.registered(stat):
            return stat
        if stat == md.REG_DENIED:
            raise md.ModemError("RegistrationDenied")
        if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
            return stat
        await asyncio.sleep_ms(m.t["reg_poll"])


async def cell_id(m):
    lines = await m.at.cmd("AT+CPSI?", b"+CPSI:")
    if not lines:
        return None
    try:
        return parse_cpsi(lines[-1])
    except A.ATFormatError:
        m.at.p.garbled += 1  # a line of a form not understood (wan_status "garbled")
        return None


async def set_radio_mode(m, mode):
    if isinstance(mode, str):
        if mode not in RADIO_MODES:
            raise ValueError("unknown radio mode %s" % mode)
        mode = _RADIO_CNMP[RADIO_MODES.index(mode)]
    if mode not in _CNMP:
        raise ValueError("bad CNMP mode %d" % mode)
    await m.at.cmd("AT+CNMP=%d" % mode, timeout_ms=m.t["cfun"])


async def reset_network(m):
    """After a network drop: close the link, close the library if still open."""
    await m.quiet("AT+CIPCLOSE=0", b"+CIPCLOSE:", m.t["cipclose"])
    m.socket_open = False
    lines = await m.quiet("AT+NETOPEN?", None)
    if lines is None or any(ln.startswith(b"+NETOPEN: 1") for ln in lines):
        await m.quiet("AT+NETCLOSE", b"+NETCLOSE:", m.t["netclose"])
    m.net_lost = False
    m.attached = False


async def attach(m, apn):
    at = m.at
    t = m.t
    if m.net_lost:
        await reset_network(m)
    try:
        await at.cmd('AT+CGDCONT=1,"IP","%s"' % apn)
    except A.ATError as e:
        raise md.ModemError("AttachFailed", "CGDCONT: %s" % e)
    for c in ("AT+CIPMODE=0", "AT+CIPSENDMODE=0", "AT+CIPCCFG=10,0,0,0,1,0,75000",
              "AT+CIPTIMEOUT=%d,%d,%d" % (t["netopen"], t["cipopen"], t["cipsend"])):
        await at.cmd(c)
    try:
        lines = await at.cmd("AT+NETOPEN", None, t["netopen"], b"+NETOPEN:")
        err = last_int(lines[-1])
    except A.ATError as e:
        if e.args[0] == "ATTimeout":
            raise
        err = 0 if e.args[0] == "IpError" and b"already opened" in e.info else -1
    if err != 0:
        await m.quiet("AT+NETCLOSE", b"+NETCLOSE:", t["netclose"])
        raise md.ModemError("AttachFailed", "NETOPEN failed: %d" % err)
    lines = await at.cmd("AT+IPADDR", b"+IPADDR:")
    m.attached = True
    m.net_lost = False
    return _ascii(lines[-1][8:].strip()) if lines else None


async def detach(m):
    await m.quiet("AT+NETCLOSE", b"+NETCLOSE:", m.t["netclose"])
    if m._cch_started:
        await m.quiet("AT+CCHSTOP", b"+CCHSTOP:", m.t["cchstart"])
        m._cch_started = False
    m.attached = False
    m.socket_open = False
    m._tls = False


async def open_socket(m, host, port):
    at = m.at
    t = m.t
    await at.cmd("AT+CIPRXGET=1")
    m._rx_pending = False
    m._rxq = None
    err = await _open(m, 'AT+CIPOPEN=0,"TCP","%s",%d' % (host, port), b"+CIPOPEN:", t["cipopen"])
    if err != 0:
        await m.quiet("AT+CIPCLOSE=0", b"+CIPCLOSE:", t["cipclose"])
        if err == 2:
            m.attached = False
        raise md.ModemError("SocketOpenFailed", "socket open failed: %d" % err, err)
    m.socket_open = True


async def tls_prepare(m, cred):
    """The link credentials (wan.linkcred) into the modem (once per
    fingerprint and modem boot): the three PEM files of
    wan.linkfiles.files() (loaded for it, dropped after) downloaded
    (AT+CCERTDOWN) unless AT+CCERTLIST has them, older chub*.pem files
    deleted, SSL context 0 set to TLS 1.2 with server and client
    authentication."""
    lf = lazy.load("wan.linkfiles")
    try:
        fp, files = lf.files(cred)
        if fp == m._tls_fp:
            return
        at = m.at
        t = m.t
        have = []
        for ln in await at.cmd("AT+CCERTLIST", b"+CCERTLIST:"):
            have.append(str(split_fields(ln, b"+CCERTLIST:")[0], "ascii"))
        want = [f[0] for f in files]
        for name in have:
            if name.startswith("chub") and name not in want:
                await m.quiet('AT+CCERTDELE="%s"' % name)
        for name, kind in files:
            if name not in have:
                data = lf.render(cred, kind)
                await at.cmd('AT+CCERTDOWN="%s",%d' % (name, len(data)), None, t["certdown"], None, data)
                data = None
    finally:
        lf = None
        lazy.drop("wan.linkfiles")
    # TLS 1.2; verify the server against the anchor, present our certificate;
    # validity periods not checked against the modem's clock (it is not a
    # trusted time: docs/headend-link.md)
    for c in ('AT+CSSLCFG="sslversion",0,3', 'AT+CSSLCFG="authmode",0,2', 'AT+CSSLCFG="ignorelocaltime",0,1',
              'AT+CSSLCFG="cacert",0,"%s"' % want[0], 'AT+CSSLCFG="clientcert",0,"%s"' % want[1],
              'AT+CSSLCFG="clientkey",0,"%s"' % want[2], "AT+CCHSET=1,1", "AT+CCHMODE=0"):
        await at.cmd(c)
    m._tls_fp = fp


async def open_tls(m, host, port):
    """The SSL service started (once per attach), session 0 on SSL
    context 0, AT+CCHOPEN: the modem connects and runs the handshake.
    ModemError("SocketOpenFailed", ..., err) with the modem's <err> (15: handshake)."""
    at = m.at
    t = m.t
    m._rx_pending = False
    m._rxq = None
    if not m._cch_started:
        err = await _cchstart(m)
        if err != 0:
            # started by an earlier session the modem kept: stop it, start again
            await m.quiet("AT+CCHSTOP", b"+CCHSTOP:", t["cchstart"])
            err = await _cchstart(m)
        if err != 0:
            raise md.ModemError("SocketOpenFailed", "socket open failed: %d" % err, err)
        m._cch_started = True
    await at.cmd("AT+CCHSSLCFG=0,0")
    err = await _open(m, 'AT+CCHOPEN=0,"%s",%d,2' % (host, port), b"+CCHOPEN:", t["cchopen"])
    if err != 0:
        await m.quiet("AT+CCHCLOSE=0", b"+CCHCLOSE:", t["cipclose"])
        raise md.ModemError("SocketOpenFailed", "socket open failed: %d" % err, err)
    m._tls = True
    m.socket_open = True


async def _cchstart(m):
    try:
        lines = await m.at.cmd("AT+CCHSTART", None, m.t["cchstart"], b"+CCHSTART:")
    except A.ATError as e:
        if e.args[0] == "ATTimeout":
            raise
        return -1
    return last_int(lines[-1]) if lines else -1


async def _open(m, cmd, result, timeout_ms):
    # an open (AT+CIPOPEN, AT+CCHOPEN) with its result line either side
    # of OK -> the result's <err> (-1: none came)
    try:
        lines = await m.at.cmd(cmd, result, timeout_ms, result)
    except A.ATError as e:
        if e.args[0] == "ATTimeout":
            raise
        lines = e.lines
    err = -1
    for ln in lines:
        if ln.startswith(result):
            err = last_int(ln)
    return err


async def network_time(m):
    lines = await m.at.cmd("AT+CCLK?", b"+CCLK:", m.t["cclk"])
    if not lines:
        raise A.ATFormatError("no +CCLK")
    return parse_cclk(lines[-1])


async def hw_reset(m):
    if m._reset is None:
        raise md.ModemError("ModemError", "no reset line")
    boots = m._boots  # RDY counts one more
    r = m._reset()
    if r is not None and hasattr(r, "send"):
        await r
    deadline = time.ticks_add(time.ticks_ms(), m.t["boot"])
    while m._boots == boots:
        left = time.ticks_diff(deadline, time.ticks_ms())
        if left <= 0:
            raise md.ModemError("ModemSilent", "no RDY after reset")
        m._rxev.clear()
        if m._boots == boots:
            await m._rxev.wait_ms(left)
    await init(m)
