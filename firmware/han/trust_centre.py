# Trust-centre policy on top of the EZSP host: only a device in the CHF
# Device Log may join, only while its join window is open, with its
# install-code-derived link key; known devices may rejoin; every other join is
# refused and written to the security log. See docs/device-log.md.
#
# The NCP holds one transient key per open window (importTransientKey /
# addTransientLinkKey); sync() keeps the NCP in step with the Device Log:
# keys for open windows (switching to the install-code key at half time for
# a device re-added from the Historic log), permit-join while any window is
# open, and the transient keys cleared and joining stopped when the last
# window closes. The coordinator calls sync() every second.
from binascii import unhexlify

import codes
from ids import eui_hex
import lazy

from micropython import const

# trustCenterJoinHandler: status (EmberDeviceUpdate) and decision (EmberJoinDecision)
_SECURED_REJOIN = const(0)
_UNSECURED_JOIN = const(1)
_DEVICE_LEFT = const(2)
_UNSECURED_REJOIN = const(3)
_DENY_JOIN = const(2)
_PERMIT_MAX = const(254)  # 255 would mean "forever"


class TrustCentre:
    def __init__(self, ezsp, device_log, security_log):
        # the time is the Device Log's (its utc): no attribute of its own
        self.ezsp = ezsp
        self.log = device_log
        self.sec = security_log
        # made when first needed (None: empty; not class attributes: the
        # class's table would grow): eui hex -> key imported into the NCP;
        # eui hex -> restored link key put in the NCP's key table; (node_id,
        # eui bytes) to remove from the network; node id -> EUI-64 or None:
        # traffic from a node not in the log
        self._keys = self._linked = self._kick = self._unknown = None
        self._permit_end = 0
        self.stats = {"joined": 0, "rejoined": 0, "refused": 0, "left": 0, "kicked": 0, "kick_errors": 0,
                      "adopted": 0, "not_adopted": 0}
        # node ids of joined devices, to remove a device from the network
        # when it is removed from the Device Log (the log entry is gone by then)
        self._nodes = {}
        # (joined in the log, heard since start or not)
        for e in device_log.entries():
            if e["node_id"] is not None and device_log.is_joined(e["eui"]):
                self._nodes[e["eui"]] = e["node_id"]
        device_log.on_change(self._on_log_change)
        self.on_removed = None  # fn(eui_hex): the coordinator drops its tunnels
        self.on_joined = None  # fn(eui_hex): a device joined or rejoined
        ezsp.on("trustCenterJoinHandler", self._on_join)

    def _on_log_change(self, kind, eh):
        if kind != "remove":
            return
        node = self._nodes.pop(eh, None)
        if node is not None:
            if self._kick is None:
                self._kick = []
            self._kick.append((node, unhexlify(eh)))
        if self.on_removed is not None:
            self.on_removed(eh)

    # -- NCP side ---------------------------------------------------------------

    async def sync(self):
        """Bring the NCP's transient keys and permit-join in line with the log."""
        now = self.log.utc()
        self.log.close_expired(now)
        want = {}
        end = 0
        for eh, we in self.log.open_windows(now):
            k = self.log.join_key(eh, now)
            if k is not None:
                want[eh] = k
                end = max(end, we)
        if self._keys and any(eh not in want for eh in self._keys):
            # a window closed: the NCP cannot forget one key, so clear them all
            await self.ezsp.command("clearTransientLinkKeys")
            self._keys = None
        for eh, k in want.items():
            if self._keys is None:
                self._keys = {}
            if self._keys.get(eh) != k:
                # the join-time key: v13+ importTransientKey, v8 addTransientLinkKey
                if self.ezsp.ver >= 13:
                    await self.ezsp.ok("importTransientKey", unhexlify(eh), k, 0)
                else:
                    await self.ezsp.ok("addTransientLinkKey", unhexlify(eh), k)
                self._keys[eh] = k
        # devices a restore (CCS03) brought back rejoin with their link keys
        for eh, k in self.log.restored_keys():
            if self._linked is None:
                self._linked = {}
            if self._linked.get(eh) != k:
                # a TC link key into the NCP's key table (v8:
                # addOrUpdateKeyTableEntry; v13+: importLinkKey, index 0xFF:
                # any free or the EUI's own entry)
                if self.ezsp.ver >= 13:
                    await self.ezsp.ok("importLinkKey", 0xFF, unhexlify(eh), k)
                else:
                    await self.ezsp.ok("addOrUpdateKeyTableEntry", unhexlify(eh), 1, k)
                self._linked[eh] = k
        if end > now:
            if self._permit_end < end and self._permit_end - now < _PERMIT_MAX // 2:
                s = min(_PERMIT_MAX, end - now)
                await self.ezsp.ok("permitJoining", s)
                self._permit_end = now + s
        elif self._permit_end:
            # also when our clock says it ran out: the NCP counts on its own
            await self.ezsp.ok("permitJoining", 0)
            self._permit_end = 0
        if self._unknown:  # rare (a power cut): its code is loaded for it
            net = lazy.load("han.network")
            try:
                await net.adopt(self)
            finally:
                net = None
                lazy.drop("han.network")
        while self._kick:
            node, eui = self._kick.pop(0)
            if not self._kick:
                self._kick = None
            try:
                # the device is its own destination (it is asked to leave):
                # removeDevice(dest short, dest long, target long)
                await self.ezsp.ok("removeDevice", node, eui, eui)
                self.stats["kicked"] += 1
            except Exception:
                self.stats["kick_errors"] += 1

    # -- joins the hub never recorded --------------------------------------------

    def unknown_sender(self, node, eui):
        """Traffic from a node id the Device Log does not know (called from
        the message callback; checked by the next sync())."""
        u = self._unknown
        if u is None:
            u = self._unknown = {}
        if node not in u and len(u) < 8:
            u[node] = eui

    def link_reset(self):
        """After an NCP reset its transient keys are gone: import them again."""
        self._keys = None
        self._linked = None
        self._permit_end = 0

    def _joined(self, eui, node):
        # the log's own EUI text: _nodes (and the coordinator's tables keyed
        # by device after on_joined) share it, no new string each
        eh = self.log.key(eui) or eui_hex(eui)
        self._nodes[eh] = node
        if self.on_joined is not None:
            self.on_joined(eh)

    # -- the join callback ------------------------------------------------------

    def _refuse(self, code, node, eui):
        self.stats["refused"] += 1
        self.sec.append(code, bytes(eui), self.log.utc())
        if self._kick is None:
            self._kick = []
        self._kick.append((node, bytes(eui)))

    def _on_join(self, v):
        node, eui, status, decision = v[0], bytes(v[1]), v[2], v[3]
        if eui not in self.log:
            if status != _DEVICE_LEFT:
                self._refuse(codes.EV_UNKNOWN_JOIN, node, eui)
            return
        if status == _DEVICE_LEFT:
            self.stats["left"] += 1
            self._nodes.pop(eui_hex(eui), None)
            self.log.record_left(eui)
            return
        if decision == _DENY_JOIN:
            # the NCP refused it (no key / wrong key): log, nothing to undo
            self.stats["refused"] += 1
            self.sec.append(codes.EV_JOIN_BAD_KEY if self.log.window_open(eui) else codes.EV_JOIN_WINDOW_CLOSED,
                            eui, self.log.utc())
            return
        if status == _UNSECURED_JOIN:
            if self.log.window_open(eui):
                self.stats["joined"] += 1
                self.log.record_join(eui, node)
                self._joined(eui, node)
                return
            self._refuse(codes.EV_JOIN_WINDOW_CLOSED, node, eui)
            return
        # a rejoin (secured or unsecured) of a known device
        if self.log.is_joined(eui) or self.log.window_open(eui):
            self.stats["rejoined"] += 1
            self.log.record_join(eui, node)
            self._joined(eui, node)
            return
        self._refuse(codes.EV_JOIN_WINDOW_CLOSED, node, eui)
