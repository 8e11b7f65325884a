"""EZSP NCP emulator for the rig (protocol version 8, 13 or 14) with a
simulated HAN behind it: network formation, energy scan with per-channel
noise, install-code trust-centre joins, sleepy polling, link quality,
message loss and NCP resets.

The EZSP parameter coding here is written for the rig with `struct`,
independently of the firmware's `han.ezsp_frames`."""

from __future__ import annotations

import asyncio
import json
import os
import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from hil.ncp.ash import ERROR_EXCEEDED_MAX_ACK_TIMEOUTS, RESET_SOFTWARE, NcpAsh

# frame ids
ID = {
    "version": 0x00, "addEndpoint": 0x02, "networkInit": 0x17, "networkState": 0x18,
    "stackStatusHandler": 0x19, "startScan": 0x1A, "scanCompleteHandler": 0x1C,
    "formNetwork": 0x1E, "leaveNetwork": 0x20, "permitJoining": 0x22,
    "trustCenterJoinHandler": 0x24, "getEui64": 0x26, "getNodeId": 0x27,
    "getNetworkParameters": 0x28, "sendUnicast": 0x34, "sendReply": 0x39, "messageSentHandler": 0x3F,
    "incomingMessageHandler": 0x45, "energyScanResultHandler": 0x48,
    "getConfigurationValue": 0x52, "setConfigurationValue": 0x53, "setPolicy": 0x55,
    "invalidCommand": 0x58, "setInitialSecurityState": 0x68, "clearTransientLinkKeys": 0x6B,
    "broadcastNextNetworkKey": 0x73, "broadcastNetworkKeySwitch": 0x74,
    "setExtendedTimeout": 0x7E, "getValue": 0xAA, "setValue": 0xAB,
    "addTransientLinkKey": 0xAF, "importTransientKey": 0x111, "removeDevice": 0xA8,
    "lookupEui64ByNodeId": 0x61, "getKeyTableEntry": 0x71, "findKeyTableEntry": 0x75,
    "exportLinkKeyByEui": 0x10D, "importLinkKey": 0x10E, "addOrUpdateKeyTableEntry": 0x66,
    # CBKE (the crypto is hil.ncp.cbke.CbkeNcp, set as NcpEmulator.cbke)
    "generateCbkeKeys": 0xA4, "generateCbkeKeysHandler": 0x9E, "calculateSmacs": 0x9F,
    "calculateSmacsHandler": 0xA0, "clearTemporaryDataMaybeStoreLinkKey": 0xA1, "getCertificate": 0xA5,
    "generateCbkeKeys283k1": 0xE8, "generateCbkeKeysHandler283k1": 0xE9, "calculateSmacs283k1": 0xEA,
    "calculateSmacsHandler283k1": 0xEB, "getCertificate283k1": 0xEC, "clearTemporaryDataMaybeStoreLinkKey283k1": 0xEE,
}
_V8_ONLY = ("addTransientLinkKey", "getKeyTableEntry", "findKeyTableEntry", "addOrUpdateKeyTableEntry")
_V13_ON = ("importTransientKey", "exportLinkKeyByEui", "importLinkKey")
NAME = {v: k for k, v in ID.items()}

TC_ALLOW_JOINS = 0x01
# trustCenterJoinHandler status (EmberDeviceUpdate) and decision (EmberJoinDecision)
SECURED_REJOIN, UNSECURED_JOIN, DEVICE_LEFT, UNSECURED_REJOIN = 0, 1, 2, 3
USE_PRECONFIGURED_KEY, DENY_JOIN = 0, 2
DENIED_NODE_ID = 0x7000  # the short id a refused device had picked
TC_INSTALL_CODE_ONLY = 0x10


def aes_mmo(data: bytes) -> bytes:
    """AES-128 Matyas-Meyer-Oseas hash (ZigBee)."""
    n = len(data)
    msg = data + b"\x80"
    while len(msg) % 16 != 14:
        msg += b"\x00"
    msg += (n * 8).to_bytes(2, "big")
    h = bytes(16)
    for i in range(0, len(msg), 16):
        blk = msg[i:i + 16]
        e = Cipher(algorithms.AES(h), modes.ECB()).encryptor()
        c = e.update(blk) + e.finalize()
        h = bytes(a ^ b for a, b in zip(c, blk, strict=True))
    return h


