# EZSP frame codec: headers (legacy and extended) and compact per-command
# parameter encode/decode for the commands the hub needs, at EZSP protocol
# versions 8, 13 and 14.
#
# Values:
#   EUI-64 / extended PAN id  8 bytes, display (big-endian) order; reversed on the wire
#   key                       16 bytes
#   LV bytes                  bytes
#   APS frame                 (profile, cluster, src_ep, dst_ep, options, group, sequence)
#   network parameters        (ext_pan_id, pan_id, tx_power, channel, join_method,
#                              nwk_manager_id, nwk_update_id, channels_mask)
#   initial security state    (bitmask, preconfigured_key, network_key, key_seq, tc_eui)
#   cluster lists             (in_clusters, out_clusters)  (addEndpoint)
import struct
from micropython import const

from log import KindError

LEGACY = const(4)  # "version" for the legacy header used before negotiation
SUPPORTED = (8, 13, 14)

# frame control, low byte
_FC_RESPONSE = const(0x80)
_FC_CB_SYNC = const(0x08)
_FC_CB_ASYNC = const(0x10)
FC_CB_MASK = const(0x18)
_FC_CB_PENDING = const(0x04)
FC_TRUNCATED = const(0x02)
FC_OVERFLOW = const(0x01)
_FC_SLEEP_MASK = const(0x03)  # commands: sleep mode
_FC_NET_SHIFT = const(5)  # network index, bits 5-6
_FC_NET_MASK = const(0x60)
_FC_HI_FORMAT_1 = const(0x01)  # frame format version 1
_FC_HI_SECURITY = const(0x80)
_FC_HI_PADDING = const(0x40)

# status codes
_EMBER_SUCCESS = const(0x00)
_EMBER_NETWORK_UP = const(0x90)
_EMBER_NETWORK_DOWN = const(0x91)
_SL_OK = const(0x00)
_SL_NETWORK_UP = const(0x15)
_SL_NETWORK_DOWN = const(0x16)


class EzspError(KindError):
    """A bad EZSP frame or exchange, raised as EzspError(kind, message); the
    kinds (the classes of before): EzspTruncated, EzspUnknownFrame,
    EzspVersionError, EzspFrameError, and han.ezsp's EzspLinkDown,
    EzspTimeout, EzspStatusError (or EzspError itself)."""


