# The one registry of the event and alert codes the hub writes to its logs
# and raises as alerts (docs/codes.md lists them with their meaning).
# GBCS alert/event codes (../shared/vectors/gbcs/alert-codes.tsv) keep their
# GBCS value. Codes GBCS does not define are private, in 0x8FD0-0x8FFF.
from micropython import const

# -- GBCS codes --
ALERT_DEVICE_LOG_CHANGED = const(0x8F12)  # CHF Device Log changed (CS14); data = EUI
ALERT_GPF_DEVICE_LOG_CHANGED = const(0x8071)  # GPF Device Log changed
ALERT_DUTY_CYCLE_LIMITED = const(0x8F20)  # DBCH06
ALERT_CHANNEL_CHANGED = const(0x8F26)  # DBCH07
ALERT_SCAN_OUTCOME = const(0x8F28)  # DBCH08
ALERT_CONFIG_CHANGED = const(0x8F2A)  # DBCH09
ALERT_MESSAGE_DISCARDED = const(0x8F2C)  # DBCH10
ALERT_NO_CAPACITY = const(0x8F2D)  # DBCH11
ALERT_FD_OK = const(0x8F66)  # GPF: future-dated command processed
ALERT_ESME_UNDELIVERED = const(0x8F84)  # failure to deliver a remote party message to the ESME
ALERT_FW_TRANSFER_FAILED = const(0x8F89)  # CCS08
ALERT_FW_TRANSFER_OK = const(0x8F8A)  # CCS08
ALERT_GSME_NOT_RETRIEVED = const(0x819D)  # GSME command not retrieved before expiry
ALERT_TAP_OFF_FAILED = const(0x819E)  # GPF: tap-off of a GSME command failed
EV_CLOCK_ADJUSTED = const(0x8145)  # event log: Clock adjusted (within tolerance), from the head-end
EV_CLOCK_DISAGREES = const(0x81C6)  # event log: Clock not adjusted (outside tolerance): network time disagrees
EV_CLOCK_NOT_ADJUSTED = const(0x8F0C)  # event log: Clock not adjusted (adjustment greater than 10 seconds)

# -- private codes (0x8FD0-0x8FFF) --
EV_NOT_PROTECTED = const(0x8FD0)  # security log: a command without the protection it needs
EV_WRONG_RECIPIENT = const(0x8FD1)  # security log: not addressed to this device
EV_UNKNOWN_ORIGINATOR = const(0x8FD2)  # security log: originator not a trusted party
EV_REPLAYED_COUNTER = const(0x8FD3)  # security log: originator counter not fresh
EV_BAD_MAC = const(0x8FD4)  # security log: GMAC does not verify
EV_BAD_SIGNATURE = const(0x8FD5)  # security log: ECDSA signature does not verify
EV_MALFORMED = const(0x8FD6)  # security log: a frame that does not parse
EV_PAYLOAD_MISMATCH = const(0x8FD7)  # security log: payload not allowed for its message code
EV_UNSUPPORTED = const(0x8FD8)  # event log: message code not supported
EV_UNKNOWN_JOIN = const(0x8FE0)  # security log: join refused, EUI not in the Device Log
EV_JOIN_WINDOW_CLOSED = const(0x8FE1)  # security log: join refused, join window closed
EV_NETWORK_KEY_ROTATED = const(0x8FE2)  # security log: a new HAN network key is in use
EV_JOIN_BAD_KEY = const(0x8FE3)  # security log: the NCP refused a logged device (key mismatch)
EV_UNKNOWN_RECIPIENT = const(0x8FE8)  # security log: recipient not in the Device Log
EV_BUFFER_FULL = const(0x8FE9)  # event log: GSME command refused, queue full or too long
EV_QUEUE_DROPPED = const(0x8FEA)  # event log: device removed, its queue dropped
EV_BAD_DEVICE_MESSAGE = const(0x8FEB)  # security log: a device sent something unusable
ALERT_POWER_OUTAGE = const(0x8FF0)  # last gasp: power lost
ALERT_POWER_RESTORED = const(0x8FF1)  # power back
EV_CLOCK_STEP = const(0x8FF2)  # event log: the clock set by more than 10 s (not valid, or confirmed)
