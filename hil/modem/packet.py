"""Packet data commands (SIM7600.md §4.1, 4.3, 4.4): PDP contexts, the TCP/IP
service's configuration, and opening / closing the network library."""

from __future__ import annotations

from hil.modem.config import split_args
from hil.modem.core import Handler, ModemCore


# -- PDP context
def cgdcont(m: ModemCore, kind: str, args: str) -> None:
    if kind == "?":
        m.reply(*(f'+CGDCONT: {cid},"{t}","{apn}","0.0.0.0",0,0,0,0'
                  for cid, (t, apn) in sorted(m.pdp.items())))
    elif kind == "=":
        a = split_args(args)
        cid = int(a[0])
        if not 1 <= cid <= 15:
            raise ValueError(cid)
        m.pdp[cid] = (a[1] if len(a) > 1 else "IP", a[2] if len(a) > 2 else "")
        m.reply()
    else:
        m.reply('+CGDCONT: (1-15),"IP",,,(0-2),(0-1),(0-1),(0-2)')


def cgatt(m: ModemCore, kind: str, args: str) -> None:
    m.reply(f"+CGATT: {int(m.registered())}") if kind == "?" else m.reply()


def cgact(m: ModemCore, kind: str, args: str) -> None:
    if kind == "?":
        m.reply(f"+CGACT: 1,{int(m.pdp_active)}")
        return
    a = split_args(args)
    if a[0] == "1" and (m.fail_pdp_style or not m.registered()):
        m.cme(149 if m.fail_pdp_style else 30)
        return
    m.pdp_active = a[0] == "1"
    m.reply()


def cgpaddr(m: ModemCore, kind: str, args: str) -> None:
    m.reply(f"+CGPADDR: 1,{m.cfg.ip if m.pdp_active or m.netopen else '0.0.0.0'}")


# -- TCP/IP configuration: set forms are accepted, read forms are not modelled
def _store(m: ModemCore, kind: str) -> None:
    m.reply() if kind == "=" else m.reply(final="ERROR")


def cipmode(m: ModemCore, kind: str, args: str) -> None:
    if kind == "=" and args != "0":
        m.reply(final="ERROR")  # transparent mode is not emulated
    else:
        _store(m, kind)


def cip_accepted(m: ModemCore, kind: str, args: str) -> None:
    """AT+CIPSENDMODE, AT+CIPTIMEOUT: set accepted, nothing modelled."""
    _store(m, kind)


def cipccfg(m: ModemCore, kind: str, args: str) -> None:
    if kind == "=":
        a = split_args(args)
        if len(a) >= 5 and a[4]:
            m.header_type = int(a[4])
    _store(m, kind)


def ciphead(m: ModemCore, kind: str, args: str) -> None:
    m.ciphead = int(args) if kind == "=" else m.ciphead
    _store(m, kind)


def cipsrip(m: ModemCore, kind: str, args: str) -> None:
    m.cipsrip = int(args) if kind == "=" else m.cipsrip
    _store(m, kind)


# -- network library
def netopen(m: ModemCore, kind: str, args: str) -> None:
    if kind == "?":
        m.reply(f"+NETOPEN: {int(m.netopen)}")
        return
    if m.netopen:
        m.reply("+IP ERROR: Network is already opened", final="ERROR")
        return
    if m.fail_pdp_style == "error":
        m.reply(final="ERROR")
        return
    m.reply()

    def result() -> None:
        ok = m.registered() and m.fail_pdp_style is None
        m.netopen = ok
        m.urc(f"+NETOPEN: {0 if ok else 1}")

    m.later(m.cfg.netopen_delay, result)


def netclose(m: ModemCore, kind: str, args: str) -> None:
    if not m.netopen:
        m.reply("+NETCLOSE: 2", final="ERROR")
        return
    m.close_links()
    m.netopen = False
    m.reply()
    m.urc("+NETCLOSE: 0")


def ipaddr(m: ModemCore, kind: str, args: str) -> None:
    if m.netopen:
        m.reply(f"+IPADDR: {m.cfg.ip}")
    else:
        m.reply("+IP ERROR: Network not opened", final="ERROR")


COMMANDS: dict[str, Handler] = {
    "+CGDCONT": cgdcont, "+CGATT": cgatt, "+CGACT": cgact, "+CGPADDR": cgpaddr,
    "+CIPMODE": cipmode, "+CIPSENDMODE": cip_accepted, "+CIPTIMEOUT": cip_accepted,
    "+CIPCCFG": cipccfg, "+CIPHEAD": ciphead, "+CIPSRIP": cipsrip,
    "+NETOPEN": netopen, "+NETCLOSE": netclose, "+IPADDR": ipaddr,
}
