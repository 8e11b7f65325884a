# The hub's own update (docs/firmware-update.md): a signed image arrives in
# pieces (local port or WAN), is staged into the slot that is not running
# (ROOT/img/a or b), verified and activated at the requested time.
#
# The image (host_tools/chubcore/hubimage.py makes it): b"CHIM", format 1,
# 0, the manifest's length M (2 bytes, big-endian), the manifest (JSON:
# board, version, git, files [[path, size, sha256 hex]...], size, total),
# 64 bytes of ECDSA P-256 signature (r||s over SHA-256 of the manifest) by
# the manufacturer, then the file bodies in manifest order.
#
# Before one byte is stored the header is checked: the manifest, the board,
# the version against the stored minimum and the signature against the
# manufacturer anchor (KV "update"). Each file is hashed as it is written
# and the total at the end; any failure drops what was staged and raises
# 0x8F1C; a complete, verified image raises 0x8F72. Staging survives a
# power cut: ROOT/img/stage.json names the slot, the slot's HEAD file the
# image, and the files on flash say how far it got (littlefs keeps a file
# as of its last close), so a resent piece from the offset `received`
# continues it. Activation (CS06: the image's total hash and a time) puts
# the slot on trial in boot.json and resets the board; update.slots runs it
# once, and the hub confirms it after READY and its self-check (confirm).
import hashlib
import json
import os
from binascii import hexlify

from codes import ALERT_FW_VERIFY_FAILED, ALERT_FW_VERIFY_FAILED_AT_BOOT, ALERT_FW_VERIFY_OK
from micropython import const
from update import slots

_MAGIC = b"CHIM"
_FORMAT = const(1)
_HEAD = const(8)
_SIG = const(64)
MAX_MANIFEST = const(16384)  # the header is held in RAM until it is complete and checked
_STAGE = "stage.json"
TRIAL_BOUND_S = const(120)  # a trial image must reach READY within this
SELF_CHECK_MS = const(5000)  # and pass its self-check this long after READY

IDLE = "idle"
RECEIVING = "receiving"
VERIFIED = "verified"
SCHEDULED = "scheduled"


class Refused(ValueError):
    """The image was refused (reason text); its alert is raised."""


def version_tuple(v):
    """"1.2.3" -> (1, 2, 3); ValueError unless 1..4 numbers of 0..65535."""
    if not isinstance(v, str):
        raise ValueError("version")
    parts = tuple(int(p) for p in v.split("."))
    if not 1 <= len(parts) <= 4 or any(not 0 <= p <= 0xFFFF for p in parts):
        raise ValueError("version")
    return parts


def ota_version(v):
    """The OTA header's file version of a hub version: a byte per part, the
    first on top, missing parts 0 ("1.2.3" -> 0x01020300); -1 when a part
    is over 255 (no header names it). chubcore.hubimage.ota_file_version."""
    n = 0
    parts = version_tuple(v)
    for i in range(4):
        p = parts[i] if i < len(parts) else 0
        if p > 0xFF:
            return -1
        n = n << 8 | p
    return n


def check_manifest(m, board_name):
    """The manifest's fields (ValueError with the reason)."""
    if not isinstance(m, dict):
        raise ValueError("manifest")
    for k, t in (("board", str), ("version", str), ("files", list), ("size", int), ("total", str)):
        if not isinstance(m.get(k), t):
            raise ValueError("manifest " + k)
    version_tuple(m["version"])
    total = 0
    for f in m["files"]:
        if not (isinstance(f, list) and len(f) == 3 and isinstance(f[0], str) and isinstance(f[1], int)
                and f[1] >= 0 and isinstance(f[2], str) and len(f[2]) == 64):
            raise ValueError("manifest file entry")
        p = f[0]
        if not p or p[0] == "/" or ".." in p.split("/") or p == slots.HEAD:
            raise ValueError("manifest file path")
        total += f[1]
    if total != m["size"] or len(m["total"]) != 64:
        raise ValueError("manifest size")
    if m["board"] != board_name:
        raise ValueError("image for board " + m["board"][:24])


