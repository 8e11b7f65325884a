"""Timestamps of the NCP emulator's radio events, for the hub's share of a HAN round trip.

`trace_ncp(emu)` wraps three of the emulator's hooks in place and returns the
list they append to and a function that puts the hooks back: ("tx", t) when the hub asks the NCP to send (sendUnicast),
("sent", t) when the NCP reports a send done (messageSentHandler), ("rx", t)
when a device's frame reaches the NCP. The time between an "rx" and the hub's
next "tx" is the hub's own processing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def trace_ncp(emu: Any) -> tuple[list[tuple[str, float]], Callable[[], None]]:
    marks: list[tuple[str, float]] = []
    su, ds, sent = emu._c_sendUnicast, emu.device_send, emu._sent

    def send_unicast(p: bytes) -> bytes:
        marks.append(("tx", time.perf_counter()))
        return su(p)

    def on_sent(*a: Any) -> None:
        marks.append(("sent", time.perf_counter()))
        return sent(*a)

    def device_send(node: Any, aps: Any, payload: bytes) -> bool:
        marks.append(("rx", time.perf_counter()))
        return ds(node, aps, payload)

    def untrace() -> None:
        emu._c_sendUnicast, emu.device_send, emu._sent = su, ds, sent

    emu._c_sendUnicast, emu.device_send, emu._sent = send_unicast, device_send, on_sent
    return marks, untrace
