"""The frozen esp32_devkitc image against its app partition: an estimate
from the frozen content, for builds made without ESP-IDF at hand.

The ESP32_GENERIC build's factory app partition is 0x1F0000 bytes
(ports/esp32/partitions-4MiBplus.csv); `makeimg.py` stops a build whose app
overflows it. Without ESP-IDF the MicroPython core's own size cannot be
measured here: the estimate is the frozen content (the hub's modules as
`.mpy` for xtensawin, plus asyncio and the port's boot modules) and what it
leaves of the partition for the core."""

from __future__ import annotations

FACTORY_PARTITION = 0x1F0000
# asyncio (extmod/asyncio, 9313 bytes) and the port's _boot, flashbdev and
# inisetup (1313 bytes) as .mpy from `mpy-cross -march=xtensawin`, MicroPython
# 13303f8d29 (../shared/micropython): what boards/esp32_devkitc/manifest.py
# freezes beside the hub
LIB_FROZEN = 9313 + 1313


def estimate(hub_mpy_bytes: int) -> dict:
    frozen = hub_mpy_bytes + LIB_FROZEN
    left = FACTORY_PARTITION - frozen
    return {
        "partition": FACTORY_PARTITION,
        "frozen_hub": hub_mpy_bytes,
        "frozen_lib": LIB_FROZEN,
        "frozen": frozen,
        "left_for_core": left,
        "estimate": True,
        "text": (f"app size (estimate, no ESP-IDF build): frozen content {frozen / 1024:.1f} KB "
                 f"(hub {hub_mpy_bytes / 1024:.1f} KB + asyncio and boot modules {LIB_FROZEN / 1024:.1f} KB as .mpy) "
                 f"of the {FACTORY_PARTITION / 1024:.0f} KB factory partition; {left / 1024:.0f} KB left for the "
                 f"MicroPython core (ESP-IDF and the port), which only an ESP-IDF build measures"),
    }
