# Key Establishment cluster (0x0800) server: the trust centre's side of
# CBKE (ZigBee SE 1.2 Annex C). The crypto runs on the NCP: this module
# checks the frames and the initiator's certificate and drives the NCP's
# CBKE commands (getCertificate*, generateCbkeKeys*, calculateSmacs*,
# clearTemporaryDataMaybeStoreLinkKey*; "283k1" for suite 2) and their
# handler callbacks. One key establishment at a time (the NCP keeps one
# temporary key pair). docs/cbke.md.
from micropython import const

from codes import EV_CBKE_FAILED
from flag import Flag
from han import zcl as Z
from han import zcl_servers as S
import mono

CLUSTER = const(0x0800)
_KE_SUITE_ATTR = const(0x0000)
# command ids (the same numbers both ways)
_INITIATE = const(0)
_EPHEMERAL = const(1)
_CONFIRM = const(2)
_TERMINATE = const(3)
# Terminate Key Establishment status
UNKNOWN_ISSUER = const(1)
BAD_KEY_CONFIRM = const(2)
BAD_MESSAGE = const(3)
NO_RESOURCES = const(4)
UNSUPPORTED_SUITE = const(5)
INVALID_CERTIFICATE = const(6)
# suite -> (certificate length, public key length, EZSP command suffix,
# subject offset, issuer offset in the certificate)
SUITES = {1: (48, 22, "", 22, 30), 2: (74, 37, "283k1", 28, 11)}
_GEN_TIME_S = const(10)  # ephemeral data / confirm key generate times we announce
_WAIT_S = const(10)  # the wait time in our Terminate
_NCP_MS = const(8000)  # how long an NCP handler may take
_STALE_MS = const(30000)  # a session idle this long gives way to a new one
# session list indexes
_EH = const(0)
_SUITE = const(1)
_CERT = const(2)
_STAGE = const(3)
_T = const(4)
_MACS = const(5)
_EPH = const(6)


def _eh(b):
    return "".join("%02X" % x for x in b)