# Schema letters (one per parameter):
#  B u8  b i8  H u16  I u32  S status (1 byte; 4 from v14)  Z sl_Status (4 bytes)
#  T message tag (1 byte; 2 from v14)  E EUI-64  K key  L LV bytes
#  A APS frame  N network parameters  X initial security state  Q cluster lists
#  c/C CBKE certificate (48 / 74 bytes, suite 1 / 2)  p/P CBKE public key (22 / 37)
# name, (frame id, command schema, response/callback schema), ... (a constant
# tuple: in flash when frozen, no dict built at import)
_COMMON = const((
    # the HAN message path's frames first: lookup() and name_of() search in order
    "sendUnicast", (0x34, "BHATL", "SB"),
    "messageSentHandler", (0x3F, "", "BHATSL"),
    "incomingMessageHandler", (0x45, "", "BABbHBBL"),
    "sendReply", (0x39, "HAL", "S"),
    # the rest
    "version", (0x00, "B", "BBH"),
    "addEndpoint", (0x02, "BHHBQ", "S"),
    "networkInit", (0x17, "H", "S"),
    "networkState", (0x18, "", "B"),
    "stackStatusHandler", (0x19, "", "S"),
    "startScan", (0x1A, "BIB", "S"),
    "scanCompleteHandler", (0x1C, "", "BS"),
    "formNetwork", (0x1E, "N", "S"),
    "leaveNetwork", (0x20, "", "S"),
    "permitJoining", (0x22, "B", "S"),
    "trustCenterJoinHandler", (0x24, "", "HEBBH"),
    "getEui64", (0x26, "", "E"),
    "getNodeId", (0x27, "", "H"),
    "getNetworkParameters", (0x28, "", "SBN"),
    "customFrame", (0x47, "L", "SL"),
    "energyScanResultHandler", (0x48, "", "Bb"),
    "getConfigurationValue", (0x52, "B", "SH"),
    "setConfigurationValue", (0x53, "BH", "S"),
    "setPolicy", (0x55, "BB", "S"),
    "invalidCommand", (0x58, "", "S"),
    "setInitialSecurityState", (0x68, "X", "S"),
    "clearTransientLinkKeys", (0x6B, "", ""),
    "broadcastNextNetworkKey", (0x73, "K", "S"),
    "broadcastNetworkKeySwitch", (0x74, "", "S"),
    "setExtendedTimeout", (0x7E, "EB", ""),
    "removeDevice", (0xA8, "HEE", "S"),
    "getValue", (0xAA, "B", "SL"),
    "lookupEui64ByNodeId", (0x61, "H", "SE"),
    "setValue", (0xAB, "BL", "S"),
    # CBKE (suite 1, then suite 2 "283k1"); an SMAC is 16 bytes (K)
    "getCertificate", (0xA5, "", "Sc"),
    "generateCbkeKeys", (0xA4, "", "S"),
    "generateCbkeKeysHandler", (0x9E, "", "Sp"),
    "calculateSmacs", (0x9F, "Bcp", "S"),
    "calculateSmacsHandler", (0xA0, "", "SKK"),
    "clearTemporaryDataMaybeStoreLinkKey", (0xA1, "B", "S"),
    "getCertificate283k1", (0xEC, "", "SC"),
    "generateCbkeKeys283k1", (0xE8, "", "S"),
    "generateCbkeKeysHandler283k1", (0xE9, "", "SP"),
    "calculateSmacs283k1", (0xEA, "BCP", "S"),
    "calculateSmacsHandler283k1", (0xEB, "", "SKK"),
    "clearTemporaryDataMaybeStoreLinkKey283k1", (0xEE, "B", "S"),
))
# key table: v8 findKeyTableEntry + getKeyTableEntry (EmberKeyStruct: bitmask,
# type, key, outgoing/incoming frame counters, sequence, partner EUI-64);
# from v13 the security manager's exportLinkKeyByEui (v13: key, index,
# APS key metadata (bitmask, out/in counters, ttl), sl_Status; v14: sl_Status,
# context (key type, index, derived type, EUI-64, network index, flags, PSA
# algorithm), key, APS key metadata)
_V8 = const(("addTransientLinkKey", (0xAF, "EK", "S"), "findKeyTableEntry", (0x75, "EB", "B"),
       "getKeyTableEntry", (0x71, "B", "SHBKIIBE"), "addOrUpdateKeyTableEntry", (0x66, "EBK", "S")))
_V13 = const(("importTransientKey", (0x111, "EKB", "Z"), "exportLinkKeyByEui", (0x10D, "E", "KBHIIHZ"),
        "importLinkKey", (0x10E, "BEK", "Z")))
_V14 = const((
    "importTransientKey", (0x111, "EKB", "Z"),
    "importLinkKey", (0x10E, "BEK", "Z"),
    "exportLinkKeyByEui", (0x10D, "E", "ZBBHEBBIKHIIH"),
    "leaveNetwork", (0x20, "B", "S"),
    "messageSentHandler", (0x3F, "", "SBHATL"),
    "incomingMessageHandler", (0x45, "", "BAHEBBBbIL"),
    "setExtendedTimeout", (0x7E, "EB", "S"),
))


def check_version(ver):
    """The frame table of a supported version's own entries (beside _COMMON)."""
    if ver == 14:
        return _V14
    if ver == 13:
        return _V13
    if ver == 8:
        return _V8
    raise EzspError("EzspVersionError", "unsupported EZSP version %d" % ver)


def _find(t, name):
    # t: name, entry, name, entry, ... (a constant tuple, in flash when frozen)
    return t[t.index(name) + 1] if name in t else None


