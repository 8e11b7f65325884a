# The ZigBee OTA Upgrade cluster (0x0019) server: meter firmware images
# (ESME, GSME, PPMID) kept in flash (until the slot's next image replaces
# it), served in
# blocks over the HAN (docs/ota-han.md).
#
# An image is a ZigBee OTA file (OTA header first) whose last 32 bytes are
# the manufacturer's image hash, SHA-256 over everything before it (GBCS
# 11.2: OTA header, upgrade image, hash). It arrives in chunks (`put`,
# offsets strictly in order) into a 4 KB RAM stage that is appended to the
# file `<store>/ota/<slot>.img` a whole stage at a time; the file's size on
# LittleFS is the durable part (an append commits whole at close), so after
# a power cut the intake resumes from `status()`'s "durable" offset, never
# from zero. When the last byte is in, the hash and the header are checked
# once (one read of the file) and the image becomes "ready"; a bad image is
# deleted and refused. KV "ota" holds, per slot, {st, size, eui: [targets],
# mf, it, v}: written at begin, once at ready/bad, and per device at upgrade
# end ({eh: [version, code]} under "dev") - never per block.
#
# The server answers, for a device named in a ready image's targets:
#   Query Next Image Request (0x01) -> Query Next Image Response (0x02):
#     SUCCESS with the image's ids and size when its version differs from
#     the device's current one, else NO_IMAGE_AVAILABLE; the version the
#     device runs is kept (status) and, when it changed, the device's Basic
#     versions are read again (han.on_device_joined)
#   Image Block Request (0x03) -> Image Block Response (0x05): up to
#     MAX_BLOCK bytes (one unfragmented APS frame) read from flash at the
#     offset asked; ABORT for an image the hub does not hold ready
#   Upgrade End Request (0x06): SUCCESS -> Upgrade End Response (0x07)
#     with upgrade time 0xFFFFFFFF (wait: activation comes as GBCS CS06,
#     routed to the device) and CCS08 0x8F8A; any other status -> CCS08
#     0x8F89 and a Default Response
#   Image Page Request (0x04), Query Device Specific File (0x08) and
#   anything else: Default Response UNSUP_CLUSTER_COMMAND
# A block request's offset is the client's: the hub keeps no per-block
# state, so a device resumes where it was after a cut of either side.
# on_transfer(eui_bytes, version_bytes, code) is called at upgrade end (the
# hub wires it to the CHF's CCS08 alert).
import hashlib
import os

from micropython import const

from han import zcl as Z
from han.zcl_servers import default_rsp, reply, zcl_time
from log import log

CLUSTER_OTA = const(0x0019)
# commands, client -> server
QUERY_NEXT_IMAGE = const(0x01)
IMAGE_BLOCK = const(0x03)
_IMAGE_PAGE = const(0x04)
UPGRADE_END = const(0x06)
# commands, server -> client
IMAGE_NOTIFY = const(0x00)
QUERY_NEXT_IMAGE_RSP = const(0x02)
IMAGE_BLOCK_RSP = const(0x05)
UPGRADE_END_RSP = const(0x07)
# OTA statuses
ABORT = const(0x95)
INVALID_IMAGE = const(0x96)
NO_IMAGE_AVAILABLE = const(0x98)

OTA_MAGIC = const(0x0BEEF11E)
_HEADER_MIN = const(56)  # the OTA header's mandatory fields
HASH_LEN = const(32)
MAX_BLOCK = const(47)  # 64-byte ZCL frame (messaging.FRAG_SIZE) - 3 header - 14 block response fields
STAGE = const(4096)  # intake bytes held in RAM between appends (one flash block)
MAX_IMAGE = const(1 << 20)
PUT_MAX = const(1024)  # bytes per ota_put (a local-port body is at most 4 KB)
_SLOTS = ("esme", "gsme", "ppmid")  # CS05b (ESME, GSME), CS05c (PPMID)
_SLOT_TYPES = b"\x01\x00\x05"  # the Device Log type of each slot's devices: ESME, GSME, PPMID
_WAIT = const(0xFFFFFFFF)  # upgrade time: wait for the activation command


class OtaError(ValueError):
    pass


def _u16(b, o):
    return b[o] | (b[o + 1] << 8)


def _u32(b, o):
    return b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)


def _le(out, v, n):
    for _ in range(n):
        out.append(v & 0xFF)
        v >>= 8
    return out


def _block_end(size):
    """The file offset where the LittleFS block holding byte `size` of a
    file ends: block 0 holds STAGE bytes, block i STAGE minus its CTZ
    skip-list pointers (4 * (ctz(i) + 1) bytes). Appending up to there and
    no further makes every append fill a block, so no partly written block
    is copied (erased) again at the next append."""
    end, i = STAGE, 0
    while end <= size:
        i += 1
        n, z = i, 0
        while not n & 1:
            n >>= 1
            z += 1
        end += STAGE - 4 * (z + 1)
    return end


