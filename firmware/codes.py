# The one registry of the event and alert codes the hub writes to its logs
# and raises as alerts (docs/codes.md lists them with their meaning).
# A GBCS code (../shared/vectors/gbcs/alert-codes.tsv) wherever GBCS defines
# one: each such line's comment starts with the GBCS name, then says what
# the hub uses it for. Several hub events share one GBCS code; the entry's
# data tells them apart (docs/codes.md). Codes GBCS does not define are
# private, in 0x8FD0-0x8FFF (PRIVATE_FIRST..PRIVATE_LAST), and only those.
# tests/test_codes.py checks both rules and that no other firmware module
# defines a code.
from micropython import const

PRIVATE_FIRST = const(0x8FD0)
PRIVATE_LAST = const(0x8FFF)

# -- GBCS codes --
ALERT_DEVICE_LOG_CHANGED = const(0x8F12)  # CHF Device Log Changed: CS14 alert; data = EUI
ALERT_GPF_DEVICE_LOG_CHANGED = const(0x8071)  # GPF Device Log Changed: GCS62 alert
ALERT_DUTY_CYCLE_LIMITED = const(0x8F20)  # Limited Duty Cycle Action Taken: DBCH06
ALERT_CHANNEL_CHANGED = const(0x8F26)  # Sub GHz Channel Changed: DBCH07
ALERT_SCAN_OUTCOME = const(0x8F28)  # Sub GHz Channel Scan Request Assessment Outcome: DBCH08
ALERT_CONFIG_CHANGED = const(0x8F2A)  # Sub GHz Configuration Changed: DBCH09
ALERT_MESSAGE_DISCARDED = const(0x8F2C)  # Message Discarded Due to Duty Cycle Management: DBCH10
ALERT_NO_CAPACITY = const(0x8F2D)  # No More Sub GHz Device Capacity: DBCH11
ALERT_FD_OK = const(0x8F66)  # Future-date HAN Interface Command Successfully Actioned: GPF
ALERT_ESME_UNDELIVERED = const(0x8F84)  # Failure to Deliver Remote Party Message to ESME
ALERT_FW_TRANSFER_FAILED = const(0x8F89)  # Firmware transfer alert FAIL: CCS08
ALERT_FW_TRANSFER_OK = const(0x8F8A)  # Firmware transfer alert SUCCESS: CCS08
ALERT_FW_VERIFY_FAILED_AT_BOOT = const(0x8F1B)  # Firmware Verification Failed At Power On: the hub's new image rolled back, or a slot failed its power-on check (update.slots)
ALERT_FW_VERIFY_FAILED = const(0x8F1C)  # Firmware Verification Failed: a hub image refused (signature, hash, board, minimum version, truncated); data = reason
ALERT_FW_VERIFY_OK = const(0x8F72)  # Firmware Verification Successful: a hub image staged and verified
ALERT_GSME_NOT_RETRIEVED = const(0x819D)  # GSME Command Not Retrieved: before its expiry
ALERT_TAP_OFF_FAILED = const(0x819E)  # Tap Off Message Response or Alert Failure: GPF

# security log: the checks of a remote-party command (gbcs.security,
# gbcs.usecase_base, route.router); data = originator | counter where known
EV_MALFORMED = const(0x8F1E)  # Integrity check of content or format of command failed: a frame that does not parse (data empty)
EV_PAYLOAD_MISMATCH = const(0x8F1E)  # Integrity check of content or format of command failed: payload not allowed for its message code (data = message code)
EV_WRONG_RECIPIENT = const(0x8F1E)  # Integrity check of content or format of command failed: not addressed to this device
EV_BAD_MAC = const(0x8F1E)  # Integrity check of content or format of command failed: the GMAC does not verify
EV_BAD_DEVICE_MESSAGE = const(0x8F1E)  # Integrity check of content or format of command failed: a HAN device sent something unusable (data = its EUI, hex text)
EV_NOT_PROTECTED = const(0x8F30)  # Source Does not have Authority for Command: without the protection its access rule needs
EV_NO_AUTHORITY = const(0x8F30)  # Source Does not have Authority for Command: a use case its originator's role may not send (CS05a/CS06 on the CHF: the ACB only; data = originator, message code)
EV_BAD_SIGNATURE = const(0x8F3D)  # Trusted Source Authentication Failure: the ECDSA signature does not verify
EV_UNKNOWN_ORIGINATOR = const(0x8F3E)  # Unauthorised Communication Access attempted: originator not a trusted party
EV_REPLAYED_COUNTER = const(0x8F53)  # Failed Authentication or Authorisation not covered by other codes: originator counter not fresh
EV_MALFORMED_FLOOD = const(0x8F60)  # Unusual numbers of malformed, out-of-order or unexpected Commands received: over the threshold (chf.logs.MalformedWatch); also an alert to the head-end

