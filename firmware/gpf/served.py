# The GPF's ZCL servers for tapped-off data (E2E 4.3.5.3, use cases HAN03 /
# HAN06): an IHD or PPMID sends a Get command (client -> server) to the
# hub's Price or Calendar cluster; the GPF answers with the Publish command
# (server -> client, same TSN) the DCC sent the GSME, as the GPF applied it
# once the GSME said it succeeded (gpf.tapoff, KV "gpf_tom": per
# cluster/command the payloads of the latest TOM command that carried it, on
# flash). Several payloads (GCS01a's Publish Day Profiles) are answered with
# one Publish frame each, in the command's order, all with the Get's TSN.
# Nothing applied: Default Response NOT_FOUND. The Get command's filters
# (start time, issuer event id, ids, number of commands) are not applied.
from micropython import const

from han import zcl

_NOT_FOUND = const(0x8B)
_PRICE = const(0x0700)
_CALENDAR = const(0x0707)
CLUSTERS = (_PRICE, _CALENDAR)

# (cluster << 8 | Get command), the Publish command that answers it, ... (SE
# 1.2; a constant tuple, in flash when frozen)
_GETS = const((
    0x070003, 0x01,  # Price GetBlockPeriod(s) -> PublishBlockPeriod
    0x070004, 0x02,  # GetConversionFactor -> PublishConversionFactor
    0x070005, 0x03,  # GetCalorificValue -> PublishCalorificValue
    0x070006, 0x04,  # GetTariffInformation -> PublishTariffInformation
    0x070007, 0x05,  # GetPriceMatrix -> PublishPriceMatrix
    0x070008, 0x06,  # GetBlockThresholds -> PublishBlockThresholds
    0x07000B, 0x09,  # GetBillingPeriod -> PublishBillingPeriod
    0x070700, 0x00,  # Calendar GetCalendar -> PublishCalendar
    0x070701, 0x01,  # GetDayProfiles -> PublishDayProfile
    0x070702, 0x02,  # GetWeekProfiles -> PublishWeekProfile
    0x070703, 0x03,  # GetSeasons -> PublishSeasons
    0x070704, 0x04,  # GetSpecialDays -> PublishSpecialDays
))


def _default_rsp(h, status):
    rh = zcl.Header(zcl.DEFAULT_RSP, h.tsn, zcl.FT_GLOBAL, 1, disable_default_response=True)
    return zcl.build_frame(rh, zcl.encode_default_rsp(h.command_id, status))


def payloads(v):
    """A KV "gpf_tom" value (hex, or a list of hex) as [bytes], or None."""
    if v is None:
        return None
    return [bytes(int(x[i : i + 2], 16) for i in range(0, len(x), 2)) for x in (v if isinstance(v, list) else (v,))]


def answer(kv, cluster, h):
    """The reply to a client -> server cluster-specific command h on a
    served cluster (a frame, or a list of frames); kv: KV "gpf_tom"."""
    if h.manufacturer is not None:
        return _default_rsp(h, zcl.UNSUP_MANUF_CLUSTER_COMMAND)
    k = cluster << 8 | h.command_id
    i = _GETS.index(k) if k in _GETS else -1
    pub = _GETS[i + 1] if i >= 0 and i % 2 == 0 else None
    if pub is None:
        return _default_rsp(h, zcl.UNSUP_CLUSTER_COMMAND)
    ps = payloads(kv.get("%04x%02x" % (cluster, pub)))
    if not ps:
        return _default_rsp(h, _NOT_FOUND)
    rh = zcl.Header(pub, h.tsn, zcl.FT_CLUSTER, 1, disable_default_response=True)
    frames = [zcl.build_frame(rh, p) for p in ps]
    return frames[0] if len(frames) == 1 else frames
