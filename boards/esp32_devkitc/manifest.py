# MicroPython frozen-code manifest for the ESP32-DevKitC (WROOM-32) build.
# `chub build --board esp32_devkitc` copies this file to
# build/esp32_devkitc/manifest.py and lays the hub's sources out beside it in
# app/ (firmware, the board modules, board_cfg and build_info); relative paths
# in a manifest are relative to the manifest's folder. Pass it to the port:
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=$PWD/build/esp32_devkitc/manifest.py
include("$(PORT_DIR)/boards/manifest.py")  # noqa: F821 - defined by makemanifest
freeze("app")  # noqa: F821
