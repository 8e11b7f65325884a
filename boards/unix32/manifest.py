# MicroPython frozen-code manifest for the unix32 board (our own 32-bit unix
# port with the hub frozen in). `chub build --board unix32` copies this file to
# build/unix32/manifest.py, lays the image's app tree out beside it in app/
# (firmware, boards/unix, build_info and main) and passes it to the unix
# port's make as FROZEN_MANIFEST (chubcore.mpbuild).
include("$(PORT_DIR)/variants/standard/manifest.py")  # noqa: F821 - defined by makemanifest
freeze("app")  # noqa: F821