def parse_header(b):
    """OTA file header -> (manufacturer, image type, file version, header
    length, total image size); OtaError for a bad one."""
    if len(b) < _HEADER_MIN or _u32(b, 0) != OTA_MAGIC:
        raise OtaError("not an OTA file (magic)")
    hlen = _u16(b, 6)
    if hlen < _HEADER_MIN or hlen > len(b):
        raise OtaError("OTA header length %d" % hlen)
    return _u16(b, 10), _u16(b, 12), _u32(b, 14), hlen, _u32(b, 52)


class OtaServer:
    """store: the hub's Store (KV "ota", the image folder); han: the
    Coordinator (zcl_send, next_tsn: Image Notify); utc(): unix seconds
    (the Upgrade End Response's current time); running: the dict of the
    file version each device said it runs, held by the caller so that it
    outlives this server (the wiring drops an idle server: idle())."""

    def __init__(self, store, han, utc, on_transfer=None, running=None):
        self.kv = store.kv("ota")
        self.dir = store.root + "/ota"
        try:
            os.mkdir(self.dir)
        except OSError:
            pass
        self.han = han
        self.utc = utc
        self.on_transfer = on_transfer
        self._stage = None  # (slot, bytearray) while an intake is open
        self.offsets = {}  # eui hex -> next offset the device asked since this server was loaded (RAM, for status)
        self.running = {} if running is None else running  # eui hex -> file version the device said it runs
        self.blocks = 0
        for slot in _SLOTS:
            m = self.kv.get(slot)
            if m is not None and m["st"] == "loading" and self._size(slot) == m["size"]:
                # cut between the last append and the check: check it now
                try:
                    self._check(slot, m)
                except OtaError:
                    pass

    # -- images --

    def _path(self, slot):
        return "%s/%s.img" % (self.dir, slot)

    def _size(self, slot):
        try:
            return os.stat(self._path(slot))[6]
        except OSError:
            return 0

    def meta(self, slot):
        return self.kv.get(slot)

    def begin(self, slot, euis, size):
        """A new image for slot, for the devices euis (hex): any image the
        slot held is dropped."""
        if slot not in _SLOTS:
            raise OtaError("slot must be one of %s" % (_SLOTS,))
        if not _HEADER_MIN + HASH_LEN <= size <= MAX_IMAGE:
            raise OtaError("image size %d out of range" % size)
        try:
            os.remove(self._path(slot))
        except OSError:
            pass
        self._stage = None
        v = os.statvfs(self.dir)
        free = v[0] * v[3]
        if size + 2 * STAGE > free:  # the image, the file's metadata and KV room
            if slot in self.kv:
                self.kv.delete(slot)  # the slot's old image is gone
            raise OtaError("no room for %d bytes: %d free" % (size, free))
        self.kv.set(slot, {"st": "loading", "size": size, "eui": list(euis)})

    def wan_action(self, kind, method, v):
        """CS05b (kind 1) / CS05c (kind 2) from the CHF: han.ota_wan, loaded
        on the first one."""
        from han import ota_wan

        return ota_wan.action(self, self.han.device_log, kind, method, v)

    def durable(self, slot):
        """Bytes of slot's image that survive a power cut."""
        m = self.meta(slot)
        if m is None:
            return 0
        return m["size"] if m["st"] == "ready" else self._size(slot)

    def put(self, slot, offset, data):
        """Bytes at offset of the image being loaded (offsets in order, from
        durable(slot) after a restart) -> durable(slot) after the call;
        at the last byte the image is checked (OtaError when bad)."""
        m = self.meta(slot)
        if m is None or m["st"] != "loading":
            raise OtaError("no image loading in %s" % slot)
        st = self._stage
        if st is None or st[0] != slot:
            st = self._stage = (slot, bytearray())
        buf = st[1]
        end = self._size(slot) + len(buf)
        if offset != end:
            raise OtaError("offset %d, expected %d" % (offset, end))
        if end + len(data) > m["size"]:
            raise OtaError("past the image's %d bytes" % m["size"])
        done = end + len(data) == m["size"]
        edge = _block_end(end - len(buf))
        cut = edge - end  # the part of data that fills the file's last block
        if 0 <= cut < len(data):
            buf.extend(memoryview(data)[:cut])
            self._append(slot, buf)
            buf.extend(memoryview(data)[cut:])
        else:
            buf.extend(data)
        if done or len(buf) >= STAGE:
            self._append(slot, buf)
        if done:
            self._stage = None
            self._check(slot, m)
        return self.durable(slot)

    def _append(self, slot, buf):
        with open(self._path(slot), "ab") as f:
            f.write(buf)
        buf[:] = b""

    def _check(self, slot, m):
        h = hashlib.sha256()
        n = m["size"] - HASH_LEN
        head = None
        buf = bytearray(512)
        with open(self._path(slot), "rb") as f:
            left = n
            while left:
                k = f.readinto(buf) if left >= 512 else f.readinto(memoryview(buf)[:left])
                if head is None:
                    head = bytes(buf[:k])
                h.update(memoryview(buf)[:k])
                left -= k
            want = f.read(HASH_LEN)
        try:
            if h.digest() != want:
                raise OtaError("image hash mismatch")
            mf, it, v, _hl, total = parse_header(head)
            if total != m["size"]:
                raise OtaError("OTA header says %d bytes, image has %d" % (total, m["size"]))
        except OtaError as e:
            log("ota", "image %s refused: %s" % (slot, e))
            try:
                os.remove(self._path(slot))
            except OSError:
                pass
            self.kv.set(slot, {"st": "bad", "size": m["size"], "eui": m["eui"]})
            raise
        m = dict(m)
        m.update({"st": "ready", "mf": mf, "it": it, "v": v})
        self.kv.set(slot, m)
        log("ota", "image %s ready: mf=0x%04X type=0x%04X v=0x%08X %d bytes" % (slot, mf, it, v, m["size"]))

    def image_for(self, eh, mf=None, it=None):
        """(slot, meta) of the ready image for device eh (matching the ids
        when given), or None."""
        for slot in _SLOTS:
            m = self.kv.get(slot)
            if m is not None and m["st"] == "ready" and eh in m["eui"]:
                if mf is None or (m["mf"] == mf and m["it"] == it):
                    return slot, m
        return None

    async def notify(self, eh, ep=1):
        """Image Notify (payload type 0: jitter only) to device eh; a
        sleepy device gets it when it polls. -> True when sent."""
        f = Z.Header(IMAGE_NOTIFY, self.han.next_tsn(), Z.FT_CLUSTER, 1, True).encode()
        f.extend(b"\x00\x64")
        try:
            await self.han.zcl_send(eh, ep, CLUSTER_OTA, f)
        except OSError:
            return False
        return True

    def idle(self):
        """Nothing here that only RAM holds is in use: no intake bytes
        staged, and every ready image's devices ended their transfer of it
        (Upgrade End). The wiring drops an idle server (app.Hub.ota_idle);
        the next request loads it again from flash and KV."""
        st = self._stage
        if st is not None and st[1]:
            return False
        done = self.kv.get("dev") or {}
        for slot in _SLOTS:
            m = self.kv.get(slot)
            if m is not None and m["st"] == "ready":
                for eh in m["eui"]:
                    d = done.get(eh)
                    if d is None or d[0] != m["v"]:
                        return False
        return True

    def status(self):
        imgs = {}
        for slot in _SLOTS:
            m = self.kv.get(slot)
            if m is not None:
                m = dict(m)
                m["durable"] = self.durable(slot)
                imgs[slot] = m
        devs = {}
        done = self.kv.get("dev") or {}
        for eh in set(self.offsets) | set(self.running) | set(done):
            d = done.get(eh)
            devs[eh] = {"offset": self.offsets.get(eh), "running": self.running.get(eh),
                        "transferred": d[0] if d else None, "code": d[1] if d else None}
        return {"images": imgs, "devices": devs, "blocks_served": self.blocks}

    # -- the ZCL server --

    async def __call__(self, eh, src_ep, h, p):
        return self.handle(eh, h, p)

    def handle(self, eh, h, p):
        if h.direction:
            return None
        if h.frame_type != Z.FT_CLUSTER:
            return default_rsp(h, Z.UNSUP_GENERAL_COMMAND if h.command_id != Z.DEFAULT_RSP else 0)
        if h.manufacturer is not None:
            return default_rsp(h, Z.UNSUP_MANUF_CLUSTER_COMMAND)
        c = h.command_id
        try:
            if c == QUERY_NEXT_IMAGE:
                return self._query(eh, h, p)
            if c == IMAGE_BLOCK:
                return self._block(eh, h, p)
            if c == UPGRADE_END:
                return self._end(eh, h, p)
        except (IndexError, OtaError):
            return default_rsp(h, Z.MALFORMED_COMMAND)
        return default_rsp(h, Z.UNSUP_CLUSTER_COMMAND)

    def _query(self, eh, h, p):
        if len(p) < 9 + (2 if p[0] & 1 else 0):
            raise OtaError("short")
        mf, it, cur = _u16(p, 1), _u16(p, 3), _u32(p, 5)
        prev = self.running.get(eh)
        self.running[eh] = cur
        if prev is not None and prev != cur and self.han is not None:
            # it runs another version now: read its Basic versions again
            # (the Device Log's, CCS05/CCS06)
            self.han.on_device_joined(eh)
        r = self.image_for(eh, mf, it)
        if r is None or r[1]["v"] == cur:
            return reply(h, QUERY_NEXT_IMAGE_RSP, bytes((NO_IMAGE_AVAILABLE,)), Z.FT_CLUSTER)
        m = r[1]
        out = bytearray((Z.SUCCESS,))
        _le(out, mf, 2)
        _le(out, it, 2)
        _le(out, m["v"], 4)
        _le(out, m["size"], 4)
        return reply(h, QUERY_NEXT_IMAGE_RSP, out, Z.FT_CLUSTER)

    def _block(self, eh, h, p):
        fc = p[0]
        if len(p) < 14 + (8 if fc & 1 else 0) + (2 if fc & 2 else 0):
            raise OtaError("short")
        mf, it, v, off, want = _u16(p, 1), _u16(p, 3), _u32(p, 5), _u32(p, 9), p[13]
        r = self.image_for(eh, mf, it)
        if r is None or r[1]["v"] != v or off >= r[1]["size"] or want == 0:
            return reply(h, IMAGE_BLOCK_RSP, bytes((ABORT,)), Z.FT_CLUSTER)
        slot, m = r
        n = min(want, MAX_BLOCK, m["size"] - off)
        out = bytearray((Z.SUCCESS,))
        _le(out, mf, 2)
        _le(out, it, 2)
        _le(out, v, 4)
        _le(out, off, 4)
        out.append(n)
        with open(self._path(slot), "rb") as f:
            f.seek(off)
            out.extend(f.read(n))
        self.offsets[eh] = off + n
        self.blocks += 1
        return reply(h, IMAGE_BLOCK_RSP, out, Z.FT_CLUSTER)

    def _end(self, eh, h, p):
        if len(p) < 9:
            raise OtaError("short")
        status, mf, it, v = p[0], _u16(p, 1), _u16(p, 3), _u32(p, 5)
        r = self.image_for(eh, mf, it)
        if r is None or r[1]["v"] != v:
            return default_rsp(h, ABORT)
        dev = dict(self.kv.get("dev") or {})
        dev[eh] = [v, status]
        self.kv.set("dev", dev)
        if self.on_transfer is not None:
            self.on_transfer(eh, v.to_bytes(4, "big"), 0 if status == Z.SUCCESS else status)
        if status != Z.SUCCESS:
            return default_rsp(h, Z.SUCCESS)
        out = bytearray()
        _le(out, mf, 2)
        _le(out, it, 2)
        _le(out, v, 4)
        _le(out, zcl_time(self.utc()), 4)
        _le(out, _WAIT, 4)
        return reply(h, UPGRADE_END_RSP, out, Z.FT_CLUSTER)