# security log: the HAN's trust centre (data = the device's EUI)
EV_UNKNOWN_JOIN = const(0x8F3E)  # Unauthorised Communication Access attempted: join refused, EUI not in the Device Log
EV_JOIN_WINDOW_CLOSED = const(0x8F3E)  # Unauthorised Communication Access attempted: join refused, its join window closed
EV_JOIN_BAD_KEY = const(0x8F53)  # Failed Authentication or Authorisation not covered by other codes: the NCP refused a logged device (key mismatch)
EV_CBKE_FAILED = const(0x8F53)  # Failed Authentication or Authorisation not covered by other codes: a device's key establishment (CBKE) failed (data = EUI hex, status, reason)

# security log: the local port's installer authentication (local_port.InstallerAuth; data = reason text)
EV_AUTH_FAILED = const(0x8F53)  # Failed Authentication or Authorisation not covered by other codes: wrong installer credential, bad or stale request tag
# security log: the head-end link (wan.session; data = "headend tls" | host)
EV_HEADEND_REFUSED = const(0x8F53)  # Failed Authentication or Authorisation not covered by other codes: the modem refused the head-end's TLS handshake (its certificate does not chain to the link anchor)
# event log: an installer session opened on the local port
EV_LOCAL_PORT_SESSION = const(0x81A5)  # Communication From Local Port (e.g. Optical): installer authenticated

# event log: the clock's trust rules (clock.py, docs/clock.md)
EV_CLOCK_ADJUSTED = const(0x8145)  # Clock adjusted (within tolerance): by the head-end's time
EV_CLOCK_DISAGREES = const(0x81C6)  # Clock not adjusted (outside tolerance): the network's time disagrees
EV_CLOCK_NOT_ADJUSTED = const(0x8F0C)  # Clock not adjusted (adjustment greater than 10 seconds)

# -- private codes (PRIVATE_FIRST..PRIVATE_LAST): GBCS has none for these --
EV_UNSUPPORTED = const(0x8FD8)  # event log: message code not supported by this device
EV_SETTINGS_CHANGED = const(0x8FDA)  # event log: WAN settings changed (data = origin local/headend, the names)
EV_SETTINGS_ROLLED_BACK = const(0x8FDB)  # event log: link settings back to their old values, the link did not return (data = the names)
EV_NETWORK_KEY_ROTATED = const(0x8FE2)  # security log: a new HAN network key is in use
EV_UNKNOWN_RECIPIENT = const(0x8FE8)  # security log: recipient not the CHF, the GPF nor in the Device Log
EV_BUFFER_FULL = const(0x8FE9)  # event log: GSME command refused, queue full or too long
EV_QUEUE_DROPPED = const(0x8FEA)  # event log: device removed, its queue dropped
ALERT_POWER_OUTAGE = const(0x8FF0)  # last gasp: the hub's own power lost (GBCS's supply codes are the meter's)
ALERT_POWER_RESTORED = const(0x8FF1)  # the hub's own power back
EV_CLOCK_STEP = const(0x8FF2)  # event log: the clock set by more than 10 s (not valid yet, or the step confirmed)
EV_BAD_SETTING = const(0x8FF3)  # event log: a stored setting failed its check, its default is used (data = the name)
