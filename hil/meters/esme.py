"""An emulated ESME (electricity meter) on the rig's HAN.

It is always awake: the hub opens a ZSE tunnel to it and sends each GBCS
command as TransferData; the meter answers on the same tunnel. A command it
knows byte for byte from the RTDS (hil.meters.rtds_answers) gets the RTDS
response of that scenario; anything else gets no answer (a meter drops what
it cannot authenticate), so the hub times out. `switch_off()` takes the
radio off the air: the NCP's unicasts to it fail (no MAC acknowledgement),
which is how the hub's 0x8F84 "failure to deliver to ESME" is exercised;
`silent = True` keeps it on the air but answering nothing (the hub's
exchange times out).
`send_alert(frame)` sends an alert of its own to the hub over the tunnel it
opens as a client. `alert_mid_exchange = frame` makes it send that alert on
the hub's tunnel (tunnel_push) after the next command arrives and before it
answers: the hub must forward it as an alert and still take the response
that follows as the answer (tunnel_exchange's match=).

The same behaviour serves any always-awake tunnel device (HCALCS, PPMID:
the other parties of the RTDS join folders).

Usage (on the rig's loop): `EsmeMeter(han.device("esme"))`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from . import Answer, rtds_answers


class EsmeMeter:
    def __init__(self, device: Any, answers: dict[bytes, Answer] | None = None, delay_s: float = 0.0) -> None:
        self.device = device
        self.answers = answers if answers is not None else rtds_answers()
        self.delay_s = delay_s  # the meter's own processing time
        self.powered = True
        self.received: list[bytes] = []  # commands that reached the meter
        self.answered: list[bytes] = []
        self.busy_s: list[float] = []  # time from a whole command to its answer
        self.on_command: list[Callable[[bytes], None]] = []
        self.alert_mid_exchange: bytes | None = None
        self.silent = False  # hears commands, never answers (the hub times out)
        self.pushed: list[bytes] = []
        device.on_tunnel_data = self.on_tunnel_data

    async def on_tunnel_data(self, data: bytes) -> bytes | None:
        import asyncio

        t0 = time.perf_counter()
        self.received.append(bytes(data))
        for fn in self.on_command:
            fn(bytes(data))
        a = self.answers.get(bytes(data))
        if self.alert_mid_exchange is not None:
            alert, self.alert_mid_exchange = self.alert_mid_exchange, None
            if self.device.tunnel_push(alert):
                self.pushed.append(alert)
            await asyncio.sleep(0.3)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.busy_s.append(time.perf_counter() - t0)
        if a is None or self.silent:
            return None
        self.answered.append(a.response)
        return a.response

    # --- power -----------------------------------------------------------------
    def switch_off(self) -> None:
        """Radio off: the node stays in the network tables but hears nothing."""
        self.powered = False
        self.device.node.joined = False

    def switch_on(self) -> None:
        self.powered = True
        self.device.node.joined = True

    # --- alerts to the hub -----------------------------------------------------
    async def send_alert(self, frame: bytes, timeout: float = 5.0) -> bool:
        """An alert of the meter's own, over its tunnel to the hub."""
        if self.device.tunnel_id is None:
            await self.device.open_tunnel(timeout)
        return bool(self.device.tunnel_send(frame))
