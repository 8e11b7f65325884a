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
#   key pair and cached.
# * A command is accepted only if its originator counter is strictly greater
#   than the last one accepted from that originator; the new value is
#   persisted (store KV) before the command is executed.
# * Responses reuse the command's counter and other-information; alerts use
#   the device's own counter (persisted, strictly increasing).
from micropython import const

from gbcs import frame as gframe
from gbcs import gcm, kdf, p256

ROLE_ACB = "acb"
ROLE_SUPPLIER = "supplier"
ROLE_NETWORK_OPERATOR = "network_operator"
ROLE_WAN_PROVIDER = "wan_provider"
ROLE_TRANSITIONAL_COS = "transitional_cos"
ROLE_RECOVERY = "recovery"
ROLES = (
    ROLE_ACB,
    ROLE_SUPPLIER,
    ROLE_NETWORK_OPERATOR,
    ROLE_WAN_PROVIDER,
    ROLE_TRANSITIONAL_COS,
    ROLE_RECOVERY,
)

FIRST_ALERT_COUNTER = const(4000)  # the RTDS CHF alerts start here
_OWN = "own"  # KV key of the device's own (alert) counter

# Security-log event codes written by the caller for each rejection (project
# codes in the 0x8Fxx space; the GBCS table is not in PROTOCOLS.md).
EV_NOT_PROTECTED = const(0x8FD0)
EV_WRONG_RECIPIENT = const(0x8FD1)
EV_UNKNOWN_ORIGINATOR = const(0x8FD2)
EV_REPLAYED_COUNTER = const(0x8FD3)
EV_BAD_MAC = const(0x8FD4)
EV_BAD_SIGNATURE = const(0x8FD5)


class SecurityError(ValueError):
    event = EV_NOT_PROTECTED


class NotProtected(SecurityError):
    """No MAC header/MAC, or not a command (CRA 1)."""

    event = EV_NOT_PROTECTED


class WrongRecipient(SecurityError):
    event = EV_WRONG_RECIPIENT


class UnknownOriginator(SecurityError):
    """No trust anchor for the originator, the supplementary remote party or
    the ACB that must have applied the MAC."""

    event = EV_UNKNOWN_ORIGINATOR


class ReplayedCounter(SecurityError):
    """Counter not strictly greater than the last accepted (replayed or stale)."""

    event = EV_REPLAYED_COUNTER


class BadMac(SecurityError):
    event = EV_BAD_MAC


class BadSignature(SecurityError):
    event = EV_BAD_SIGNATURE


def _hex(b):
    return "".join("%02x" % x for x in b)


