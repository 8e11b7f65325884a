# The hub's own ZCL servers (Basic 0x0000, Time 0x000A) and the ZCL reply
# helpers the coordinator's dispatcher uses. A server is an async callable
# (eui_hex, src_ep, header, payload) -> reply ZCL frame (bytes) or None,
# registered in coordinator.zcl_servers[cluster_id] (docs/han.md).
from micropython import const

from han import zcl as Z
from han import zcl_clusters as ZC

UNIX_2000 = const(946684800)  # 2000-01-01T00:00Z in unix seconds (ZCL UTCTime epoch)

# Basic cluster attributes
_BASIC_ZCL_VERSION = const(0x0000)
_BASIC_APP_VERSION = const(0x0001)
_BASIC_STACK_VERSION = const(0x0002)
_BASIC_HW_VERSION = const(0x0003)
_BASIC_MANUFACTURER = const(0x0004)
_BASIC_MODEL = const(0x0005)
_BASIC_DATE_CODE = const(0x0006)
_BASIC_POWER_SOURCE = const(0x0007)
_BASIC_SW_BUILD_ID = const(0x4000)
_POWER_MAINS_1PHASE = const(0x01)

MANUFACTURER = b"Open CHub"
_MODEL = const(b"CHUB-1")

# Write Attributes (0x02), Undivided (0x03), No Response (0x05); constant
# tuples written out (zcl's names would build them in RAM at import)
_WRITES = const((0x02, 0x03, 0x05))
# global commands that are themselves answers, never answered: Read
# Attributes Response (0x01), Write Attributes Response (0x04), Configure
# Reporting Response (0x07), Default Response (0x0B)
_ANSWERS = const((0x01, 0x04, 0x07, 0x0B))


def zcl_time(unix):
    """Unix seconds -> ZCL UTCTime (seconds since 2000-01-01); 0xFFFFFFFF
    (invalid) for a time before 2000 or past the field's range."""
    if unix is None or unix < UNIX_2000 or unix - UNIX_2000 >= Z.UTC_INVALID:
        return Z.UTC_INVALID
    return int(unix) - UNIX_2000  # a clock may keep fractions


def reply(h, command_id, payload=b"", frame_type=Z.FT_GLOBAL):
    """A reply frame to the frame with header h: the other direction, the
    same TSN and manufacturer code, default response disabled."""
    out = Z.Header(command_id, h.tsn, frame_type, 1 - h.direction, True, h.manufacturer).encode()
    out.extend(payload)
    return bytes(out)


def default_rsp(h, status):
    """The Default Response due to the frame with header h, or None: never
    to a Default Response, and not for SUCCESS when the sender disabled it."""
    if h.frame_type == Z.FT_GLOBAL and h.command_id == Z.DEFAULT_RSP:
        return None
    if status == Z.SUCCESS and h.disable_default_response:
        return None
    return reply(h, Z.DEFAULT_RSP, bytes((h.command_id, status)))


class AttributeServer:
    """Serves Read Attributes from value(attr_id) -> (type, value) or None;
    writes are answered READ_ONLY (or UNSUPPORTED_ATTRIBUTE);
    cluster-specific commands UNSUP_CLUSTER_COMMAND; other global commands
    UNSUP_GENERAL_COMMAND; a malformed command MALFORMED_COMMAND. The values
    are made when read: no attribute table is held for the hub's life.
    Its own value() serves the hub's Basic, AttributeServer(0x0000, a, b):
    a the firmware version (bytes, or a str: encoded as it is sent), b()
    the NCP's stack version (EZSP `version` answer) or 0 (or b None); or
    Time, AttributeServer(0x000A, a, b): a the hub's Clock (now(), valid)
    or None, without one the time comes from b(), the board's UTC, and is
    not synchronized. A subclass (han.cbke's) has its own."""

    reads = 0

    def __init__(self, cluster, a, b):
        self.cluster = cluster
        self.a = a
        self.b = b

    async def __call__(self, eh, src_ep, h, p):
        return self.handle(h, p)

    def handle(self, h, p):
        if h.direction:  # server -> client (answers, reports): nothing to serve
            return None
        if h.manufacturer is not None:
            return default_rsp(h, Z.UNSUP_MANUF_CLUSTER_COMMAND if h.frame_type == Z.FT_CLUSTER
                               else Z.UNSUP_MANUF_GENERAL_COMMAND)
        if h.frame_type == Z.FT_CLUSTER:
            return default_rsp(h, Z.UNSUP_CLUSTER_COMMAND)
        c = h.command_id
        if c == Z.READ_ATTRIBUTES:
            try:
                ids = Z.decode_read_attributes(p)
            except Z.ZclError:
                return default_rsp(h, Z.MALFORMED_COMMAND)
            self.reads += 1
            recs = []
            for a in ids:
                tv = self.value(a)
                if tv is None:
                    recs.append((a, Z.UNSUPPORTED_ATTRIBUTE, 0, None))
                else:
                    recs.append((a, Z.SUCCESS, tv[0], tv[1]))
            return reply(h, Z.READ_ATTRIBUTES_RSP, Z.encode_read_attributes_rsp(recs))
        if c in _WRITES:
            try:
                recs = Z.decode_attribute_records(p)
            except Z.ZclError:
                return default_rsp(h, Z.MALFORMED_COMMAND)
            if c == Z.WRITE_ATTRIBUTES_NO_RSP:
                return None
            st = [(Z.READ_ONLY if self.value(a) is not None else Z.UNSUPPORTED_ATTRIBUTE, a) for a, _t, _v in recs]
            return reply(h, Z.WRITE_ATTRIBUTES_RSP, Z.encode_write_attributes_rsp(st))
        if c in _ANSWERS:
            return None
        return default_rsp(h, Z.UNSUP_GENERAL_COMMAND)


    def value(self, a):
        if self.cluster:  # Time
            if a == ZC.TIME_TIME or a == ZC.TIME_STANDARD_TIME:
                c = self.a
                return (Z.T_UTC if a == ZC.TIME_TIME else Z.T_UINT32), zcl_time(c.now() if c is not None else self.b())
            if a == ZC.TIME_STATUS:
                # Master always (the hub is the HAN's time master);
                # Synchronized only while the CH clock is valid (no clock:
                # not synchronized)
                c = self.a
                return Z.T_MAP8, ZC.TIME_STATUS_MASTER | (ZC.TIME_STATUS_SYNCHRONIZED if c is not None and c.valid
                                                          else 0)
            if a == ZC.TIME_ZONE:
                return Z.T_INT32, 0
            return None
        if a == _BASIC_ZCL_VERSION:
            return Z.T_UINT8, 3
        if a == _BASIC_APP_VERSION or a == _BASIC_HW_VERSION:
            return Z.T_UINT8, 1
        if a == _BASIC_STACK_VERSION:
            v = self.b() if self.b is not None else 0
            return Z.T_UINT8, (v >> 8) & 0xFF
        if a == _BASIC_MANUFACTURER:
            return Z.T_CHARSTR, MANUFACTURER
        if a == _BASIC_MODEL:
            return Z.T_CHARSTR, _MODEL
        if a == _BASIC_POWER_SOURCE:
            return Z.T_ENUM8, _POWER_MAINS_1PHASE
        if a == _BASIC_SW_BUILD_ID:
            return Z.T_CHARSTR, self.a
        return None

