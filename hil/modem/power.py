"""Power commands (SIM7600.md §2.3, 2.4, 6.1): functionality level, reset,
power off. The reset line is faults.FaultInjection.hw_reset."""

from __future__ import annotations

from hil.modem.config import split_args
from hil.modem.core import Handler, ModemCore
from hil.modem.network import reg_changed


def cfun(m: ModemCore, kind: str, args: str) -> None:
    if kind == "?":
        m.reply(f"+CFUN: {m.cfun}")
        return
    a = split_args(args)
    fun = int(a[0])
    if fun == 1 and len(a) > 1 and a[1] == "1" or fun == 6:  # with reset
        m.reply()
        m.reboot()
        return
    if fun not in (0, 1, 4, 5, 7):
        raise ValueError(fun)
    m.reply()
    m.cfun = fun
    reg_changed(m)


def creset(m: ModemCore, kind: str, args: str) -> None:
    m.reply()
    m.reboot()


def cpof(m: ModemCore, kind: str, args: str) -> None:
    m.reply()
    m.close_links()
    m.silent = True


COMMANDS: dict[str, Handler] = {"+CFUN": cfun, "+CRESET": creset, "+CPOF": cpof}
