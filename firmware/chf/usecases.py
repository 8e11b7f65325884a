# CHF use cases: one protected GBCS command in, one protected response (and
# any alerts) out. Chf.handle() = parse -> authenticate -> check the payload
# is what the message code allows -> run each access-request specification
# against the CHF's COSEM objects -> DLMS access-response -> MAC'd response.
#
# Every rejection before execution is written to the CHF security log and
# raised (nothing runs). Each specification succeeds or fails on its own, as
# the RTDS error responses show (e.g. ECS26i: EUI read, the other two fail).
from micropython import const

import codes
import lazy
from gbcs import dlms
from gbcs.dlms import date_time  # wan.lastgasp takes it from here
from gbcs.security import answer_once

# data-access-result / action-result codes (chf.usecase_exec has the others)
OK = const(0)
TYPE_UNMATCHED = const(12)

_MC_CCS08 = const(0x0128)
_EXEC = const("chf.usecase_exec")
# what a command loads and the hub need not hold after it: the use cases'
# code, the modules they import, the APDU decoder, the credentials' code with
# its DER and P-256 (Chf.handle drops each one the command loaded)
_BORROWED = const(("chf.usecase_exec", "gbcs.dlms_apdu", "gbcs.usecase_base", "han.install_code",
                   "chf.credentials", "gbcs.der", "gbcs.p256"))
_SIGNED = const("gbcs.signed")  # signatures on frames: loaded for the use, dropped after


class Chf:
    """Chf(identity, event_log=None, security_log=None, device_log=None,
    utc2000=None): the CHF's GBCS side. handle(bytes) -> (response, alerts),
    both frames as bytes; raises SecurityError/FrameError/UseCaseError after
    logging when the command is refused."""

    def __init__(
        self,
        identity,
        event_log=None,
        security_log=None,
        device_log=None,
        utc2000=None,
        subghz=None,
        credentials=None,
        store=None,
        log_capacity=40,
    ):
        self.identity = identity
        self._subghz = subghz
        self._credentials = credentials
        self._store = store  # with a store, Sub GHz and credentials load on first use
        self._log_capacity = log_capacity
        self.parties = identity.parties("chf")
        self.event_log = event_log
        self.security_log = security_log
        self.device_log = device_log
        self.utc2000 = utc2000
        self.faults = {}  # (OBIS bytes, attribute/method) -> result code (rig fault injection)
        self.executed = 0  # commands that reached execution
        self.join_timeout = 0
        # versions(eui_hex) -> (application version, stack version) of a HAN
        # device (None items / None when not known): the HAN coordinator's
        # device_versions, wired by the installer once the coordinator exists
        self.versions = None
        self.image_action = None
        self.meter_image_action = None  # (kind 1 CS05b / 2 CS05c, method, data) -> (result, value): han.ota
        # the command chf.usecase_exec runs: [the join timeout its CCS01 sets,
        # then the Device Log's changes meanwhile (kind, EUI hex), for CS14];
        # None between commands (no change is noted then)
        self._cmd = None
        if device_log is not None:
            device_log.on_change(self._on_change)

    @property
    def subghz(self):
        if self._subghz is None and self._store is not None:
            from chf.subghz import SubGhz

            self._subghz = SubGhz(self._store, self._log_capacity, self.utc2000)
        return self._subghz

    @property
    def credentials(self):
        # the one given, else one made for the call: it holds nothing in RAM,
        # and its code goes with the command (handle)
        c = self._credentials
        if c is None and self._store is not None:
            from chf.credentials import Credentials

            c = Credentials(self._store, self.identity)
        return c

    def _on_change(self, kind, eui_hex):
        c = self._cmd
        if c is not None:
            c.append((kind, eui_hex))

    def handle(self, data, tag=None):
        """One command -> (response, alerts). tag: the link frame id it came
        under (bytes; None from the local port). The originator counter is
        written after the use case ran, with the answer, in one journal record; an
        exact resend (same counter, same frame, same tag) of the last command
        committed from that originator gets the same answer again without
        running (gbcs.security, docs/gbcs-usecases.md)."""
        b = lazy.borrow(*_BORROWED)
        try:
            return answer_once(self.parties, data, tag, self._handle, self.identity.store)
        finally:
            lazy.give_back(b)  # what the command loaded goes with it; a module held before stays

    def _handle(self, data):
        # chf.usecase_exec.handle, loaded for the command (dropped by handle)
        return lazy.load(_EXEC).handle(self, data)

    def firmware_alert(self, eui, version, code=0):
        """CCS08 0x8F8A (code 0, success) / 0x8F89 firmware transfer alert
        for a HAN device: ASN.1, signed with the CHF's DS key."""
        from gbcs import der

        alert = codes.ALERT_FW_TRANSFER_OK if code == 0 else codes.ALERT_FW_TRANSFER_FAILED
        dt = date_time(self.utc2000() if self.utc2000 else 0)
        when = "%04d%02d%02d%02d%02d%02dZ" % ((dt[0] << 8) | dt[1], dt[2], dt[3], dt[5], dt[6], dt[7])
        payload = der.encode(
            der.sequence(
                der.integer(alert),
                der.generalized_time(when),
                der.octets(bytes(eui)),
                der.octets(bytes(version)),
                der.integer(code),
            )
        )
        try:
            return bytes(lazy.load(_SIGNED).signed_alert(self.parties, _MC_CCS08, payload, self.identity.key("chf", "ds_d")))
        finally:
            lazy.drop(_SIGNED)

    def dlms_alert(self, message_code, alert_code, body, t=None):
        """A MAC'd DLMS data-notification alert {alert code, time stamp, body}
        with the CHF's next own counter (invoke-id from it)."""
        if t is None:
            t = self.utc2000() if self.utc2000 else 0
        counter = self.parties.own_counter() + 1
        value = (dlms.STRUCTURE, [(dlms.LONG_UNSIGNED, alert_code), (dlms.OCTET_STRING, date_time(t)), body])
        payload = dlms.data_notification(0x20000000 | (counter & 0xFFFFFF), value)
        return bytes(self.parties.protect_alert(message_code, payload))
