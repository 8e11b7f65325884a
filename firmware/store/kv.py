# Atomic key-value store for configuration and state, on LittleFS.
# Layout: one file NAME.kv = "<crc32 as 8 hex digits> <json>\n". A change is
# written whole to NAME.tmp, closed (littlefs commits it) and renamed over
# NAME.kv: rename is one metadata commit in littlefs, so after a power cut the
# store reads either the old or the new complete state.
import binascii
import json
import os

from jsonout import PIECE as _PIECE
from jsonout import JsonOut
from log import KindError

_EMPTY = {}  # the RAM copy of every warm store with no file yet


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _load(path):
    # the file's record as a dict (a bad record: KindError of kind
    # KVCorrupt). One buffer of the file's size, read into: read() would
    # grow its buffer in steps, leaving a hole in the heap at each step. The
    # body is checked and parsed where it lies (a memoryview; MicroPython's
    # json takes any buffer): no copy of it
    with open(path, "rb") as f:
        raw = bytearray(f.seek(0, 2))
        f.seek(0)
        n = f.readinto(raw)
    if n < 10 or raw[8] != 0x20:
        raise KindError("KVCorrupt", "kv: no header")
    while n > 9 and raw[n - 1] == 0x0A:
        n -= 1
    try:
        want = int(bytes(raw[:8]), 16)
    except ValueError:
        raise KindError("KVCorrupt", "kv: bad crc field")
    body = memoryview(raw)[9:n]
    if binascii.crc32(body) & 0xFFFFFFFF != want:
        raise KindError("KVCorrupt", "kv: crc mismatch")
    try:
        data = json.loads(body)
    except ValueError:
        raise KindError("KVCorrupt", "kv: bad json")
    if not isinstance(data, dict):
        raise KindError("KVCorrupt", "kv: not an object")
    return data


def home(root, stats=None):
    """What the KV stores of one folder share: (folder, counters, {name:
    its RAM copy, or None for a cold store})."""
    stats = stats if stats is not None else {}
    for k in ("kv_writes", "kv_recovered_tmp", "kv_corrupt"):
        stats.setdefault(k, 0)
    return (root.rstrip("/"), stats, {})


class KV:
    """KV(root, name, stats=None, keep=True, at=None). keep=False: a cold
    store, for records read at boot and by rare commands (keys, anchors,
    trust-anchor cells) whose holders keep what they need: no copy in RAM,
    every read comes from flash (and recovers a left-over tmp as opening
    does); cold once any holder asks (a read from flash is right for every
    holder). at: the home() it shares with the other KVs of its folder (a
    Store's), where the RAM copy of a warm one is kept: a KV object holds
    only that and its name, and every KV of a name reads and writes the
    same copy."""

    def __init__(self, root, name, stats=None, keep=True, at=None):
        if at is None:
            at = home(root, stats)
        self._s = at
        self._name = name
        copies = at[2]
        if name not in copies:
            d = self._open()
            # no file yet: the shared empty dict (nothing changes a copy in
            # place: a change is a new dict)
            copies[name] = (d or _EMPTY) if keep else None
        elif not keep:
            copies[name] = None  # cold from now on: the RAM copy is dropped

    def _d(self):
        d = self._s[2][self._name]
        return self._open() if d is None else d

    def _open(self):
        # the path is made when needed: a store is held for the hub's life,
        # its path string only for a moment (most stores sit idle)
        path = self._s[0] + "/" + self._name + ".kv"
        tmp = path + ".tmp"
        stats = self._s[1]
        have_tmp = _exists(tmp)
        if _exists(path):
            if have_tmp:
                # a set() that never returned: its rename did not happen
                os.remove(tmp)
            try:
                return _load(path)
            except (OSError, ValueError):
                # keep the evidence, start empty rather than brick the hub
                stats["kv_corrupt"] += 1
                os.rename(path, path + ".bad")
                return {}
        if have_tmp:
            # no committed state yet: a complete tmp (crc ok) is the first one
            try:
                data = _load(tmp)
            except (OSError, ValueError):
                os.remove(tmp)
                return {}
            os.rename(tmp, path)
            stats["kv_recovered_tmp"] += 1
            return data
        return {}

    def replace(self, data):
        """Write `data` whole as the store's content, without reading what
        the store held (set, update and delete end here): a dict, or a
        function data(out) that writes one (a JSON object) through a
        jsonout.JsonOut (out.put, out.string, out.value), called twice (the
        CRC, then the file) and writing the same text both times. For a
        holder that keeps its state in its own form (chf.device_log): no
        parsed copy of the old record, none of the new one kept (a store
        replaced by a function becomes cold)."""
        path = self._s[0] + "/" + self._name + ".kv"
        tmp = path + ".tmp"
        # header, JSON text (json.dumps's), newline. The text goes out in
        # pieces through one 256-byte buffer (jsonout), twice: for its CRC,
        # then into the file. A record may be a few KB (the Device Log at
        # capacity ~2.2 KB): no block of its size is needed.
        out = JsonOut(None, binascii.crc32, 0)
        out.start(self, b"", 0, _PIECE)  # self.write: the pieces are only summed
        data(out) if callable(data) else out.value(data, 0)
        crc = out.close()
        with open(tmp, "wb") as f:
            f.write(b"%08x " % (crc & 0xFFFFFFFF))
            out = JsonOut(None, binascii.crc32, 0)
            out.start(f, b"", 0, _PIECE)
            data(out) if callable(data) else out.value(data, 0)
            if out.close() != crc:  # cannot happen: the same data, encoded twice
                raise OSError("kv: record changed while written")
            f.write(b"\n")
        os.rename(tmp, path)
        at = self._s
        at[1]["kv_writes"] += 1
        if at[2][self._name] is not None:
            at[2][self._name] = None if callable(data) else data

    def write(self, b):
        # the writer of replace's CRC pass
        pass

    def get(self, key, default=None):
        return self._d().get(key, default)

    def __contains__(self, key):
        return key in self._d()

    def __len__(self):
        return len(self._d())

    def items(self):
        return self._d().items()

    def keys(self):
        return self._d().keys()

    def set(self, key, value):
        self.update({key: value})

    def update(self, changes):
        old = self._d()
        data = dict(old)
        data.update(changes)
        if data != old:
            self.replace(data)

    def delete(self, key):
        old = self._d()
        if key in old:
            data = dict(old)
            del data[key]
            self.replace(data)
            return True
        return False


class Settings:
    """Settings(defaults, kv): a module's defaults overlaid by what a KV
    store holds, read through (s[key], s.get(key), key in s, s.items()).
    A dict copy of both cost a hash table for the hub's life."""

    def __init__(self, defaults, kv):
        self.defaults = defaults
        self.kv = kv

    def __getitem__(self, key):
        kv = self.kv
        return kv.get(key) if key in kv else self.defaults[key]

    def get(self, key, default=None):
        kv = self.kv
        return kv.get(key) if key in kv else self.defaults.get(key, default)

    def __contains__(self, key):
        return key in self.defaults or key in self.kv

    def items(self):
        d = dict(self.defaults)
        d.update(self.kv.items())
        return d.items()
