# CHF Device Log (the HAN whitelist) and the CHF Historic Device Log.
# Pure: takes a store.Store and a clock utc() (UTC seconds, any fixed epoch
# from 0 to 2**32 - 1; the hub uses seconds since 2000-01-01). See
# docs/device-log.md.
#
# Persistence: KV "devlog" holds {"d": {EUIHEX: entry}, "h": [historic...],
# "x": ext PAN id hex}, entry = [type, link key hex, key hash hex, key state,
# node id, join state, window start, window end, historic link key hex]; one
# write of the whole record per change (so a remove that moves a hash into
# the historic log is atomic), streamed from what RAM holds (KV.replace):
# the store is cold, no parsed copy in RAM. HAN statistics live in RAM and in
# a separate cold KV "devstats" ({EUIHEX: [rssi min, sum, max, lqi min, sum,
# max, n, last, tx ok, tx fail]}), written at most every `stats_period`
# seconds (and when the join state changes), to spare the flash.
#
# RAM: one bytearray of `capacity` slots of _S bytes (entry and statistics
# packed, the key hash as bytes: text made only when a view or the store
# asks; no link key: an entry's link key is its install code's, derived
# when a join or the store asks, `_link`), the join windows' start and end
# (one bytearray of _W bytes a slot, None while no window is open), the
# list of the entries' EUI texts in slot order (what the RAM tables keyed by
# device share: `key`), the historic log as one bytes of _HS-byte records,
# and in one dict (None when empty) the keys of the entries that hold more:
# a link key that is not the install code's (a code of another length than
# 16 bytes: its hash is no install code) and the historic link key of a
# re-added device, in that order.
import ids
import lazy
from binascii import hexlify, unhexlify
from struct import pack_into, unpack_from

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

# a slot: byte 0 type (bits 0-2, 7: none) | key state << 3 | join state << 5,
# byte 1 flags, node id (u16), key hash (16 bytes), statistics (_ST).
# Little-endian. A copy of a slot being changed is the slot; one whose join
# window opens (_window) is _S + _W bytes: the slot, then the window's start
# and end (u32). No window is kept for a slot in another join state.
_S = const(48)
_W = const(8)
_NO_TYPE = const(7)
_HDR = const("<BBH")  # byte 0, flags, node
_O_NODE = const(2)
_O_HASH = const(4)
_O_ST = const(20)
_O_WS = const(48)  # in a copy whose window opens: _S
_ST = const("<bbBBiiIIII")  # rssi min, max, lqi min, max, rssi sum, lqi sum, n, last, tx ok, tx fail
_F_KEY = const(1)     # a link key: the install code's (the key hash), or with _F_LK its own
_F_HASH = const(2)    # a key hash (else "")
_F_NODE = const(4)    # a node id
_F_STATS = const(8)   # statistics recorded
_F_HEARD = const(16)  # heard since start (RAM only)
_F_HKEY = const(32)   # a historic link key (in _k: its last 16 bytes)
_F_LK = const(64)     # a link key not the install code's (in _k: its first 16 bytes)
_U32 = const(0xFFFFFFFF)

# a historic record: EUI (8), key hash (16), link key (16), byte 40 type
# (bits 0-2, 7: none) | 8 a link key | 16 a key hash, removal time (u32)
_HS = const(45)


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
# chf.devlog_store: the on-flash form, read at start and written at each
# change, loaded for that and dropped after
_IO = "chf.devlog_store"


def _keys(install_code):
    # (link key, the 16 octets an entry holds) of install_code (code||CRC):
    # the 16-byte install code itself (what CS14 / CCS07 carry and CCS03
    # gives back, so that a backup restored on another hub gives the devices'
    # link keys), or for a code of another length AES-MMO of its link key.
    # InstallCodeError for a bad length or CRC, checked first
    ic = lazy.load(_IC)
    try:
        ic.check(install_code)
        key = ic.link_key(install_code)
        return key, (bytes(install_code[:16]) if len(install_code) == 18 else ic.aes_mmo_hash(key))
    finally:
        lazy.drop(_IC)


