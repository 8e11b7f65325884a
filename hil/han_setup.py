"""The HAN side of the emulated system: an EZSP NCP emulator on the hub's NCP
UART and emulated devices (ESME, GSME, IHD, PPMID) that join through it.

`attach(system)` is called by `EmulatedSystem.start()` before the hub powers
on; the result is `system.han`. Each connection the hub opens on its NCP UART
is a fresh NCP boot (a new ASH session; configuration, policies, transient
keys and permit-join are RAM and start empty), while the simulated network
(formed or not, channel, PAN ids, network key, key table, joined nodes)
persists like a real NCP's NVM: across hub reboots in memory, and across
runs of the rig in `WORKDIR/ncp_nvm.json` when the system has a workdir
(`chub sim` on kept flash resumes the same network, and the devices that had
joined it come back as members). `after_ready()` (called once the hub is
READY) provisions the demo HAN for `chub sim`: the four devices are added to
the CHF Device Log through the local port and powered on, so they join (or,
members already, make contact again).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .devices import EmulatedDevice, Esme, Gsme, Ihd
from .ncp.emulator import Han, NcpEmulator, Node, install_code_key


def crc_x25(data: bytes) -> bytes:
    """CRC-16/X-25 of an install code, low byte first (appended to the code)."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return (crc ^ 0xFFFF).to_bytes(2, "little")


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    eui: str  # 16 hex digits, display order
    dev_type: int  # GBCS Device Log type: 0 GSME, 1 ESME, 5 PPMID, 6 IHD (Type 2)
    install_code: bytes  # printed on the device (16 bytes, without CRC)
    sleepy: bool = False
    device_code: bytes | None = None  # what the device really holds, if not install_code

    @property
    def install_code_hex(self) -> str:
        """What the installer types in: the code with its CRC."""
        return (self.install_code + crc_x25(self.install_code)).hex().upper()


# The emulated devices of the default system (docs/han.md).
DEVICES: dict[str, DeviceSpec] = {
    d.name: d
    for d in (
        DeviceSpec("esme", "70B3D5C1E5E00001", 1, bytes.fromhex("E5E0C0DE00112233445566778899AABB")),
        DeviceSpec("gsme", "70B3D5C1647E0002", 0, bytes.fromhex("647EC0DE0102030405060708090A0B0C"), sleepy=True),
        DeviceSpec("ihd", "70B3D5C11D000003", 6, bytes.fromhex("1D00C0DEF0E1D2C3B4A5968778695A4B")),
        DeviceSpec("ppmid", "70B3D5C1FF1D0004", 5, bytes.fromhex("FF1DC0DE13579BDF2468ACE0FEDCBA98")),
    )
}

QUIET_CHANNEL = 20
NVM_FILE = "ncp_nvm.json"  # the emulated NCP's NVM (and the devices' memberships) in the workdir