def _unhex(s):
    return bytes(int(s[i : i + 2], 16) for i in range(0, len(s), 2))


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
        self._anchors = {}  # eui bytes -> (role, ka_pub bytes or None)
        self._z = {}  # eui bytes -> Z (cached)

    # --- trust anchors ------------------------------------------------------

    def add_anchor(self, eui, role, ka_pub=None):
        if len(eui) != 8:
            raise ValueError("anchor EUI must be 8 bytes")
        if role not in ROLES:
            raise ValueError("unknown role %r" % role)
        eui = bytes(eui)
        if ka_pub is not None:
            ka_pub = bytes(ka_pub)
            p256.decode_point(ka_pub)  # PointError when not on the curve
        self._anchors[eui] = (role, ka_pub)
        self._z.pop(eui, None)

    def clear_anchors(self):
        self._anchors = {}
        self._z = {}

    def anchors(self):
        return [(e, r, k) for e, (r, k) in self._anchors.items()]

    def role_of(self, eui):
        a = self._anchors.get(bytes(eui))
        return a[0] if a else None

    def acb(self):
        for e, (r, k) in self._anchors.items():
            if r == ROLE_ACB and k is not None:
                return e
        return None

    def z(self, eui):
        """ECDH(device KA, the anchor's KA key), computed once and cached."""
        eui = bytes(eui)
        z = self._z.get(eui)
        if z is None:
            a = self._anchors.get(eui)
            if a is None or a[1] is None:
                raise UnknownOriginator("no key-agreement trust anchor for %s" % _hex(eui))
            z = p256.ecdh(self._d, a[1])
            self._z[eui] = z
        return z

    def _mac_z(self):
        acb = self.acb()
        if acb is None:
            raise UnknownOriginator("no ACB key-agreement trust anchor")
        return self.z(acb)

    # --- counters -----------------------------------------------------------

    def last_counter(self, eui):
        v = self._kv.get(_hex(eui))
        return -1 if v is None else int(v)

    def own_counter(self):
        v = self._kv.get(_OWN)
        return FIRST_ALERT_COUNTER - 1 if v is None else int(v)

    def next_own_counter(self):
        c = self.own_counter() + 1
        self._kv.set(_OWN, c)  # persisted before the alert exists
        return c

    # --- incoming -----------------------------------------------------------

    def mac_key(self, cra, counter, originator, recipient):
        return kdf.derive_key(self._mac_z(), originator, cra, counter, recipient)

    def authenticate(self, f, commit=True):
        """Check a parsed command Frame. Returns it, or raises a SecurityError
        subclass; nothing is changed on a rejection. With commit (default) the
        accepted counter is persisted before returning."""
        if f.mac is None:
            raise NotProtected("command has no MAC")
        if f.cra != gframe.CRA_COMMAND:
            raise NotProtected("CRA flag %d is not a command" % f.cra)
        if bytes(f.recipient) != self.eui:
            raise WrongRecipient("recipient %s is not %s" % (_hex(f.recipient), _hex(self.eui)))
        orig = bytes(f.originator)
        if orig not in self._anchors:
            raise UnknownOriginator("unknown originator %s" % _hex(orig))
        if f.supp_party is not None and bytes(f.supp_party) not in self._anchors:
            raise UnknownOriginator("unknown supplementary remote party %s" % _hex(f.supp_party))
        last = self.last_counter(orig)
        if f.counter <= last:
            raise ReplayedCounter("counter %d from %s not above %d" % (f.counter, _hex(orig), last))
        key = self.mac_key(f.cra, f.counter, orig, self.eui)
        if not gcm.gmac_verify(key, f.iv(), (kdf.AAD_PREFIX, f.aad_body()), f.mac):
            raise BadMac("bad MAC on command %d from %s" % (f.counter, _hex(orig)))
        if commit:
            self._kv.set(_hex(orig), f.counter)
        return f

    def authenticate_signed(self, f, ds_pub, commit=True):
        """A command protected by its originator's signature only (no MAC),
        checked with the originator's DS trust anchor key ds_pub (None when
        there is none). Same counter rule as authenticate()."""
        if f.cra != gframe.CRA_COMMAND:
            raise NotProtected("CRA flag %d is not a command" % f.cra)
        if f.signature is None:
            raise NotProtected("command has neither MAC nor signature")
        if bytes(f.recipient) != self.eui:
            raise WrongRecipient("recipient %s is not %s" % (_hex(f.recipient), _hex(self.eui)))
        orig = bytes(f.originator)
        if ds_pub is None:
            raise UnknownOriginator("no digital-signing trust anchor for %s" % _hex(orig))
        last = self.last_counter(orig)
        if f.counter <= last:
            raise ReplayedCounter("counter %d from %s not above %d" % (f.counter, _hex(orig), last))
        if not p256.verify(ds_pub, f.signed_data(), f.signature):
            raise BadSignature("bad signature on command %d from %s" % (f.counter, _hex(orig)))
        if commit:
            self._kv.set(_hex(orig), f.counter)
        return f

    # --- outgoing -----------------------------------------------------------

    def protect_signed(self, cra, counter, recipient, message_code, payload, ds_private, date_time=None, maced=False):
        """A frame signed with the device's DS key (ECDSA over the grouping
        header without DF plus the payload), MAC'd too when maced. Returns
        a memoryview."""
        recipient = bytes(recipient)
        plain = gframe.build(cra, counter, self.eui, recipient, message_code, payload, date_time=date_time)
        sig = p256.sign(ds_private, gframe.parse(plain).signed_data())
        return gframe.build(
            cra,
            counter,
            self.eui,
            recipient,
            message_code,
            payload,
            date_time=date_time,
            signature=sig,
            mac_fn=self._mac_fn(cra, counter, recipient) if maced else None,
        )

    def signed_alert(self, message_code, payload, ds_private):
        """A signed (not MAC'd) alert with the device's own next counter, to the ACB."""
        recipient = self.acb()
        if recipient is None:
            raise UnknownOriginator("no ACB trust anchor to send alerts to")
        return self.protect_signed(gframe.CRA_ALERT, self.next_own_counter(), recipient, message_code, payload, ds_private)

    def out_key(self, cra, counter, recipient):
        """MAC key of a frame this device sends: its KA key pairs with the
        header recipient's (the ACB, or e.g. the supplier for a response to a
        direct supplier command: all 33 such RTDS responses); with the ACB's
        when the recipient has no KA trust anchor."""
        r = self._anchors.get(bytes(recipient))
        z = self.z(recipient) if r is not None and r[1] is not None else self._mac_z()
        return kdf.derive_key(z, self.eui, cra, counter, recipient)

    def _mac_fn(self, cra, counter, recipient):
        key = self.out_key(cra, counter, recipient)

        def mac_fn(prefix, body, iv):
            return gcm.gmac(key, iv, (prefix, body))

        return mac_fn

    def protect_response(self, cmd, payload, buf=None, date_time=None, supp_orig_counter=None):
        """Response frame to the parsed command `cmd`: CRA 2, the command's
        counter and other-information, originator = this device, recipient =
        the command's originator, MAC'd with Z(device, recipient) (out_key).
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
                raise UnknownOriginator("no ACB trust anchor to send alerts to")
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


def anchor_from_hex(d):
    """{eui, role, ka_pub} with hex strings -> (eui bytes, role, ka_pub bytes)."""
    ka = d.get("ka_pub")
    return _unhex(d["eui"]), d["role"], (_unhex(ka) if ka else None)
