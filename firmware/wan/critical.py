# GBCS criticality of a message, by its message code and the use case it
# belongs to in ../shared/vectors/gbcs/use-cases.tsv (the use case id that
# starts the code's name in message-codes.tsv): CRITICAL holds the codes of
# use cases of message type SME.C.C (a critical command, and so its
# response) or SME.A.C (a critical alert), and the Generic Critical Alert;
# NON_CRITICAL those of SME.C.NC / SME.A.NC and the Generic Non Critical
# Alert. Both are sorted u16 big-endian codes (bytes: no heap for the table).
# tests/test_wan_critical.py checks them against the table. The outbox's
# retry class follows is_critical (docs/headend-link.md, "Criticality").
from gbcs.frame import read_len

CRITICAL = (
    b"\x00\x0a\x00\x0b\x00\x0d\x00\x0f\x00\x12\x00\x19\x00\x1a\x00\x1b\x00\x1c\x00\x1d\x00\x1e\x00\x20"
    b"\x00\x43\x00\x4b\x00\x4f\x00\x50\x00\x51\x00\x53\x00\x61\x00\x62\x00\x67\x00\x68\x00\x6b\x00\x6c"
    b"\x00\x6d\x00\x6e\x00\x6f\x00\x70\x00\x7c\x00\x7e\x00\x7f\x00\x81\x00\x85\x00\x86\x00\x8b\x00\xa2"
    b"\x00\xa3\x00\xab\x00\xaf\x00\xb3\x00\xb4\x00\xb7\x00\xc0\x00\xc2\x00\xc7\x00\xd7\x00\xd8\x00\xdb"
    b"\x00\xde\x00\xfc\x10\x00"
)
NON_CRITICAL = (
    b"\x00\x01\x00\x02\x00\x03\x00\x0e\x00\x10\x00\x13\x00\x14\x00\x15\x00\x18\x00\x21\x00\x22\x00\x23"
    b"\x00\x24\x00\x25\x00\x26\x00\x27\x00\x28\x00\x29\x00\x2a\x00\x2b\x00\x2c\x00\x2d\x00\x2e\x00\x2f"
    b"\x00\x30\x00\x33\x00\x34\x00\x35\x00\x36\x00\x37\x00\x38\x00\x39\x00\x3a\x00\x3b\x00\x3c\x00\x3d"
    b"\x00\x40\x00\x42\x00\x44\x00\x45\x00\x47\x00\x48\x00\x49\x00\x4a\x00\x4c\x00\x4d\x00\x4e\x00\x52"
    b"\x00\x58\x00\x59\x00\x5a\x00\x5e\x00\x5f\x00\x60\x00\x69\x00\x71\x00\x72\x00\x73\x00\x74\x00\x75"
    b"\x00\x76\x00\x77\x00\x78\x00\x79\x00\x7b\x00\x80\x00\x82\x00\x83\x00\x84\x00\x87\x00\x88\x00\x89"
    b"\x00\x8c\x00\x8d\x00\x93\x00\x94\x00\x96\x00\x9f\x00\xa0\x00\xa1\x00\xac\x00\xad\x00\xae\x00\xb0"
    b"\x00\xb2\x00\xb5\x00\xb6\x00\xb8\x00\xb9\x00\xbc\x00\xbd\x00\xbe\x00\xbf\x00\xc1\x00\xc3\x00\xc4"
    b"\x00\xc5\x00\xc6\x00\xc9\x00\xd1\x00\xd2\x00\xd3\x00\xd4\x00\xd9\x00\xda\x00\xf1\x00\xf9\x00\xfa"
    b"\x00\xfb\x00\xfd\x00\xfe\x01\x0a\x01\x0b\x01\x0c\x01\x0d\x01\x0e\x01\x0f\x01\x10\x01\x11\x01\x12"
    b"\x01\x13\x01\x14\x01\x15\x10\x01"
)


def _has(table, code):
    lo = 0
    hi = len(table) // 2
    while lo < hi:
        mid = (lo + hi) // 2
        c = (table[2 * mid] << 8) | table[2 * mid + 1]
        if c == code:
            return True
        if c < code:
            lo = mid + 1
        else:
            hi = mid
    return False


def message_code(frame):
    """The GBCS frame's message code, read where the grouping header keeps
    it (MAC header and length, DF 09, CRA flag, counter, two EUIs, date-time,
    other-information length): no Frame is built, the frame was parsed where
    it entered (or built by the hub). None when the bytes do not lead there;
    parse() is what checks a frame."""
    mv = memoryview(frame)
    n = len(mv)
    try:
        off = 0
        if n and mv[0] == 0xDD:
            _, off = read_len(mv, 7, n)
            off += 5  # the security header
        if off + 29 > n or mv[off] != 0xDF or mv[off + 1] != 0x09:
            return None
        off += 29  # tag 2, CRA flag 1, counter 8, originator 9, recipient 9
        if mv[off] == 0x0C:
            off += 13
        elif mv[off] == 0:
            off += 1
        else:
            return None
        olen, off = read_len(mv, off, n)
        if olen < 2 or off + 2 > n:
            return None
        return (mv[off] << 8) | mv[off + 1]
    except (ValueError, IndexError):
        return None


def is_critical(frame, alert=False, critical_alerts=True):
    """Critical by the message code's use case. A code the table does not
    class (or bytes without a grouping header): a response is critical (the
    safe side), an alert follows the `critical_alerts` setting."""
    code = message_code(frame)
    if code is not None:
        if _has(CRITICAL, code):
            return True
        if _has(NON_CRITICAL, code):
            return False
    return critical_alerts if alert else True
