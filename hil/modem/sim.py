"""SIM commands (SIM7600.md §2.5, 2.6): PIN state and entry, IMSI, ICCID."""

from __future__ import annotations

from hil.modem.config import split_args
from hil.modem.core import Handler, ModemCore
from hil.modem.network import reg_changed


def sim_ready(m: ModemCore) -> bool:
    """True when the SIM is usable; else answers the +CME ERROR that says why."""
    if m.sim == "ABSENT":
        m.cme(10)
        return False
    if m.sim == "SIM PIN":
        m.cme(11)
        return False
    if m.sim == "SIM PUK":
        m.cme(12)
        return False
    return True


def cpin(m: ModemCore, kind: str, args: str) -> None:
    if kind == "?":
        if m.sim == "ABSENT":
            m.cme(10)
        else:
            m.reply(f"+CPIN: {m.sim}")
        return
    if kind != "=":
        raise ValueError
    pin = split_args(args)[0]
    if m.sim == "ABSENT":
        m.cme(10)
        return
    if m.sim == "SIM PIN" and pin == m.cfg.pin:
        m.sim = "READY"
        m.pin_left = 3
        m.reply()
        m.urc("+CPIN: READY", "SMS DONE", "PB DONE")
        reg_changed(m)
        return
    # wrong PIN, or a PIN sent to an unlocked SIM: counts as a wrong attempt
    m.pin_left -= 1
    if m.pin_left <= 0:
        m.sim = "SIM PUK"
    m.cme(16)


def spic(m: ModemCore, kind: str, args: str) -> None:
    m.reply(f"+SPIC: {m.pin_left},10,3,10")


def cimi(m: ModemCore, kind: str, args: str) -> None:
    if sim_ready(m):
        m.reply(m.cfg.imsi)


def ciccid(m: ModemCore, kind: str, args: str) -> None:
    if m.sim == "ABSENT":
        m.cme(10)
    else:
        m.reply(f"+ICCID: {m.cfg.iccid}")


COMMANDS: dict[str, Handler] = {"+CPIN": cpin, "+SPIC": spic, "+CIMI": cimi, "+CICCID": ciccid}
