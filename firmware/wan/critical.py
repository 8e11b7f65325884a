# GBCS criticality of a message, by its message code: the codes whose use
# case is critical in ../shared/vectors/gbcs/use-cases.tsv (message type
# SME.C.C, a critical command and its response, or SME.A.C, a critical
# alert), and the Generic Critical Alert (0x1000). tests/test_wan_critical.py
# checks the list against the table. The outbox's retry class follows it
# (docs/headend-link.md, "Criticality").
from gbcs.frame import parse

CODES = (
    0x000A, 0x000B, 0x000D, 0x000F, 0x0012, 0x0019, 0x001A, 0x001B, 0x001C, 0x001D,
    0x001E, 0x0020, 0x0043, 0x004B, 0x004F, 0x0050, 0x0051, 0x0053, 0x0061, 0x0062,
    0x0067, 0x0068, 0x006B, 0x006C, 0x006D, 0x006E, 0x006F, 0x0070, 0x007C, 0x007E,
    0x007F, 0x0081, 0x0085, 0x0086, 0x008B, 0x00A2, 0x00A3, 0x00AB, 0x00AF, 0x00B3,
    0x00B4, 0x00B7, 0x00C0, 0x00C2, 0x00C7, 0x00D7, 0x00D8, 0x00DB, 0x00DE, 0x00FC,
    0x1000,
)


def message_code(frame):
    """The GBCS frame's message code, or None when it does not parse."""
    try:
        return parse(frame).message_code
    except ValueError:
        return None


def is_critical(frame, kind_alert=False, critical_alerts=True):
    """A response (or alert) by its message code's use case. An alert whose
    code the table does not name (the CHF's own 0x0000 alerts) follows the
    `critical_alerts` setting; a response whose frame does not parse is
    critical (it cannot be classed, and critical is the safe side)."""
    code = message_code(frame)
    if code is None:
        return critical_alerts if kind_alert else True
    if code in CODES:
        return True
    if kind_alert and code == 0:
        return critical_alerts
    return False
