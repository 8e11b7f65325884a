"""The emulator's fault-injection API: what tests and campaigns call (on the
rig's event loop) to change the modem's world. Each method models one
transcript of SIM7600.md §9 or a network event; none sends anything unless
its docstring says so.

SIM:           remove_sim(urc), insert_sim(), require_pin(pin)
registration:  set_registration(stat), deny_registration(),
               lose_registration(stat), regain_registration(stat)
signal:        set_csq(rssi)
packet data:   fail_pdp(style), fail_socket_open(err, times)
links:         remote_close(link), drop_network(), push_to_link(link, data),
               data_after_read(data)
time:          set_clock(utc, zone) (ModemCore), network_time(utc, zone, dst, style)
the UART:      go_silent(), hw_reset(), garble(lines), inject_urc(line, mid_response)

State to assert on is read from the attributes of ModemCore (sim, cnmp,
pin_left, netopen, links, commands, resets, socket_open_failures, ...).
"""

from __future__ import annotations

import time

from hil.modem.clock import fmt_local
from hil.modem.config import framed
from hil.modem.core import ModemCore
from hil.modem.network import reg_changed

NET_CLOSED = "+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY"
GARBAGE = (b"\x00\xff#!%", b"+C\xfe\xfeRE", b"x" * 300)


class FaultInjection(ModemCore):
    # -- SIM
    def remove_sim(self, urc: bool = False) -> None:
        """The SIM is taken out (+CPIN: SIM REMOVED when urc); it stays out across boots."""
        self.cfg.sim_present = False
        self.sim = "ABSENT"
        if urc:
            self.urc("+CPIN: SIM REMOVED")
        reg_changed(self)

    def insert_sim(self) -> None:
        self.cfg.sim_present = True
        self.sim = "SIM PIN" if self.cfg.pin else "READY"
        reg_changed(self)

    def require_pin(self, pin: str) -> None:
        """Lock the SIM with this PIN (now and at every boot)."""
        self.cfg.pin = pin
        if self.sim != "ABSENT":
            self.sim = "SIM PIN"
        reg_changed(self)

    # -- registration and signal
    def set_registration(self, stat: int) -> None:
        """What the network gives the SIM (<stat> of +CREG); URCs per AT+CxREG modes."""
        self.net_stat = stat
        reg_changed(self)

    def deny_registration(self) -> None:
        self.set_registration(3)

    def lose_registration(self, stat: int = 2) -> None:
        self.set_registration(stat)

    def regain_registration(self, stat: int = 1) -> None:
        self.set_registration(stat)

    def set_csq(self, rssi: int) -> None:
        self.rssi = rssi

    # -- packet data
    def fail_pdp(self, style: str | None = "urc") -> None:
        """PDP activation fails: "urc" -> OK then +NETOPEN: 1; "error" -> ERROR; None heals."""
        self.fail_pdp_style = style

    def fail_socket_open(self, err: int = 10, times: int = 1) -> None:
        """The next `times` AT+CIPOPENs report +CIPOPEN: <link>,<err>
        (the queue left is socket_open_failures)."""
        self.socket_open_failures += [err] * times

    # -- links
    def remote_close(self, link: int = 0) -> None:
        """The far end closes the link: +IPCLOSE: <link>,1 (an open SSL
        session <link>: +CCH_PEER_CLOSED: <link>)."""
        s = self.cch.get(link)
        if s is not None and s.open:
            s.close("remote close")
            return
        lk = self.links.get(link)
        if lk and lk.open:
            self.close_link(lk)
            self.urc(f"+IPCLOSE: {link},1")

    def drop_network(self) -> None:
        """Coverage/PDP lost: links die; the library stays marked open (AT+NETOPEN? says 1)."""
        lines = []
        for n, lk in sorted(self.links.items()):
            if lk.open:
                self.close_link(lk)
                lines.append(f"+IPCLOSE: {n},1")
        for n, s in sorted(self.cch.items()):
            if s.open:
                s.close("network", urc=False)
                lines.append(f"+CCH_PEER_CLOSED: {n}")
        lines = (lines + [NET_CLOSED]) if self.cfg.ipclose_on_drop else [NET_CLOSED]
        self.links.clear()
        self.urc(*lines)

    def push_to_link(self, link: int, data: bytes) -> None:
        """Deliver data on a link as if it came from the network. On an open
        SSL session <link> the bytes enter below TLS, as injected on the wire:
        the session's TLS layer takes them (a forged record ends it)."""
        s = self.cch.get(link)
        if s is not None and s.open:
            s.wire_in(data)
            return
        lk = self.links[link]
        self.deliver(link, lk, data)

    def data_after_read(self, data: bytes) -> None:
        """Race: the next buffered read (AT+CIPRXGET=2) empties the link and
        `data` arrives just behind it, so "+CIPRXGET: 1,<link>" follows the
        read's OK in the same burst."""
        self.after_read.append(bytes(data))

    # -- time
    def network_time(self, utc: float, zone_quarters: int = 0, dst: int = 0, style: str = "ctzv") -> None:
        """NITZ from the network: updates the RTC when AT+CTZU=1; reports per AT+CTZR
        (or as *PSUTTZ with style="psuttz")."""
        if self.ctzu:
            self.set_clock(utc, zone_quarters)
        z = f"{'+' if zone_quarters >= 0 else '-'}{abs(zone_quarters):02d}"
        t = time.gmtime(int(utc))
        if style == "psuttz":
            self.urc(f'*PSUTTZ: {t.tm_year},{t.tm_mon},{t.tm_mday},{t.tm_hour},{t.tm_min},{t.tm_sec},"{z}",{dst}')
        elif self.ctzr == 1:
            self.urc(f"+CTZV: {z},{fmt_local(utc, 0)},{dst}")
        elif self.ctzr == 2:
            self.urc(f'+CTZE: "{z}",{dst},"{time.strftime("%Y/%m/%d,%H:%M:%S", t)}"')

    # -- the UART
    def go_silent(self) -> None:
        """The modem stops answering until hw_reset()."""
        self.silent = True

    def hw_reset(self) -> None:
        """The reset line / a power cycle: reboot and emit the boot URCs."""
        self.silent = False
        self.reboot()

    def garble(self, lines: list[bytes] | None = None) -> None:
        """Send these lines (default: binary junk, a broken URC, an overlong line) now."""
        for ln in lines or GARBAGE:
            self.write(framed(ln))

    def inject_urc(self, line: str, mid_response: bool = False) -> None:
        """Send a URC now, or between the information lines and the final result
        of the next reply (as real modems may)."""
        if mid_response:
            self.urc_in_next_reply(line)
        else:
            self.urc(line)