def install_code_key(code: bytes) -> bytes:
    """Link key from an install code without CRC (CRC-16/X-25 appended LE)."""
    crc = 0xFFFF
    for b in code:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    crc ^= 0xFFFF
    return aes_mmo(code + crc.to_bytes(2, "little"))


@dataclass
class ApsFrame:
    profile: int
    cluster: int
    src_ep: int
    dst_ep: int
    options: int = 0x0140
    group: int = 0
    sequence: int = 0

    def pack(self) -> bytes:
        return struct.pack("<HHBBHHB", self.profile, self.cluster, self.src_ep, self.dst_ep,
                           self.options, self.group, self.sequence)

    @classmethod
    def unpack(cls, b: bytes) -> ApsFrame:
        return cls(*struct.unpack("<HHBBHHB", b[:11]))


# on_unicast(node, aps, payload) -> reply payload (sent back with the
# clusters/endpoints swapped) or None
UnicastHandler = Callable[["Node", ApsFrame, bytes], "bytes | None"]


_APP_KEY_REQUEST_POLICY = 0x06
_ALLOW_APP_KEY_REQUESTS = 0x61

@dataclass
class Node:
    eui: bytes  # 8 bytes, display (big-endian) order
    link_key: bytes  # what the device will present (install-code derived)
    sleepy: bool = False
    rssi: int = -60
    lqi: int = 220
    on_unicast: UnicastHandler | None = None
    node_id: int | None = None
    joined: bool = False
    ext_pan_id: bytes | None = None  # the device's memory of the network it joined
    received: list[tuple[ApsFrame, bytes]] = field(default_factory=list)
    pending: list[tuple[int, ApsFrame, int, bytes]] = field(default_factory=list)
    app_keys: dict[bytes, bytes] = field(default_factory=dict)  # partner EUI -> application link key


@dataclass
class Han:
    noise: dict[int, int] = field(default_factory=lambda: {c: -90 for c in range(11, 27)})
    loss: float = 0.0  # probability a unicast is lost (messageSentHandler failure)
    # targeted radio loss: a unicast to a device for which drop(node, aps,
    # payload) is true is lost the same way (e.g. one GET answer)
    drop: Callable[[Node, ApsFrame, bytes], bool] | None = None
    seed: int = 1
    formed: bool = False
    channel: int = 0
    pan_id: int = 0
    ext_pan_id: bytes = bytes(8)
    network_key: bytes = bytes(16)
    next_network_key: bytes | None = None
    key_seq: int = 0
    nodes: dict[bytes, Node] = field(default_factory=dict)
    # the TC's APS link key table (NVM): a device's transient key moves here
    # when it joins with it, and is dropped when the device is removed
    key_table: dict[bytes, bytes] = field(default_factory=dict)
    # where the NVM is kept between runs of the rig (None: in memory only):
    # the network (formed, channel, PAN ids, keys), the key table, the next
    # short id, and the devices' own memory of the network they joined
    # (EUI -> short id), as a real EFR32 keeps its flash and a real meter its
    # own across a power cycle of the hub
    nvm_path: Path | None = None
    members: dict[bytes, int] = field(default_factory=dict)  # joined devices (their NVM): EUI -> short id
    next_node_id: int = 0x1000

    NVM_VERSION = 1

    def save(self) -> None:
        """Write the NVM file (atomically: a rig killed mid-write keeps the old one)."""
        if self.nvm_path is None:
            return
        self.members = {n.eui: n.node_id for n in self.nodes.values() if n.joined and n.node_id is not None} | {
            e: i for e, i in self.members.items() if e not in self.nodes}
        d = {"version": self.NVM_VERSION, "formed": self.formed, "channel": self.channel, "pan_id": self.pan_id,
             "ext_pan_id": self.ext_pan_id.hex(), "network_key": self.network_key.hex(), "key_seq": self.key_seq,
             "key_table": {e.hex(): k.hex() for e, k in self.key_table.items()},
             "members": {e.hex(): i for e, i in self.members.items()}, "next_node_id": self.next_node_id}
        tmp = self.nvm_path.with_name(self.nvm_path.name + ".tmp")
        tmp.write_text(json.dumps(d, indent=1))
        os.replace(tmp, self.nvm_path)

    def load(self) -> bool:
        """Read the NVM file if there is one; False if none (a blank NCP)."""
        if self.nvm_path is None or not self.nvm_path.exists():
            return False
        d = json.loads(self.nvm_path.read_text())
        if d.get("version") != self.NVM_VERSION:
            raise ValueError(f"{self.nvm_path}: NVM version {d.get('version')}, expected {self.NVM_VERSION}")
        self.formed = bool(d["formed"])
        self.channel, self.pan_id, self.key_seq = d["channel"], d["pan_id"], d["key_seq"]
        self.ext_pan_id = bytes.fromhex(d["ext_pan_id"])
        self.network_key = bytes.fromhex(d["network_key"])
        self.key_table = {bytes.fromhex(e): bytes.fromhex(k) for e, k in d["key_table"].items()}
        self.members = {bytes.fromhex(e): i for e, i in d["members"].items()}
        self.next_node_id = d["next_node_id"]
        return True


