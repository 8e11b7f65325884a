# GBCS remote-party security for one GBCS device (the CHF; later the GPF):
# authenticate incoming commands and MAC outgoing responses and alerts.
#
# Rules (docs/crypto.md, verified against the RTDS):
# * MAC = 12-byte GMAC, key = KDF(Z, originator, CRA, counter, recipient)
#   with the grouping header's values; IV = originator || 00000000; AAD =
#   11 00 00 00 00 00 || DF .. end of the signature field.
# * Commands: Z is ECDH(ACB KA key, device KA key), whoever is the header
#   originator: the ACB applies the MAC on the DCC side. The device's own
#   responses/alerts: Z = ECDH(device KA, header recipient's KA) (the ACB, or
#   the supplier answering a direct supplier command). Z is computed once per
#   key pair and kept in the anchor's record in place of its key.
# * A command is accepted only if its originator counter is strictly greater
#   than the last one accepted from that originator. By default the new value
#   is persisted (store KV) before the command is executed; with `defer` set
#   (the CHF and GPF handlers) it is held and written by commit() after the
#   use case ran, in ONE journal record together with the answer (class
#   Answers: every originator's counter, then the last answer = counter,
#   digest of (link tag || command frame), response, alerts). answered()
#   gives that answer back for an exact resend (same originator, counter and
#   digest) without executing again, also after a power cut between the
#   commit and the outbox (docs/gbcs-usecases.md, "Answered exactly once").
# * Responses reuse the command's counter and other-information; alerts use
#   the device's own counter (persisted, strictly increasing).
from micropython import const

from ids import hex_text
import codes
from log import KindError

import hashlib
import struct

from gbcs import frame as gframe
from gbcs import gcm, kdf
import lazy

# gbcs.p256: loaded to check an anchor's key and to compute a Z (cached per
# anchor) and dropped after, out of the boot set
_P256 = "gbcs.p256"

ROLE_ACB = "acb"
_ROLE_SUPPLIER = const("supplier")
_ROLE_NETWORK_OPERATOR = const("network_operator")
_ROLE_WAN_PROVIDER = const("wan_provider")
_ROLE_TRANSITIONAL_COS = const("transitional_cos")
_ROLE_RECOVERY = const("recovery")
ROLES = (
    ROLE_ACB,
    _ROLE_SUPPLIER,
    _ROLE_NETWORK_OPERATOR,
    _ROLE_WAN_PROVIDER,
    _ROLE_TRANSITIONAL_COS,
    _ROLE_RECOVERY,
)

_FIRST_ALERT_COUNTER = const(4000)  # the RTDS CHF alerts start here
_OWN = const("own")  # KV key of the device's own (alert) counter

# Security-log event codes written by the caller for each rejection (project
# codes in the 0x8Fxx space; the GBCS table is not in PROTOCOLS.md).


class SecurityError(KindError):
    """A refused command, raised as SecurityError(kind, message, event):
    `event` is its security-log code; the kinds (the classes of before):
    NotProtected (no MAC header/MAC, or not a command: CRA 1),
    WrongRecipient, UnknownOriginator (no trust anchor for the originator,
    the supplementary remote party or the ACB that must have applied the
    MAC), ReplayedCounter (not strictly greater than the last accepted),
    BadMac, BadSignature."""

    def __init__(self, kind, msg, event):
        super().__init__(kind, msg)
        self.event = event


