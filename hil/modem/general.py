"""General commands (SIM7600.md §1.2, 2.2, 2.6, 6.2, 6.3): AT, echo, error
reporting, identification, profile and baud rate."""

from __future__ import annotations

from hil.modem.core import Handler, ModemCore


def ok(m: ModemCore, kind: str, args: str) -> None:
    """Accepted and not modelled (AT, AT&W, ATZ)."""
    m.reply()


def echo_off(m: ModemCore, kind: str, args: str) -> None:
    m.echo = False
    m.reply()


def echo_on(m: ModemCore, kind: str, args: str) -> None:
    m.echo = True
    m.reply()


def ati(m: ModemCore, kind: str, args: str) -> None:
    c = m.cfg
    m.reply("Manufacturer: SIMCOM INCORPORATED", f"Model: {c.model}", f"Revision: {c.revision}",
            "QCN:", f"IMEI: {c.imei}", "MEID:", "+GCAP: +CGSM", "DeviceInfo: 173,170")


def cmee(m: ModemCore, kind: str, args: str) -> None:
    if kind == "=" and args in ("0", "1", "2"):
        m.cmee = int(args)
        m.reply()
    elif kind == "?":
        m.reply(f"+CMEE: {m.cmee}")
    else:
        m.reply(final="ERROR")


def cgmr(m: ModemCore, kind: str, args: str) -> None:
    m.reply(f"+CGMR: {m.cfg.revision}")


def cgmi(m: ModemCore, kind: str, args: str) -> None:
    m.reply("SIMCOM INCORPORATED")


def cgmm(m: ModemCore, kind: str, args: str) -> None:
    m.reply(m.cfg.model)


def cgsn(m: ModemCore, kind: str, args: str) -> None:
    m.reply(m.cfg.imei)


def simei(m: ModemCore, kind: str, args: str) -> None:
    m.reply(f"+SIMEI: {m.cfg.imei}")


def ipr(m: ModemCore, kind: str, args: str) -> None:
    m.reply("+IPR: 115200") if kind == "?" else m.reply()


COMMANDS: dict[str, Handler] = {
    "": ok, "E0": echo_off, "E1": echo_on, "&W": ok, "&W0": ok, "Z": ok, "Z0": ok, "I": ati,
    "+CMEE": cmee, "+CGMR": cgmr, "+CGMI": cgmi, "+CGMM": cgmm, "+CGSN": cgsn, "+GSN": cgsn,
    "+SIMEI": simei, "+IPR": ipr,
}