def _rm_tree(path):
    try:
        names = os.listdir(path)
    except OSError:
        return
    for n in names:
        p = path + "/" + n
        if os.stat(p)[0] & 0x4000:
            _rm_tree(p)
            os.rmdir(p)
        else:
            os.remove(p)


def _makedirs(path):
    cur = ""
    for part in path.split("/"):
        if not part:
            continue
        cur += "/" + part
        try:
            os.mkdir(cur)
        except OSError:
            pass


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


class Updater:
    """Its parts: the flash root, the board's name, a cold KV "update" (the
    manufacturer anchor and the minimum version), the event log, alert(code)
    (a CHF alert to the head-end), utc() and reset() (the board's), and the
    slot this boot runs (update.slots.boot(); None: the factory image)."""

    def __init__(self, root, board_name, kv, event_log, alert, utc, reset, running=None, log=None):
        self.root = root
        self.dir = root + "/" + slots.DIR
        self.board_name = board_name
        self.kv = kv
        self.event_log = event_log
        self.alert = alert
        self.utc = utc
        self.reset = reset
        self.running = running
        self.log = log
        self.last_error = None
        self._cs05a = None
        self._fv = None
        self._clear_ram()
        _makedirs(self.dir)
        self._resume()

    # -- state --------------------------------------------------------------

    def _clear_ram(self):
        self.state = IDLE
        self.slot = None
        self.manifest = None
        self.head = bytearray()
        self.received = 0
        self.activate_at = None
        self._body0 = 0
        self._i = 0
        self._foff = 0
        self._hf = None
        self._ht = None

    def _stage_path(self):
        return self.dir + "/" + _STAGE

    def _write_stage(self, d):
        p = self._stage_path()
        with open(p + ".tmp", "w") as f:
            json.dump(d, f)
        os.rename(p + ".tmp", p)

    def _stage_doc(self):
        return {"slot": self.slot, "total": self.manifest["total"], "state": self.state,
                "activate_at": self.activate_at}

    def _drop(self):
        # what was staged goes: the stage record first (then a cut leaves a
        # slot folder nothing points at, cleared by the next image)
        try:
            os.remove(self._stage_path())
        except OSError:
            pass
        if self.slot:
            _rm_tree(self.dir + "/" + self.slot)
            try:
                os.rmdir(self.dir + "/" + self.slot)
            except OSError:
                pass
        self._clear_ram()

    def _resume(self):
        # a staging the power cut short: rebuild the position and the hashes
        # from what is on flash
        st = slots._read_json(self._stage_path())
        if not st:
            return
        boot = slots.read_state(self.root)
        slot = st.get("slot")
        m = slots.manifest(self.root, slot) if slot in ("a", "b") else None
        if (m is None or slot in (boot["active"], boot["trial"], self.running) or m.get("total") != st.get("total")):
            self.slot = slot if slot in ("a", "b") and slot not in (boot["active"], boot["trial"], self.running) else None
            self._drop()
            return
        with open(self.dir + "/" + slot + "/" + slots.HEAD, "rb") as f:
            self.head = bytearray(f.read())
        self.slot, self.manifest = slot, m
        self._body0 = len(self.head)
        self._ht = hashlib.sha256()
        self.received = self._body0
        self.state = RECEIVING
        files = m["files"]
        self._i = 0
        while self._i < len(files):
            name, size, digest = files[self._i]
            n = _size(self._file(name))
            self._hf = hashlib.sha256()
            self._foff = 0
            if n < 0:
                break
            with open(self._file(name), "rb") as f:
                while True:
                    b = f.read(1024)
                    if not b:
                        break
                    self._hf.update(b)
                    self._ht.update(b)
            self._foff = n
            self.received += n
            if n < size:
                break
            if n > size or hexlify(self._hf.digest()).decode() != digest:
                self._drop()
                return
            self._next_file()
        if st.get("state") in (VERIFIED, SCHEDULED) and self._i == len(files):
            self.state = st["state"]
            self.activate_at = st.get("activate_at")
        elif self._i == len(files):
            self._complete()

    def _file(self, name):
        return self.dir + "/" + self.slot + "/" + name

    def _next_file(self):
        self._i += 1
        self._foff = 0
        self._hf = hashlib.sha256() if self._i < len(self.manifest["files"]) else None

    # -- receiving ----------------------------------------------------------

    def _refuse(self, reason):
        self.last_error = reason
        self._drop()
        self._report(ALERT_FW_VERIFY_FAILED, reason)
        raise Refused(reason)

    def _report(self, code, text):
        if self.log:
            self.log("update", "0x%04X %s" % (code, text))
        self.event_log.append(code, text.encode()[:32])
        try:
            self.alert(code)
        except Exception as e:  # no ACB anchor yet: the event log has it
            if self.log:
                self.log("update", "alert 0x%04X not sent: %r" % (code, e))

    def write(self, offset, data, file_version=None):
        """Take the piece of the image at `offset`; returns the bytes received
        so far (a sender whose offset is not that resends from there).
        Raises Refused (the alert raised) when the image fails a check.
        file_version: the CS05a OTA header's, which the manifest's version
        must match (None: the local port's plain image)."""
        self._fv = file_version
        if offset == 0 and (self.state != IDLE or self.head) and not self._same_start(data):
            if self.state == SCHEDULED:
                self.log and self.log("update", "a new image replaces the scheduled one")
            self._drop()  # a new image from its start replaces the staged one
        if offset != self.received or not data:
            return self.received
        if self.state in (VERIFIED, SCHEDULED):
            return self.received
        mv = memoryview(data)
        if self.manifest is None:
            mv = self._take_head(mv)
        if len(mv):
            self._take_body(mv)
        return self.received

    def _same_start(self, data):
        n = min(len(data), len(self.head))
        return n > 0 and bytes(data[:n]) == bytes(self.head[:n])

    def _take_head(self, mv):
        need = _HEAD
        if len(self.head) >= _HEAD:
            need = _HEAD + ((self.head[6] << 8) | self.head[7]) + _SIG
        k = min(need - len(self.head), len(mv))
        self.head.extend(mv[:k])
        self.received += k
        mv = mv[k:]
        if len(self.head) == _HEAD:
            if bytes(self.head[:4]) != _MAGIC or self.head[4] != _FORMAT:
                self._refuse("not a hub image")
            if (self.head[6] << 8) | self.head[7] > MAX_MANIFEST:
                self._refuse("manifest too long")
            return self._take_head(mv) if len(mv) else mv
        if len(self.head) == need:
            self._check_head()
        return mv

    def _check_head(self):
        head = self.head
        m_len = (head[6] << 8) | head[7]
        mbytes = bytes(head[_HEAD:_HEAD + m_len])
        try:
            m = json.loads(mbytes)
            check_manifest(m, self.board_name)
        except (ValueError, TypeError) as e:
            self._refuse(str(e) or "manifest")
        if self._fv is not None and self._fv != ota_version(m["version"]):
            self._refuse("OTA file version %08x not %s" % (self._fv, m["version"][:16]))
        cfg = self.kv.get("anchor") if self.kv else None
        min_v = self.kv.get("min_version") if self.kv else None
        if min_v and version_tuple(m["version"]) < version_tuple(min_v):
            self._refuse("version %s below minimum %s" % (m["version"][:16], min_v))
        if not cfg:
            self._refuse("no manufacturer anchor")
        from binascii import unhexlify

        import lazy

        b = lazy.borrow("gbcs.p256")  # P-256 goes with the check unless something held it before
        try:
            ok = lazy.load("gbcs.p256").verify_digest(unhexlify(cfg), hashlib.sha256(mbytes).digest(),
                                                      bytes(head[_HEAD + m_len:]))
        except ValueError:
            ok = False
        finally:
            lazy.give_back(b)
        if not ok:
            self._refuse("signature")
        # the slot that runs neither now nor next
        boot = slots.read_state(self.root)
        keep = (boot["active"], boot["trial"], self.running)
        if boot["trial"]:
            self._refuse("a trial image is running")
        slot = "b" if "a" in keep else "a"
        if slot in keep:
            self._refuse("no free slot")
        self.slot, self.manifest = slot, m
        self.state = RECEIVING
        self._body0 = len(head)
        self._write_stage(self._stage_doc())
        _rm_tree(self.dir + "/" + slot)
        _makedirs(self.dir + "/" + slot)
        p = self._file(slots.HEAD)
        with open(p + ".tmp", "wb") as f:
            f.write(head)
        os.rename(p + ".tmp", p)
        self._ht = hashlib.sha256()
        self._i = -1
        self._next_file()
        self._skip_empty()

    def _skip_empty(self):
        files = self.manifest["files"]
        while self._i < len(files) and files[self._i][1] == self._foff:
            name, size, digest = files[self._i]
            if size == 0:
                self._create(name)
            self._end_file()
        if self._i == len(files):
            self._complete()

    def _create(self, name):
        p = self._file(name)
        if "/" in name:
            _makedirs(p.rsplit("/", 1)[0])
        open(p, "wb").close()

    def _end_file(self):
        name, size, digest = self.manifest["files"][self._i]
        if hexlify(self._hf.digest()).decode() != digest:
            self._refuse(name[:24] + " hash")
        self._next_file()

    def _take_body(self, mv):
        files = self.manifest["files"]
        while len(mv):
            if self._i >= len(files):
                self._refuse("longer than its manifest")
            name, size, digest = files[self._i]
            k = min(size - self._foff, len(mv))
            piece = mv[:k]
            p = self._file(name)
            if self._foff == 0 and "/" in name:
                _makedirs(p.rsplit("/", 1)[0])
            with open(p, "ab" if self._foff else "wb") as f:
                f.write(piece)
            self._hf.update(piece)
            self._ht.update(piece)
            self._foff += k
            self.received += k
            mv = mv[k:]
            self._skip_empty()
            if self.state != RECEIVING:
                if len(mv):
                    self._refuse("longer than its manifest")
                return

    def _complete(self):
        if hexlify(self._ht.digest()).decode() != self.manifest["total"]:
            self._refuse("total hash")
        self.state = VERIFIED
        self._write_stage(self._stage_doc())
        self._report(ALERT_FW_VERIFY_OK, "image " + self.manifest["version"][:16])

    def end(self):
        """The sender has sent everything: an image not complete now is
        truncated (refused); returns the status when it is."""
        if self.state == RECEIVING or (self.state == IDLE and self.received):
            self._refuse("truncated at %d" % self.received)
        if self.state == IDLE:
            raise ValueError("no image")
        return self.status()

    def image_action(self, method, v):
        """CS05a / CS06 from the CHF (update.ota, loaded on the first one)."""
        if self._cs05a is None:
            from update.ota import Cs05a

            self._cs05a = Cs05a(self)
        return self._cs05a.action(method, v)

    def hash_staged(self, h):
        """Feed the staged image (its header, then the files) to hash h."""
        h.update(self.head)
        for name, size, digest in self.manifest["files"]:
            with open(self._file(name), "rb") as f:
                while True:
                    b = f.read(1024)
                    if not b:
                        break
                    h.update(b)

    def abort(self):
        self._drop()

    # -- activation (CS06) ----------------------------------------------------

    def activate(self, total, at):
        """Activate the verified image whose total hash is `total` (hex) at
        UTC `at` (0 or past: now)."""
        if self.state not in (VERIFIED, SCHEDULED):
            raise ValueError("no verified image")
        if total != self.manifest["total"]:
            raise ValueError("total hash is not the staged image's")
        self.activate_at = at
        self.state = SCHEDULED
        self._write_stage(self._stage_doc())

    def due(self):
        return self.state == SCHEDULED and self.utc() >= self.activate_at

    def switch(self):
        """Put the staged slot on trial and reset the board into it."""
        st = slots.read_state(self.root)
        st["trial"], st["tries"] = self.slot, 0
        slots.write_state(self.root, st)
        try:
            os.remove(self._stage_path())
        except OSError:
            pass
        if self.log:
            self.log("update", "activating %s in slot %s: reset" % (self.manifest["version"], self.slot))
        self.reset()

    # -- after the boot -------------------------------------------------------

    def boot_notes(self):
        """Report what update.slots did at this boot (0x8F1B for a rollback
        or a slot that failed its power-on check); the notes are cleared."""
        st = slots.read_state(self.root)
        if not st["notes"]:
            return 0
        for kind, version in st["notes"]:
            self._report(ALERT_FW_VERIFY_FAILED_AT_BOOT, "%s %s" % (kind, str(version)[:16]))
        n = len(st["notes"])
        st["notes"] = []
        slots.write_state(self.root, st)
        return n

    def on_trial(self):
        st = slots.read_state(self.root)
        return st["trial"] is not None and st["trial"] == self.running

    def confirm(self):
        """The trial image reached READY and passed its self-check: it is the
        active image from now on."""
        st = slots.read_state(self.root)
        if st["trial"] is None or st["trial"] != self.running:
            return False
        st["active"], st["trial"], st["tries"] = st["trial"], None, 0
        slots.write_state(self.root, st)
        self._raise_minimum()
        if self.log:
            self.log("update", "image in slot %s confirmed" % self.running)
        return True

    def _raise_minimum(self):
        # anti-rollback: the confirmed image's version becomes the lowest
        # the hub takes (never lowered; an equal version is still taken)
        m = slots.manifest(self.root, self.running)
        if not m or not self.kv:
            return
        try:
            v = version_tuple(m.get("version"))
            cur = self.kv.get("min_version")
            if cur and version_tuple(cur) >= v:
                return
        except ValueError:
            return
        self.kv.update({"min_version": m["version"]})

    def idle(self):
        """Nothing RAM-only in use: no image being received, verified or
        scheduled, no refusal to report (last_error), no CS05a prefix
        arriving. The wiring drops an idle updater (app.Hub.update_idle);
        the next use builds it again from flash and KV."""
        return (self.state == IDLE and not self.received and not self.head and self.last_error is None
                and (self._cs05a is None or not self._cs05a.pre))

    async def run(self, ready, self_check):
        """after_boot(), then activate a scheduled image when its time
        comes (the hub's wiring takes these steps itself: the job "update",
        app.Hub.update_job, then Hub.update_due in its ticks)."""
        import asyncio

        await self.after_boot(ready, self_check)
        while True:
            if self.due():
                self.switch()
            await asyncio.sleep_ms(1000)

    async def after_boot(self, ready, self_check):
        """Report the boot's notes; on a trial boot wait for READY (an
        Event) and the self-check (a callable), then confirm the image or
        reset (the next boot rolls back)."""
        import asyncio

        self.boot_notes()
        if self.running and not self.on_trial():
            self._raise_minimum()  # a power cut between the confirm and its KV write
        if self.on_trial():
            try:
                await asyncio.wait_for(ready.wait(), TRIAL_BOUND_S)
                await asyncio.sleep_ms(SELF_CHECK_MS)
                ok = self_check()
            except asyncio.TimeoutError:
                ok = False
            if ok:
                self.confirm()
            else:
                if self.log:
                    self.log("update", "trial image failed its self-check: reset")
                self.reset()

    def status(self):
        st = slots.read_state(self.root)
        m = self.manifest or {}
        return {"board": self.board_name, "running": self.running or "factory", "active": st["active"] or "factory", "trial": st["trial"],
                "state": self.state, "slot": self.slot, "received": self.received,
                "image_bytes": (self._body0 + m["size"]) if m and self._body0 else None,
                "version": m.get("version"), "total": m.get("total"), "activate_at": self.activate_at,
                "min_version": self.kv.get("min_version") if self.kv else None,
                "anchor": bool(self.kv and self.kv.get("anchor")), "last_error": self.last_error}
