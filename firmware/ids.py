# Identifiers and time bases that every part of the hub shares: the text form
# of an EUI-64, hex text, and the 2000-01-01 epoch of GBCS and ZCL times.
from binascii import hexlify, unhexlify

from micropython import const

EPOCH_2000 = const(946684800)  # 2000-01-01T00:00:00Z in Unix seconds


def eui_hex(eui):
    """EUI-64 bytes (display order) or hex text -> 16 uppercase hex digits.
    ValueError for anything else."""
    if isinstance(eui, str):
        s = eui.replace(":", "").replace("-", "").upper()
        if len(s) != 16:
            raise ValueError("EUI-64 must be 16 hex digits")
        try:
            unhexlify(s)
        except ValueError:
            raise ValueError("EUI-64 must be 16 hex digits")
        return s
    if len(eui) != 8:
        raise ValueError("EUI-64 must be 8 bytes")
    return hexlify(eui).decode().upper()


def hex_text(b):
    """bytes -> lowercase hex text."""
    return hexlify(b).decode()


def hex_bytes(s, what="value"):
    """hex text (spaces and colons allowed) -> bytes; ValueError naming `what`."""
    if not isinstance(s, str):
        raise ValueError("%s must be a hex string" % what)
    try:
        return unhexlify(s.replace(" ", "").replace(":", ""))
    except ValueError:
        raise ValueError("%s is not valid hex" % what)


def utc2000(unix_seconds):
    """Unix seconds -> seconds since 2000-01-01 UTC."""
    return int(unix_seconds) - EPOCH_2000
