"""SIM7600 modem emulator (dialect: vectors/modem/SIM7600.md).

Serves one hub over an asyncio (reader, writer) pair (the hub's modem UART);
`AT+CIPOPEN` opens real TCP connections on 127.0.0.1 to the port the hub asks
(optionally remapped), so the head-end emulator can listen there. Every delay
is configurable and zero by default.

The emulator is its core (hil.modem.core: state, UART session, link data
path), the fault-injection API (hil.modem.faults) and one AT command table
joined from the command groups below.
"""

from __future__ import annotations

from collections.abc import Mapping

from hil.modem import clock, general, network, packet, power, sim, sockets, tls
from hil.modem.config import Sim7600Config
from hil.modem.core import Handler
from hil.modem.faults import FaultInjection

GROUPS = (general, sim, network, packet, sockets, tls, clock, power)


def command_table(*tables: Mapping[str, Handler]) -> dict[str, Handler]:
    """One table from the groups' tables; a name in two groups is an error."""
    out: dict[str, Handler] = {}
    for t in tables:
        twice = out.keys() & t.keys()
        if twice:
            raise ValueError(f"AT commands in two groups: {sorted(twice)}")
        out.update(t)
    return out


class Sim7600Emulator(FaultInjection):
    COMMANDS = command_table(*(g.COMMANDS for g in GROUPS))


__all__ = ["Sim7600Config", "Sim7600Emulator", "command_table"]
