"""NCP side of ASH (UG101) for the rig: framing, stuffing, CRC, data
randomisation, frame numbering with window 1, ACK/NAK, RST/RSTACK/ERROR.

Written for the rig independently of the firmware's host-side ASH."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

FLAG = 0x7E
ESC = 0x7D
XON = 0x11
XOFF = 0x13
SUB = 0x18
CAN = 0x1A
RESERVED = frozenset((FLAG, ESC, XON, XOFF, SUB, CAN))

RST = 0xC0
RSTACK = 0xC1
ERROR = 0xC2
RESET_SOFTWARE = 0x0B
ERROR_EXCEEDED_MAX_ACK_TIMEOUTS = 0x51


def crc_ccitt(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def pseudo_random(n: int) -> bytes:
    out = bytearray(n)
    r = 0x42
    for i in range(n):
        out[i] = r
        r = (r >> 1) ^ 0xB8 if r & 1 else r >> 1
    return bytes(out)


def randomise(data: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, pseudo_random(len(data)), strict=True))


def stuff(raw: bytes) -> bytes:
    out = bytearray()
    for b in raw:
        if b in RESERVED:
            out += bytes((ESC, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def build(control: int, data: bytes = b"") -> bytes:
    """Wire bytes of one frame (control + data, CRC, stuffed, closing flag)."""
    body = bytes((control,)) + data
    return stuff(body + crc_ccitt(body).to_bytes(2, "big")) + bytes((FLAG,))


class Deframer:
    """Splits the received byte stream into CRC-checked frames (control+data)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._esc = False
        self._discard = False
        self.bad_frames = 0

    def feed(self, data: bytes) -> list[bytes]:
        frames = []
        for b in data:
            if b == CAN:
                self._buf.clear()
                self._esc = self._discard = False
            elif b == SUB:
                self._buf.clear()
                self._discard = True
            elif b == FLAG:
                if self._buf and not self._discard:
                    raw = bytes(self._buf)
                    if len(raw) >= 3 and crc_ccitt(raw[:-2]) == int.from_bytes(raw[-2:], "big"):
                        frames.append(raw[:-2])
                    else:
                        self.bad_frames += 1
                self._buf.clear()
                self._esc = self._discard = False
            elif b in (XON, XOFF):
                continue
            elif b == ESC:
                self._esc = True
            else:
                if self._esc:
                    b ^= 0x20
                    self._esc = False
                self._buf.append(b)
        return frames