def _fill(s, typ, key, hsh, ks, node, js):
    # a slot's entry part (s: a zeroed slot; hsh: bytes or None; key: None,
    # True (the install code's link key: hsh is that code) or its own link
    # key (bytes, which the caller keeps in _k))
    s[0] = (_NO_TYPE if typ is None else typ) | ks << 3 | js << 5
    f = 0
    if key:
        f |= _F_KEY if key is True else _F_KEY | _F_LK
    if hsh:
        f |= _F_HASH
        s[_O_HASH:_O_HASH + 16] = hsh
    if node is not None:
        f |= _F_NODE
    s[1] = f
    pack_into("<H", s, _O_NODE, node or 0)


def _window(slot, now, seconds):
    # a copy of slot with its join window opened now for seconds
    s = bytearray(_S + _W)
    s[:_S] = slot
    end = now + seconds
    pack_into("<II", s, _O_WS, now, end if end < _U32 else _U32)
    s[0] = s[0] & 0x1F | _JS_WINDOW << 5
    return s


class DeviceLog:
    # the defaults: an instance holds one of these only when it differs
    capacity = 16
    historic_capacity = 15
    stats_period = 900

    def __init__(self, store, utc, capacity=16, historic_capacity=15, stats_period=900):
        if capacity < 1 or historic_capacity < 1:
            raise DeviceLogError("device log: capacity must be >= 1")
        self.utc = utc
        if capacity != 16:
            self.capacity = capacity
        if historic_capacity != 15:
            self.historic_capacity = historic_capacity
        if stats_period != 900:
            self.stats_period = stats_period
        # the Store: its KVs "devlog" and "devstats" (both cold) asked for
        # at each read or write, not held
        self._store = store
        self._listeners = ()
        self._k = None
        self.ext_pan_id = None
        self._t = None
        self._w = None
        self._e = []
        self._h = b""
        try:
            lazy.load(_IO).load(self, capacity)
        finally:
            lazy.drop(_IO)
        # the statistics' last flush (UTC seconds); ~ that (below 0) while
        # RAM holds changes not written
        self._sf = utc()

    # -- plumbing ---------------------------------------------------------------

    def on_change(self, fn):
        """fn(kind, eui_hex): kind is "add", "duplicate", "remove", "restore"
        or "key" (key hash changed). CS14 alerts hook in here."""
        self._listeners += (fn,)

    def _find(self, eui):
        # the slot of an EUI (bytes, or text in any form ids.eui_hex takes), -1
        # when not in the log; DeviceLogError for a malformed EUI
        e = self._e
        if isinstance(eui, str) and eui in e:
            return e.index(eui)
        eh = eui_hex(eui)
        return e.index(eh) if eh in e else -1

    def key(self, eui):
        """The entry's own EUI text (what the RAM tables keyed by device
        share: a new string in each would cost ~50 bytes a table a device on
        a 32-bit port), or None when the EUI is not in the log."""
        i = self._find(eui)
        return self._e[i] if i >= 0 else None

    def _fire(self, kind, eh):
        for fn in self._listeners:
            fn(kind, eh)

    def _commit(self, pend=None, add=None, drop=-1, hist=None, xpan=None, e=None, t=None):
        """Write the log whole as it is with these changes (pend {slot: its
        new copy}, add (eui, copy, its keys for _k or b""), drop a slot, a
        new historic blob, extended PAN id; or e, t: a new log without
        windows or keys in _k); True when written. The caller then makes the
        same changes in RAM (RAM follows flash). The install code's module
        is loaded for it (the link keys written are derived)."""
        k = w = None
        if e is None:
            e, t, k, w = self._e, self._t, self._k, self._w
        h = self._h if hist is None else hist
        x = self.ext_pan_id if xpan is None else xpan
        n = len(e)
        back = lazy.borrow(_IC)
        try:
            io = lazy.load(_IO)
            ic = lazy.load(_IC)
            self._store.kv("devlog", False).replace(lambda out: io.emit(out, e, t, w, n, pend, add, drop, h, x, k, ic))
        except Exception as ex:  # OSError / PowerLost from the flash, MemoryError
            log("device_log", "write failed: " + repr(ex))
            return False
        finally:
            io = ic = None
            lazy.give_back(back)
            lazy.drop(_IO)
        if hist is not None:
            self._h = hist
        if xpan is not None:
            self.ext_pan_id = xpan
        return True

    def _change(self, i, s, write=True):
        # slot i becomes copy s on flash (unless write is False: the caller
        # wrote it), then in RAM; True when written. Its window is kept while
        # its join state is "join window open": the windows' table is made
        # for the first and dropped with the last.
        if write and not self._commit({i: s}):
            return False
        memoryview(self._t)[i * _S:(i + 1) * _S] = memoryview(s)[:_S]
        w = self._w
        if s[0] >> 5 == _JS_WINDOW:
            if w is None:
                w = self._w = bytearray(len(self._t) // _S * _W)
            elif len(w) < (i + 1) * _W:
                w.extend(bytes((i + 1) * _W - len(w)))
            w[i * _W:(i + 1) * _W] = memoryview(s)[_S:]
        elif w is not None:
            t = self._t
            for j in range(len(self._e)):
                if t[j * _S] >> 5 == _JS_WINDOW:
                    return True
            self._w = None
        return True

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
        i = self._find(eh)
        if i >= 0:
            t = self._t
            o = i * _S
            typ = t[o] & 7
            if typ != _NO_TYPE and typ != dev_type:
                return INCOMPATIBLE, False
            # PROTOCOLS 2: ignore the key, succeed, CS14 with a zero-length hash
            js = t[o] >> 5
            if js != _JS_JOINED and js != _JS_RESTORED and t[o + 1] & _F_KEY and join_timeout_s:
                s = _window(memoryview(t)[o:o + _S], self.utc(), join_timeout_s)
                s[0] = s[0] & 0xF8 | dev_type
                if not self._change(i, s):
                    return WRITE_FAILURE, True
            eh = self._e[i]
            self._fire("duplicate", eh)
            return OK, True
        key, val = _keys(install_code)  # the CRC before anything else
        n = len(self._e)
        if n >= self.capacity:
            return FULL, False
        hkey = None
        h = self._h
        b = unhexlify(eh)
        for k in range(0, len(h), _HS):
            if h[k:k + 8] == b and h[k + 40] & 8:
                hkey = h[k + 24:k + 40]
        s = bytearray(_S)
        own = None if len(install_code) == 18 else key  # 16 octets that are no install code
        _fill(s, dev_type, own or True, val, _KS_INSTALL_CODE, None, _JS_WHITELISTED)
        if hkey is not None:
            s[1] |= _F_HKEY
        if join_timeout_s:
            s = _window(s, self.utc(), join_timeout_s)
        k = (own or b"") + (hkey or b"")  # its keys for _k
        if not self._commit(add=(eh, s, k)):
            return WRITE_FAILURE, False
        if n * _S >= len(self._t):
            self._t.extend(bytes(_S))
        self._e.append(eh)
        self._change(n, s, False)
        if k:
            if self._k is None:
                self._k = {}
            self._k[eh] = k
        self._fire("add", eh)
        return OK, False

    def remove(self, eui):
        """CCS02 unregister_device: the key hash moves to the historic log."""
        i = self._find(eui)
        if i < 0:
            return INCOMPATIBLE
        eh = self._e[i]
        t = self._t
        o = i * _S
        typ = t[o] & 7
        f = t[o + 1]
        hist = None
        if typ not in _NO_HISTORIC and f & _F_HASH:
            b = unhexlify(eh)
            h = self._h
            hist = bytearray()
            for k in range(0, len(h), _HS):
                if h[k:k + 8] != b:
                    hist.extend(h[k:k + _HS])
            try:
                hist.extend(lazy.load(_IO).hrec(eh, t[o + _O_HASH:o + _O_HASH + 16], self._link(i),
                                                None if typ == _NO_TYPE else typ, self.utc()))
            finally:
                lazy.drop(_IO)
            while len(hist) > self.historic_capacity * _HS:
                hist = hist[_HS:]  # oldest overwritten
            hist = bytes(hist)
        if not self._commit(drop=i, hist=hist):
            return WRITE_FAILURE
        # the last slot moves into the one freed
        e = self._e
        n = len(e) - 1
        mv = memoryview(t)
        if i < n:
            mv[o:o + _S] = mv[n * _S:(n + 1) * _S]
            e[i] = e[n]
            if t[o] >> 5 == _JS_WINDOW:  # its window with it
                w = memoryview(self._w)
                w[i * _W:(i + 1) * _W] = w[n * _W:(n + 1) * _W]
        e.pop()
        self._change(n, bytes(_S), False)  # the last slot cleared, the windows' table dropped with the last
        if self._k is not None:
            self._k.pop(eh, None)
            if not self._k:
                self._k = None
        try:
            self._store.kv("devstats", False).delete(eh)  # rare: a remove may cost one more write
        except Exception:
            pass
        self._fire("remove", eh)
        return OK

    def restore(self, ext_pan_id, devices):
        """CCS03 restore_PAN: rebuild the log from [(eui, value16)...]. Each
        16-octet value is the device's install code (_keys): the entry
        gets its link key back (key state "install code"), which the trust
        centre hands to the NCP so that the device can rejoin."""
        if len(ext_pan_id) != 8:
            raise DeviceLogError("extended PAN id must be 8 bytes")
        e = []
        t = bytearray(_S * (self.capacity if self.capacity > len(devices) else len(devices)))
        for eui, kh in devices:
            if len(kh) not in (0, 16):
                raise DeviceLogError("key hash must be 16 bytes")
            eh = eui_hex(eui)
            if eh in e:  # the last value of an EUI given twice
                i = e.index(eh)
                t[i * _S:(i + 1) * _S] = bytes(_S)
            else:
                i = len(e)
                e.append(eh)
            # the value is the install code: the link key its own (derived when asked)
            _fill(memoryview(t)[i * _S:(i + 1) * _S], None, True if kh else None, kh,
                  _KS_INSTALL_CODE if kh else _KS_NONE, None, _JS_RESTORED)
        if len(e) > self.capacity:
            return FULL
        if len(t) > _S * self.capacity:
            t = t[:_S * self.capacity]
        if not self._commit(xpan=bytes(ext_pan_id), e=e, t=t):
            return WRITE_FAILURE
        self._e = e
        self._t = t
        self._k = self._w = None
        for eh in e:
            self._fire("restore", eh)
        return OK

    def set_ext_pan_id(self, ext_pan_id):
        return self._commit(xpan=bytes(ext_pan_id))

    def backup(self):
        """CCS07 backup_PAN of both logs: ((t, xpan, [(eui, hash)]), (t, xpan, [...]))."""
        now = self.utc()
        xp = self.ext_pan_id or bytes(8)
        t = self._t
        act = [(unhexlify(eh), bytes(t[i * _S + _O_HASH:i * _S + _O_HASH + 16]) if t[i * _S + 1] & _F_HASH else b"")
               for i, eh in enumerate(self._e)]
        h = self._h
        hist = [(h[k:k + 8], h[k + 8:k + 24] if h[k + 40] & 16 else None) for k in range(0, len(h), _HS)]
        return (now, xp, act), (now, xp, hist)

    # -- reading ----------------------------------------------------------------

    def __len__(self):
        return len(self._e)

    def __contains__(self, eui):
        return self._find(eui) >= 0

    def _view(self, i, now):
        t = self._t
        o = i * _S
        b, f, node = unpack_from(_HDR, t, o)
        we = unpack_from("<I", self._w, i * _W + 4)[0] if b >> 5 == _JS_WINDOW else 0
        typ = b & 7
        typ = None if typ == _NO_TYPE else typ
        js = b >> 5
        if js == _JS_WINDOW and now >= we:
            js = _JS_WHITELISTED
        v = {"eui": self._e[i], "type": typ,
             "type_name": TYPE_NAMES[typ] if typ is not None else "unknown",
             "key_state": _KEY_STATES[(b >> 3) & 3],
             "key_hash": hexlify(memoryview(t)[o + _O_HASH:o + _O_HASH + 16]).decode() if f & _F_HASH else "",
             "node_id": node if f & _F_NODE else None,
             "join_state": NOT_HEARD if js == _JS_JOINED and not f & _F_HEARD else _JOIN_STATES[js],
             "window_end": we if js == _JS_WINDOW else None,
             "historic_key": bool(f & _F_HKEY)}
        if f & _F_STATS:
            rmin, rmax, lmin, lmax, rsum, lsum, n, last, ok, fail = unpack_from(_ST, t, o + _O_ST)
            v["rssi"] = (rmin, rsum // n, rmax) if n else None
            v["lqi"] = (lmin, lsum // n, lmax) if n else None
            v["last_comm"] = last
            v["tx_ok"] = ok
            v["tx_fail"] = fail
        else:
            v["rssi"] = v["lqi"] = v["last_comm"] = None
            v["tx_ok"] = v["tx_fail"] = 0
        return v

    def type_of(self, eui):
        """The device's type code, or None when it is not in the log: what the
        router asks of every routed message, without building the view.
        Canonical hex (as eui_hex gives) is looked up as it is."""
        i = self._find(eui)
        if i < 0:
            return None
        typ = self._t[i * _S] & 7
        return None if typ == _NO_TYPE else typ

    def get(self, eui):
        i = self._find(eui)
        return None if i < 0 else self._view(i, self.utc())

    def entries(self):
        now = self.utc()
        e = self._e
        return [self._view(e.index(eh), now) for eh in sorted(e)]

    def historic(self):
        """Oldest first: {eui, key_hash, type, type_name, removed}."""
        h = self._h
        out = []
        for k in range(0, len(h), _HS):
            typ = h[k + 40] & 7
            typ = None if typ == _NO_TYPE else typ
            out.append({"eui": hexlify(h[k:k + 8]).decode().upper(),
                        "key_hash": hexlify(h[k + 8:k + 24]).decode() if h[k + 40] & 16 else "", "type": typ,
                        "type_name": TYPE_NAMES[typ] if typ is not None else "unknown",
                        "removed": unpack_from("<I", h, k + 41)[0]})
        return out

    def install_code_matches(self, eui, install_code):
        """For an EUI in the log: does this install code (code||CRC) give the
        link key whose hash the entry holds? None when the entry holds no
        hash to compare with (restored without one), or the EUI is not in the
        log. InstallCodeError for a bad code."""
        val = _keys(install_code)[1]
        i = self._find(eui)
        if i < 0 or not self._t[i * _S + 1] & _F_HASH:
            return None
        o = i * _S + _O_HASH
        return val == self._t[o:o + 16]

    def restored_keys(self):
        """[(eui_hex, link key)] of the entries a restore left waiting for
        their device's rejoin (the trust centre puts them in the NCP's key table)."""
        t = self._t
        return [(eh, self._link(i)) for i, eh in enumerate(self._e)
                if t[i * _S] >> 5 == _JS_RESTORED and t[i * _S + 1] & _F_KEY]

    def not_heard(self):
        """EUIs of joined entries not heard since start."""
        t = self._t
        e = self._e
        return sorted(e[i] for i in range(len(e)) if t[i * _S] >> 5 == _JS_JOINED and not t[i * _S + 1] & _F_HEARD)

    def eui_of(self, node_id):
        t = self._t
        for i in range(len(self._e)):
            o = i * _S
            if t[o + 1] & _F_NODE and t[o + 2] | t[o + 3] << 8 == node_id:
                return self._e[i]
        return None

    # -- joining ----------------------------------------------------------------

    def open_join_window(self, eui, seconds):
        i = self._find(eui)
        if i < 0 or not self._t[i * _S + 1] & _F_KEY:
            return INCOMPATIBLE
        s = self._t[i * _S:(i + 1) * _S]
        if seconds > 0:
            s = _window(s, self.utc(), seconds)
        else:
            s[0] = s[0] & 0x1F | _JS_WHITELISTED << 5
        return OK if self._change(i, s) else WRITE_FAILURE

    def window_open(self, eui, now=None):
        i = self._find(eui)
        if now is None:
            now = self.utc()
        if i < 0 or self._t[i * _S] >> 5 != _JS_WINDOW:
            return False
        ws, we = unpack_from("<II", self._w, i * _W)
        return ws <= now < we

    def open_windows(self, now=None):
        """[(eui_hex, window_end)] of the windows open now."""
        if now is None:
            now = self.utc()
        out = []
        for i in range(len(self._e)):
            if self._t[i * _S] >> 5 == _JS_WINDOW:
                ws, we = unpack_from("<II", self._w, i * _W)
                if ws <= now < we:
                    out.append((self._e[i], we))
        return out

    def join_key(self, eui, now=None):
        """The link key a device may join with now, or None. A re-added
        device from the Historic log: its historic key for the first half of
        the window, the install-code key for the second half."""
        i = self._find(eui)
        if now is None:
            now = self.utc()
        if i < 0:
            return None
        b, f, node = unpack_from(_HDR, self._t, i * _S)
        if b >> 5 != _JS_WINDOW:
            return None
        ws, we = unpack_from("<II", self._w, i * _W)
        if not ws <= now < we or not f & _F_KEY:
            return None
        if f & _F_HKEY and (now - ws) * 2 < we - ws:
            return self._k[self._e[i]][-16:]
        return self._link(i)

    def link_keys(self, eui):
        """The link keys the device may hold after a join through this log:
        its install-code key and, if re-added, its historic key."""
        i = self._find(eui)
        if i < 0:
            return ()
        k = self._link(i)
        hk = self._k[self._e[i]][-16:] if self._t[i * _S + 1] & _F_HKEY else None
        return tuple(x for x in (k, hk) if x)

    def _link(self, i):
        # slot i's link key (None when none); its install code's is derived
        # (the install code's module loaded for it)
        t = self._t
        o = i * _S
        if t[o + 1] & _F_LK:
            return self._k[self._e[i]][:16]
        if not t[o + 1] & _F_KEY:
            return None
        back = lazy.borrow(_IC)
        try:
            ic = lazy.load(_IC)
            return ic.link_key(ic.add_crc(bytes(t[o + _O_HASH:o + _O_HASH + 16])))
        finally:
            ic = None
            lazy.give_back(back)

    def is_joined(self, eui):
        i = self._find(eui)
        return i >= 0 and self._t[i * _S] >> 5 in (_JS_JOINED, _JS_RESTORED)

    def record_join(self, eui, node_id):
        i = self._find(eui)
        if i < 0:
            return False
        if not isinstance(node_id, int) or not 0 <= node_id <= 0xFFFF:
            log("device_log", "join of %s refused: node id %r" % (self._e[i], node_id))
            return False
        s = self._t[i * _S:(i + 1) * _S]
        ks = (s[0] >> 3) & 3
        # a rejoin after a key establishment keeps its key; a join inside an
        # open window used the install-code key again
        b, f = s[0], s[1]
        cbke = ks == _KS_CBKE and not (b >> 5 == _JS_WINDOW and unpack_from("<I", self._w, i * _W + 4)[0] > self.utc())
        pack_into("<H", s, _O_NODE, node_id)
        s[0] = s[0] & 0x1F | _JS_JOINED << 5
        s[1] |= _F_NODE | _F_HEARD
        if f & _F_KEY and not cbke:
            s[0] = s[0] & 0xE7 | _KS_ESTABLISHED << 3
        ok = self._change(i, s)
        if not ok:
            self._t[i * _S + 1] |= _F_HEARD
        self.flush_stats()
        return ok

    def record_key_established(self, eui):
        """A completed key establishment (CBKE) with a joined device: its
        key state becomes "key establishment". True when recorded. The
        entry's 16 octets stay the install code (no CS14)."""
        i = self._find(eui)
        if i < 0 or self._t[i * _S] >> 5 not in (_JS_JOINED, _JS_RESTORED):
            return False
        if (self._t[i * _S] >> 3) & 3 == _KS_CBKE:
            return True
        s = self._t[i * _S:(i + 1) * _S]
        s[0] = s[0] & 0xE7 | _KS_CBKE << 3
        return self._change(i, s)

    def record_left(self, eui):
        i = self._find(eui)
        if i < 0:
            return False
        s = self._t[i * _S:(i + 1) * _S]
        s[0] = s[0] & 0x1F | _JS_LEFT << 5
        s[1] &= ~_F_HEARD
        self._t[i * _S + 1] &= ~_F_HEARD
        return self._change(i, s)

    def close_expired(self, now=None):
        """Mark windows that ended as whitelisted; -> their EUIs."""
        if now is None:
            now = self.utc()
        t = self._t
        gone = {}
        for i in range(len(self._e)):
            if t[i * _S] >> 5 == _JS_WINDOW and now >= unpack_from("<I", self._w, i * _W + 4)[0]:
                s = self._t[i * _S:(i + 1) * _S]
                s[0] = s[0] & 0x1F | _JS_WHITELISTED << 5
                gone[i] = s
        if gone and self._commit(gone):
            for i, s in gone.items():
                self._change(i, s, False)
        return [self._e[i] for i in gone]

    # -- statistics -------------------------------------------------------------

    def _st(self, i):
        # slot i's statistics (started at zero when none)
        o = i * _S
        t = self._t
        if not t[o + 1] & _F_STATS:
            memoryview(t)[o + _O_ST:o + _S] = bytes(_S - _O_ST)
            t[o + 1] |= _F_STATS
        return unpack_from(_ST, t, o + _O_ST)

    def record_rx(self, eui, rssi, lqi, t):
        i = self._find(eui)
        if i < 0:
            return False
        if not -128 <= rssi <= 127 or not 0 <= lqi <= 255 or not 0 <= t <= _U32:
            log("device_log", "rx from %s not recorded: rssi %r lqi %r t %r" % (self._e[i], rssi, lqi, t))
            return False
        rmin, rmax, lmin, lmax, rsum, lsum, n, last, ok, fail = self._st(i)
        if n == 0:
            rmin = rmax = rssi
            lmin = lmax = lqi
        else:
            rmin = min(rmin, rssi)
            rmax = max(rmax, rssi)
            lmin = min(lmin, lqi)
            lmax = max(lmax, lqi)
        if n >= 0x10000:  # keep sums small: halve the weight of history
            n >>= 1
            rsum //= 2
            lsum //= 2
        o = i * _S
        pack_into(_ST, self._t, o + _O_ST, rmin, rmax, lmin, lmax, rsum + rssi, lsum + lqi, n + 1, t, ok, fail)
        self._t[o + 1] |= _F_HEARD
        self._dirty()
        return True

    def record_tx(self, eui, ok):
        i = self._find(eui)
        if i < 0:
            return False
        st = self._st(i)
        o = i * _S + _O_ST + (20 if ok else 24)  # tx ok, tx fail
        n = st[8 if ok else 9]
        if n < _U32:
            pack_into("<I", self._t, o, n + 1)
        if ok:  # the device acknowledged it: heard
            self._t[i * _S + 1] |= _F_HEARD
        self._dirty()
        return True

    def _dirty(self):
        sf = self._sf
        if sf >= 0:
            self._sf = sf = ~sf
        if self.utc() - ~sf >= self.stats_period:
            self.flush_stats()

    def flush_stats(self):
        """Write the HAN statistics now (also called on join-state changes):
        the "devstats" record whole, of the entries that have statistics."""
        sf = self._sf
        self._sf = now = self.utc()
        if sf >= 0:
            return True
        e, t = self._e, self._t
        try:
            io = lazy.load(_IO)
            self._store.kv("devstats", False).replace(lambda out: io.emit_stats(out, e, t))
        except Exception:
            self._sf = ~now  # still to write
            return False
        finally:
            io = None
            lazy.drop(_IO)
        return True
