"""Head-end emulators for the rig (DCC side of the WAN)."""

from hil.headend.gbcs import HeadEnd, HeadEndError, compare_response, parse_frame

__all__ = ["HeadEnd", "HeadEndError", "compare_response", "parse_frame"]
