"""The ZigBee OTA Upgrade client of the rig's emulated meters (ESME, GSME,
PPMID), written on zigpy's OTA cluster definitions (independent of the
firmware's han/ota.py).

The meter's own memory (what it has downloaded, its offset, the version it
runs) lives in this object, so it survives the hub's power cuts: after one
the client asks for the next block from where it was. It restarts from zero
only when the hub offers a different image (version, size) than the one it
holds part of (`restarts`). When every byte is in it checks the image hash
(the last 32 bytes, SHA-256 over everything before them), then sends
Upgrade End (SUCCESS, or INVALID_IMAGE on a bad hash, after which it drops
the image). `activate()` (the meter's answer to GBCS CS06) switches to the
verified image's version: never to a partial or unverified one.

`send(frame) -> answer frame` is the transport: the emulated device's ZCL
request on cluster 0x0019, or a pipe to the firmware in unit tests.

`make_image(mf, it, version, body)` builds such an image with zigpy's
OTAImageHeader.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

from zigpy.ota.image import OTAImageHeader
from zigpy.zcl import foundation as f
from zigpy.zcl.clusters.general import Ota

CLUSTER = 0x0019
HASH_LEN = 32
NO_IMAGE_AVAILABLE = 0x98
INVALID_IMAGE = 0x96

Send = Callable[[bytes], Awaitable[bytes]]


def make_image(mf: int, it: int, version: int, body: bytes, stack: int = 2) -> bytes:
    """A ZigBee OTA file (zigpy's header) + the GBCS manufacturer image hash."""
    total = 56 + len(body) + HASH_LEN
    hdr = OTAImageHeader(
        upgrade_file_id=OTAImageHeader.MAGIC_VALUE,
        header_version=0x0100,
        header_length=56,
        field_control=0,
        manufacturer_id=mf,
        image_type=it,
        file_version=version,
        stack_version=stack,
        header_string="chub rig image".ljust(32, "\x00"),
        image_size=total,
    )
    head = hdr.serialize() + body
    return head + hashlib.sha256(head).digest()


def encode(tsn: int, name: str, **kw: object) -> bytes:
    cmd = getattr(Ota.ServerCommandDefs, name)
    return f.ZCLHeader.cluster(tsn, cmd.id).serialize() + cmd.schema(**kw).serialize()


def decode(frame: bytes) -> tuple[f.ZCLHeader, object]:
    """(header, the client-command schema instance) of a hub's answer; a
    Default Response as (header, (command id, status))."""
    hdr, rest = f.ZCLHeader.deserialize(frame)
    if hdr.frame_control.frame_type == f.FrameType.GLOBAL_COMMAND:
        return hdr, (rest[0], rest[1])
    for cmd in Ota.ClientCommandDefs:
        if cmd.id == hdr.command_id:
            v, _ = cmd.schema.deserialize(rest)
            return hdr, v
    raise ValueError(f"OTA command 0x{hdr.command_id:02X} unknown")


class OtaClient:
    def __init__(self, send: Send, manufacturer: int, image_type: int, version: int, max_data: int = 64) -> None:
        self.send = send
        self.mf = manufacturer
        self.it = image_type
        self.version = version  # what the meter runs
        self.max_data = max_data
        self.tsn = 0x80
        self.target: tuple[int, int] | None = None  # (file version, size) being downloaded
        self.image = bytearray()
        self.verified: int | None = None  # the version downloaded and checked, awaiting activation
        self.restarts = 0  # downloads started from offset 0
        self.blocks = 0
        self.block_bytes = 0
        self.ended: list[int] = []  # Upgrade End statuses sent
        self.end_answers: list[object] = []
        self.activated: list[int] = []

    def _tsn(self) -> int:
        self.tsn = (self.tsn + 1) & 0xFF
        return self.tsn

    @property
    def offset(self) -> int:
        return len(self.image)

    async def query(self) -> bool:
        """Query Next Image; True when the hub offers an image to download."""
        a = await self.send(encode(self._tsn(), "query_next_image", field_control=0, manufacturer_code=self.mf,
                                   image_type=self.it, current_file_version=self.version))
        _h, r = decode(a)
        if getattr(r, "status", None) != f.Status.SUCCESS:
            return False
        offer = (int(r.file_version), int(r.image_size))
        if offer == (self.verified, len(self.image)) and self.verified is not None:
            return False  # already have it, waiting for activation
        if offer != self.target:
            self.target = offer
            self.image = bytearray()
            self.verified = None
            self.restarts += 1
        return True

    async def fetch(self, max_blocks: int | None = None) -> bool:
        """Blocks from the current offset (at most max_blocks); True when the
        whole image is in."""
        assert self.target is not None
        v, size = self.target
        n = 0
        while len(self.image) < size and (max_blocks is None or n < max_blocks):
            a = await self.send(encode(self._tsn(), "image_block", field_control=0, manufacturer_code=self.mf,
                                       image_type=self.it, file_version=v, file_offset=len(self.image),
                                       maximum_data_size=self.max_data))
            _h, r = decode(a)
            if getattr(r, "status", None) != f.Status.SUCCESS:
                raise RuntimeError(f"image block refused: {r}")
            if int(r.file_offset) != len(self.image) or not r.image_data:
                raise RuntimeError(f"block at {int(r.file_offset)}, wanted {len(self.image)}")
            self.image.extend(r.image_data)
            self.blocks += 1
            self.block_bytes += len(r.image_data)
            n += 1
        return len(self.image) >= size

    def hash_ok(self) -> bool:
        img = bytes(self.image)
        return len(img) > HASH_LEN and hashlib.sha256(img[:-HASH_LEN]).digest() == img[-HASH_LEN:]

    async def end(self) -> object:
        """Upgrade End after a whole download: SUCCESS when the hash checks."""
        assert self.target is not None and len(self.image) == self.target[1]
        ok = self.hash_ok()
        st = 0 if ok else INVALID_IMAGE
        self.ended.append(st)
        a = await self.send(encode(self._tsn(), "upgrade_end", status=st, manufacturer_code=self.mf,
                                   image_type=self.it, file_version=self.target[0]))
        _h, r = decode(a)
        self.end_answers.append(r)
        if ok:
            self.verified = self.target[0]
        else:
            self.image = bytearray()
            self.target = None
        return r

    async def run(self, max_blocks: int | None = None) -> bool:
        """One wake-up's worth: query, fetch, end. True when it ended."""
        if self.target is None or len(self.image) < self.target[1] or self.verified is None:
            if not await self.query():
                return False
        if not await self.fetch(max_blocks):
            return False
        if self.verified is None:
            await self.end()
        return True

    def activate(self) -> bool:
        """The meter's action on CS06: run the verified image."""
        if self.verified is None or not self.hash_ok():
            return False
        self.version = self.verified
        self.activated.append(self.verified)
        self.verified = None
        self.target = None
        self.image = bytearray()
        return True
