# SIMCom SIM7600 driver (the dialect in vectors/modem/SIM7600.md): one TCP
# client link (link 0) in buffer receive mode (AT+CIPRXGET=1), or one TLS
# session run by the modem's own SSL stack (AT+CCHxxx, session 0, SSL context
# 0, manual receive mode), so received data waits in the modem until we read
# it (back-pressure, small heap) and no TLS state is on the ESP32's heap.
from micropython import const
from array import array
import time

from flag import Flag
from wan import at as A
from wan import modem as md
from wan.at import split_fields, to_int

# The names of wan.at and wan.modem are used as A.X / md.X (errors, event
# kinds, registration states): one global each instead of 26 (RAM when frozen)

_CHUNK = const(1460)  # the most sent with one AT+CIPSEND / AT+CCHSEND
# the most read with one AT+CIPRXGET=2 / AT+CCHRECV: each read is a buffer of
# its size (wan.at), so a burst from the head-end is taken in 512-byte pieces
# (1460-byte ones were the WAN's largest transient block)
_RX_CHUNK = const(512)
_NSIG = const(32)
# the three registration stats (CREG, CGREG, CEREG), 4 bits each in one
# int: all REG_UNKNOWN (4)
_REG_UNKNOWN3 = const(0x444)

# all timings in ms; tests shrink them
TIMINGS = {
    "cmd": 2000, "at": 1000, "at_retries": 3, "cfun": 10000, "boot": 30000,
    "cpin_retries": 10, "cpin_interval": 1000, "netopen": 75000, "netclose": 60000,
    "cipopen": 15000, "cipsend": 15000, "cipclose": 15000, "rxget": 5000, "cclk": 5000,
    "reg_poll": 1000, "signal_window": 30000, "grace": 300,
    "cchstart": 30000, "cchopen": 30000, "certdown": 10000,
}

# the radio modes' names (their AT+CNMP values at the same place: wan.sim7600_up)
RADIO_MODES = ("auto", "gsm", "wcdma", "gsm+wcdma", "lte", "gsm+wcdma+lte", "not-lte", "gsm+lte", "wcdma+lte")


def rssi_to_dbm(rssi):
    """AT+CSQ <rssi> to dBm (None = not known)."""
    if 0 <= rssi <= 31:
        return -113 + 2 * rssi
    if 100 <= rssi <= 191:
        return rssi - 216
    if rssi == 99 or rssi == 199:
        return None
    raise A.ATFormatError("rssi out of range: %d" % rssi)


def parse_csq(line):
    f = split_fields(line, b"+CSQ:")
    if len(f) != 2:
        raise A.ATFormatError("bad +CSQ")
    to_int(f[1])
    return rssi_to_dbm(to_int(f[0]))


def parse_reg(line, prefix):
    """+CxREG line -> (read_form, stat, lac, ci); lac/ci ints or None."""
    f = split_fields(line, prefix)
    rest = line[len(prefix):].strip()
    comma = rest.find(b",")
    if len(f) == 1:
        return False, to_int(f[0]), None, None
    if rest[comma + 1:comma + 2] == b'"':  # URC with location: stat,"lac","ci"
        if len(f) < 3:
            raise A.ATFormatError("bad reg URC")
        return False, to_int(f[0]), to_int(f[1], 16), to_int(f[2], 16)
    to_int(f[0])
    stat = to_int(f[1])
    if len(f) >= 4:
        return True, stat, to_int(f[2], 16), to_int(f[3], 16)
    return True, stat, None, None


def last_int(line):
    return to_int(line[line.rfind(b",") + 1:].strip() if b"," in line else line[line.find(b":") + 1:].strip())


# the URCs the driver follows (a constant tuple, in flash when frozen):
# _on_urc handles the first prefix that matches, by its place
_URC_PREFIXES = const((
    b"+CREG:", b"+CGREG:", b"+CEREG:", b"+IPCLOSE:", b"+CIPEVENT:", b"+CIPRXGET: 1,", b"RDY", b"+CPIN:",
    b"PB DONE", b"+CCHEVENT:", b"+CCH_PEER_CLOSED:", b"+CCH_RECV_CLOSED:", b"+CTZV:", b"*PSUTTZ:", b"+CTZE:",
))


