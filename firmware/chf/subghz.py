# The CHF's Sub GHz objects (GBCS DBCH01-DBCH11). This hub's radio is
# 2.4 GHz only, but the CHF still holds the Sub GHz configuration, operating
# channel and channel log the DCC reads and writes, persisted in the store:
#   KV "subghz": {"cfg": [15 values], "ch": u32 channel bits}
#   channel log: logs.EventLog "subghz" (u32 UTC s since 2000, u16 event
#                code, data = channel bits (4) || 09 01 <channel number>)
# The radio side (duty-cycle manager, channel scans, capacity) would feed
# events in; on the emulated board the rig does that through its hook (firmware/rig/hooks.py).
# Each method returns DLMS values / alert bodies; chf.usecases wraps them.
from micropython import const

from chf.logs import EventLog
from codes import (
    ALERT_CHANNEL_CHANGED,
    ALERT_CONFIG_CHANGED,
    ALERT_DUTY_CYCLE_LIMITED,
    ALERT_MESSAGE_DISCARDED,
    ALERT_NO_CAPACITY,
    ALERT_SCAN_OUTCOME,
)
from gbcs import dlms

# (their OBIS codes are in chf.usecases, which loads this module on first use)
# alert codes and their message codes (DBCH06..DBCH11)
MESSAGE_CODES = {
    ALERT_DUTY_CYCLE_LIMITED: 0x0110,
    ALERT_CHANNEL_CHANGED: 0x0111,
    ALERT_SCAN_OUTCOME: 0x0112,
    ALERT_CONFIG_CHANGED: 0x0113,
    ALERT_MESSAGE_DISCARDED: 0x0114,
    ALERT_NO_CAPACITY: 0x0115,
}


def alert(chf, alert_code, body):
    """The CHF's (chf.usecases.ChfUseCases) DLMS alert alert_code with body,
    under its message code (MESSAGE_CODES)."""
    return chf.dlms_alert(MESSAGE_CODES[alert_code], alert_code, body)

# configuration structure: element types in order (15 elements)
_B = dlms.BIT_STRING
_U8 = dlms.UNSIGNED
_U16 = dlms.LONG_UNSIGNED
CONFIG_TYPES = (_B, _B, _B, _B, _U16, _U16, _U8, _U16, _U8, _U8, _U16, _U8, _U16, _U16, _U16)
# a configuration nobody has set yet: all channel masks empty, limits zero
DEFAULT_CONFIG = [0] * 15

# scan assessment outcome (DBCH08 body: two 1-octet strings)
_SCAN_ACCEPTED = const(0x00)


class SubGhzError(ValueError):
    pass


def _bits(v):
    return (dlms.BIT_STRING, (32, v.to_bytes(4, "big")))


def _check_bits(v):
    if v[0] != dlms.BIT_STRING or v[1][0] != 32 or len(v[1][1]) != 4:
        raise SubGhzError("channel masks are 32-bit bit strings")
    return int.from_bytes(bytes(v[1][1]), "big")


def channel_number(bits):
    """Lowest channel bit set in the 27 channel bits (the page is in the top
    5 bits), or 0."""
    b = bits & 0x07FFFFFF
    n = 0
    while b and not b & 1:
        b >>= 1
        n += 1
    return n


class SubGhz:
    """SubGhz(store, log_capacity=40, utc2000=None)."""

    def __init__(self, store, log_capacity=40, utc2000=None):
        self._kv = store.kv("subghz")
        self.log = EventLog(store, "subghz", log_capacity, utc2000)
        self._utc = utc2000

    # --- state ---------------------------------------------------------------

    def config(self):
        cfg = self._kv.get("cfg")
        return list(cfg) if cfg and len(cfg) == 15 else list(DEFAULT_CONFIG)

    def channel(self):
        return int(self._kv.get("ch", 0))

    def config_value(self):
        items = []
        for t, v in zip(CONFIG_TYPES, self.config()):
            items.append(_bits(v) if t == _B else (t, v))
        return (dlms.STRUCTURE, items)

    def channel_value(self):
        return _bits(self.channel())

    def set_config(self, value):
        """DBCH04: validate the 15-element structure, persist it; returns
        the DBCH09 alert body. Raises SubGhzError on a type mismatch."""
        if value[0] != dlms.STRUCTURE or len(value[1]) != 15:
            raise SubGhzError("Sub GHz configuration is a 15-element structure")
        cfg = []
        for t, v in zip(CONFIG_TYPES, value[1]):
            if t == _B:
                cfg.append(_check_bits(v))
            elif v[0] != t:
                raise SubGhzError("element type 0x%02x, want 0x%02x" % (v[0], t))
            else:
                cfg.append(v[1])
        self._kv.set("cfg", cfg)
        return self.config_value()

    def request_scan(self, value):
        """DBCH05: a channel scan request (unsigned). The request is assessed
        at once; returns the DBCH08 body (outcome, detail)."""
        if value[0] != dlms.UNSIGNED:
            raise SubGhzError("channel scan request is an unsigned")
        return (
            dlms.STRUCTURE,
            [(dlms.OCTET_STRING, bytes((_SCAN_ACCEPTED,))), (dlms.OCTET_STRING, bytes((value[1] & 0xFF,)))],
        )

    def change_channel(self, bits, t=None):
        """The radio moved to another channel: persist, log, DBCH07 body."""
        bits &= 0xFFFFFFFF
        self._kv.set("ch", bits)
        num = channel_number(bits)
        self.log.append(ALERT_CHANNEL_CHANGED, bits.to_bytes(4, "big") + bytes((0x09, 1, num)), t)
        return (dlms.STRUCTURE, [_bits(bits), (dlms.OCTET_STRING, bytes((num,)))])

    def log_entries(self, t_from, t_to):
        return self.log.entries(t_from, t_to)


def eui_body(eui):
    """DBCH06 / DBCH11 body: the device's EUI-64."""
    if len(eui) != 8:
        raise SubGhzError("EUI-64 must be 8 bytes")
    return (dlms.OCTET_STRING, bytes(eui))


def discarded_body(originator, target, cra, counter):
    """DBCH10 body: originator EUI, target EUI, CRA flag, originator counter
    of the message dropped by duty-cycle management (25 octets)."""
    if len(originator) != 8 or len(target) != 8 or not 0 <= cra <= 0xFF:
        raise SubGhzError("bad discarded-message identification")
    return (dlms.OCTET_STRING, bytes(originator) + bytes(target) + bytes((cra,)) + int(counter).to_bytes(8, "big"))