# Local-port commands (fn(hub, req): docs/local-port.md). The hub loads this
# module on the first one (firmware/lazy.py); hub.ota_server() builds the
# server then.

async def ota_status(hub, req):
    return hub.ota_server().status()


async def ota_begin(hub, req):
    # {slot, euis: [hex], size} -> {durable}
    from local_args import int_arg

    euis = req.get("euis")
    if not isinstance(euis, list) or not 1 <= len(euis) <= 8:
        raise ValueError("'euis' must be a list of 1..8 device EUIs")
    from ids import eui_hex

    euis = [eui_hex(e) for e in euis]
    slot = req.get("slot")
    if slot in _SLOTS:  # a slot's image is for devices of its type (begin refuses another slot)
        want = _SLOT_TYPES[_SLOTS.index(slot)]
        for eh in euis:
            if hub.device_log.type_of(eh) != want:
                raise ValueError("%s is not in the Device Log as %s" % (eh, slot.upper()))
    o = hub.ota_server()
    o.begin(slot, euis, int_arg(req, "size", 0, MAX_IMAGE, 0))
    return {"durable": 0}


async def ota_put(hub, req):
    # {slot, offset, data: hex} -> {durable, state}
    from local_args import hex_arg, int_arg

    o = hub.ota_server()
    slot = req.get("slot")
    data = hex_arg(req, "data", PUT_MAX, "")
    d = o.put(slot, int_arg(req, "offset", 0, MAX_IMAGE, 0), data)
    m = o.meta(slot)
    return {"durable": d, "state": m["st"] if m else None}


async def ota_notify(hub, req):
    # {slot} -> {sent: [eui hex]}: Image Notify to the image's devices
    o = hub.ota_server()
    m = o.meta(req.get("slot"))
    if m is None or m["st"] != "ready":
        raise ValueError("no ready image in %r" % req.get("slot"))
    sent = []
    for eh in m["eui"]:
        if await o.notify(eh):
            sent.append(eh)
    return {"sent": sent}


COMMANDS = (("ota_status", ota_status), ("ota_begin", ota_begin), ("ota_put", ota_put), ("ota_notify", ota_notify))