class Sim7600(md.Modem):
    """The running link's part: URCs, signal, send, receive, close. The
    bring-up steps (init, sim_ready, registration, attach, tls_prepare,
    open_tls, hw_reset, ...) are functions of module UP, which the session
    loads for a bring-up and drops once the link is up."""

    UP = "wan.sim7600_up"

    def __init__(self, reader, writer, reset=None, timings=None):
        md.Modem.__init__(self)
        t = TIMINGS  # shared, never written: a copy only when overridden
        if timings:
            t = dict(TIMINGS)
            t.update(timings)
        self.t = t
        self.at = A.ATChannel(reader, writer, t["cmd"], t["grace"])
        self._reset = reset
        at = self.at
        # one handler for every URC the driver follows (a bound method and a
        # table entry each would be ~64 bytes apiece)
        at.p.on(_URC_PREFIXES, self._on_urc)
        at.p.on_data = self._on_push
        self._reg = _REG_UNKNOWN3  # CREG, CGREG, CEREG: bits 0-3, 4-7, 8-11
        # timed waits without a helper task: data or a closed link for recv,
        # a boot (RDY, counted in _boots) for the bring-up's hw_reset
        self._rxev = Flag()
        self._boots = 0
        self._rx_pending = False
        self._woken = False
        self._rx_urcs = 0  # "+CIPRXGET: 1,0" seen (a read must not clear a newer one)
        self._rxq = None  # pushed data (+RECEIVE, +IPD) not yet taken: a list once some came
        # the last _NSIG signal samples, one 32-bit word each (_sig_put): its
        # tick in 32 ms steps (the ticks' 30 bits less 5) over the dBm + 128
        # (-116 to -25: 7 bits); a bytes initialiser is raw zeroed memory in
        # MicroPython. _sig_n: the samples taken, kept under 2 * _NSIG (the
        # next one's slot is _sig_n % _NSIG)
        self._sig = array("I", bytes(4 * _NSIG))
        self._sig_n = 0
        self._pin_tried = None  # the PIN entered since boot (one try per PIN)
        self.sim = None
        self.pb_done = False
        self.net_lost = False
        self.attached = False
        self._tls = False  # the open channel is the SSL session (else TCP link 0)
        self._tls_fp = None  # the link credentials set up in the modem since it booted
        self._cch_started = False

    def set_timings(self, timings):
        """Change timings (ms) on the fly, e.g. from the WAN configuration."""
        for k in timings:
            if k not in TIMINGS:
                raise ValueError("unknown modem timing %s" % k)
        if self.t is TIMINGS:
            self.t = dict(TIMINGS)  # the shared defaults stay as they are
        self.t.update(timings)
        self.at.timeout_ms = self.t["cmd"]
        self.at.grace_ms = self.t["grace"]

    # ---- URCs ----
    def _on_urc(self, line):
        # every URC the driver follows, by its prefix's place in
        # _URC_PREFIXES: one method (a bound method and a method slot per
        # handler would be ~40 bytes apiece, for the hub's life)
        i = 0
        for p in _URC_PREFIXES:
            if line.startswith(p):
                break
            i += 1
        else:
            return
        if i < 3:  # +CREG / +CGREG / +CEREG
            read, stat, _, _ = parse_reg(line, _URC_PREFIXES[i])
            self.set_reg(i, stat)
        elif i == 3:  # +IPCLOSE: <link>,<reason>
            f = split_fields(line, b"+IPCLOSE:")
            if len(f) != 2:
                raise A.ATFormatError("bad +IPCLOSE")
            if to_int(f[0]) == 0:
                self.socket_open = False
                self._rxev.set()
                self._emit(md.EV_SOCKET_CLOSED, to_int(f[1]))
        elif i == 4:  # +CIPEVENT: NETWORK CLOSED UNEXPECTEDLY
            was = self.socket_open
            self.socket_open = False
            self.attached = False
            self._cch_started = False
            self.net_lost = True
            self._rxev.set()
            if was:
                self._emit(md.EV_SOCKET_CLOSED, -1)
            self._emit(md.EV_NET_LOST, line[10:].strip())
        elif i == 5 or i == 9:
            # +CIPRXGET: 1,0 / +CCHEVENT: 0,RECV EVENT: data waits in link 0 /
            # SSL session 0 (buffer / manual receive mode)
            if (line[13:].strip() == b"0") if i == 5 else (line[11:12] == b"0" and b"RECV EVENT" in line):
                self._rx_pending = True
                self._rx_urcs += 1
                self._rxev.set()
        elif i == 6:  # RDY: the modem (re)booted
            if line != b"RDY":
                raise A.ATFormatError("bad boot line")
            self.socket_open = False
            self.attached = False
            self.pb_done = False
            self._pin_tried = None  # the PIN entered since boot (one try per PIN)
            self._tls = False
            self._tls_fp = None
            self._cch_started = False
            self._reg = _REG_UNKNOWN3
            self.reg_stat = md.REG_UNKNOWN
            self._boots += 1
            self._rxev.set()
            self._emit(md.EV_BOOT)
        elif i == 7:  # +CPIN: <state>
            s = line[6:].strip()
            # READY (the state at rest) as the constant, in flash when frozen
            self.sim = b"READY" if s == b"READY" else s
            self._emit(md.EV_SIM, self.sim)
        elif i == 8:  # PB DONE
            self.pb_done = True
        elif i < 12:
            # +CCH_PEER_CLOSED: 0 / +CCH_RECV_CLOSED: 0,<err>: the session ended
            f = split_fields(line[line.find(b":") + 1:])
            if to_int(f[0]) == 0 and self._tls:
                self.socket_open = False
                self._rxev.set()
                self._emit(md.EV_SOCKET_CLOSED, 1)
        else:  # +CTZV / *PSUTTZ / +CTZE: network time arrived
            self._emit(md.EV_TIME, None)

    def set_reg(self, i, stat):
        # registration stat i (CREG, CGREG, CEREG) -> the combined reg_stat:
        # registered by CGREG, CEREG or CREG, else denied, searching or none
        if not 0 <= stat <= 15:
            raise A.ATFormatError("registration stat %d" % stat)  # 3GPP: 0..11
        old = self.reg_stat
        r = self._reg & ~(15 << 4 * i) | stat << 4 * i
        self._reg = r
        r = (r >> 4 & 15, r >> 8 & 15, r & 15)  # CGREG, CEREG, CREG
        s = md.REG_UNKNOWN
        for x in r:
            if md.registered(x):
                s = x
                break
        else:
            for want in (md.REG_DENIED, md.REG_SEARCHING, md.REG_NONE):
                if want in r:
                    s = want
                    break
        self.reg_stat = s
        if s != old:
            self._emit(md.EV_REG, s)

    def _on_push(self, link, mv):
        if link in (0, -1):
            if self._rxq is None:
                self._rxq = []
            self._rxq.append(bytes(mv))
            self._rxev.set()

    async def signal_dbm(self):
        lines = await self.at.cmd("AT+CSQ", b"+CSQ:")
        if not lines:
            raise A.ATFormatError("no +CSQ")
        dbm = parse_csq(lines[-1])
        if dbm is not None:
            n = self._sig_n
            self._sig[n % _NSIG] = (time.ticks_ms() >> 5) << 7 | (dbm + 128)
            n += 1
            self._sig_n = n - _NSIG if n >= 2 * _NSIG else n
        return dbm

    def signal_avg_dbm(self):
        # the samples of the last signal_window ms (their age to 32 ms)
        now = time.ticks_ms() >> 5
        win = self.t["signal_window"]
        tot = 0
        n = 0
        for k in range(min(self._sig_n, _NSIG)):
            v = self._sig[k]
            if ((now - (v >> 7)) & 0x1FFFFFF) << 5 <= win:
                tot += (v & 0x7F) - 128
                n += 1
        if not n:
            return None
        return tot / n

    # ---- data ----
    async def quiet(self, c, done=None, timeout_ms=None):
        try:
            return await self.at.cmd(c, done, timeout_ms, done)
        except A.ATError as e:
            if e.args[0] == "ATTimeout":
                raise
            return None

    async def send(self, data):
        # data in pieces of at most _CHUNK, each one AT+CCHSEND / AT+CIPSEND;
        # one that fits goes as it is (no view), and this frame holds no
        # more than data, its place and the reply's lines
        end = len(data)
        i = 0
        while i < end:
            n = min(_CHUNK, end - i)
            if not self.socket_open:
                raise md.ModemError("SocketClosed")
            if self._tls:
                try:
                    lines = await self.at.cmd(b"AT+CCHSEND=0,%d" % n, b"+CCHSEND:", self.t["cipsend"], b"+CCHSEND:",
                                              data if n == end else memoryview(data)[i:i + n])
                except A.ATError as e:
                    if e.args[0] == "ATTimeout":
                        raise
                    lines = None
                if not lines or last_int(lines[-1]) != 0:
                    self.socket_open = False
                    raise md.ModemError("SocketClosed")
                i += n
                continue
            try:
                lines = await self.at.cmd(b"AT+CIPSEND=0,%d" % n, b"+CIPSEND:", self.t["cipsend"],
                                          b"+CIPSEND:", data if n == end else memoryview(data)[i:i + n])
            except A.ATError as e:
                if e.args[0] != "CipError":
                    raise
                if e.code in (2, 4):
                    self.socket_open = False
                    raise md.ModemError("SocketClosed")
                raise
            cnf = last_int(lines[-1]) if lines else -1
            if cnf != n:
                if cnf < 0:
                    self.socket_open = False
                    raise md.ModemError("SocketClosed")
                raise md.ModemError("ModemError", "short send %d/%d" % (cnf, n))
            i += n
        return i

    async def recv(self, timeout_ms=None):
        deadline = None if timeout_ms is None else time.ticks_add(time.ticks_ms(), timeout_ms)
        while True:
            if self._rxq:
                return self._rxq.pop(0)
            if self._rx_pending:
                data = await self._read()  # its own frame: this one stays small while it waits
                if data:
                    return data
                continue
            if not self.socket_open:
                raise md.ModemError("SocketClosed")
            if self._woken:
                self._woken = False
                return b""
            self._rxev.clear()
            if deadline is None:
                await self._rxev.wait()
                continue
            left = time.ticks_diff(deadline, time.ticks_ms())
            if left <= 0:
                return b""
            if not await self._rxev.wait_ms(left):
                return b""

    async def _read(self):
        # one read of the data waiting in the modem -> it, or None/b"".
        # The "data waiting" URC can land between the read's OK and this
        # coroutine resuming (same UART burst): the flag is then left set,
        # because the reply's remaining count predates that data.
        seen = self._rx_urcs
        if self._tls:
            try:
                lines, data = await self.at.cmd_data("AT+CCHRECV=0,%d" % _RX_CHUNK, b"+CCHRECV: DATA,",
                                                     self.t["rxget"], b"+CCHRECV: 0,")
            except A.ATError as e:
                if e.args[0] == "ATTimeout":
                    raise
                data = None
            # a full chunk may have more behind it (no count of the rest here)
            self._rx_pending = (data is not None and len(data) == _RX_CHUNK) or self._rx_urcs != seen
            return data
        try:
            lines, data = await self.at.cmd_data("AT+CIPRXGET=2,0,%d" % _RX_CHUNK, b"+CIPRXGET: 2,",
                                                 self.t["rxget"])
        except A.ATError as e:
            if e.args[0] != "IpError":
                raise
            self._rx_pending = self._rx_urcs != seen
            return None
        f = split_fields(lines[-1], b"+CIPRXGET:")
        if len(f) != 4 or data is None:
            raise A.ATFormatError("bad +CIPRXGET read")
        self._rx_pending = to_int(f[3]) > 0 or self._rx_urcs != seen
        return data

    def wake(self):
        self._woken = True
        self._rxev.set()

    async def poll_rx(self):
        if self._tls:
            lines = await self.at.cmd("AT+CCHRECV?", b"+CCHRECV: LEN,")
            if lines and split_fields(lines[-1], b"+CCHRECV: LEN,")[0] not in (b"0", b""):
                self._rx_pending = True
                return True
            return False
        lines = await self.at.cmd("AT+CIPRXGET=4,0", b"+CIPRXGET: 4,")
        if lines and not lines[-1].endswith(b",0"):
            self._rx_pending = True
            return True
        return False

    async def close_socket(self):
        if self._tls:
            await self.quiet("AT+CCHCLOSE=0", b"+CCHCLOSE:", self.t["cipclose"])
            self._tls = False
        else:
            await self.quiet("AT+CIPCLOSE=0", b"+CIPCLOSE:", self.t["cipclose"])
        self.socket_open = False
