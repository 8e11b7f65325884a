# The CHF's own records: the Device Log (ZigBee whitelist) and the
# event/security logs. See docs/device-log.md.
