# CHF Device Log (the HAN whitelist) and the CHF Historic Device Log.
# Pure: takes a store.Store and a clock utc() (UTC seconds, any fixed epoch;
# the hub uses seconds since 2000-01-01). See docs/device-log.md.
#
# Persistence: KV "devlog" holds {"d": {EUIHEX: entry}, "h": [historic...],
# "x": ext PAN id hex}; one KV write per change, so a remove that moves a
# hash into the historic log is atomic. HAN statistics live in RAM and in a
# separate KV "devstats" (a cold store: read at start and when written, no
# copy in RAM), written at most every `stats_period` seconds (and when the
# join state changes), to spare the flash. The RAM tables keyed by device
# (statistics, "heard") share the entry's own EUI text (`key`).
import ids
import lazy
from binascii import hexlify, unhexlify

from log import log

from micropython import const

# GBCS join response codes (PROTOCOLS.md section 2)
OK = const(0)
INVALID_CODE = const(1)
_INVALID_METHOD = const(2)
INCOMPATIBLE = const(3)
FULL = const(4)
WRITE_FAILURE = const(5)

TYPE_NAMES = ("GSME", "ESME", "CHF", "GPF", "HCALCS", "PPMID", "Type 2")
GPF = const(3)
_NO_HISTORIC = const((3,))  # never the GPF (HHTs never appear in the log at all)

# key state
_KS_NONE = const(0)          # hash only (restored), no link key held
_KS_INSTALL_CODE = const(1)  # link key derived from the install code, unused yet
_KS_ESTABLISHED = const(2)   # the device joined with its link key
_KS_CBKE = const(3)          # a key establishment (CBKE, han.cbke) replaced that key
_KEY_STATES = const(("hash only", "install code", "established", "key establishment"))

# join state
_JS_WHITELISTED = const(0)  # in the log, no join window open
_JS_WINDOW = const(1)       # join window open (see window_end)
_JS_JOINED = const(2)
_JS_RESTORED = const(3)     # rebuilt by restore_PAN; may rejoin
_JS_LEFT = const(4)         # reported as left the network
_JOIN_STATES = const(("whitelisted", "join window open", "joined", "restored", "left"))
# what a joined entry shows until the device is heard (a frame received from
# it, an acknowledged send, a join) after the hub started: the log kept it
# joined across the restart, but nothing says it is on the network now
NOT_HEARD = "not heard since start"

# entry indexes (an entry changed since start is a tuple, one read from flash a
# list: the same JSON array on flash; every change makes a new one)
_TYPE = const(0)
_KEY = const(1)     # link key hex or None
_HASH = const(2)    # key hash hex ("" when none)
_KS = const(3)
_NODE = const(4)
_JS = const(5)
_WS = const(6)      # window start
_WE = const(7)      # window end (0: none)
_HKEY = const(8)    # historic link key hex (re-added device) or None

# stats list indexes
_RMIN = const(0)
_RSUM = const(1)
_RMAX = const(2)
_LMIN = const(3)
_LSUM = const(4)
_LMAX = const(5)
_N = const(6)
_LAST = const(7)
_TXOK = const(8)
_TXF = const(9)


class DeviceLogError(ValueError):
    pass


def eui_hex(eui):
    """ids.eui_hex, refusing with DeviceLogError."""
    try:
        return ids.eui_hex(eui)
    except ValueError as e:
        raise DeviceLogError(str(e))


def device_eui(eui):
    """eui_hex of a device's own EUI-64: all ones (the broadcast/invalid
    address) and all zeros are refused (DeviceLogError)."""
    eh = eui_hex(eui)
    if eh == "FFFFFFFFFFFFFFFF" or eh == "0000000000000000":
        raise DeviceLogError("EUI-64 %s is not a device address" % eh)
    return eh


# han.install_code: loaded for a request (an add, a restore, a code check)
# and dropped after it, out of the boot set
_IC = "han.install_code"


def key_hash(key):
    """AES-MMO(key): what an entry holds in its 16 octets when its install
    code is not 16 bytes long (see log_value)."""
    try:
        return lazy.load(_IC).aes_mmo_hash(key)
    finally:
        lazy.drop(_IC)


