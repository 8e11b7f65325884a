"""Firmware version reads on the rig's meters (docs/ota-han.md, "Firmware
version reads"): ECS52 (0x0059, the ESME), GCS38 (0x0084, the GSME) and
CS08 (0x0129, the PPMID), message codes from the vectors' message-codes.tsv.
The RTDS vectors hold no frame of these use cases, so the command and the
response are built here from what the use cases read, byte by byte as
docs/ota-han.md lists them:

* ECS52 (a DLMS device): an access-request with one GET of the Active
  firmware identifier, class 1 (Data), OBIS 1-0:0.2.0.255, attribute 2;
  the ESME answers an access-response whose data is that value as a
  4-byte octet-string: its OTA file version, big-endian.
* GCS38 and CS08 (ZigBee devices, GBZ): one plain component on the OTA
  Upgrade cluster (0x0019), a ZCL Read Attributes of CurrentFileVersion
  (0x0002, an attribute of the device's OTA client); the device answers
  Read Attributes Response, status 0, type uint32 (0x23), the value
  little-endian.

The frames carry no MAC or signature (the rig's meters do not check them,
as for CS06 in ota_rig.py); the hub routes them by the grouping header.
`answer(version, frame)` is the meter's side; `command(...)` and
`version_in(response)` the head-end's.
"""

from __future__ import annotations

from hil.headend.gbcs import Frame, decode_access_response, parse_frame
from hil.headend.gpf import gbz_components

ECS52, GCS38, CS08 = 0x0059, 0x0084, 0x0129
OBIS_FIRMWARE = bytes([1, 0, 0, 2, 0, 255])  # 1-0:0.2.0.255 Active firmware identifier
CLUSTER_OTA = 0x0019
ATTR_CURRENT_FILE_VERSION = 0x0002
_GBZ_PROFILE = b"\x01\x09"


def _get_request() -> bytes:
    # access-request: long-invoke-id 0, no date-time, one GET spec
    # {class 1, OBIS, attribute 2}, one data entry (null: a GET has none)
    return b"\xd9" + bytes(4) + b"\x00" + b"\x01\x01" + (1).to_bytes(2, "big") + OBIS_FIRMWARE + b"\x02" + b"\x01\x00"


def _gbz(zcl: bytes) -> bytes:
    # GBZ: profile 01 09, one component: control 01 (last, plain), cluster, length
    return _GBZ_PROFILE + b"\x01\x01" + CLUSTER_OTA.to_bytes(2, "big") + len(zcl).to_bytes(2, "big") + zcl


def command(mc: int, counter: int, originator: bytes, device: bytes) -> bytes:
    """The head-end's ECS52 / GCS38 / CS08 to `device` (unprotected)."""
    if mc == ECS52:
        payload = _get_request()
    elif mc in (GCS38, CS08):
        # ZCL: frame control 0x08 (profile-wide, server to client: the
        # attribute is the device's OTA client's), sequence, Read Attributes (0x00), the attribute id
        payload = _gbz(bytes((0x08, counter & 0xFF, 0x00)) + ATTR_CURRENT_FILE_VERSION.to_bytes(2, "little"))
    else:
        raise ValueError(f"message code {mc:#06x} is not a firmware version read")
    f = Frame(1, counter, originator, device, None, mc.to_bytes(2, "big"), payload, None, True)
    return f.header_and_payload() + b"\x00"


def answer(version: int, data: bytes) -> bytes | None:
    """The meter's response (it runs file version `version`) to a firmware
    version read, or None for another frame."""
    try:
        f = parse_frame(data)
    except Exception:  # noqa: BLE001 - not a GBCS frame: not ours
        return None
    if f.cra != 1 or f.message_code not in (ECS52, GCS38, CS08):
        return None
    if f.message_code == ECS52:
        if f.payload != _get_request():
            return None
        # access-response: invoke id 0, no date-time, no specs, one data
        # (octet-string of 4), one result (GET, success)
        payload = b"\xda" + bytes(4) + b"\x00" + b"\x00" + b"\x01\x09\x04" + version.to_bytes(4, "big") + b"\x01\x01\x00"
    else:
        c = gbz_components(f.payload)
        if len(c) != 1 or c[0]["cluster"] != CLUSTER_OTA or c[0]["cmd"] != 0x00:
            return None
        # Read Attributes Response (0x01), frame control 0x00 (client to server), same sequence
        payload = _gbz(bytes((0x00, c[0]["seq"], 0x01)) + ATTR_CURRENT_FILE_VERSION.to_bytes(2, "little")
                       + b"\x00\x23" + version.to_bytes(4, "little"))
    r = Frame(2, f.counter, f.recipient, f.originator, None, f.other_info, payload, None, True)
    return r.header_and_payload() + b"\x00"


def version_in(response: Frame) -> int:
    """The file version a meter's response reports."""
    if response.message_code == ECS52:
        r = decode_access_response(response.payload)
        if r.results != [(1, 0)]:
            raise ValueError(f"ECS52 result {r.results}")
        tag, val = r.data[0]
        if tag != 0x09 or len(val) != 4:
            raise ValueError(f"ECS52 data {r.data[0]!r} is not a 4-byte octet-string")
        return int.from_bytes(val, "big")
    c = gbz_components(response.payload)
    body = c[0]["body"]
    if c[0]["cluster"] != CLUSTER_OTA or c[0]["cmd"] != 0x01 or body[:4] != b"\x02\x00\x00\x23" or len(body) != 8:
        raise ValueError(f"not a CurrentFileVersion read response: {c}")
    return int.from_bytes(body[4:8], "little")
