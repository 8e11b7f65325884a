# `os` for the qemu bench image: the port's own os (files on the mounted
# LittleFS2) plus urandom, which the qemu port lacks. urandom here is a
# seeded PRNG (the ESP32's is a hardware register read): its instructions
# are inside the ECDSA sign and key generation counts (32 bytes ~ 0.02 M).
# mcu_ops.setup() puts this module in sys.modules["os"] before any firmware
# import.
from os import *  # noqa: F403

import random

random.seed(15)


def urandom(n):
    return bytes(random.getrandbits(8) for _ in range(n))
