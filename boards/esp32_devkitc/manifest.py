# MicroPython frozen-code manifest for the ESP32-DevKitC (WROOM-32) build.
# `chub build --board esp32_devkitc` copies this file to
# build/esp32_devkitc/manifest.py and lays the hub's sources out beside it in
# app/ (firmware, the board modules, board_cfg and build_info); relative paths
# in a manifest are relative to the manifest's folder. Pass it to the port:
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=$PWD/build/esp32_devkitc/manifest.py
#
# Only what the hub uses (tests/test_esp32_manifest.py): the port's boot
# modules (_boot mounts the file system; flashbdev and inisetup find the vfs
# partition and format it at the first boot) and asyncio. Not the rest of the
# port's boards/manifest.py (the networking bundle, aioespnow, umqtt, dht,
# ds18x20, neopixel, onewire, upysh, espnow, apa106, machine.py's Counter):
# the hub imports none of them, and each costs flash in the 0x1F0000 factory
# partition. Everything else the hub imports is built into the port.
freeze("$(PORT_DIR)/modules", ("_boot.py", "flashbdev.py", "inisetup.py"))  # noqa: F821
include("$(MPY_DIR)/extmod/asyncio")  # noqa: F821
freeze("app")  # noqa: F821
