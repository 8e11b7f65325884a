"""Emulated cellular modems for the rig.

SIM7600 (hil.modem.sim7600): config.py (settings, links, AT text helpers),
core.py (state, UART session, link data path), one module per AT command
group (general, sim, network, packet, sockets, clock, power) and faults.py
(the fault-injection API tests and campaigns call).
"""

from hil.modem.sim7600 import Sim7600Config, Sim7600Emulator

__all__ = ["Sim7600Config", "Sim7600Emulator"]
