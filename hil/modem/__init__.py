"""Emulated cellular modems for the rig."""

from hil.modem.sim7600 import Sim7600Config, Sim7600Emulator

__all__ = ["Sim7600Config", "Sim7600Emulator"]