class KeyEstablishment(S.AttributeServer):
    """The coordinator's zcl_servers[0x0800] hands it each frame (it is
    loaded on the first one). attach(ezsp) whenever the coordinator has an
    EZSP host; suites: those offered, preferred first (the NCP must hold a
    certificate for a suite to be used)."""

    def __init__(self, device_log, security_log, kv, suites=(2, 1)):
        self.log = device_log
        self.sec = security_log
        self._kv = kv  # KV "cbke": EUI hex -> the last outcome (0 done, else the Terminate status)
        self.suites = suites
        self.ez = None
        self.stats = {"ok": 0, "failed": 0, "busy": 0}
        self._s = None  # the session: [eh, suite, peer cert, stage, ms, (macu, macv), own eph]
        self._certs = {}
        self._got = None
        self._ev = Flag()

    def attach(self, ez):
        self.ez = ez
        self._s = None
        self._certs = {}
        for n in SUITES:
            sfx = SUITES[n][2]
            ez.on("generateCbkeKeysHandler" + sfx, self._handler)
            ez.on("calculateSmacsHandler" + sfx, self._handler)

    def result(self, eh):
        """The device's last key establishment with the hub: 0 done, its
        Terminate status if it failed, None if it never ran one."""
        return self._kv.get(eh)

    def _record(self, eh, status):
        try:  # written only when it changes (a KV write is one only then)
            self._kv.set(eh, status)
        except OSError:
            pass

    def _handler(self, v):
        self._got = v
        self._ev.set()

    def value(self, attr_id):
        if attr_id == _KE_SUITE_ATTR:
            m = 0
            for n in self.suites:
                m |= 1 << (n - 1)
            return (0x19, m)  # bitmap16
        return None

    async def __call__(self, eh, src_ep, h, p):
        if h.frame_type != Z.FT_CLUSTER or h.manufacturer is not None or h.direction:
            return self.handle(h, p)
        try:
            return await self._command(eh, h, p)
        except Exception as e:  # the NCP went away mid-exchange, ...
            return await self._fail(h, BAD_MESSAGE, eh, "ncp: %r" % (e,))

    async def _ncp(self, name, *args):
        """A command whose result comes in a handler: the handler's values."""
        self._ev.clear()
        self._got = None
        r = await self.ez.command(name, *args)
        if r[0] != 0:
            return None
        if not await self._ev.wait_ms(_NCP_MS):
            return None
        v = self._got
        return v if v[0] == 0 else None

    async def _clear(self, store):
        s = self._s
        self._s = None
        if s is not None and self.ez is not None:
            try:
                r = await self.ez.command("clearTemporaryDataMaybeStoreLinkKey" + SUITES[s[_SUITE]][2], 1 if store else 0)
                return r[0] == 0
            except Exception:
                return False
        return False

    async def _fail(self, h, status, eh, why, suite=None, record=True):
        if suite is None:
            suite = self._s[_SUITE] if self._s is not None else self.suites[0]
        if self._s is not None and self._s[_EH] == eh:
            await self._clear(False)
        self.stats["failed"] += 1
        if record and self.log.is_joined(eh):
            self._record(eh, status)
        self.sec.append(EV_CBKE_FAILED, ("%s %d %s" % (eh, status, why)).encode(), self.log.utc())
        return S.reply(h, _TERMINATE, bytes((status, _WAIT_S, suite & 0xFF, suite >> 8)), Z.FT_CLUSTER)

    async def _command(self, eh, h, p):
        c = h.command_id
        s = self._s
        now = mono.ms()
        if c == _INITIATE:
            if s is not None and s[_EH] != eh and now - s[_T] < _STALE_MS:
                self.stats["busy"] += 1
                return S.reply(h, _TERMINATE, bytes((NO_RESOURCES, _WAIT_S)) + p[:2], Z.FT_CLUSTER)
            if s is not None:
                await self._clear(False)
            return await self._initiate(eh, h, p, now)
        if s is None or s[_EH] != eh:
            if c == _TERMINATE:
                return None
            # a stray frame is no key establishment: the last outcome stands
            return await self._fail(h, BAD_MESSAGE, eh, "no key establishment open", record=False)
        s[_T] = now
        if c == _TERMINATE:
            await self._clear(False)
            self.stats["failed"] += 1
            return None
        clen, plen, sfx = SUITES[s[_SUITE]][:3]
        if c == _EPHEMERAL and s[_STAGE] == 1 and len(p) == plen:
            v = await self._ncp("calculateSmacs" + sfx, 0, s[_CERT], bytes(p))
            if v is None:
                return await self._fail(h, BAD_MESSAGE, eh, "calculateSmacs")
            s[_MACS] = (v[1], v[2])
            s[_STAGE] = 2
            return S.reply(h, _EPHEMERAL, s[_EPH], Z.FT_CLUSTER)
        if c == _CONFIRM and s[_STAGE] == 2 and len(p) == 16:
            macu, macv = s[_MACS]
            diff = 0
            for i in range(16):
                diff |= macu[i] ^ p[i]
            if diff:
                return await self._fail(h, BAD_KEY_CONFIRM, eh, "MACU")
            if not await self._clear(True):
                return await self._fail(h, NO_RESOURCES, eh, "link key not stored", s[_SUITE])
            self.stats["ok"] += 1
            self._record(eh, 0)
            self.log.record_key_established(eh)  # the Device Log's key state
            return S.reply(h, _CONFIRM, macv, Z.FT_CLUSTER)
        return await self._fail(h, BAD_MESSAGE, eh, "command %d out of order or malformed" % c)

    async def _initiate(self, eh, h, p, now):
        if len(p) < 4:
            return await self._fail(h, BAD_MESSAGE, eh, "short initiate")
        suite = p[0] | p[1] << 8
        if suite not in self.suites or suite not in SUITES:
            return await self._fail(h, UNSUPPORTED_SUITE, eh, "suite %d" % suite, suite)
        clen, plen, sfx, subj, iss = SUITES[suite]
        cert = bytes(p[4:])
        if len(cert) != clen:
            return await self._fail(h, BAD_MESSAGE, eh, "certificate length %d" % len(cert), suite)
        if self.ez is None or not self.log.is_joined(eh):
            return await self._fail(h, BAD_MESSAGE, eh, "not joined", suite)
        self._s = [eh, suite, cert, 0, now, None, None]  # held from here: a second initiator waits
        own = self._certs.get(suite)
        if own is None:
            r = await self.ez.command("getCertificate" + sfx)
            if r[0] != 0:
                return await self._fail(h, UNSUPPORTED_SUITE, eh, "NCP holds no suite %d certificate" % suite, suite)
            own = self._certs[suite] = bytes(r[1])
        if cert[iss:iss + 8] != own[iss:iss + 8]:
            return await self._fail(h, UNKNOWN_ISSUER, eh, "issuer %s" % _eh(cert[iss:iss + 8]), suite)
        if _eh(cert[subj:subj + 8]) != eh:
            return await self._fail(h, INVALID_CERTIFICATE, eh, "subject %s" % _eh(cert[subj:subj + 8]), suite)
        v = await self._ncp("generateCbkeKeys" + sfx)
        if v is None:
            return await self._fail(h, NO_RESOURCES, eh, "generateCbkeKeys", suite)
        self._s[_EPH] = bytes(v[1])
        self._s[_STAGE] = 1
        return S.reply(h, _INITIATE, bytes((suite & 0xFF, suite >> 8, _GEN_TIME_S, _GEN_TIME_S)) + own,
                       Z.FT_CLUSTER)