class NcpEmulator:
    def __init__(self, version: int = 13, han: Han | None = None, *,
                 eui: bytes = bytes.fromhex("00DB1234567890A2"),
                 stack_version: int = 0x7450, reset_on_connect: bool = False,
                 indirect_timeout: float = 2.0) -> None:
        if version not in (8, 13, 14):
            raise ValueError("emulated EZSP versions: 8, 13, 14")
        self.version = version
        self.han = han or Han()
        self.eui = eui
        self.stack_version = stack_version
        self.reset_on_connect = reset_on_connect
        self.indirect_timeout = indirect_timeout
        self.rng = random.Random(self.han.seed)
        self.ash: NcpAsh | None = None
        self.config: dict[int, int] = {}
        self.policy: dict[int, int] = {0: 0}  # trust-centre policy: no joins until set
        self.values: dict[int, bytes] = {}
        self.endpoints: dict[int, tuple[int, int]] = {}
        self.transient_keys: dict[bytes, bytes] = {}
        self.extended_timeout: dict[bytes, bool] = {}
        self.security: tuple[int, bytes, bytes, int, bytes] | None = None
        self.network_up = False
        self.permit_until = 0.0
        self.log: list[str] = []  # names of commands received
        self.denied: list[bytes] = []  # EUIs of refused join attempts (DENY_JOIN reported)
        self.removed: list[bytes] = []  # EUIs the host removed (removeDevice)
        self.fragment_acks: list[tuple[int, int]] = []  # (node id, fragment index) the host acked
        # fault hook: called with a command's name once the NCP has executed
        # it, before its response goes to the host (e.g. to cut the host's power there)
        self.on_command_done: Callable[[str], None] | None = None
        self._seq = 0
        self._aps_seq = 0
        self.han.load()
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.host_lost_at: float | None = None  # time.monotonic() of the last host disconnect
        # CBKE commands (hil.ncp.cbke.CbkeNcp) when the NCP holds certificates; None: none
        self.cbke: Any = None

    # --- transport ---------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, host, port)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ash = self.ash = NcpAsh(reader, writer, self._on_data, self._on_reset)
        if self.reset_on_connect:
            ash.connected = True
            ash.send_rstack(RESET_SOFTWARE)
        try:
            await ash.run()
        finally:
            writer.close()
            if self.ash is ash:
                # the host is gone (a power cut takes the NCP with it): no
                # radio until a host connects again
                self.ash = None
                self.host_lost_at = time.monotonic()

    def _spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _on_reset(self) -> None:
        self.network_up = False
        self.permit_until = 0.0

    # --- faults --------------------------------------------------------------
    def reset_ncp(self, code: int = RESET_SOFTWARE) -> None:
        """Unexpected NCP reboot: RSTACK without a host RST; network down."""
        self.network_up = False
        if self.ash:
            self.ash.connected = True
            self.ash.send_rstack(code)

    def send_error(self, code: int = ERROR_EXCEEDED_MAX_ACK_TIMEOUTS) -> None:
        if self.ash:
            self.ash.send_error(code)

    # --- EZSP coding ---------------------------------------------------------
    def _st(self, status: int) -> bytes:
        return struct.pack("<I", status) if self.version >= 14 else bytes((status,))

    def _tag(self, tag: int) -> bytes:
        return struct.pack("<H", tag) if self.version >= 14 else bytes((tag,))

    def _emit(self, seq: int, fid: int, params: bytes, fc: int, legacy: bool = False) -> None:
        if legacy:
            frame = bytes((seq, fc, fid)) + params
        else:
            frame = bytes((seq, fc, 0x01)) + struct.pack("<H", fid) + params
        if self.ash is None:  # no host: the callback has nowhere to go
            return
        self.ash.send_data(frame)

    def callback(self, name: str, params: bytes) -> None:
        self._emit(self._seq, ID[name], params, 0x90)
        self._seq = (self._seq + 1) & 0xFF

    def _ok(self) -> int:
        return 0

    async def _on_data(self, frame: bytes) -> None:
        if len(frame) == 4 and frame[2] == 0x00 and frame[1] & 0x80 == 0:
            legacy, seq, fid, p = True, frame[0], 0, frame[3:]
        elif len(frame) >= 5 and frame[2] & 0x03 == 0x01:
            legacy, seq, fid, p = False, frame[0], frame[3] | frame[4] << 8, frame[5:]
        else:
            return
        name = NAME.get(fid)
        if name in _V13_ON and self.version < 13 or name in _V8_ONLY and self.version >= 13:
            name = None
        handler = getattr(self, "_c_" + name, None) if name else None
        if handler is None and name and self.cbke is not None:
            handler = getattr(self.cbke, "_c_" + name, None)
        if handler is None:
            self.log.append(f"?0x{fid:04X}")
            self._emit(seq, ID["invalidCommand"], self._st(0x31), 0x80, legacy)
            return
        self.log.append(name)  # type: ignore[arg-type]
        try:
            rsp = handler(p)
        except (struct.error, IndexError, ValueError):
            self._emit(seq, ID["invalidCommand"], self._st(0x34), 0x80, legacy)  # bad parameter
            return
        if self.on_command_done is not None:
            self.on_command_done(name)  # type: ignore[arg-type]
        self._emit(seq, fid, rsp, 0x80, legacy)

    # --- commands (each returns the response parameters) ---------------------
    def _c_version(self, p: bytes) -> bytes:
        return struct.pack("<BBH", self.version, 2, self.stack_version)

    def _c_getConfigurationValue(self, p: bytes) -> bytes:
        return self._st(0) + struct.pack("<H", self.config.get(p[0], 0))

    def _c_setConfigurationValue(self, p: bytes) -> bytes:
        cid, val = struct.unpack("<BH", p[:3])
        self.config[cid] = val
        return self._st(0)

    def _c_setPolicy(self, p: bytes) -> bytes:
        self.policy[p[0]] = p[1]
        return self._st(0)

    def _c_setValue(self, p: bytes) -> bytes:
        self.values[p[0]] = p[2:2 + p[1]]
        return self._st(0)

    def _c_getValue(self, p: bytes) -> bytes:
        v = self.values.get(p[0], b"")
        return self._st(0) + bytes((len(v),)) + v

    def _c_getEui64(self, p: bytes) -> bytes:
        return self.eui[::-1]

    def _c_getNodeId(self, p: bytes) -> bytes:
        return struct.pack("<H", 0 if self.network_up else 0xFFFE)

    def _c_networkState(self, p: bytes) -> bytes:
        return bytes((2 if self.network_up else 0,))

    def _c_addEndpoint(self, p: bytes) -> bytes:
        ep, prof, dev = struct.unpack("<BHH", p[:5])
        self.endpoints[ep] = (prof, dev)
        return self._st(0)

    def _net_params(self) -> bytes:
        h = self.han
        return h.ext_pan_id[::-1] + struct.pack("<HBBBHBI", h.pan_id, 8, h.channel, 0, 0, 0, 1 << h.channel)

    def _c_getNetworkParameters(self, p: bytes) -> bytes:
        if not self.network_up:
            return self._st(0x17 if self.version >= 14 else 0x93) + bytes((0,)) + bytes(20)
        return self._st(0) + bytes((1,)) + self._net_params()

    def _c_setInitialSecurityState(self, p: bytes) -> bytes:
        if len(p) < 43:
            raise ValueError("short")
        bm = struct.unpack("<H", p[:2])[0]
        self.security = (bm, p[2:18], p[18:34], p[34], p[35:43][::-1])
        return self._st(0)

    def _stack_status(self, up: bool) -> None:
        if self.version >= 14:
            code = 0x15 if up else 0x16
        else:
            code = 0x90 if up else 0x91
        self.callback("stackStatusHandler", self._st(code))

    def _c_formNetwork(self, p: bytes) -> bytes:
        if self.security is None:
            return self._st(0x0C if self.version >= 14 else 0x70)  # INVALID_STATE / INVALID_CALL
        h = self.han
        h.ext_pan_id = p[:8][::-1]
        h.pan_id, _tx, h.channel = struct.unpack("<HBB", p[8:12])
        h.network_key = self.security[2]
        h.key_seq = self.security[3]
        h.formed = True
        # a new network (new ids, new key): no device is a member of it yet
        h.members.clear()
        for n in h.nodes.values():
            n.joined, n.node_id = False, None
        h.save()
        self.network_up = True
        self._spawn(self._later(0.01, lambda: self._stack_status(True)))
        return self._st(0)

    def _c_networkInit(self, p: bytes) -> bytes:
        if not self.han.formed:
            return self._st(0x17 if self.version >= 14 else 0x93)  # NOT_JOINED
        self.network_up = True
        self._spawn(self._later(0.01, lambda: self._stack_status(True)))
        return self._st(0)

    def _c_leaveNetwork(self, p: bytes) -> bytes:
        self.network_up = False
        self.han.formed = False
        self.han.key_table.clear()
        self.han.save()
        self._spawn(self._later(0.01, lambda: self._stack_status(False)))
        return self._st(0)

    def _c_startScan(self, p: bytes) -> bytes:
        stype, mask, _dur = struct.unpack("<BIB", p[:6])
        if stype != 0:
            return self._st(0x35 if self.version < 14 else 0x21)
        chans = [c for c in range(11, 27) if mask & (1 << c)]

        def results() -> None:
            for c in chans:
                self.callback("energyScanResultHandler", struct.pack("<Bb", c, self.han.noise.get(c, -90)))
            self.callback("scanCompleteHandler", bytes((0,)) + self._st(0))

        self._spawn(self._later(0.01, results))
        return self._st(0)

    def _c_permitJoining(self, p: bytes) -> bytes:
        d = p[0]
        loop = asyncio.get_running_loop()
        self.permit_until = 0.0 if d == 0 else (float("inf") if d == 255 else loop.time() + d)
        return self._st(0)

    def _c_addTransientLinkKey(self, p: bytes) -> bytes:
        if len(p) < 24:
            raise ValueError("short")
        self.transient_keys[p[:8][::-1]] = p[8:24]
        return self._st(0)

    def _c_importTransientKey(self, p: bytes) -> bytes:
        if len(p) < 25:
            raise ValueError("short")
        self.transient_keys[p[:8][::-1]] = p[8:24]
        return struct.pack("<I", 0)

    def _c_clearTransientLinkKeys(self, p: bytes) -> bytes:
        self.transient_keys.clear()
        return b""

    def _c_setExtendedTimeout(self, p: bytes) -> bytes:
        self.extended_timeout[p[:8][::-1]] = bool(p[8])
        return self._st(0) if self.version >= 14 else b""

    def _c_broadcastNextNetworkKey(self, p: bytes) -> bytes:
        self.han.next_network_key = p[:16]
        return self._st(0)

    def _c_broadcastNetworkKeySwitch(self, p: bytes) -> bytes:
        h = self.han
        if h.next_network_key is None:
            return self._st(0x70 if self.version < 14 else 0x0C)
        h.network_key, h.next_network_key = h.next_network_key, None
        h.key_seq = (h.key_seq + 1) & 0xFF
        h.save()
        return self._st(0)

    def _c_sendReply(self, p: bytes) -> bytes:
        """The host's reply to a received message; an empty one with
        groupId 0xFF00 | index is its APS ack of a fragment."""
        dest = struct.unpack("<H", p[:2])[0]
        aps = ApsFrame.unpack(p[2:13])
        n = p[13]
        if len(p) < 14 + n:
            raise ValueError("short")
        if aps.options & 0x8000 and aps.group >> 8 == 0xFF and n == 0:
            self.fragment_acks.append((dest, aps.group & 0xFF))
        return self._st(0)

    def _c_removeDevice(self, p: bytes) -> bytes:
        """removeDevice(destShort, destLong, targetLong): the target is told
        to leave; the stack reports it gone (trustCenterJoinHandler
        DEVICE_LEFT)."""
        if len(p) < 18:
            raise ValueError("short")
        target = p[10:18][::-1]
        node = self.han.nodes.get(target)
        if not self.network_up:
            return self._st(0x93 if self.version < 14 else 0x17)
        self.removed.append(target)
        self.han.key_table.pop(target, None)
        left = node is not None and node.joined
        nid = 0
        if node is not None and node.joined:
            nid = node.node_id or 0
            node.joined = False
            node.node_id = None
        self.han.members.pop(target, None)
        self.han.save()
        if left:
            self._spawn(self._later(0.01, lambda: self.callback(
                "trustCenterJoinHandler", struct.pack("<H", nid) + target[::-1]
                + bytes((DEVICE_LEFT, USE_PRECONFIGURED_KEY)) + struct.pack("<H", 0))))
        return self._st(0)

    def _c_lookupEui64ByNodeId(self, p: bytes) -> bytes:
        nid = struct.unpack("<H", p[:2])[0]
        node = next((x for x in self.han.nodes.values() if x.joined and x.node_id == nid), None)
        if node is None or not self.network_up:
            return self._st(0x01) + bytes(8)  # EMBER_ERR_FATAL / SL_STATUS_FAIL
        return self._st(0) + node.eui[::-1]

    def _c_findKeyTableEntry(self, p: bytes) -> bytes:
        """v8: index of the link key for an EUI-64, 0xFF if none."""
        eui = p[:8][::-1]
        if len(p) < 9:
            raise ValueError("short")
        keys = list(self.han.key_table)
        return bytes((keys.index(eui) if eui in keys and p[8] else 0xFF,))

    def _c_getKeyTableEntry(self, p: bytes) -> bytes:
        """v8: EmberKeyStruct (bitmask, type, key, out/in counters, sequence, partner)."""
        keys = list(self.han.key_table.items())
        i = p[0]
        if i >= len(keys):
            return bytes((0xB6,)) + bytes(36)  # TABLE_ENTRY_ERASED
        eui, key = keys[i]
        # bitmask: has partner EUI-64 | has incoming frame counter; type 1: TC link key
        return bytes((0,)) + struct.pack("<HB", 0x0018, 1) + key + struct.pack("<IIB", 0, 0, 0) + eui[::-1]

    def _c_importLinkKey(self, p: bytes) -> bytes:
        """v13+: importLinkKey(index, EUI-64, key): a TC link key into the key table."""
        if len(p) < 25:
            raise ValueError("short")
        self.han.key_table[p[1:9][::-1]] = p[9:25]
        self.han.save()
        return struct.pack("<I", 0)

    def _c_addOrUpdateKeyTableEntry(self, p: bytes) -> bytes:
        """v8: addOrUpdateKeyTableEntry(EUI-64, linkKey, key)."""
        if len(p) < 25:
            raise ValueError("short")
        self.han.key_table[p[:8][::-1]] = p[9:25]
        self.han.save()
        return bytes((0,))

    def _c_exportLinkKeyByEui(self, p: bytes) -> bytes:
        """v13+: the security manager's link key for an EUI-64."""
        if len(p) < 8:
            raise ValueError("short")
        eui = p[:8][::-1]
        key = self.han.key_table.get(eui)
        keys = list(self.han.key_table)
        st = 0 if key is not None else 0x0E  # SL_STATUS_NOT_FOUND
        idx = keys.index(eui) if key is not None else 0xFF
        key = key or bytes(16)
        meta = struct.pack("<HIIH", 0x0018, 0, 0, 0)
        if self.version >= 14:
            ctx = struct.pack("<BBH", 2, idx, 0) + eui[::-1] + struct.pack("<BBI", 0, 0, 0)  # 2: TC link key
            return struct.pack("<I", st) + ctx + key + meta
        return key + bytes((idx,)) + meta + struct.pack("<I", st)

    def _c_sendUnicast(self, p: bytes) -> bytes:
        mtype, dest = struct.unpack("<BH", p[:3])
        aps = ApsFrame.unpack(p[3:14])
        tl = 2 if self.version >= 14 else 1
        tag = int.from_bytes(p[14:14 + tl], "little")
        n = p[14 + tl]
        payload = p[15 + tl:15 + tl + n]
        if len(payload) != n:
            raise ValueError("short")
        self._aps_seq = (self._aps_seq + 1) & 0xFF
        aps.sequence = self._aps_seq
        if not self.network_up:
            return self._st(0x93 if self.version < 14 else 0x17) + bytes((0,))
        node = next((x for x in self.han.nodes.values() if x.joined and x.node_id == dest), None)
        if node is not None and node.sleepy:
            node.pending.append((dest, aps, tag, payload))
            self._spawn(self._indirect_expiry(node, aps.sequence))
        else:
            self._spawn(self._later(0.005, lambda: self._deliver(node, dest, aps, tag, payload)))
        return self._st(0) + bytes((aps.sequence,))

    # --- HAN simulation ------------------------------------------------------
    async def _later(self, delay: float, fn: Callable[[], None]) -> None:
        await asyncio.sleep(delay)
        fn()

    def _sent(self, dest: int, aps: ApsFrame, tag: int, ok: bool) -> None:
        fail = 0x0C02 if self.version >= 14 else 0x66  # DELIVERY_FAILED
        st = self._st(0 if ok else fail)
        body = struct.pack("<BH", 0, dest) + aps.pack() + self._tag(tag)
        if self.version >= 14:
            self.callback("messageSentHandler", st + body + b"\x00")
        else:
            self.callback("messageSentHandler", body + st + b"\x00")

    def _deliver(self, node: Node | None, dest: int, aps: ApsFrame, tag: int, payload: bytes) -> None:
        drop = self.han.drop
        lost = node is None or (drop is not None and drop(node, aps, payload)) or self.rng.random() < self.han.loss
        self._sent(dest, aps, tag, not lost)
        if lost or node is None:
            return
        node.received.append((aps, payload))
        if node.on_unicast is not None:
            reply = node.on_unicast(node, aps, payload)
            if reply is not None:
                back = ApsFrame(aps.profile, aps.cluster, aps.dst_ep, aps.src_ep, 0x0020, 0, 0)
                self.device_send(node, back, reply)

    async def _indirect_expiry(self, node: Node, seq: int) -> None:
        await asyncio.sleep(self.indirect_timeout)
        for item in list(node.pending):
            if item[1].sequence == seq:
                node.pending.remove(item)
                self._sent(item[0], item[1], item[2], False)

    def poll(self, node: Node) -> int:
        """A sleepy device polls its parent: deliver what is held for it."""
        items, node.pending = node.pending, []
        for dest, aps, tag, payload in items:
            self._deliver(node, dest, aps, tag, payload)
        return len(items)

    def add_node(self, node: Node) -> Node:
        """Put a device on the simulated HAN; a device the NVM lists as a
        member of the network comes back joined with its short id (it kept
        its own network memory while the rig was down)."""
        known = self.han.nodes.get(node.eui)
        self.han.nodes[node.eui] = node
        if known is not node and not node.joined and self.han.formed and node.eui in self.han.members:
            node.joined = True
            node.node_id = self.han.members[node.eui]
            node.ext_pan_id = self.han.ext_pan_id
        return node

    def join(self, node: Node, node_id: int | None = None) -> bool:
        """The device tries to join through the trust centre. It succeeds
        only if joining is permitted, the TC policy allows joins and the TC
        holds a transient key for its EUI equal to the device's key."""
        self.add_node(node)
        loop = asyncio.get_running_loop()
        pol = self.policy.get(0, 0)
        if not self.network_up or loop.time() >= self.permit_until or not pol & TC_ALLOW_JOINS:
            return False
        key = self.transient_keys.get(node.eui)
        if key is None or key != node.link_key:
            # joining is open but the TC holds no (matching) key: EmberZNet
            # reports the attempt with decision DENY_JOIN
            self.callback("trustCenterJoinHandler", struct.pack("<H", DENIED_NODE_ID) + node.eui[::-1]
                          + bytes((UNSECURED_JOIN, DENY_JOIN)) + struct.pack("<H", 0))
            self.denied.append(node.eui)
            return False
        if node_id is None:
            node_id = self.han.next_node_id
            self.han.next_node_id += 1
        node.node_id = node_id
        node.joined = True
        node.ext_pan_id = self.han.ext_pan_id
        self.han.key_table[node.eui] = key
        self.han.save()
        self.callback("trustCenterJoinHandler",
                      struct.pack("<H", node_id) + node.eui[::-1] + bytes((1, 0)) + struct.pack("<H", 0))
        return True

    def rejoin(self, node: Node) -> bool:
        """A device that lost its parent looks for its network by extended
        PAN id and does a trust-centre rejoin with its TC link key (no
        permit-joining needed): it succeeds if a network with that id is up
        and the TC's key table holds the device's key. The TC reports it as
        an unsecured rejoin (or refuses it with DENY_JOIN)."""
        self.add_node(node)
        h = self.han
        if not self.network_up or node.ext_pan_id is None or node.ext_pan_id != h.ext_pan_id:
            return False
        if h.key_table.get(node.eui) != node.link_key:
            self.callback("trustCenterJoinHandler", struct.pack("<H", DENIED_NODE_ID) + node.eui[::-1]
                          + bytes((UNSECURED_REJOIN, DENY_JOIN)) + struct.pack("<H", 0))
            self.denied.append(node.eui)
            return False
        node.node_id = h.members.get(node.eui) or h.next_node_id
        if node.node_id == h.next_node_id:
            h.next_node_id += 1
        node.joined = True
        h.save()
        self.callback("trustCenterJoinHandler", struct.pack("<H", node.node_id) + node.eui[::-1]
                      + bytes((UNSECURED_REJOIN, USE_PRECONFIGURED_KEY)) + struct.pack("<H", 0))
        return True

    def request_app_key(self, node: Node, partner: bytes) -> bytes | None:
        """A joined device's APS Request Key for an application (partner) link
        key with the device whose EUI is partner (SE 1.2 partner link key
        exchange). EZSP's APP_KEY_REQUEST_POLICY decides: ALLOW_APP_KEY_REQUESTS
        (0x61) makes a random key and sends it to both partners; DENY (0x60)
        ignores the request, as does a partner not joined. The key both got,
        or None."""
        other = self.han.nodes.get(partner)
        if (self.policy.get(_APP_KEY_REQUEST_POLICY) != _ALLOW_APP_KEY_REQUESTS or not self.network_up
                or not node.joined or other is None or not other.joined or other is node):
            return None
        key = bytes(self.rng.getrandbits(8) for _ in range(16))
        node.app_keys[partner] = key
        other.app_keys[node.eui] = key
        return key

    def device_send(self, node: Node, aps: ApsFrame, payload: bytes) -> bool:
        """A joined device sends a unicast to the coordinator."""
        # the NCP acknowledges a device's unicast only while its stack is up
        # (host connected, network resumed)
        if (not node.joined or node.node_id is None or self.ash is None or not self.network_up
                or self.rng.random() < self.han.loss):
            return False
        self._aps_seq = (self._aps_seq + 1) & 0xFF
        aps.sequence = self._aps_seq
        lv = bytes((len(payload),)) + payload
        if self.version >= 14:
            body = (bytes((0,)) + aps.pack() + struct.pack("<H", node.node_id) + node.eui[::-1]
                    + struct.pack("<BBBbI", 0xFF, 0xFF, node.lqi, node.rssi, 0) + lv)
        else:
            body = (bytes((0,)) + aps.pack() + struct.pack("<BbHBB", node.lqi, node.rssi, node.node_id, 0xFF, 0xFF)
                    + lv)
        self.callback("incomingMessageHandler", body)
        return True
