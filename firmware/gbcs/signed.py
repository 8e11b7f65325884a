# Signatures on GBCS frames (ECDSA with the device's DS key): a command
# protected by its originator's signature alone (CS02a), a signed response
# (CS02a) and a signed alert (CCS08). Rare: loaded for the use and dropped
# after it (firmware/lazy.py; chf.usecases drops it with the use case's run).
# The functions take the device's RemoteParties (`self`, gbcs.security).
import codes
from gbcs import frame as gframe
from gbcs import p256
from gbcs.security import SecurityError
from ids import hex_text


def authenticate_signed(self, f, ds_pub, commit=True):
    """A command protected by its originator's signature only (no MAC),
    checked with the originator's DS trust anchor key ds_pub (None when
    there is none). Same counter rule as authenticate()."""
    if f.cra != gframe.CRA_COMMAND:
        raise SecurityError("NotProtected", "CRA flag %d is not a command" % f.cra,
            codes.EV_NOT_PROTECTED)
    if f.signature is None:
        raise SecurityError("NotProtected", "command has neither MAC nor signature",
            codes.EV_NOT_PROTECTED)
    if bytes(f.recipient) != self.eui:
        raise SecurityError("WrongRecipient", "recipient %s is not %s" % (hex_text(f.recipient), hex_text(self.eui)),
            codes.EV_WRONG_RECIPIENT)
    orig = bytes(f.originator)
    if ds_pub is None:
        raise SecurityError("UnknownOriginator", "no digital-signing trust anchor for %s" % hex_text(orig),
            codes.EV_UNKNOWN_ORIGINATOR)
    last = self.last_counter(orig)
    if f.counter <= last:
        raise SecurityError("ReplayedCounter", "counter %d from %s not above %d" % (f.counter, hex_text(orig), last),
            codes.EV_REPLAYED_COUNTER)
    if not p256.verify(ds_pub, f.signed_data(), f.signature):
        raise SecurityError("BadSignature", "bad signature on command %d from %s" % (f.counter, hex_text(orig)),
            codes.EV_BAD_SIGNATURE)
    if commit:
        self._accept(orig, f.counter)
    return f


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
        raise SecurityError("UnknownOriginator", "no ACB trust anchor to send alerts to",
            codes.EV_UNKNOWN_ORIGINATOR)
    return protect_signed(self, gframe.CRA_ALERT, self.next_own_counter(), recipient, message_code, payload, ds_private)