def log_value(install_code):
    """The 16 octets a Device Log entry carries in CS14 / CCS07 and gets back
    by CCS03 (install_code is code||CRC): the 16-byte install code itself,
    as register_device (CCS01) takes it and as the RTDS backups show it
    (83FED340...: the ZigBee install-code test vector), so that a backup
    restored on another hub gives it the devices' link keys. A code of
    another length: AES-MMO of its link key."""
    return _keys(install_code)[1]


def _keys(install_code):
    # (link key, log_value) of install_code (code||CRC): InstallCodeError
    # for a bad length or CRC, checked first
    ic = lazy.load(_IC)
    try:
        ic.check(install_code)
        key = ic.link_key(install_code)
        return key, (bytes(install_code[:16]) if len(install_code) == 18 else ic.aes_mmo_hash(key))
    finally:
        lazy.drop(_IC)


def _h(b):
    return hexlify(b).decode() if b is not None else None


def _b(s):
    return unhexlify(s) if s else None


class DeviceLog:
    def __init__(self, store, utc, capacity=16, historic_capacity=15, stats_period=900):
        if capacity < 1 or historic_capacity < 1:
            raise DeviceLogError("device log: capacity must be >= 1")
        self.utc = utc
        self.capacity = capacity
        self.historic_capacity = historic_capacity
        self.stats_period = stats_period
        self._kv = store.kv("devlog")
        self._skv = store.kv("devstats", keep=False)
        self._d = dict(self._kv.get("d", {}))
        self._hist = list(self._kv.get("h", []))
        self.ext_pan_id = _b(self._kv.get("x"))
        self._stats = {}
        saved = dict(self._skv.items())
        for k in self._d:
            v = saved.get(k)
            if v is not None:
                self._stats[k] = list(v)
        saved = None
        self._stats_dirty = False
        self._stats_flushed = utc()
        self._listeners = []
        self._heard = set()  # EUIs heard since start (RAM only)

    # -- plumbing ---------------------------------------------------------------

    def on_change(self, fn):
        """fn(kind, eui_hex): kind is "add", "duplicate", "remove", "restore"
        or "key" (key hash changed). CS14 alerts hook in here."""
        self._listeners.append(fn)

    def key(self, eui):
        """The entry's own EUI text (what the RAM tables keyed by device
        share: a new string in each would cost ~50 bytes a table a device on
        a 32-bit port), or None when the EUI is not in the log."""
        eh = eui if isinstance(eui, str) and eui in self._d else eui_hex(eui)
        for k in self._d:
            if k == eh:
                return k
        return None

    def _fire(self, kind, eh):
        for fn in self._listeners:
            fn(kind, eh)

    def _commit(self, d, hist=None, xpan=None):
        """Write the new state; True on success (RAM follows flash)."""
        ch = {"d": d}
        if hist is not None:
            ch["h"] = hist
        if xpan is not None:
            ch["x"] = xpan
        try:
            self._kv.update(ch)
        except Exception as e:  # OSError / PowerLost from the flash, MemoryError
            log("device_log", "write failed: " + repr(e))
            return False
        self._d = d
        if hist is not None:
            self._hist = hist
        if xpan is not None:
            self.ext_pan_id = _b(xpan)
        return True

    def _put(self, eh, entry):
        d = dict(self._d)
        d[eh] = tuple(entry)
        return self._commit(d)

    # -- GBCS operations --------------------------------------------------------

    def add(self, eui, dev_type, install_code, join_timeout_s):
        """CCS01 register_device. install_code is code||CRC (bytes). ->
        (code, duplicate). Raises InstallCodeError (a ValueError) for a bad
        length or CRC, DeviceLogError for a malformed EUI (or one that is no
        device's: all ones, all zeros) or type."""
        eh = device_eui(eui)
        if not isinstance(dev_type, int) or not 0 <= dev_type < len(TYPE_NAMES):
            raise DeviceLogError("device type must be 0..6")
        if join_timeout_s < 0:
            raise DeviceLogError("join timeout must be >= 0")
        old = self._d.get(eh)
        if old is not None:
            if old[_TYPE] is not None and old[_TYPE] != dev_type:
                return INCOMPATIBLE, False
            # PROTOCOLS 2: ignore the key, succeed, CS14 with a zero-length hash
            if old[_JS] not in (_JS_JOINED, _JS_RESTORED) and old[_KEY] and join_timeout_s:
                e = list(old)
                e[_TYPE] = dev_type
                self._window(e, join_timeout_s)
                if not self._put(eh, e):
                    return WRITE_FAILURE, True
            self._fire("duplicate", eh)
            return OK, True
        key, val = _keys(install_code)  # the CRC before anything else
        if len(self._d) >= self.capacity:
            return FULL, False
        hkey = None
        for h in self._hist:
            if h[0] == eh and h[2]:
                hkey = h[2]
        e = [dev_type, _h(key), _h(val), _KS_INSTALL_CODE, None, _JS_WHITELISTED, 0, 0, hkey]
        if join_timeout_s:
            self._window(e, join_timeout_s)
        if not self._put(eh, e):
            return WRITE_FAILURE, False
        self._stats[eh] = None
        self._fire("add", eh)
        return OK, False

    def _window(self, e, seconds):
        now = self.utc()
        e[_WS] = now
        e[_WE] = now + seconds
        e[_JS] = _JS_WINDOW

    def remove(self, eui):
        """CCS02 unregister_device: the key hash moves to the historic log."""
        eh = eui_hex(eui)
        e = self._d.get(eh)
        if e is None:
            return INCOMPATIBLE
        d = dict(self._d)
        del d[eh]
        hist = None
        if e[_TYPE] not in _NO_HISTORIC and e[_HASH]:
            hist = [h for h in self._hist if h[0] != eh]
            hist.append((eh, e[_HASH], e[_KEY], e[_TYPE], self.utc()))
            while len(hist) > self.historic_capacity:
                hist.pop(0)  # oldest overwritten
        if not self._commit(d, hist):
            return WRITE_FAILURE
        self._stats.pop(eh, None)
        self._heard.discard(eh)
        try:
            self._skv.delete(eh)  # rare: a remove may cost one more write
        except Exception:
            pass
        self._fire("remove", eh)
        return OK

    def restore(self, ext_pan_id, devices):
        """CCS03 restore_PAN: rebuild the log from [(eui, value16)...]. Each
        16-octet value is the device's install code (log_value): the entry
        gets its link key back (key state "install code"), which the trust
        centre hands to the NCP so that the device can rejoin."""
        if len(ext_pan_id) != 8:
            raise DeviceLogError("extended PAN id must be 8 bytes")
        d = {}
        ic = lazy.load(_IC)
        try:
            for eui, kh in devices:
                if len(kh) not in (0, 16):
                    raise DeviceLogError("key hash must be 16 bytes")
                key = _h(ic.link_key(ic.add_crc(bytes(kh)))) if kh else None
                d[eui_hex(eui)] = (None, key, _h(kh) if kh else "", _KS_INSTALL_CODE if key else _KS_NONE, None,
                                   _JS_RESTORED, 0, 0, None)
        finally:
            lazy.drop(_IC)
        if len(d) > self.capacity:
            return FULL
        if not self._commit(d, xpan=_h(ext_pan_id)):
            return WRITE_FAILURE
        self._stats = {}
        for eh in d:
            self._fire("restore", eh)
        return OK

    def set_ext_pan_id(self, ext_pan_id):
        return self._commit(self._d, xpan=_h(ext_pan_id))

    def backup(self):
        """CCS07 backup_PAN of both logs: ((t, xpan, [(eui, hash)]), (t, xpan, [...]))."""
        t = self.utc()
        xp = self.ext_pan_id or bytes(8)
        act = [(unhexlify(eh), _b(e[_HASH]) or b"") for eh, e in self._d.items()]
        hist = [(unhexlify(h[0]), _b(h[1])) for h in self._hist]
        return (t, xp, act), (t, xp, hist)

    # -- reading ----------------------------------------------------------------

    def __len__(self):
        return len(self._d)

    def __contains__(self, eui):
        return eui_hex(eui) in self._d

    def _view(self, eh, e, now):
        s = self._stats.get(eh)
        js = e[_JS]
        if js == _JS_WINDOW and now >= e[_WE]:
            js = _JS_WHITELISTED
        v = {"eui": eh, "type": e[_TYPE],
             "type_name": TYPE_NAMES[e[_TYPE]] if e[_TYPE] is not None else "unknown",
             "key_state": _KEY_STATES[e[_KS]], "key_hash": e[_HASH], "node_id": e[_NODE],
             "join_state": NOT_HEARD if js == _JS_JOINED and eh not in self._heard else _JOIN_STATES[js],
             "window_end": e[_WE] if js == _JS_WINDOW else None,
             "historic_key": e[_HKEY] is not None}
        if s:
            n = s[_N]
            v["rssi"] = (s[_RMIN], s[_RSUM] // n, s[_RMAX]) if n else None
            v["lqi"] = (s[_LMIN], s[_LSUM] // n, s[_LMAX]) if n else None
            v["last_comm"] = s[_LAST]
            v["tx_ok"] = s[_TXOK]
            v["tx_fail"] = s[_TXF]
        else:
            v["rssi"] = v["lqi"] = v["last_comm"] = None
            v["tx_ok"] = v["tx_fail"] = 0
        return v

    def type_of(self, eui):
        """The device's type code, or None when it is not in the log: what the
        router asks of every routed message, without building the view.
        Canonical hex (as eui_hex gives) is looked up as it is."""
        e = self._d.get(eui) if isinstance(eui, str) else None
        if e is None:
            e = self._d.get(eui_hex(eui))
        return None if e is None else e[_TYPE]

    def get(self, eui):
        eh = eui_hex(eui)
        e = self._d.get(eh)
        return None if e is None else self._view(eh, e, self.utc())

    def entries(self):
        now = self.utc()
        return [self._view(eh, e, now) for eh, e in sorted(self._d.items())]

    def historic(self):
        """Oldest first: {eui, key_hash, type, type_name, removed}."""
        return [{"eui": h[0], "key_hash": h[1], "type": h[3],
                 "type_name": TYPE_NAMES[h[3]] if h[3] is not None else "unknown", "removed": h[4]}
                for h in self._hist]

    def install_code_matches(self, eui, install_code):
        """For an EUI in the log: does this install code (code||CRC) give the
        link key whose hash the entry holds? None when the entry holds no
        hash to compare with (restored without one), or the EUI is not in the
        log. InstallCodeError for a bad code."""
        val = _keys(install_code)[1]
        e = self._d.get(eui_hex(eui))
        if e is None or not e[_HASH]:
            return None
        return _h(val) == e[_HASH]

    def restored_keys(self):
        """[(eui_hex, link key)] of the entries a restore left waiting for
        their device's rejoin (the trust centre puts them in the NCP's key table)."""
        return [(eh, unhexlify(e[_KEY])) for eh, e in self._d.items() if e[_JS] == _JS_RESTORED and e[_KEY]]

    def not_heard(self):
        """EUIs of joined entries not heard since start."""
        return [eh for eh, e in sorted(self._d.items()) if e[_JS] == _JS_JOINED and eh not in self._heard]

    def eui_of(self, node_id):
        for eh, e in self._d.items():
            if e[_NODE] == node_id:
                return eh
        return None

    # -- joining ----------------------------------------------------------------

    def open_join_window(self, eui, seconds):
        eh = eui_hex(eui)
        e = self._d.get(eh)
        if e is None or not e[_KEY]:
            return INCOMPATIBLE
        e = list(e)
        if seconds > 0:
            self._window(e, seconds)
        else:
            e[_WE] = 0
            e[_JS] = _JS_WHITELISTED
        return OK if self._put(eh, e) else WRITE_FAILURE

    def window_open(self, eui, now=None):
        e = self._d.get(eui_hex(eui))
        if now is None:
            now = self.utc()
        return e is not None and e[_JS] == _JS_WINDOW and e[_WS] <= now < e[_WE]

    def open_windows(self, now=None):
        """[(eui_hex, window_end)] of the windows open now."""
        if now is None:
            now = self.utc()
        return [(eh, e[_WE]) for eh, e in self._d.items()
                if e[_JS] == _JS_WINDOW and e[_WS] <= now < e[_WE]]

    def join_key(self, eui, now=None):
        """The link key a device may join with now, or None. A re-added
        device from the Historic log: its historic key for the first half of
        the window, the install-code key for the second half."""
        eh = eui_hex(eui)
        e = self._d.get(eh)
        if now is None:
            now = self.utc()
        if e is None or e[_JS] != _JS_WINDOW or not (e[_WS] <= now < e[_WE]) or not e[_KEY]:
            return None
        if e[_HKEY] and (now - e[_WS]) * 2 < e[_WE] - e[_WS]:
            return unhexlify(e[_HKEY])
        return unhexlify(e[_KEY])

    def link_keys(self, eui):
        """The link keys the device may hold after a join through this log:
        its install-code key and, if re-added, its historic key."""
        e = self._d.get(eui_hex(eui))
        if e is None:
            return ()
        return tuple(unhexlify(k) for k in (e[_KEY], e[_HKEY]) if k)

    def is_joined(self, eui):
        e = self._d.get(eui_hex(eui))
        return e is not None and e[_JS] in (_JS_JOINED, _JS_RESTORED)

    def record_join(self, eui, node_id):
        eh = eui_hex(eui)
        e = self._d.get(eh)
        if e is None:
            return False
        e = list(e)
        # a rejoin after a key establishment keeps its key; a join inside an
        # open window used the install-code key again
        cbke = e[_KS] == _KS_CBKE and not (e[_JS] == _JS_WINDOW and e[_WE] > self.utc())
        e[_NODE] = node_id
        e[_JS] = _JS_JOINED
        e[_WE] = 0
        if e[_KEY] and not cbke:
            e[_KS] = _KS_ESTABLISHED
        self._heard.add(self.key(eh))
        ok = self._put(eh, e)
        self.flush_stats()
        return ok

    def record_key_established(self, eui):
        """A completed key establishment (CBKE) with a joined device: its
        key state becomes "key establishment". True when recorded. The
        entry's 16 octets stay the install code (no CS14)."""
        eh = eui_hex(eui)
        e = self._d.get(eh)
        if e is None or e[_JS] not in (_JS_JOINED, _JS_RESTORED):
            return False
        if e[_KS] == _KS_CBKE:
            return True
        e = list(e)
        e[_KS] = _KS_CBKE
        return self._put(eh, e)

    def record_left(self, eui):
        eh = eui_hex(eui)
        e = self._d.get(eh)
        if e is None:
            return False
        e = list(e)
        e[_JS] = _JS_LEFT
        self._heard.discard(eh)
        return self._put(eh, e)

    def close_expired(self, now=None):
        """Mark windows that ended as whitelisted; -> their EUIs."""
        if now is None:
            now = self.utc()
        gone = [eh for eh, e in self._d.items() if e[_JS] == _JS_WINDOW and now >= e[_WE]]
        if gone:
            d = dict(self._d)
            for eh in gone:
                e = list(d[eh])
                e[_JS] = _JS_WHITELISTED
                e[_WE] = 0
                d[eh] = tuple(e)
            self._commit(d)
        return gone

    # -- statistics -------------------------------------------------------------

    def _st(self, eh):
        s = self._stats.get(eh)
        if s is None:
            s = self._stats[self.key(eh)] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        return s

    def record_rx(self, eui, rssi, lqi, t):
        eh = eui_hex(eui)
        if eh not in self._d:
            return False
        s = self._st(eh)
        if s[_N] == 0:
            s[_RMIN] = s[_RMAX] = rssi
            s[_LMIN] = s[_LMAX] = lqi
        else:
            s[_RMIN] = min(s[_RMIN], rssi)
            s[_RMAX] = max(s[_RMAX], rssi)
            s[_LMIN] = min(s[_LMIN], lqi)
            s[_LMAX] = max(s[_LMAX], lqi)
        if s[_N] >= 0x10000:  # keep sums small: halve the weight of history
            s[_N] >>= 1
            s[_RSUM] //= 2
            s[_LSUM] //= 2
        s[_N] += 1
        s[_RSUM] += rssi
        s[_LSUM] += lqi
        s[_LAST] = t
        if eh not in self._heard:
            self._heard.add(self.key(eh))
        self._dirty()
        return True

    def record_tx(self, eui, ok):
        eh = eui_hex(eui)
        if eh not in self._d:
            return False
        s = self._st(eh)
        s[_TXOK if ok else _TXF] += 1
        if ok and eh not in self._heard:  # the device acknowledged it: heard
            self._heard.add(self.key(eh))
        self._dirty()
        return True

    def _dirty(self):
        self._stats_dirty = True
        if self.utc() - self._stats_flushed >= self.stats_period:
            self.flush_stats()

    def flush_stats(self):
        """Write the HAN statistics now (also called on join-state changes)."""
        self._stats_flushed = self.utc()
        if not self._stats_dirty:
            return True
        try:
            self._skv.update({k: v for k, v in self._stats.items() if v})
        except Exception:
            return False
        self._stats_dirty = False
        return True