def lookup(ver, name):
    """(frame id, command schema, response schema) of a command at a version."""
    if ver == LEGACY:
        if name != "version":
            raise EzspError("EzspVersionError", "only version may use the legacy header")
        return _find(_COMMON, "version")
    e = _find(check_version(ver), name) or _find(_COMMON, name)
    if e is None:
        raise EzspError("EzspUnknownFrame", "%s is not an EZSP v%d command" % (name, ver))
    return e


def name_of(ver, frame_id):
    # a search, not a reverse table: no second table held for the hub's life
    if ver == LEGACY:
        ver = 8
    for t in (check_version(ver), _COMMON):  # a version's own entry wins
        for i in range(1, len(t), 2):
            if t[i][0] == frame_id:
                return t[i - 1]
    raise EzspError("EzspUnknownFrame", "unknown EZSP v%d frame id 0x%04X" % (ver, frame_id))


# the fixed sizes: the letter's place in _SIZED is its size's place in _SIZES
_SIZED = const("BbHIZEKANXcCpP")
_SIZES = const((1, 1, 2, 4, 4, 8, 16, 11, 20, 43, 48, 74, 22, 37))
_BLOBS = const("cCpP")


def _rev(b):
    return bytes(b[7 - i] for i in range(8))


def _need(buf, pos, n, what):
    if pos + n > len(buf):
        raise EzspError("EzspTruncated", "truncated EZSP %s at byte %d" % (what, pos))


def _put(out, ver, t, v):
    if t == "B":
        out.append(v & 0xFF)
    elif t == "b":
        out.append(v & 0xFF)
    elif t == "H":
        out.extend(struct.pack("<H", v))
    elif t == "I" or t == "Z":
        out.extend(struct.pack("<I", v))
    elif t == "S":
        if ver >= 14:
            out.extend(struct.pack("<I", v))
        else:
            out.append(v)
    elif t == "T":
        if ver >= 14:
            out.extend(struct.pack("<H", v))
        else:
            out.append(v)
    elif t == "E":
        if len(v) != 8:
            raise EzspError("EzspFrameError", "EUI-64 must be 8 bytes")
        out.extend(_rev(v))
    elif t == "K":
        if len(v) != 16:
            raise EzspError("EzspFrameError", "key must be 16 bytes")
        out.extend(v)
    elif t in _BLOBS:
        n = _SIZES[_SIZED.find(t)]
        if len(v) != n:
            raise EzspError("EzspFrameError", "CBKE field %s must be %d bytes" % (t, n))
        out.extend(v)
    elif t == "L":
        if len(v) > 255:
            raise EzspError("EzspFrameError", "LV payload too long")
        out.append(len(v))
        out.extend(v)
    elif t == "A":
        out.extend(struct.pack("<HHBBHHB", *v))
    elif t == "N":
        _put(out, ver, "E", v[0])
        out.extend(struct.pack("<HBBBHBI", *v[1:]))
    elif t == "X":
        out.extend(struct.pack("<H", v[0]))
        _put(out, ver, "K", v[1])
        _put(out, ver, "K", v[2])
        out.append(v[3])
        _put(out, ver, "E", v[4])
    elif t == "Q":
        out.append(len(v[0]))
        out.append(len(v[1]))
        for c in v[0]:
            out.extend(struct.pack("<H", c))
        for c in v[1]:
            out.extend(struct.pack("<H", c))
    else:
        raise EzspError("EzspFrameError", "bad schema letter " + t)




