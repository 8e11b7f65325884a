# ZCL cluster ids, the Time cluster's attributes and the Metering cluster's
# mirror commands and payload codecs, on the foundation in han/zcl.py. The
# Basic and Time servers are in han/zcl_servers.py; the Tunneling cluster
# (0x0704) is in han/tunnel.py.
from micropython import const

from han import zcl

CLUSTER_BASIC = const(0x0000)
_CLUSTER_TIME = const(0x000A)
_CLUSTER_OTA = const(0x0019)
_CLUSTER_METERING = const(0x0702)
_CLUSTER_PREPAYMENT = const(0x0705)
_CLUSTER_KEY_ESTABLISHMENT = const(0x0800)

# Time cluster (0x000A) attributes
TIME_TIME = const(0x0000)
TIME_STATUS = const(0x0001)
TIME_ZONE = const(0x0002)
_TIME_DST_START = const(0x0003)
_TIME_DST_END = const(0x0004)
_TIME_DST_SHIFT = const(0x0005)
TIME_STANDARD_TIME = const(0x0006)
_TIME_LOCAL_TIME = const(0x0007)
_TIME_LAST_SET_TIME = const(0x0008)
_TIME_VALID_UNTIL_TIME = const(0x0009)
TIME_STATUS_MASTER = const(0x01)
TIME_STATUS_SYNCHRONIZED = const(0x02)
_TIME_STATUS_MASTER_ZONE_DST = const(0x04)
_TIME_STATUS_SUPERSEDING = const(0x08)

# Metering cluster (0x0702): mirror-related commands.
# Sent by the meter (Metering server -> client, direction bit set):
MET_REQUEST_MIRROR = const(0x01)
MET_REMOVE_MIRROR = const(0x02)
MET_CONFIGURE_MIRROR = const(0x08)
_MET_CONFIGURE_NOTIFICATION_SCHEME = const(0x09)
_MET_CONFIGURE_NOTIFICATION_FLAG = const(0x0A)
_MET_GET_NOTIFIED_MESSAGE = const(0x0B)
# Sent by the hub/mirror (client -> server):
MET_REQUEST_MIRROR_RSP = const(0x01)
MET_MIRROR_REMOVED = const(0x02)
MET_MIRROR_REPORT_ATTRIBUTE_RSP = const(0x09)
_MET_CURRENT_SUMMATION_DELIVERED = const(0x0000)
MIRROR_REFUSED = const(0xFFFF)


# ------------------------------------------------- Metering: the mirror ----


# (what only the meter sends or parses is in han.peer)


def encode_request_mirror_rsp(endpoint_id):
    out = bytearray()
    zcl.put_u16(out, endpoint_id)
    return out


encode_mirror_removed = encode_request_mirror_rsp


def decode_configure_mirror(p):
    """(issuer_event_id, reporting_interval, mirror_notification_reporting,
    notification_scheme)."""
    if len(p) != 9:
        raise zcl.ZclError("ZclTruncated", "ConfigureMirror of %d bytes" % len(p))
    return zcl.get_uint(p, 0, 4), zcl.get_uint(p, 4, 3), p[7] != 0, p[8]


def encode_mirror_report_attribute_rsp(scheme, flags):
    """MirrorReportAttributeResponse: notification scheme, then bitmap32
    notification flags (functional flags first)."""
    out = bytearray()
    out.append(scheme)
    for f in flags:
        zcl.encode_value(out, zcl.T_MAP32, f)
    return out
