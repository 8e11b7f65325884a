"""EmulatedDevice: a ZigBee SE device on the NCP emulator's simulated HAN.

It runs on the rig's asyncio loop. Messages from the hub arrive through the
emulator (`Node.on_unicast`; a sleepy device only gets them when it polls);
messages to the hub go out with `NcpEmulator.device_send` as APS frames,
fragmented (APS option FRAGMENT, groupId = count << 8 | index) when longer
than `frag_size`.

What it speaks (hil/devices/zcl.py):
* ZCL client: `read_hub_attributes(cluster, ids)` (e.g. the hub's Time);
* ZCL server: Read Attributes of its own `attributes[cluster]` (Basic by
  default); UNSUPPORTED_ATTRIBUTE / UNSUPPORTED_CLUSTER / Default Responses;
* Tunneling 0x0704 client: `open_tunnel()` (RequestTunnel to the hub),
  `tunnel_request(data)` (TransferData, then the hub's answer);
* Tunneling server: accepts the hub's RequestTunnel, and hands every
  TransferData the hub sends (on either tunnel) to the hook
  `on_tunnel_data(data) -> bytes | None` (async); a returned message goes
  back on the same tunnel. The default hook is `echo` (returns the data;
  the GSME's is `ignore`); the meters work replaces it with real ESME/GSME
  behaviour.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from hil.ncp.emulator import ApsFrame, NcpEmulator, Node

from . import zcl as Z

SE_PROFILE = 0x0109
BASIC = 0x0000
TIME = 0x000A
TunnelHook = Callable[[bytes], Awaitable["bytes | None"]]


async def echo(data: bytes) -> bytes:
    """The default tunnel hook: answer with the message itself."""
    return data


async def ignore(data: bytes) -> None:
    """The GSME's default hook: take the message, answer nothing (it never
    answers the hub's GET responses)."""
    return None


def basic_attributes(model: str, manufacturer: str = "chub rig") -> dict[int, tuple[int, object]]:
    return {0x0000: (0x20, 3), 0x0001: (0x20, 1), 0x0002: (0x20, 0x10), 0x0004: (Z.CHARSTR, manufacturer),
            0x0005: (Z.CHARSTR, model), 0x0007: (0x30, 0x03)}


