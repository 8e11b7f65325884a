"""Emulated HAN devices on the NCP emulator's simulated network (see
device.py and docs/han.md)."""

from .device import EmulatedDevice, Esme, Gsme, Ihd, echo, ignore

__all__ = ["EmulatedDevice", "Esme", "Gsme", "Ihd", "echo", "ignore"]
