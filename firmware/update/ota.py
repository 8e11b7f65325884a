# CS05a over the WAN (docs/firmware-update.md): the hub's image in the form
# GBCS distributes firmware, an OTA Upgrade Image (the ZigBee OTA file
# header, one upgrade-image sub-element holding the signed hub image, then
# the 32-byte Manufacturer Image Hash, SHA-256 of everything before it),
# sent to the CHF in pieces as DLMS actions on the Image transfer object
# (class 18, 0-0:44.0.0.255): method 2 {offset, bytes} (answers the OTA
# offset the hub wants next; the last piece also verifies the whole: a
# failure is that piece's result), and CS06's method 4
# {Manufacturer Image Hash, activation UTC} (0: now). The image inside goes
# to update.image.Updater as it comes; the OTA header and the hash are kept
# in KV "update" (a power cut resumes like the local port's path).
import hashlib
import struct
from binascii import hexlify, unhexlify

from codes import ALERT_FW_VERIFY_FAILED
from gbcs import dlms
from micropython import const
from update.image import IDLE, SCHEDULED, VERIFIED, Refused

PREFIX = const(62)  # OTA header (56) + sub-element tag and length (6)
_HASH = const(32)
_FILE_ID = const(0x0BEEF11E)
MANUFACTURER = const(0x1234)  # chubcore.hubimage OTA_MANUFACTURER
IMAGE_TYPE_HUB = const(0x0100)
OBIS_IMAGE_TRANSFER = b"\x00\x00\x2c\x00\x00\xff"  # 0-0:44.0.0.255
CLASS_IMAGE_TRANSFER = const(18)
_OK = const(0)
_TEMP_FAIL = const(2)
_TYPE_UNMATCHED = const(12)
_OTHER = const(250)


class Cs05a:
    """The CHF's image-transfer actions (chf.usecases calls action())."""

    def __init__(self, updater):
        self.u = updater
        self.kv = updater.kv
        self.pre = bytearray()  # the OTA prefix while it arrives

    def _prefix(self):
        p = self.kv.get("ota")
        return unhexlify(p) if p and (self.u.state != IDLE or self.u.received) else None

    def received(self):
        p = self._prefix()
        if p is None:
            return len(self.pre)
        return PREFIX + self.u.received + len(unhexlify(self.kv.get("ota_hash") or ""))

    def _blob_len(self, p):
        return struct.unpack_from("<I", p, 58)[0]

    def block(self, off, data):
        if off == 0 and self.received():
            p = self._prefix() or bytes(self.pre)
            n = min(len(p), len(data))
            if bytes(data[:n]) != p[:n]:  # another image from its start
                self.u.abort()
                self.kv.update({"ota": None, "ota_hash": None})
                self.pre = bytearray()
        if off != self.received():
            return self.received()
        mv = memoryview(data)
        if self._prefix() is None:
            k = min(PREFIX - len(self.pre), len(mv))
            self.pre.extend(mv[:k])
            mv = mv[k:]
            if len(self.pre) < PREFIX:
                return self.received()
            self._check_prefix(self.pre)
        p = self._prefix() or bytes(self.pre)
        n = self._blob_len(p)
        k = min(n - self.u.received, len(mv))
        if k > 0:
            # a fresh image: KV "ota" may still hold an earlier image's prefix
            # and hash (it is read only while the Updater holds something)
            fresh = self._prefix() is None
            try:  # the manifest's version must be the OTA header's file version
                self.u.write(self.u.received, mv[:k], struct.unpack_from("<I", p, 14)[0])
            except Refused:
                self.pre = bytearray()  # refused: the sender starts again from 0
                raise
            if fresh:  # the image's header is taken: keep the OTA prefix
                self.kv.update({"ota": hexlify(self.pre).decode(), "ota_hash": ""})
                self.pre = bytearray()
            mv = mv[k:]
        if len(mv):
            if self.u.received != n:
                return self.received()
            tail = unhexlify(self.kv.get("ota_hash") or "") + bytes(mv)
            if len(tail) > _HASH:
                self._fail("longer than its OTA header says")
            self.kv.set("ota_hash", hexlify(tail).decode())
            if len(tail) == _HASH:
                self.verify()
        return self.received()

    def _check_prefix(self, p):
        fid, _v, hlen, _fc, manu, itype = struct.unpack_from("<IHHHHH", p, 0)
        total = struct.unpack_from("<I", p, 52)[0]
        tag, n = struct.unpack_from("<HI", p, 56)
        if fid != _FILE_ID or hlen != 56 or tag != 0 or total != PREFIX + n:
            self.pre = bytearray()
            self._fail("not an OTA upgrade file")
        if manu != MANUFACTURER or itype != IMAGE_TYPE_HUB:
            self.pre = bytearray()
            self._fail("OTA image not for this hub")

    def _fail(self, reason):
        self.kv.update({"ota": None, "ota_hash": None})
        self.u.last_error = reason
        self.u._drop()
        self.u._report(ALERT_FW_VERIFY_FAILED, reason)
        raise Refused(reason)

    def verify(self):
        """The whole OTA image is in: the image verified and the Manufacturer
        Image Hash right (recomputed from flash)."""
        p = self._prefix()
        digest = unhexlify(self.kv.get("ota_hash") or "")
        if p is None or self.u.state not in (VERIFIED, SCHEDULED) or len(digest) != _HASH:
            self._fail("truncated at %d" % self.received())
        h = hashlib.sha256(p)
        self.u.hash_staged(h)
        if h.digest() != digest:
            self._fail("Manufacturer Image Hash")
        return digest

    def action(self, method, v):
        """(result, value) of an Image transfer method with DLMS data v."""
        try:
            if method == 2:
                off, data = v[1][0][1], bytes(v[1][1][1])
                return _OK, (dlms.DOUBLE_LONG_UNSIGNED, self.block(off, data))
            if method == 4:
                digest, at = bytes(v[1][0][1]), v[1][1][1]
                if self.verify() != digest:
                    return _OTHER, None
                self.u.activate(self.u.manifest["total"], at)
                return _OK, None
        except Refused:
            return _OTHER, None
        except (TypeError, IndexError, AttributeError, struct.error):
            return _TYPE_UNMATCHED, None
        except ValueError:
            return _TEMP_FAIL, None
        return 11, None  # object unavailable: no such method