class RemoteParties:
    """RemoteParties(eui, ka_private, kv) for one device.

    eui: the device's 8-byte EUI-64; ka_private: its 32-byte KA private key;
    kv: a store KV holding the counters (keys: originator EUI hex, "own")."""

    def __init__(self, eui, ka_private, kv):
        if len(eui) != 8:
            raise ValueError("device EUI must be 8 bytes")
        self.eui = bytes(eui)
        self._d = bytes(ka_private)
        self._kv = kv
        # eui bytes -> (role, KA public key (65 bytes) or None); once the
        # anchor's Z is computed, (role, Z (32 bytes)): the key served only that
        self._anchors = {}
        self.defer = False  # hold accepted counters for commit() (see the header)
        self._pending = None  # (originator bytes, counter) accepted, not yet written
        self.answers = None  # Answers: last answer per originator (set by answer_once)

    # --- trust anchors ------------------------------------------------------

    def add_anchor(self, eui, role, ka_pub):
        if len(eui) != 8:
            raise ValueError("anchor EUI must be 8 bytes")
        if role not in ROLES:
            raise ValueError("unknown role %r" % role)
        eui = bytes(eui)
        if ka_pub is not None:
            ka_pub = bytes(ka_pub)
            b = lazy.borrow(_P256)
            try:
                lazy.load(_P256).decode_point(ka_pub)  # P256Error (PointError) when not on the curve
            finally:
                lazy.give_back(b)
        self._anchors[eui] = (role, ka_pub)

    def role_of(self, eui):
        a = self._anchors.get(bytes(eui))
        return a[0] if a else None

    def acb(self):
        for e, (r, k) in self._anchors.items():
            if r == ROLE_ACB and k is not None:
                return e
        return None

    def z(self, eui):
        """ECDH(device KA, the anchor's KA key), computed once and kept in
        the anchor's record in place of the key."""
        eui = bytes(eui)
        a = self._anchors.get(eui)
        if a is None or a[1] is None:
            raise SecurityError("UnknownOriginator", "no key-agreement trust anchor for %s" % hex_text(eui),
                codes.EV_UNKNOWN_ORIGINATOR)
        z = a[1]
        if len(z) != 32:  # the key (65 bytes): Z not computed yet
            b = lazy.borrow(_P256)
            try:
                z = lazy.load(_P256).ecdh(self._d, z)
            finally:
                lazy.give_back(b)
            self._anchors[eui] = (a[0], z)
        return z

    def _mac_z(self):
        acb = self.acb()
        if acb is None:
            raise SecurityError("UnknownOriginator", "no ACB key-agreement trust anchor",
                codes.EV_UNKNOWN_ORIGINATOR)
        return self.z(acb)

    # --- counters -----------------------------------------------------------

    def last_counter(self, eui):
        v = self._kv.get(hex_text(eui))
        c = -1 if v is None else int(v)
        a = self.answers
        if a is not None:
            c = max(c, a._load()[0].get(bytes(eui), -1))  # the counter in the answer's record
        return c

    def own_counter(self):
        v = self._kv.get(_OWN)
        return _FIRST_ALERT_COUNTER - 1 if v is None else int(v)

    def next_own_counter(self):
        c = self.own_counter() + 1
        self._kv.set(_OWN, c)  # persisted before the alert exists
        return c

    def _accept(self, orig, counter):
        if self.defer:
            self._pending = (bytes(orig), counter)
        else:
            self._kv.set(hex_text(orig), counter)

    def answered(self, f, tag):
        """The stored answer (response bytes or None, [alert bytes]) when
        the parsed command frame `f` under link tag `tag` is an exact resend of the last command
        accepted from its originator (same counter, same digest); else None
        (the command then goes through authenticate() as usual). tag None
        (no link frame id, e.g. the local port): never a resend."""
        a = self.answers
        if tag is None or a is None:
            return None
        orig = bytes(f.originator)
        if f.counter != self.last_counter(orig):
            return None
        return a.get(orig, f.counter, digest(tag, f.buf))

    def commit(self, dig=None, resp=None, alerts=()):
        """Write the counter held by a deferred authenticate(): with the
        digest and the answer in `answers` (one file, replaced by rename), or
        alone in the KV (dig None, or no answers store: a command refused
        after authentication). No-op when nothing is held."""
        p = self._pending
        self._pending = None
        if p is None:
            return
        if dig is None or self.answers is None:
            self._kv.set(hex_text(p[0]), p[1])
        else:
            self.answers.put(p[0], p[1], dig, resp, alerts)

    # --- incoming -----------------------------------------------------------

    def authenticate(self, f, commit=True):
        """Check a parsed command Frame. Returns it, or raises a SecurityError
        subclass; nothing is changed on a rejection. With commit (default) the
        accepted counter is persisted before returning."""
        if f.mac is None:
            raise SecurityError("NotProtected", "command has no MAC", codes.EV_NOT_PROTECTED)
        if f.cra != gframe.CRA_COMMAND:
            raise SecurityError("NotProtected", "CRA flag %d is not a command" % f.cra,
                codes.EV_NOT_PROTECTED)
        if bytes(f.recipient) != self.eui:
            raise SecurityError("WrongRecipient", "recipient %s is not %s" % (hex_text(f.recipient), hex_text(self.eui)),
                codes.EV_WRONG_RECIPIENT)
        orig = bytes(f.originator)
        if orig not in self._anchors:
            raise SecurityError("UnknownOriginator", "unknown originator %s" % hex_text(orig),
                codes.EV_UNKNOWN_ORIGINATOR)
        if f.supp_party is not None and bytes(f.supp_party) not in self._anchors:
            raise SecurityError("UnknownOriginator", "unknown supplementary remote party %s" % hex_text(f.supp_party),
                codes.EV_UNKNOWN_ORIGINATOR)
        last = self.last_counter(orig)
        if f.counter <= last:
            raise SecurityError("ReplayedCounter", "counter %d from %s not above %d" % (f.counter, hex_text(orig), last),
                codes.EV_REPLAYED_COUNTER)
        key = kdf.derive_key(self._mac_z(), orig, f.cra, f.counter, self.eui)
        # the MAC's AAD: AAD_PREFIX, then the grouping header .. signature field
        if not gcm.gmac_verify(key, orig + b"\x00\x00\x00\x00", (kdf.AAD_PREFIX, f.buf[f.gh_start:f.sig_end]), f.mac):
            raise SecurityError("BadMac", "bad MAC on command %d from %s" % (f.counter, hex_text(orig)),
                codes.EV_BAD_MAC)
        if commit:
            self._accept(orig, f.counter)
        return f

    # --- outgoing -----------------------------------------------------------

    def _mac_fn(self, cra, counter, recipient):
        # the MAC key of a frame this device sends: its KA key pairs with the
        # header recipient's (the ACB, or e.g. the supplier for a response to
        # a direct supplier command: all 33 such RTDS responses); with the
        # ACB's when the recipient has no KA trust anchor
        r = self._anchors.get(bytes(recipient))
        z = self.z(recipient) if r is not None and r[1] is not None else self._mac_z()
        key = kdf.derive_key(z, self.eui, cra, counter, recipient)

        def mac_fn(prefix, body, iv):
            return gcm.gmac(key, iv, (prefix, body))

        return mac_fn

    def protect_response(self, cmd, payload, buf=None, date_time=None, supp_orig_counter=None):
        """Response frame to the parsed command `cmd`: CRA 2, the command's
        counter and other-information, originator = this device, recipient =
        the command's originator, MAC'd with Z(device, recipient) (_mac_fn).
        Optional grouping-header date_time (12 bytes); supp_orig_counter
        replaces the command's supplementary originator counter (the 26-byte
        other-information; only with a supplementary remote party). Returns a
        memoryview."""
        recipient = bytes(cmd.originator)
        if supp_orig_counter is None:
            supp_orig_counter = cmd.supp_orig_counter
        return gframe.build(
            gframe.CRA_RESPONSE,
            cmd.counter,
            self.eui,
            recipient,
            cmd.message_code,
            payload,
            date_time=date_time,
            supp_party=cmd.supp_party,
            supp_counter=cmd.supp_counter or 0,
            supp_orig_counter=supp_orig_counter if cmd.supp_party is not None else None,
            mac_fn=self._mac_fn(gframe.CRA_RESPONSE, cmd.counter, recipient),
            buf=buf,
        )

    def protect_alert(self, message_code, payload, recipient=None, buf=None):
        """Alert frame (CRA 3) with the device's own next counter, to the ACB
        unless another recipient is given. Returns a memoryview."""
        if recipient is None:
            recipient = self.acb()
            if recipient is None:
                raise SecurityError("UnknownOriginator", "no ACB trust anchor to send alerts to",
                    codes.EV_UNKNOWN_ORIGINATOR)
        counter = self.next_own_counter()
        return gframe.build(
            gframe.CRA_ALERT,
            counter,
            self.eui,
            bytes(recipient),
            message_code,
            payload,
            mac_fn=self._mac_fn(gframe.CRA_ALERT, counter, bytes(recipient)),
            buf=buf,
        )