class NcpAsh:
    """ASH link, NCP side. `on_data(ezsp_frame)` gets every new DATA payload;
    `on_reset()` is called after a host RST has been answered."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_data: Callable[[bytes], Awaitable[None]],
        on_reset: Callable[[], Awaitable[None]],
        *,
        ack_timeout: float = 0.8,
        tries: int = 5,
    ) -> None:
        self._r = reader
        self._w = writer
        self._on_data = on_data
        self._on_reset = on_reset
        self._ack_timeout = ack_timeout
        self._tries = tries
        self._deframer = Deframer()
        self._tx_frm = 0  # number of the next DATA frame we send
        self._rx_ack = 0  # number of the next DATA frame we expect
        self._acked = asyncio.Event()
        self._nak = False
        self._outstanding: int | None = None
        self._txq: asyncio.Queue[bytes] = asyncio.Queue()
        self.connected = False  # True after the host's RST
        self.rx_frames = 0
        self.tx_frames = 0
        # fault injection (set from the rig's loop; each counts down)
        self.drop_host_data = 0  # host DATA frames lost on the wire (no ACK: the host retransmits)
        self.nak_host_data = 0  # host DATA frames answered with NAK (a NAK storm)
        self.ignore_host_acks = 0  # host ACKs lost (the NCP retransmits: the host sees duplicates)
        self.faults_done: dict[str, int] = {}

    # --- output -------------------------------------------------------
    def _write(self, wire: bytes) -> None:
        if not self._w.is_closing():
            self._w.write(wire)

    def send_rstack(self, code: int = RESET_SOFTWARE) -> None:
        self._reset_state()
        self._write(build(RSTACK, bytes((0x02, code))))

    def send_error(self, code: int = ERROR_EXCEEDED_MAX_ACK_TIMEOUTS) -> None:
        self._write(build(ERROR, bytes((0x02, code))))
        self.connected = False

    def inject(self, wire: bytes) -> None:
        """Raw bytes on the line (corrupted, truncated, over-long frames...)."""
        self._write(wire)

    def send_out_of_sequence(self, frame: bytes) -> None:
        """A DATA frame numbered past the one the host expects (its
        numbering is not advanced: the host must NAK and drop it)."""
        ctrl = (((self._tx_frm + 3) & 7) << 4) | self._rx_ack
        self._write(build(ctrl, randomise(frame)))

    def _count(self, what: str) -> None:
        self.faults_done[what] = self.faults_done.get(what, 0) + 1

    def send_data(self, frame: bytes) -> None:
        """Queue an EZSP frame for the host (sent in order, window 1)."""
        self._txq.put_nowait(frame)

    def _reset_state(self) -> None:
        self._tx_frm = 0
        self._rx_ack = 0
        self._outstanding = None
        while not self._txq.empty():
            self._txq.get_nowait()
        self._acked.set()

    # --- tasks ---------------------------------------------------------
    async def run(self) -> None:
        sender = asyncio.create_task(self._sender())
        try:
            while True:
                data = await self._r.read(512)
                if not data:
                    break
                for fr in self._deframer.feed(data):
                    await self._handle(fr)
        finally:
            sender.cancel()

    async def _sender(self) -> None:
        while True:
            frame = await self._txq.get()
            if not self.connected:
                continue
            frm = self._tx_frm
            self._outstanding = frm
            for attempt in range(self._tries):
                if self._outstanding is None:
                    break
                self._acked.clear()
                self._nak = False
                ctrl = (frm << 4) | (0x08 if attempt else 0) | self._rx_ack
                self._write(build(ctrl, randomise(frame)))
                self.tx_frames += 1
                try:
                    await asyncio.wait_for(self._acked.wait(), self._ack_timeout)
                except TimeoutError:
                    continue
                if self._outstanding is None:
                    break
            self._tx_frm = (frm + 1) & 7
            self._outstanding = None

    def _ack_number(self, ack: int) -> None:
        if self._outstanding is not None and ack == (self._outstanding + 1) & 7:
            self._outstanding = None
            self._acked.set()

    async def _handle(self, fr: bytes) -> None:
        c = fr[0]
        if c == RST:
            self._reset_state()
            self.connected = True
            self._write(build(RSTACK, bytes((0x02, RESET_SOFTWARE))))
            await self._on_reset()
            return
        if not self.connected:
            return
        if c & 0x80 == 0:  # DATA
            frm, retx, ack = c >> 4 & 7, c >> 3 & 1, c & 7
            if self.drop_host_data > 0:
                self.drop_host_data -= 1
                self._count("dropped")
                return
            if self.nak_host_data > 0 and frm == self._rx_ack:
                self.nak_host_data -= 1
                self._count("naked")
                self._write(build(0xA0 | self._rx_ack))
                return
            self._ack_number(ack)
            if frm == self._rx_ack:
                self._rx_ack = (frm + 1) & 7
                self._write(build(0x80 | self._rx_ack))
                self.rx_frames += 1
                await self._on_data(randomise(fr[1:]))
            elif retx:
                self._write(build(0x80 | self._rx_ack))  # duplicate: re-ACK
            else:
                self._write(build(0xA0 | self._rx_ack))
        elif c & 0xE0 == 0x80:  # ACK
            if self.ignore_host_acks > 0 and self._outstanding is not None:
                self.ignore_host_acks -= 1
                self._count("ack_lost")
                return
            self._ack_number(c & 7)
        elif c & 0xE0 == 0xA0:  # NAK: resend now
            self._nak = True
            self._acked.set()