class EmulatedHan:
    """The NCP emulator on the rig's "ncp" UART plus the emulated devices.
    Methods are called from the test/CLI thread; they run on the rig's loop."""

    def __init__(self, system: Any, version: int = 13, seed: int = 1, demo: bool = True,
                 retry_s: float = 2.0, attempts: int = 3) -> None:
        self.system = system
        self.rig = system.rig
        # a noisy band with one quiet channel (20), so the energy scan matters
        noise = {c: -70 - (c * 7) % 11 for c in range(11, 27)}
        noise[QUIET_CHANNEL] = -97
        workdir = getattr(system, "workdir", None)
        nvm = Path(workdir) / NVM_FILE if workdir is not None else None
        self.emu = NcpEmulator(version, Han(noise=noise, seed=seed, nvm_path=nvm))
        self.demo = demo
        self.retry_s = retry_s
        self.attempts = attempts
        self.specs: dict[str, DeviceSpec] = dict(DEVICES)
        self.nodes: dict[str, Node] = {}
        self.dev: dict[str, EmulatedDevice] = {}
        self.state: dict[str, dict[str, Any]] = {}
        self.connections = 0
        self.hard_resets = 0
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._resume: set[str] = set()  # members from the NVM that have not made contact yet
        for spec in self.specs.values():
            self._make_node(spec)
        self.rig.attach("ncp", self._serve)
        self.rig.on_reset(self._on_reset_line)

    # --- the NCP -----------------------------------------------------------
    @property
    def commands(self) -> list[str]:
        """Names of every EZSP command the NCP received, across boots."""
        return self.emu.log

    def _ncp_boot(self) -> None:
        e = self.emu
        e.config.clear()
        e.policy = {0: 0}
        e.values.clear()
        e.endpoints.clear()
        e.transient_keys.clear()
        e.extended_timeout.clear()
        e.security = None
        e.network_up = False
        e.permit_until = 0.0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._ncp_boot()
        await self.emu._serve(reader, writer)

    def _on_reset_line(self, peripheral: str) -> None:
        if peripheral == "ncp":
            self.hard_resets += 1
            self._ncp_boot()

    def reset_ncp(self) -> None:
        """The NCP reboots by itself mid-session (unsolicited RSTACK)."""

        async def go() -> None:
            self.emu.reset_ncp()

        self.rig.call(go())

    def fault(self, kind: str, n: int = 1) -> None:
        """Inject an ASH fault on the hub's NCP link (docs/han.md, faults):
        "corrupt" (a DATA frame with a bad CRC), "truncated", "overlong" (a
        frame longer than ASH allows), "out_of_sequence" (a DATA frame with
        the wrong number), "garbage" (noise without flags), "drop" (the next
        n host DATA frames are lost), "nak" (a NAK storm on the next n host
        DATA frames), "ack_lost" (the next n host ACKs are lost, the NCP
        retransmits), "error" (an ASH ERROR frame: the NCP failed)."""
        import os as _os

        from .ncp.ash import build, randomise

        async def go() -> None:
            a = self.emu.ash
            if a is None:
                raise RuntimeError("the hub is not connected to the NCP")
            # an EZSP networkState response-shaped payload (seq 0xEE): never a
            # pending command of the hub's
            payload = bytes((0xEE, 0x80, 0x01, 0x18, 0x00, 0x02))
            for _ in range(n if kind in ("corrupt", "truncated", "overlong", "out_of_sequence", "garbage") else 1):
                if kind == "corrupt":
                    w = bytearray(build(0x00, randomise(payload)))
                    w[-2] ^= 0x5A  # a CRC byte (the frame stays delimited)
                    if w[-2] in (0x7E, 0x7D, 0x11, 0x13, 0x18, 0x1A):
                        w[-2] ^= 0x01
                    a.inject(bytes(w))
                elif kind == "truncated":
                    a.inject(bytes((0x7E, 0x21, 0x7E)))
                elif kind == "overlong":
                    a.inject(build(0x00, randomise(_os.urandom(200))))
                elif kind == "out_of_sequence":
                    a.send_out_of_sequence(payload)
                elif kind == "garbage":
                    a.inject(bytes(b for b in _os.urandom(64) if b not in (0x7E, 0x1A, 0x18)))
            if kind == "drop":
                a.drop_host_data += n
            elif kind == "nak":
                a.nak_host_data += n
            elif kind == "ack_lost":
                a.ignore_host_acks += n
            elif kind == "error":
                a.send_error()
            elif kind not in ("corrupt", "truncated", "overlong", "out_of_sequence", "garbage"):
                raise ValueError(f"unknown fault {kind!r}")

        self.rig.call(go())

    @property
    def ash_faults(self) -> dict[str, int]:
        """Faults the NCP side has applied on the current link."""
        a = self.emu.ash
        return dict(a.faults_done) if a is not None else {}

    @property
    def network(self) -> dict[str, Any]:
        h = self.emu.han
        return {"formed": h.formed, "up": self.emu.network_up, "channel": h.channel, "pan_id": h.pan_id,
                "ext_pan_id": h.ext_pan_id.hex().upper(), "version": self.emu.version}

    # --- devices -------------------------------------------------------------
    def _make_node(self, spec: DeviceSpec) -> Node:
        # radio figures by arrival, 5 dB / 10 LQI apart, repeating every 8
        # devices (an int8 RSSI and a u8 LQI for any number of devices)
        k = len(self.nodes) % 8
        node = Node(eui=bytes.fromhex(spec.eui), link_key=install_code_key(spec.device_code or spec.install_code),
                    sleepy=spec.sleepy, rssi=-55 - 5 * k, lqi=230 - 10 * k)
        self.nodes[spec.name] = node
        self.state[spec.name] = {"state": "off", "attempts": 0}
        cls = {0: Gsme, 1: Esme, 6: Ihd}.get(spec.dev_type, EmulatedDevice)
        self.dev[spec.name] = cls(self.emu, node, spec.name)
        self.emu.add_node(node)  # a member of the network in the NVM comes back joined
        if node.joined:
            self._resume.add(spec.name)
        return node

    def add_device(self, spec: DeviceSpec) -> None:
        """Another emulated device (e.g. one holding the wrong install code)."""
        self.specs[spec.name] = spec
        self._make_node(spec)

    @property
    def devices(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, spec in self.specs.items():
            n = self.nodes[name]
            out[name] = {"eui": spec.eui, "type": spec.dev_type, "sleepy": spec.sleepy,
                         "joined": n.joined, "node_id": n.node_id, **self.state[name]}
        return out

    def _joinable(self) -> bool:
        e = self.emu
        return e.network_up and e.ash is not None and asyncio.get_running_loop().time() < e.permit_until

    def _attempt(self, node: Node) -> bool:
        """One join through the trust centre (a refused device is reported to
        the host with decision DENY_JOIN by the NCP emulator itself)."""
        return self.emu.join(node)

    async def _resume_contact(self, name: str, timeout: float) -> None:
        """A device that was a member of the network when the rig stopped
        powers on with its network memory: once the network is up again it
        makes contact (the Basic report and Time read of after_join)."""
        st = self.state[name]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        st["state"] = "resuming"
        while not (self.emu.network_up and self.emu.ash is not None):
            if loop.time() > deadline:
                st["state"] = "no network"
                return
            await asyncio.sleep(0.05)
        if not self.nodes[name].joined:  # the hub formed a new network meanwhile
            st["state"] = "orphaned"
            return
        st["state"] = "joined"
        await self.dev[name].after_join()

    async def _life(self, name: str, timeout: float) -> None:
        if name in self._resume:
            self._resume.discard(name)
            await self._resume_contact(name, timeout)
            return
        node, st = self.nodes[name], self.state[name]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        st["state"] = "searching"
        while not node.joined:
            if loop.time() > deadline or st["attempts"] >= self.attempts:
                st["state"] = "gave up"
                return
            if not self._joinable():
                await asyncio.sleep(0.1)
                continue
            st["attempts"] += 1
            if self._attempt(node):
                break
            st["state"] = "refused"
            await asyncio.sleep(self.retry_s)
        st["state"] = "joined"
        await asyncio.sleep(0.05)
        # a Basic report (the hub gets RSSI/LQI), then the hub's Time read;
        # the GSME also opens its tunnel to the hub
        await self.dev[name].after_join()

    def rejoin(self, name: str, timeout: float = 15.0) -> bool:
        """The device, orphaned (its hub replaced), tries trust-centre
        rejoins of the network it remembers every retry_s until one works
        or timeout; after it, the device's after-join traffic."""

        async def go() -> bool:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            node = self.nodes[name]
            while not (self.emu.ash is not None and self.emu.rejoin(node)):
                if loop.time() > deadline:
                    self.state[name]["state"] = "gave up"
                    return False
                await asyncio.sleep(min(self.retry_s, 0.5))
            self.state[name]["state"] = "joined"
            await self.dev[name].after_join()
            return True

        return bool(self.rig.call(go(), timeout=timeout + 10))

    def power_on(self, name: str, timeout: float = 30.0) -> None:
        """The device powers on and tries to join (`attempts` tries, `retry_s` apart)."""
        if name not in self.specs:
            raise KeyError(f"no emulated device {name!r}; known: {', '.join(self.specs)}")

        async def go() -> None:
            old = self._tasks.get(name)
            if old is not None and not old.done():
                return
            if self.nodes[name].joined and name not in self._resume:
                self.state[name]["state"] = "joined"
                return
            self.state[name]["attempts"] = 0
            self._tasks[name] = asyncio.get_running_loop().create_task(self._life(name, timeout))

        self.rig.call(go())

    def send(self, name: str, payload: bytes, cluster: int = 0x0000) -> bool:
        """A joined device sends a unicast to the hub."""
        from .ncp.emulator import ApsFrame

        async def go() -> bool:
            return self.emu.device_send(self.nodes[name], ApsFrame(0x0109, cluster, 1, 1), payload)

        return bool(self.rig.call(go()))

    def device(self, name: str) -> EmulatedDevice:
        """The emulated device (its coroutines run on the rig loop: use run())."""
        return self.dev[name]

    def run(self, coro: Any, timeout: float = 30) -> Any:
        """Run a device coroutine on the rig's loop from the test/CLI thread."""
        return self.rig.call(coro, timeout=timeout)

    def unknown_join(self, eui: str) -> str:
        """A device that is not in the Device Log tries to join (once)."""
        node = Node(eui=bytes.fromhex(eui), link_key=bytes(16))

        async def go() -> str:
            if not self._joinable():
                return "no joinable network"
            return "joined" if self._attempt(node) else "refused"

        return str(self.rig.call(go()))

    def wait_joined(self, names: list[str], timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.nodes[n].joined for n in names):
                return True
            time.sleep(0.05)
        return False

    def wait_hub_joined(self, client: Any, names: list[str], timeout: float = 15.0) -> bool:
        """Until the hub's Device Log lists these devices as joined (and
        heard since the hub started)."""
        want = {self.specs[n].eui for n in names}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = client.call("device_log_list")["entries"]
            if want <= {r[0] for r in rows if r[5] == "joined"}:
                return True
            time.sleep(0.1)
        return False

    # --- the demo HAN for `chub sim` -----------------------------------------
    def after_ready(self) -> None:
        if not self.demo:
            return
        from chubcore.localport import LocalPortClient

        log = self.system.log
        try:
            with LocalPortClient(self.system.local_port_url, timeout=5) as c:
                for spec in DEVICES.values():
                    r = c.call("device_log_add", eui=spec.eui, type=spec.dev_type,
                               install_code=spec.install_code_hex, join_timeout=3600)
                    log.write("han", f"device_log_add {spec.name} {spec.eui}: {r}")
                for name in DEVICES:
                    self.power_on(name)
                # wait only for the devices that can get there: members of
                # the network (they make contact) and those with a join
                # window open on the hub; one the hub holds joined from an
                # earlier network that the NCP no longer has cannot rejoin
                # without a window (remove and add it again)
                rows = {r[0]: r[5] for r in c.call("device_log_list")["entries"]}
                can = [n for n, spec in DEVICES.items()
                       if self.nodes[n].joined or rows.get(spec.eui) == "join window open"]
                for n in DEVICES:
                    if n not in can:
                        log.write("han", f"demo HAN: {n} cannot join: the hub lists it as "
                                         f"{rows.get(DEVICES[n].eui)!r} with no join window, and it is not a "
                                         "member of the NCP's network")
                ok = self.wait_hub_joined(c, can, 20) and len(can) == len(DEVICES)
            log.write("han", f"demo HAN: {'all four devices joined' if ok else 'not every device joined'}")
        except Exception as e:  # noqa: BLE001 - the demo must not stop the system coming up
            log.write("han", f"demo HAN provisioning failed: {e!r}")

    def stop(self) -> None:
        async def go() -> None:
            for t in self._tasks.values():
                t.cancel()
            for d in self.dev.values():
                d.stop()
            await self.emu.stop()

        with contextlib.suppress(Exception):
            self.rig.call(go(), timeout=5)


def attach(system: Any, version: int | None = None) -> EmulatedHan:
    """Put the NCP emulator on the system's rig. `system.han_version` (default
    13) and `system.han_demo` (default True) are read when present."""
    ver = version if version is not None else getattr(system, "han_version", 13)
    return EmulatedHan(system, version=ver, demo=getattr(system, "han_demo", True))
