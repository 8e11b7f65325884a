# EZSP host: version negotiation, request/response correlation by sequence
# number, callback dispatch, and the coroutines the HAN coordinator and trust
# centre use at run time (the bring-up, forming and the energy scan are in
# han.network, loaded for them).
#
# transport: `await send(bytes)`, an `on_frame` attribute that connect()
# sets to the host's frame handler (han.ash.Ash calls it with each EZSP frame
# as it acknowledges it, in its reader task: no task of the host's own), and
# optionally `await reset()`. The exception that takes the link down
# (han.ash.NcpReset, LinkFailure) comes the same way, once: pending commands
# fail with EzspLinkDown and the `on_fault(exc)` hook is called; the owner
# then runs `connect()` + han.network's `startup()` + `network()` again.
from han import ezsp_frames as F
from flag import Flag

SE_PROFILE = 0x0109
APS_OPTIONS = 0x0160  # ENCRYPTION | RETRY | ENABLE_ROUTE_DISCOVERY
APS_OPTION_FRAGMENT = 0x8000


class Ezsp:
    # defaults an instance holds only when they differ (fewer attributes
    # than 13: the attribute table of 12 slots, not 17)
    desired = 14  # the EZSP version asked of the NCP first
    timeout = 3  # s: a command's wait for its response (han.network's waits build on it)
    fault = None  # the exception that took the link down
    last_handler_error = None

    def __init__(self, transport, desired=14):
        self.t = transport
        if desired != 14:
            self.desired = desired
        self.ver = F.LEGACY
        self.stack_version = 0
        self.eui = None
        self._seq = 0
        self._pending = {}  # seq -> [event, name, result]
        self._handlers = {}  # callback name -> fn(values)
        self.on_fault = None
        self.network_up = False
        self._state_ev = Flag()
        self._tag = 0
        self.stats = {"tx": 0, "rx": 0, "callbacks": 0, "timeouts": 0, "bad": 0, "unclaimed": 0,
                      "handler_errors": 0}
        self.on("stackStatusHandler", self._stack_status)

    # -- plumbing --
    def on(self, name, fn):
        """Register fn(values_tuple) for a callback frame (one per name)."""
        self._handlers[name] = fn

    def _stack_status(self, v):
        up = F.network_state(self.ver, v[0])
        if up is not None:
            self.network_up = up
        self._state_ev.set()

    async def connect(self):
        """Reset the link (if the transport can), negotiate the version."""
        if self.fault is not None:
            self.fault = None
        self.ver = F.LEGACY
        self.network_up = False
        self.t.on_frame = self._frame  # before the reset: no frame of the new link is missed
        if hasattr(self.t, "reset"):
            await self.t.reset()
        # the version: the desired one, else the one the NCP speaks if supported
        ver, _st, sv = await self.command("version", self.desired)
        if ver not in F.SUPPORTED:
            raise F.EzspError("EzspVersionError", "NCP speaks EZSP v%d (need 8, 13 or 14)" % ver)
        self.ver = ver
        if ver != self.desired:
            v2 = (await self.command("version", ver))[0]
            if v2 != ver:
                raise F.EzspError("EzspVersionError", "NCP refused EZSP v%d" % ver)
        self.stack_version = sv
        return ver

    def _frame(self, raw):
        # one EZSP frame from the transport, or the exception that took the
        # link down; raises nothing (it runs in the transport's reader)
        if not isinstance(raw, Exception):
            self.stats["rx"] += 1
            try:
                seq, fc, fid, pos = F.decode_header(self.ver, raw)
                name = F.name_of(self.ver, fid)
                if fc & (F.FC_TRUNCATED | F.FC_OVERFLOW):
                    self.stats["bad"] += 1  # the NCP dropped or cut something
                if fc & F.FC_CB_MASK:
                    self.stats["callbacks"] += 1
                    fn = self._handlers.get(name)
                    if fn is not None:
                        v = F.decode_params(self.ver, F.lookup(self.ver, name)[2], raw, pos, False)
                        try:
                            fn(v)
                        except Exception as e:  # a handler bug must not take the link down
                            self.stats["handler_errors"] += 1
                            self.last_handler_error = e
                    return
                p = self._pending.pop(seq, None)
                if p is None:
                    self.stats["unclaimed"] += 1
                    return
                if name == "invalidCommand":
                    p[2] = F.EzspError("EzspUnknownFrame", "NCP rejected %s" % p[1])
                elif name != p[1]:
                    p[2] = F.EzspError("EzspFrameError", "response %s to %s" % (name, p[1]))
                else:
                    try:
                        p[2] = F.decode_params(self.ver, F.lookup(self.ver, name)[2], raw, pos, False)
                    except F.EzspError as e:
                        p[2] = e
                p[0].set()
                return
            except F.EzspError:
                self.stats["bad"] += 1
                return
            except Exception as e:  # MemoryError ...: the host can no longer follow the link
                raw = e
        # the link is down (NcpReset / LinkFailure / closed): once a link
        if self.fault is not None:
            return
        self.fault = raw
        self.network_up = False
        for p in self._pending.values():
            p[2] = F.EzspError("EzspLinkDown", "link down: %s" % raw)
            p[0].set()
        self._pending.clear()
        self._state_ev.set()
        if self.on_fault:
            self.on_fault(raw)

    def command(self, name, *args):
        """Send a command, return its response values (tuple) (an awaitable:
        command, ok and send_unicast are one coroutine frame, _call, not a
        chain of three while a send waits for the NCP)."""
        return self._call(name, args, False, None)

    def ok(self, name, *args):
        """Command whose first response value is a status that must be 0."""
        return self._call(name, args, True, None)

    async def _call(self, name, args, check, ret):
        # command (check False) or ok (check True); returns the response
        # values, or `ret` when that is not None (send_unicast's tag)
        if self.fault is not None:
            raise F.EzspError("EzspLinkDown", "link down: %s" % self.fault)
        seq = self._seq
        self._seq = (seq + 1) & 0xFF
        frame = F.encode_frame(self.ver, seq, name, args)
        args = None  # the payload goes with the frame once it is sent
        ev = Flag()
        p = [ev, name, None]
        self._pending[seq] = p
        try:
            await self.t.send(frame)
            frame = None
            self.stats["tx"] += 1
            if not await ev.wait_ms(self.timeout * 1000):
                self.stats["timeouts"] += 1
                raise F.EzspError("EzspTimeout", "no response to %s" % name)
        finally:
            self._pending.pop(seq, None)
        r = p[2]
        if isinstance(r, Exception):
            raise r
        if check and r and r[0] != 0:
            raise F.EzspError("EzspStatusError", "%s failed: status 0x%X" % (name, r[0]))
        return r if ret is None else ret

    # -- coordinator API (the NCP bring-up, forming and the energy scan:
    # han.network; the join-time keys and permitJoining: the trust centre's
    # own ok() calls; the callbacks' values are read where they are handled) --
    def next_tag(self):
        """The message tag the next send_unicast will use (register a waiter
        for its messageSentHandler before sending)."""
        return (self._tag + 1) & (0xFFFF if self.ver >= 14 else 0xFF)

    def send_unicast(self, node_id, profile, cluster, src_ep, dst_ep, payload, options, group):
        """Send (an awaitable); return the message tag echoed in
        messageSentHandler. For an APS fragment, options has
        APS_OPTION_FRAGMENT and group carries (count << 8) | index
        (EmberZNet's host-side fragmentation)."""
        tag = self._tag = self.next_tag()
        return self._call("sendUnicast", (0, node_id, (profile, cluster, src_ep, dst_ep, options, group, 0), tag, payload),
                          True, tag)

    def close(self):
        # the transport's frames no longer come here
        self.t.on_frame = None
