# ZigBee install codes: CRC-16/X-25 check and the AES-MMO hash that turns
# code||CRC into the preconfigured (trust-centre) link key.
from cryptolib import aes

from micropython import const

from log import KindError

_ECB = const(1)
_LENGTHS = const((6, 8, 12, 16))


class InstallCodeError(KindError):
    """A bad install code, raised as InstallCodeError(kind, message); the
    kinds (the classes of before): InstallCodeLengthError,
    InstallCodeCrcError."""


def crc16_x25(data, start, end):
    """CRC-16/X-25: poly 0x1021 reflected, init and xorout 0xFFFF."""
    if end < 0:
        end = len(data)
    crc = 0xFFFF
    for i in range(start, end):
        x = (crc ^ data[i]) & 0xFF
        x = (x ^ (x << 4)) & 0xFF
        crc = (crc >> 8) ^ (x << 8) ^ (x << 3) ^ (x >> 4)
    return crc ^ 0xFFFF


def add_crc(code):
    """code (6/8/12/16 bytes) -> code||CRC (CRC little-endian)."""
    if len(code) not in _LENGTHS:
        raise InstallCodeError("InstallCodeLengthError", "install code of %d bytes (6, 8, 12 or 16)" % len(code))
    c = crc16_x25(code, 0, -1)
    return bytes(code) + bytes((c & 0xFF, c >> 8))


def check(code_crc):
    """Validate code||CRC; return the code without its CRC."""
    n = len(code_crc) - 2
    if n not in _LENGTHS:
        raise InstallCodeError("InstallCodeLengthError", "install code+CRC of %d bytes (8, 10, 14 or 18)" % len(code_crc))
    c = crc16_x25(code_crc, 0, n)
    if code_crc[n] != c & 0xFF or code_crc[n + 1] != c >> 8:
        raise InstallCodeError("InstallCodeCrcError", "install code CRC mismatch (computed %04X)" % c)
    return bytes(code_crc[:n])


def _mmo_block(h, block):
    e = bytearray(16)
    aes(h, _ECB).encrypt(block, e)
    for i in range(16):
        h[i] = e[i] ^ block[i]


def aes_mmo_hash(data):
    """Matyas-Meyer-Oseas hash over AES-128 (ZigBee spec B.6), 16 bytes.
    Padding: 0x80, zeros, then the bit length as 16-bit big-endian (inputs
    up to 8191 bytes)."""
    n = len(data)
    if n >= 8192:
        raise InstallCodeError("InstallCodeLengthError", "AES-MMO input too long")
    h = bytearray(16)
    full = n & ~15
    mv = memoryview(data)
    for i in range(0, full, 16):
        _mmo_block(h, mv[i : i + 16])
    last = bytearray(32)
    rem = n - full
    last[:rem] = mv[full:]
    last[rem] = 0x80
    end = 16 if rem <= 13 else 32
    bits = n * 8
    last[end - 2] = bits >> 8
    last[end - 1] = bits & 0xFF
    _mmo_block(h, memoryview(last)[:16])
    if end == 32:
        _mmo_block(h, memoryview(last)[16:])
    return bytes(h)


def link_key(code_crc):
    """Install code with its CRC -> 16-byte link key (checks the CRC)."""
    check(code_crc)
    return aes_mmo_hash(code_crc)