def _get(buf, pos, ver, t):
    """Decode one value; return (value, new position)."""
    if t == "S":
        n = 4 if ver >= 14 else 1
    elif t == "T":
        n = 2 if ver >= 14 else 1
    elif t == "L":
        _need(buf, pos, 1, "length")
        n = 1 + buf[pos]
    elif t == "Q":
        _need(buf, pos, 2, "cluster counts")
        n = 2 + 2 * (buf[pos] + buf[pos + 1])
    else:
        n = _SIZED.find(t)
        if n < 0:
            raise EzspError("EzspFrameError", "bad schema letter " + t)
        n = _SIZES[n]
    _need(buf, pos, n, "parameter")
    if t == "B":
        v = buf[pos]
    elif t == "b":
        v = buf[pos]
        if v > 127:
            v -= 256
    elif t == "H" or (t == "T" and n == 2):
        v = buf[pos] | buf[pos + 1] << 8
    elif t == "I" or t == "Z" or (t == "S" and n == 4):
        v = struct.unpack_from("<I", buf, pos)[0]
    elif t == "S" or t == "T":
        v = buf[pos]
    elif t == "E":
        v = _rev(buf[pos:pos + 8])
    elif t == "K" or t in _BLOBS:
        v = bytes(buf[pos:pos + n])
    elif t == "L":
        v = bytes(buf[pos + 1:pos + n])
    elif t == "A":
        v = struct.unpack_from("<HHBBHHB", buf, pos)
    elif t == "N":
        v = (_rev(buf[pos:pos + 8]),) + struct.unpack_from("<HBBBHBI", buf, pos + 8)
    elif t == "X":
        v = (buf[pos] | buf[pos + 1] << 8, bytes(buf[pos + 2:pos + 18]),
             bytes(buf[pos + 18:pos + 34]), buf[pos + 34], _rev(buf[pos + 35:pos + 43]))
    else:  # Q
        ni, no = buf[pos], buf[pos + 1]
        p = pos + 2
        ins = [buf[p + 2 * i] | buf[p + 2 * i + 1] << 8 for i in range(ni)]
        p += 2 * ni
        outs = [buf[p + 2 * i] | buf[p + 2 * i + 1] << 8 for i in range(no)]
        v = (ins, outs)
    return v, pos + n


def encode_params(ver, schema, values, out):
    """Append the parameters to bytearray `out`; return it."""
    if len(values) != len(schema):
        raise EzspError("EzspFrameError", "expected %d parameters, got %d" % (len(schema), len(values)))
    for i in range(len(schema)):
        _put(out, ver, schema[i], values[i])
    return out


def decode_params(ver, schema, buf, pos, strict):
    vals = []
    for t in schema:
        v, pos = _get(buf, pos, ver, t)
        vals.append(v)
    if strict and pos != len(buf):
        raise EzspError("EzspFrameError", "%d trailing bytes in EZSP frame" % (len(buf) - pos))
    return tuple(vals)


def encode_frame(ver, seq, name, values=(), fc=0, out=None):
    """Encode a whole frame. fc bit 7 (response) selects the response schema.
    ver == LEGACY gives the legacy `seq FC id8` header (version only)."""
    fid, tx, rx = lookup(ver, name)
    if out is None:
        out = bytearray()
    out.append(seq & 0xFF)
    out.append(fc & 0xFF)
    if ver == LEGACY:
        out.append(fid)
    else:
        out.append(_FC_HI_FORMAT_1)
        out.append(fid & 0xFF)
        out.append(fid >> 8)
    return encode_params(ver, rx if fc & _FC_RESPONSE else tx, values, out)


def decode_header(ver, buf):
    """(seq, fc_low, frame id, parameter offset)."""
    if ver == LEGACY:
        _need(buf, 0, 3, "legacy header")
        return buf[0], buf[1], buf[2], 3
    _need(buf, 0, 5, "header")
    hi = buf[2]
    if hi & 0x03 != _FC_HI_FORMAT_1:
        raise EzspError("EzspFrameError", "EZSP frame format version %d (expected 1)" % (hi & 3))
    if hi & (_FC_HI_SECURITY | _FC_HI_PADDING):
        raise EzspError("EzspFrameError", "secured/padded EZSP frames are not supported")
    return buf[0], buf[1], buf[3] | buf[4] << 8, 5


def network_state(ver, status):
    """A stackStatusHandler's status at a version: True (network up), False
    (down) or None (another status)."""
    if status == (_SL_NETWORK_UP if ver >= 14 else _EMBER_NETWORK_UP):
        return True
    if status == (_SL_NETWORK_DOWN if ver >= 14 else _EMBER_NETWORK_DOWN):
        return False
    return None
