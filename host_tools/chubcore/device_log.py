"""The CHF Device Log as the local port carries it (docs/device-log.md):
`device_log_list` answers each entry as a list in ROW order and each
historic entry in HISTORIC order; `type` indexes TYPES."""

from __future__ import annotations

TYPES = ("GSME", "ESME", "CHF", "GPF", "HCALCS", "PPMID", "Type 2")
ROW = ("eui", "type", "key_state", "key_hash", "node_id", "join_state", "window_end", "rssi", "lqi",
       "last_comm", "tx_ok", "tx_fail")
HISTORIC = ("eui", "type", "key_hash", "removed")
