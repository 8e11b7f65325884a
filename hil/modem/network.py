"""Network commands (SIM7600.md §3): signal, registration and its URCs,
operator, serving cell, system mode, preferred mode."""

from __future__ import annotations

from hil.modem.core import Handler, ModemCore

CNMP_MODES = (2, 9, 10, 13, 14, 19, 22, 38, 39, 48, 51, 54, 59, 60, 63, 67)
CNMP_LIST = "(2,9-10,13-14,19,22,38-39,48,51,54,59-60,63,67)"
REG_DOMAINS = ("CREG", "CGREG", "CEREG")


def _loc(m: ModemCore) -> str:
    return f'"{m.cfg.tac:04X}","{m.cfg.cell:08X}"'


def reg_changed(m: ModemCore) -> None:
    """After a change that may move the registration status: the +CREG /
    +CGREG / +CEREG URCs each domain's mode asks for, when the status moved."""
    s = m.stat()
    if s == m.reg_reported:
        return
    m.reg_reported = s
    lines = []
    for dom in REG_DOMAINS:
        n = m.regn[dom]
        if n == 1 or (n == 2 and s not in (1, 5)):
            lines.append(f"+{dom}: {s}")
        elif n == 2:
            lines.append(f"+{dom}: {s},{_loc(m)}")
    if lines:
        m.urc(*lines)


def csq(m: ModemCore, kind: str, args: str) -> None:
    if kind == "=?":
        m.reply("+CSQ: (0-31,99),(0-7,99)")
    else:
        m.reply(f"+CSQ: {m.rssi if m.cfun == 1 else 99},99")


def _reg(dom: str) -> Handler:
    def reg(m: ModemCore, kind: str, args: str) -> None:
        if kind == "?":
            n = m.regn[dom]
            s = m.stat()
            loc = "," + _loc(m) if n == 2 and s in (1, 5) else ""
            m.reply(f"+{dom}: {n},{s}{loc}")
        elif kind == "=" and args in ("0", "1", "2"):
            m.regn[dom] = int(args)
            m.reply()
        elif kind == "=?":
            m.reply(f"+{dom}: (0-2)")
        else:
            m.reply(final="ERROR")

    return reg


def cops(m: ModemCore, kind: str, args: str) -> None:
    if kind == "?":
        if m.sim == "ABSENT":
            m.cme(30)
        elif m.registered():
            m.reply(f'+COPS: 0,0,"{m.cfg.operator}",7')
        else:
            m.reply("+COPS: 0")
    else:
        m.reply()


def cpsi(m: ModemCore, kind: str, args: str) -> None:
    if m.registered():
        c = m.cfg
        m.reply(f"+CPSI: LTE,Online,{c.plmn},0x{c.tac:04X},{c.cell},{c.cpsi_tail}")
    else:
        m.reply("+CPSI: NO SERVICE,Online")


def cnsmod(m: ModemCore, kind: str, args: str) -> None:
    m.reply(f"+CNSMOD: 0,{8 if m.registered() else 0}")


def cnmp(m: ModemCore, kind: str, args: str) -> None:
    if kind == "?":
        m.reply(f"+CNMP: {m.cnmp}")
    elif kind == "=?":
        m.reply(f"+CNMP: {CNMP_LIST}")
    elif kind == "=" and args.isdigit() and int(args) in CNMP_MODES:
        m.cnmp = int(args)
        m.reply()
    else:
        m.reply(final="ERROR")


COMMANDS: dict[str, Handler] = {
    "+CSQ": csq, **{f"+{dom}": _reg(dom) for dom in REG_DOMAINS},
    "+COPS": cops, "+CPSI": cpsi, "+CNSMOD": cnsmod, "+CNMP": cnmp,
}