def digest(tag, data):
    """SHA-256 of link tag || command frame, first 16 bytes."""
    h = hashlib.sha256(bytes(tag))
    h.update(bytes(data))
    return h.digest()[:16]


class Answers:
    """Answers(path): the accepted originator counters and the last answer,
    in ONE file replaced atomically (written to PATH.tmp, renamed over PATH:
    one littlefs metadata commit, as the store KV does): crc32 u32 | u8 n |
    n x (originator 8 | counter u64) | the answered command's originator 8
    | counter u64 | digest 16 | response length u16 | response | per alert:
    length u16 | alert. Only the last committed command can lack its outbox
    entry after a cut (the WAN handles one command at a time: commit,
    outbox, ACK), so one answer is enough; every originator's counter
    travels in each record. Read from the file at each use (a command reads
    it two or three times): nothing of it is held in RAM."""

    def __init__(self, path):
        self.path = path

    def _read(self):
        import binascii
        import os

        tmp = self.path + ".tmp"
        for name in (self.path, tmp):
            try:
                with open(name, "rb") as f:
                    p = f.read()
            except OSError:
                continue
            if len(p) >= 5 and struct.unpack(">I", p[:4])[0] == binascii.crc32(memoryview(p)[4:]) & 0xFFFFFFFF:
                if name == tmp:
                    os.rename(tmp, self.path)  # the first record: complete, its rename never happened
                return memoryview(p)[4:]
            if name == self.path:
                break  # a damaged file: no answer, counters from the KV
        try:
            os.remove(tmp)  # a write whose rename never happened
        except OSError:
            pass
        return None

    def _load(self, p=None):
        # -> ({originator: counter}, (originator, counter, digest) of the
        # stored answer or None), from the record p or the file
        c = {}
        last = None
        if p is None:
            p = self._read()
        if p is not None and len(p) >= 1 + 16 * p[0] + 34:
            n = p[0]
            for k in range(n):
                o = 1 + 16 * k
                c[bytes(p[o : o + 8])] = struct.unpack(">Q", p[o + 8 : o + 16])[0]
            o = 1 + 16 * n
            last = (bytes(p[o : o + 8]), struct.unpack(">Q", p[o + 8 : o + 16])[0], bytes(p[o + 16 : o + 32]))
        return c, last

    def get(self, orig, counter, dig):
        p = self._read()
        if p is None or self._load(p)[1] != (orig, counter, dig):
            return None
        i = 1 + 16 * p[0] + 32
        n = struct.unpack(">H", p[i : i + 2])[0]
        i += 2
        resp = bytes(p[i : i + n]) if n else None
        alerts = []
        i += n
        while i + 2 <= len(p):
            m = struct.unpack(">H", p[i : i + 2])[0]
            alerts.append(bytes(p[i + 2 : i + 2 + m]))
            i += 2 + m
        return resp, alerts

    def put(self, orig, counter, dig, resp, alerts):
        import binascii
        import os

        c = self._load()[0]
        c[orig] = counter
        parts = [bytes((len(c),))]
        for o, v in c.items():
            parts.append(o)
            parts.append(struct.pack(">Q", v))
        parts += [orig, struct.pack(">Q", counter), dig, struct.pack(">H", len(resp) if resp else 0)]
        if resp:
            parts.append(resp)
        for a in alerts:
            parts.append(struct.pack(">H", len(a)))
            parts.append(a)
        crc = 0
        for x in parts:
            crc = binascii.crc32(x, crc)
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(struct.pack(">I", crc & 0xFFFFFFFF))
            for x in parts:
                f.write(x)
        os.rename(tmp, self.path)  # durable: counter and answer together


def answer_once(parties, data, tag, run, store):
    """run(frame) -> (response, alerts) with the counter committed together
    with the answer (gbcs.security RemoteParties.commit); an exact resend is
    answered from the stored record. data: the command, bytes or a parsed
    Frame; run gets the Frame (or, when it does not parse, the bytes, for
    run's own refusal)."""
    if parties.answers is None and store is not None:
        path = store.root + "/ans_" + hex_text(parties.eui) + ".bin"
        cache = store.answers
        a = cache.get(path)
        if a is None:
            a = cache[path] = Answers(path)
        parties.answers = a
    try:
        f = gframe.frame_of(data)
    except gframe.FrameError:
        return run(data)  # refused there, with its security-log entry
    hit = parties.answered(f, tag)
    if hit is not None:
        return hit
    parties.defer = True
    parties._pending = None
    try:
        resp, alerts = run(f)
    except BaseException:
        parties.defer = False
        parties.commit()  # refused after authentication: the counter alone
        raise
    parties.defer = False
    parties.commit(digest(tag or b"", f.buf), resp, alerts)
    return resp, alerts