class EmulatedDevice:
    frag_size = 64
    max_in = 1500  # the largest tunnel message it accepts

    def __init__(self, emu: NcpEmulator, node: Node, name: str = "device", *, endpoint: int = 1,
                 model: str = "EMU", poll_s: float = 0.2) -> None:
        self.emu = emu
        self.node = node
        self.name = name
        self.ep = endpoint
        self.poll_s = poll_s
        node.on_unicast = self._on_unicast
        self.attributes: dict[int, dict[int, tuple[int, object]]] = {BASIC: basic_attributes(model)}
        self.on_tunnel_data: TunnelHook = echo
        self.tunnel_id: int | None = None  # the tunnel the hub gave us (we are its client)
        self.served: dict[int, int] = {}  # tunnels the hub opened to us: id -> hub endpoint
        self.hub_time: dict[str, Any] | None = None
        self.frames: list[tuple[int, Z.Zcl]] = []  # every ZCL frame received (cluster, frame)
        self.errors: list[str] = []
        self.tunnel_in: list[bytes] = []  # tunnel messages the hook was given
        self._tsn = 0x40
        self._frag: dict[int, tuple[int, list[bytes]]] = {}
        self._waiters: dict[tuple[int, int], asyncio.Future[Z.Zcl]] = {}
        self._tunnel_answer: asyncio.Future[bytes] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._poller: asyncio.Task[None] | None = None

    # --- plumbing -------------------------------------------------------------
    def next_tsn(self) -> int:
        self._tsn = (self._tsn + 1) & 0xFF
        return self._tsn

    def _spawn(self, coro: Awaitable[Any]) -> None:
        t = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def send(self, cluster: int, frame: bytes, dst_ep: int = 1) -> bool:
        """Send one ZCL frame to the hub (APS-fragmented when long)."""
        if self.emu.ash is None:
            return False
        ok = True
        for group, chunk in Z.fragment(frame, self.frag_size):
            opts = 0x0040 if group < 0 else 0x0040 | Z.APS_FRAGMENT
            aps = ApsFrame(SE_PROFILE, cluster, self.ep, dst_ep, opts, max(group, 0), 0)
            ok = self.emu.device_send(self.node, aps, chunk) and ok
        return ok

    async def request(self, cluster: int, frame: bytes, timeout: float = 5.0) -> Z.Zcl:
        """Send a client -> server frame and wait for the hub's answer (same TSN)."""
        key = (cluster, frame[1])
        fut: asyncio.Future[Z.Zcl] = asyncio.get_running_loop().create_future()
        self._waiters[key] = fut
        try:
            if not self.send(cluster, frame):
                raise ConnectionError(f"{self.name}: not joined / message lost")
            try:
                return await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                raise TimeoutError(f"{self.name}: no answer to ZCL 0x{cluster:04x} tsn {frame[1]} "
                                   f"within {timeout} s") from None
        finally:
            self._waiters.pop(key, None)

    def start_polling(self) -> None:
        """A sleepy device polls its parent every poll_s."""
        if self.node.sleepy and self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll_loop())

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            if self.node.joined and self.emu.ash is not None:
                self.emu.poll(self.node)

    def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        for t in list(self._tasks):
            t.cancel()

    # --- receiving ------------------------------------------------------------
    def _on_unicast(self, node: Node, aps: ApsFrame, payload: bytes) -> None:
        if aps.options & Z.APS_FRAGMENT:
            idx = aps.group & 0xFF
            if idx == 0:
                self._frag[aps.cluster] = (aps.group >> 8, [payload])
                return None if aps.group >> 8 > 1 else self._spawn(self._handle(aps, payload))
            got = self._frag.get(aps.cluster)
            if got is None or len(got[1]) != idx:
                self.errors.append(f"fragment {idx} out of order")
                self._frag.pop(aps.cluster, None)
                return None
            got[1].append(payload)
            if len(got[1]) < got[0]:
                return None
            del self._frag[aps.cluster]
            payload = b"".join(got[1])
        self._spawn(self._handle(aps, payload))
        return None

    async def _handle(self, aps: ApsFrame, raw: bytes) -> None:
        try:
            z = Z.parse(raw)
        except ValueError as e:
            self.errors.append(str(e))
            return
        self.frames.append((aps.cluster, z))
        if z.from_server:
            fut = self._waiters.get((aps.cluster, z.tsn))
            if fut is not None and not fut.done():
                fut.set_result(z)
                return
        try:
            if aps.cluster == Z.TUNNELING and z.cluster_specific:
                r = await self._tunnel(z, aps.src_ep)
            else:
                r = self._serve(aps.cluster, z)
        except (ValueError, struct.error) as e:
            self.errors.append(f"{type(e).__name__}: {e}")
            r = Z.default_rsp(z, 0x80)  # MALFORMED_COMMAND
        if r is not None:
            self.send(aps.cluster, r, aps.src_ep)

    def _serve(self, cluster: int, z: Z.Zcl) -> bytes | None:
        if z.from_server:
            return None
        table = self.attributes.get(cluster)
        if table is None:
            return Z.default_rsp(z, Z.UNSUPPORTED_CLUSTER)
        if z.cluster_specific:
            return Z.default_rsp(z, Z.UNSUP_CLUSTER_COMMAND)
        if z.command != Z.READ_ATTRIBUTES:
            return Z.default_rsp(z, Z.UNSUP_GENERAL_COMMAND)
        if len(z.payload) % 2:
            raise ValueError("odd attribute id list")
        recs: list[tuple[int, int, int, object]] = []
        for (a,) in struct.iter_unpack("<H", z.payload):
            if a in table:
                recs.append((a, Z.SUCCESS, table[a][0], table[a][1]))
            else:
                recs.append((a, Z.UNSUPPORTED_ATTRIBUTE, 0, None))
        return Z.read_attributes_rsp(z.tsn, recs)

    async def _tunnel(self, z: Z.Zcl, hub_ep: int) -> bytes | None:
        p = z.payload
        if not z.from_server:  # the hub is the client of a tunnel we serve
            if z.command == Z.REQUEST_TUNNEL:
                proto, _manuf, flow, _max_in = struct.unpack("<BHBH", p)
                if proto != Z.GB_HRGP or flow:
                    return Z.request_tunnel_rsp(z.tsn, 0xFFFF, Z.TUNNEL_PROTOCOL_NOT_SUPPORTED, self.max_in)
                tid = next((t for t, ep in self.served.items() if ep == hub_ep), None)
                if tid is None:
                    tid = 0x100 + len(self.served)
                    self.served[tid] = hub_ep
                return Z.request_tunnel_rsp(z.tsn, tid, Z.TUNNEL_OK, self.max_in)
            if z.command == Z.TRANSFER_DATA_C2S:
                (tid,) = struct.unpack_from("<H", p)
                if tid not in self.served:
                    return Z.transfer_data_error(self.next_tsn(), tid, Z.NO_SUCH_TUNNEL, from_server=True)
                return await self._data(tid, p[2:], from_server=True)
            return Z.default_rsp(z, Z.UNSUP_CLUSTER_COMMAND)
        # the hub is the server of the tunnel we opened
        if z.command == Z.TRANSFER_DATA_S2C:
            (tid,) = struct.unpack_from("<H", p)
            if tid != self.tunnel_id:
                return Z.transfer_data_error(self.next_tsn(), tid, Z.NO_SUCH_TUNNEL, from_server=False)
            fut = self._tunnel_answer
            if fut is not None and not fut.done():
                fut.set_result(bytes(p[2:]))
                return None
            return await self._data(tid, p[2:], from_server=False)
        if z.command == Z.TRANSFER_DATA_ERROR_S2C:
            self.errors.append(f"TransferDataError from the hub: {p.hex()}")
            fut = self._tunnel_answer
            if fut is not None and not fut.done():
                fut.set_exception(ConnectionError(f"TransferDataError {p.hex()}"))
        return None

    async def _data(self, tid: int, data: bytes, from_server: bool) -> bytes | None:
        self.tunnel_in.append(bytes(data))
        answer = await self.on_tunnel_data(bytes(data))
        if answer is None:
            return None
        return Z.transfer_data(self.next_tsn(), tid, answer, from_server)

    # --- client side ----------------------------------------------------------
    async def read_hub_attributes(self, cluster: int, ids: list[int],
                                  timeout: float = 5.0) -> dict[int, tuple[int, int | None, object]]:
        z = await self.request(cluster, Z.read_attributes(self.next_tsn(), ids), timeout)
        if z.command != Z.READ_ATTRIBUTES_RSP or z.cluster_specific:
            raise ValueError(f"answer 0x{z.command:02X} to Read Attributes: {z.payload.hex()}")
        return Z.parse_read_attributes_rsp(z.payload)

    async def read_hub_time(self, timeout: float = 5.0) -> dict[str, Any]:
        """Read the hub's Time cluster: {time (UTCTime), status, unix}."""
        r = await self.read_hub_attributes(TIME, [0x0000, 0x0001], timeout)
        t, st = r[0x0000], r[0x0001]
        if t[0] != Z.SUCCESS or st[0] != Z.SUCCESS:
            raise ValueError(f"Time read failed: {r}")
        assert isinstance(t[2], int) and isinstance(st[2], int)
        self.hub_time = {"time": t[2], "status": st[2], "unix": None if t[2] == 0xFFFFFFFF else t[2] + 946684800}
        return self.hub_time

    async def open_tunnel(self, timeout: float = 5.0) -> int:
        z = await self.request(Z.TUNNELING, Z.request_tunnel(self.next_tsn(), max_in=self.max_in), timeout)
        if z.command != Z.REQUEST_TUNNEL_RSP or not z.cluster_specific:
            raise ValueError(f"answer 0x{z.command:02X} to RequestTunnel")
        tid, status = struct.unpack_from("<HB", z.payload)
        if status != Z.TUNNEL_OK:
            raise ConnectionRefusedError(f"RequestTunnel refused: status {status}")
        self.tunnel_id = tid
        return tid

    async def tunnel_request(self, data: bytes, timeout: float = 5.0) -> bytes:
        """TransferData on our tunnel to the hub, then the hub's answer."""
        if self.tunnel_id is None:
            await self.open_tunnel(timeout)
        assert self.tunnel_id is not None
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._tunnel_answer = fut
        try:
            if not self.send(Z.TUNNELING, Z.transfer_data(self.next_tsn(), self.tunnel_id, data, False)):
                raise ConnectionError(f"{self.name}: not joined / message lost")
            try:
                return await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                raise TimeoutError(f"{self.name}: no answer on tunnel {self.tunnel_id} within {timeout} s") from None
        finally:
            self._tunnel_answer = None

    def tunnel_push(self, data: bytes) -> bool:
        """A device-initiated message on a tunnel the hub opened to us (we
        are its server), else on our own tunnel to the hub."""
        if self.served:
            tid, ep = next(iter(self.served.items()))
            return self.send(Z.TUNNELING, Z.transfer_data(self.next_tsn(), tid, data, True), ep)
        return self.tunnel_send(data)

    def tunnel_send(self, data: bytes) -> bool:
        """TransferData on our tunnel without waiting for an answer."""
        assert self.tunnel_id is not None
        return self.send(Z.TUNNELING, Z.transfer_data(self.next_tsn(), self.tunnel_id, data, False))

    # --- life -----------------------------------------------------------------
    async def after_join(self) -> None:
        """First contact after joining: a Basic report (so the hub has RSSI
        and LQI), then read the hub's Time cluster."""
        self.start_polling()
        self.send(BASIC, Z.report_attributes(self.next_tsn(), [(0x0000, 0x20, 3)]))
        try:
            await self.read_hub_time()
        except (TimeoutError, ValueError, ConnectionError) as e:
            self.errors.append(f"Time read: {e!r}")


class Esme(EmulatedDevice):
    """Electricity meter: answers the hub's tunnel (echo by default)."""

    def __init__(self, emu: NcpEmulator, node: Node, name: str = "esme", **kw: Any) -> None:
        super().__init__(emu, node, name, model="EMU-ESME", **kw)


class Gsme(EmulatedDevice):
    """Gas meter (sleepy): opens its tunnel to the hub after joining."""

    def __init__(self, emu: NcpEmulator, node: Node, name: str = "gsme", **kw: Any) -> None:
        super().__init__(emu, node, name, model="EMU-GSME", **kw)
        self.on_tunnel_data = ignore

    async def after_join(self) -> None:
        await super().after_join()
        try:
            await self.open_tunnel()
        except (TimeoutError, ValueError, ConnectionError) as e:
            self.errors.append(f"open tunnel: {e!r}")


class Ihd(EmulatedDevice):
    def __init__(self, emu: NcpEmulator, node: Node, name: str = "ihd", **kw: Any) -> None:
        super().__init__(emu, node, name, model="EMU-IHD", **kw)
