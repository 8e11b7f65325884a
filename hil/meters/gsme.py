"""An emulated sleepy GSME (gas meter) on the rig's HAN.

The hub never sends it a command: commands wait in the hub's buffer. Every
`wake_s` seconds (None: it never wakes) the meter wakes, GETs over its tunnel
to the hub (TransferData `01`; the hub answers `02 n msg`, or `02 00`),
executes each command and PUTs (`03 msg`) its response and any alerts, until
the hub says nothing is left. A command it knows byte for byte from the RTDS
(hil.meters.rtds_answers) gets that scenario's RESPONSE and ALERT files, so
the RTDS ERROR scenarios are the commands it fails on purpose (e.g. a TOM
command the GPF must then discard with 0x819E); an unknown command gets no
answer.

Like a real GSME it executes a command only once (GBCS replay protection,
PROTOCOLS.md section 1): it keeps, per originator, the highest originator
counter it has executed and refuses a command whose counter is not greater,
recording it in `refused` and sending nothing for it. That is what makes
the hub's at-least-once buffer safe: a command re-offered after a power cut
of the hub is recognised and not executed twice. `forget_counters()` clears
that memory (the RTDS commands carry fixed counters, so tests replaying a
scenario start it on a "new" meter). The RTDS re-uses and reorders counters
across its independent scenarios (GCS07 SUCCESS and GCS25 SUCCESS both
carry 1002): with `rtds_scenarios = True` the meter instead remembers each
(originator, counter, whole command) it executed, so distinct RTDS commands
replayed in one wake-up each run once and a byte-identical re-offer is
still refused.

Hooks for the GSME's own data (hil/meters/gsme_data.py): `on_command` is a
list of callables `(command bytes) -> list of extra frames to PUT | None`
run on every executed command, and `data` holds whatever meter state they
keep.

Usage (on the rig's loop): `m = GsmeMeter(han.device("gsme"), wake_s=2); m.start()`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from hil.headend.gbcs import parse_frame

from . import Answer, rtds_answers

GET, RESPONSE, PUT = 0x01, 0x02, 0x03


class GsmeMeter:
    def __init__(self, device: Any, answers: dict[bytes, Answer] | None = None, wake_s: float | None = 1800.0,
                 data: Any = None) -> None:
        self.device = device
        self.answers = answers if answers is not None else rtds_answers()
        self.wake_s = wake_s
        self.data = data
        self.on_command: list[Callable[[bytes], list[bytes] | None]] = []
        self.executed: list[bytes] = []
        self.refused: list[bytes] = []  # commands whose counter it had executed already
        self.received: list[bytes] = []  # every command the hub handed it
        self.last_counter: dict[bytes, int] = {}  # originator -> highest counter executed
        self.executed_keys: set[tuple[bytes, int, bytes]] = set()  # rtds_scenarios mode
        self.rtds_scenarios = False
        self.held: list[bytes] = []  # PUTs not sent yet (wake(..., put=False), or not acknowledged)
        self.puts: list[bytes] = []  # PUTs the radio took (the hub's NCP acknowledged them)
        self.put_times: list[float] = []  # time.monotonic() of each of those
        self.wakes = 0
        self.wake_times: list[float] = []  # time.monotonic() at the start of each wake-up
        self.errors: list[str] = []
        self._task: asyncio.Task[None] | None = None
        self.woke = asyncio.Event()

    # --- life -----------------------------------------------------------------
    def start(self) -> None:
        if self._task is None and self.wake_s is not None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        assert self.wake_s is not None
        while True:
            await asyncio.sleep(self.wake_s)
            try:
                await self.wake()
            except (TimeoutError, ConnectionError, ValueError) as e:
                self.errors.append(f"wake {self.wakes}: {e!r}")

    # --- one wake-up ------------------------------------------------------------
    async def wake(self, timeout: float = 5.0, max_commands: int | None = None, put: bool = True) -> int:
        """GET until the hub has nothing left (or max_commands were
        received); -> commands received. put=False: the meter executes but
        keeps its PUTs (e.g. the hub lost power meanwhile); they go first at
        the next wake-up."""
        self.wakes += 1
        self.wake_times.append(time.monotonic())
        n = 0
        try:
            if self.held:
                # a fresh tunnel: the hub may have restarted since
                self.device.tunnel_id = None
                await self.device.open_tunnel(timeout)
                held, self.held = self.held, []
                await self._put_all(held)
            while max_commands is None or n < max_commands:
                r = await self._get(timeout)
                if len(r) < 2 or r[0] != RESPONSE:
                    raise ValueError(f"bad answer to GET: {r[:8].hex()}")
                left = r[1]
                if len(r) == 2:
                    break
                n += 1
                frames = self.execute(r[2:])
                if put:
                    await self._put_all(frames)
                else:
                    self.held += frames
                if left == 0:
                    break
        finally:
            self.woke.set()
        return n

    async def _put_all(self, frames: list[bytes]) -> None:
        """PUT each frame; one the radio does not take (no APS acknowledgement:
        e.g. the hub, and its NCP, without power) is kept with the rest for the
        next wake-up, as a meter keeps a response it could not hand over."""
        for i, frame in enumerate(frames):
            if not self.device.tunnel_send(bytes((PUT,)) + frame):
                self.held += frames[i:]
                raise ConnectionError(f"PUT not acknowledged: {len(frames) - i} held for the next wake-up")
            self.puts.append(frame)
            self.put_times.append(time.monotonic())
            await asyncio.sleep(0.02)

    async def _get(self, timeout: float) -> bytes:
        try:
            return bytes(await self.device.tunnel_request(bytes((GET,)), timeout))
        except (TimeoutError, ConnectionError):
            # the hub may have restarted since the tunnel was opened: open a new one
            self.device.tunnel_id = None
            return bytes(await self.device.tunnel_request(bytes((GET,)), timeout))

    def forget_counters(self) -> None:
        self.last_counter.clear()
        self.executed_keys.clear()

    def _replay(self, cmd: bytes) -> bool:
        """True when the command's counter was executed already (it is then
        refused); otherwise remember it."""
        try:
            f = parse_frame(cmd)
        except Exception:  # noqa: BLE001 - not a GBCS frame: nothing to check it by
            return False
        if self.rtds_scenarios:
            key = (bytes(f.originator), f.counter, cmd)
            if key in self.executed_keys:
                return True
            self.executed_keys.add(key)
            return False
        last = self.last_counter.get(bytes(f.originator))
        if last is not None and f.counter <= last:
            return True
        self.last_counter[bytes(f.originator)] = f.counter
        return False

    def execute(self, cmd: bytes) -> list[bytes]:
        """Run one command: the frames to PUT (response first, then alerts);
        nothing for a command whose originator counter it executed before."""
        self.received.append(bytes(cmd))
        if self._replay(bytes(cmd)):
            self.refused.append(bytes(cmd))
            return []
        self.executed.append(bytes(cmd))
        extra: list[bytes] = []
        for fn in self.on_command:
            got = fn(bytes(cmd))
            if got:
                extra += got
        a = self.answers.get(bytes(cmd))
        if a is None:
            return extra
        return [a.response, *a.alerts, *extra]
