# The hub's wiring: every part is built here, in this order, and handed the
# parts it uses; no part looks another up by name. docs/architecture.md
# draws the result and says where a change goes.
import asyncio
import gc

from micropython import const

import board
import lazy
from ids import utc2000
from log import log, log_exc
from version import VERSION

# The parts used only by the wiring (Hub.__init__, main) or by one method
# (store, provision, local_port, mono, sys) are imported there: their modules
# are held in sys.modules all the same, but not each name in this module's
# globals as well (a slot each, for the hub's life).

try:
    from build_info import GIT as _GIT  # stamped by `chub build`
except ImportError:
    _GIT = "source"

_DEVICE_LOG_CAPACITY = const(16)
_LOG_CAPACITY = const(40)
_CRITICAL = const(("han", "wan", "last_gasp", "board", "local_port"))  # the watchdog's (supervisor.watchdog)
_CLUSTER_OTA = const(0x0019)  # han.ota.CLUSTER_OTA
_TICK_MS = const(200)  # Hub.run's ticks: the heap's high-water mark
_TICKS_S = const(5)  # ticks a second: the watchdog, LEDs, update
_TICKS_CLOCK = const(3000)  # ticks in 10 minutes: the clock's age count

# Features used only on request, out of the boot import set (firmware/lazy.py):
# their local-port commands, module -> the names in its COMMANDS. The hub
# commands map each name to its module's name; the dispatch loads the module
# for the call and drops it after (han.ota: when its server is idle).
_LAZY_COMMANDS = const((
    ("chf.commands", ("device_log_list", "device_log_add", "device_log_remove", "logs")),
    ("han.commands", ("han_status", "han_rotate_key", "han_tunnel", "han_zcl_read", "han_energy_scan")),
    ("han.ota", ("ota_status", "ota_begin", "ota_put", "ota_notify")),
    ("update.commands", ("image_status", "image_write", "image_end", "image_activate", "image_abort",
                         "image_anchor")),
))


def _utc2000():
    return utc2000(board.utc())


def _tick_error(e, last):
    # an error of Hub.run's ticks: logged unless it is the one logged last
    r = repr(e)
    if r != last:
        log_exc("hub", e)
    return r


class Commands:
    """The local-port commands by name (hub.commands: get, [], in): found in
    the parts' COMMANDS tuples where they lie (a dict of them held a table of
    ~400 bytes on a 32-bit board), or, for a feature loaded on first use, the
    name of its module (lazy: (module, names) pairs, _LAZY_COMMANDS)."""

    def __init__(self, groups, lazy):
        self.groups = groups
        self.lazy = lazy

    def get(self, name):
        for group in self.groups:
            for n, fn in group:
                if n == name:
                    return fn
        for module, names in self.lazy:
            if name in names:
                return module
        return None

    def __getitem__(self, name):
        fn = self.get(name)
        if fn is None:
            raise KeyError(name)
        return fn

    def __contains__(self, name):
        return self.get(name) is not None


class Hub:
    """The hub's parts. Local-port commands are fn(hub, req) and read the
    parts they serve from here (docs/local-port.md)."""

    def __init__(self, running=None):
        from chf import gbcs_port
        from chf.device_log import DeviceLog
        from chf.logs import MalformedWatch, open_logs
        from clock import Clock
        from gpf import service as gpf_service
        from han import coordinator as han_coordinator
        from leds import StatusLeds
        from supervisor import Supervisor
        from wan import commands as wan_commands
        from wan import service as wan_service
        from wan import settings as wan_settings
        import store
        from chf import provision

        self.heap_high_water = 0
        self.local_port_up = asyncio.Event()
        st = self.store = store.Store(board.mount())
        sup = self.supervisor = Supervisor()

        # the CHF's logs and Device Log; the hub's clock
        dl = self.device_log = DeviceLog(st, _utc2000, _DEVICE_LOG_CAPACITY)
        watch = MalformedWatch()  # 0x8F60 (its alert: security_alert, below)
        ev, sec = self.event_log, self.security_log = open_logs(st, _LOG_CAPACITY, utc=_utc2000, watch=watch)
        clk = self.clock = Clock(board.utc, board.set_utc, board.ticks_ms)

        # the HAN; the CHF (device versions from the HAN); the GPF (its
        # mirrored clusters served on the HAN)
        coord = self.coordinator = han_coordinator.Coordinator(st, dl, sec, sup, clk)
        chf = self.chf = gbcs_port.build(st, ev, sec, dl, _utc2000, coord.device_versions, _LOG_CAPACITY)
        ident = self.identity = chf.identity
        gpf = self.gpf = gpf_service.GpfService(st, ident, clk, sec, ev, coord.ke_result)
        for cluster in gpf_service.SERVED:
            coord.zcl_servers[cluster] = gpf.zcl_server(cluster)
        # meter firmware over the HAN: the OTA Upgrade server (han.ota; CCS08
        # at upgrade end), loaded on a device's first request or ota_*
        # command, dropped again while idle (ota_server, ota_idle)
        self.ota = None
        self.ota_running = {}  # eui hex -> the file version each device said it runs (outlives a drop)
        coord.zcl_servers[_CLUSTER_OTA] = self.ota_zcl

        # the WAN (outbox and emit first: messages queue before the link is
        # up) and the router. They need each other: the WAN hands the
        # head-end's frames to route(), the router sends through emit().
        # route.router loads after the CHF is built: first-boot key
        # generation, the boot's heap peak, runs without its code loaded
        from route import router as route_router

        wan = self.wan = wan_service.WanService(st, ident, clk, board.utc, board.power_fail, self.local_port_up)
        rt = self.router = route_router.Router(st, chf, ident, dl, ev, sec, _utc2000,
                                               gpf=gpf, coordinator=coord, emit=wan.emit)
        wan.route = rt.route
        wan.attach_chf(chf, ev, sec)
        watch.send = self.security_alert
        coord.on_tunnel_message = rt.on_tunnel_message
        coord.on_tunnel_reply = rt.on_tunnel_reply
        clk.on_step = self.clock_step
        wan_settings.apply_clock(clk, wan.settings)

        self.leds = StatusLeds(dl, coord, wan, board.power_fail)

        # the hub's own update (update.image, loaded on first use:
        # update_server; running: the image slot update.slots chose)
        self.running = running
        self.updater = None
        self.update_booting = True  # until the update job's after_boot is done (it holds the updater)
        chf.image_action = self.image_action  # CS05a / CS06 on the CHF's Image transfer object
        chf.meter_image_action = self.meter_image_action  # CS05b / CS05c: the meters' images into the OTA server

        # the local port: the commands, behind the installer guard
        self.provisioning = None  # chf.provision_steps.Provisioning while a run is open
        self.installer_auth = provision.installer_auth(st, sec, ev)
        lazy_cmds = _LAZY_COMMANDS  # loaded by run_command
        if board.RIG:
            # the rig's hooks (the emulated board only: their names appear in
            # no ESP32 image, so they are read from the module, then dropped)
            names = tuple(c[0] for c in lazy.load("rig.hooks").COMMANDS)
            lazy_cmds = lazy_cmds + (("rig.hooks", names),)
            lazy.drop("rig.hooks")
            lazy.drop("rig")
        self.commands = Commands(((("status", Hub.cmd_status),), gbcs_port.COMMANDS, wan_commands.COMMANDS,
                                  gpf_service.COMMANDS, route_router.COMMANDS, provision.COMMANDS), lazy_cmds)
        # the head-end's management channel (wan.mgmt, loaded per request:
        # manage) runs the same commands (its own allow-list)
        wan.manage = self.manage

        # the jobs: a task each for the work that waits on something; the
        # periodic ticks (heap, LEDs, clock, update) run in Hub.run's task
        sup.spawn("han", coord.run)
        sup.spawn("last_gasp", wan.watch_power)
        sup.spawn("wan", wan.run)
        sup.spawn("report", wan.report)
        sup.spawn("route", rt.run)

    def emit(self, frame, kind):
        # a frame for the head-end through the WAN outbox (wan.emit)
        self.wan.emit(frame, kind)

    def clock_step(self, name, step, outcome):
        # Clock.on_step: each clock event (adjusted, set, refused, network
        # time disagreeing) goes to the WAN transaction log (as "time_step",
        # detail "+25 headend refused") and to the CHF event log under its
        # code (data: the seconds as i32 big-endian, then the source name)
        import codes
        import struct

        if outcome == codes.EV_CLOCK_ADJUSTED:
            word = "adjusted"
        elif outcome == codes.EV_CLOCK_STEP:
            word = "set"
        elif outcome == codes.EV_CLOCK_NOT_ADJUSTED:
            word = "refused"
        elif outcome == codes.EV_CLOCK_DISAGREES:
            word = "disagrees"
        else:
            word = "?"
        self.wan.txlog.add("time_step", 0, "%+d %s %s" % (step, name, word))
        self.event_log.append(outcome, struct.pack(">i", step) + name.encode()[:16])
        log("clock", "%+d s from %s: %s" % (step, name, word))

    def security_alert(self, code):
        # a CHF alert without payload to the head-end (0x8F60), built as the
        # last gasp builds its alerts
        from wan.lastgasp import build_alert

        self.emit(build_alert(self.chf, code, board.utc()), "alert")

    def fw_transfer(self, eh, version, code):
        # a HAN device has the whole image (code 0) or failed it: CCS08
        # 0x8F8A / 0x8F89 to the head-end through the outbox
        from binascii import unhexlify

        self.emit(self.chf.firmware_alert(unhexlify(eh), version, code), "alert")

    def ota_server(self):
        """The OTA Upgrade server (han.ota), loaded and built if it is not."""
        o = self.ota
        if o is None:
            m = lazy.load("han.ota")
            o = self.ota = m.OtaServer(self.store, self.coordinator, board.utc, self.fw_transfer, self.ota_running)
        return o

    def ota_idle(self):
        # the server and its module go while it holds nothing RAM-only (han.ota OtaServer.idle)
        if self.ota is not None and self.ota.idle():
            self.ota = None
            lazy.drop("han.ota_wan")  # CS05b/CS05c's part, loaded by the server on the first one
            lazy.drop("han.ota")

    def meter_image_action(self, kind, method, v):
        # chf.meter_image_action: CS05b / CS05c into the OTA server (han.ota_wan through it)
        try:
            return self.ota_server().wan_action(kind, method, v)
        finally:
            self.ota_idle()

    async def ota_zcl(self, eh, src_ep, h, p):
        # coordinator.zcl_servers[0x0019]: a device's OTA request
        try:
            return self.ota_server().handle(eh, h, p)
        finally:
            self.ota_idle()

    def update_server(self):
        """The hub's update (update.image.Updater), loaded and built if it is
        not (it resumes a staging a power cut cut short, from flash)."""
        u = self.updater
        if u is None:
            st = self.store
            u = self.updater = lazy.load("update.image").Updater(
                st.root, board.NAME, st.kv("update", keep=False), self.event_log, self.security_alert,
                board.utc, board.reset, self.running, log)
        return u

    def update_idle(self):
        # the updater and its modules go while it holds nothing RAM-only (update.image Updater.idle)
        if self.updater is not None and not self.update_booting and self.updater.idle():
            self.updater = None
            for name in ("update.ota", "update.image", "update.slots", "update"):
                lazy.drop(name)

    def image_action(self, method, v):
        # chf.image_action: CS05a / CS06 from the CHF (update.ota, through the updater)
        try:
            return self.update_server().image_action(method, v)
        finally:
            self.update_idle()

    async def update_job(self):
        # the job "update" after READY: the boot's notes and a trial image's
        # self-check (Updater.after_boot), an activation already due; then
        # the job ends (a scheduled activation is then the ticks': update_due)
        await self.update_server().after_boot(self.local_port_up, self.self_check)
        self.update_booting = False
        self.update_due()

    def update_due(self):
        # every second after the boot's notes: a scheduled activation when its
        # time comes (the updater is loaded while one is scheduled)
        u = self.updater
        if u is not None and not self.update_booting:
            if u.due():
                u.switch()
            u = None
        self.update_idle()

    async def manage(self, fid, payload):
        # wan.manage: one head-end management request (wan.mgmt, loaded for it)
        try:
            ch = lazy.load("wan.mgmt").Channel(self, self.commands, self.wan.settings, self.wan.txlog)
            return await ch(fid, payload)
        finally:
            ch = None
            lazy.drop("wan.mgmt")

    def self_check(self):
        # a new image's check after READY (update.image): every critical job runs
        jobs = self.supervisor.jobs
        return all(jobs.get(n, {}).get("state") == "running" for n in _CRITICAL)

    def uptime_s(self):
        import mono

        return mono.s()  # since the boot (mono counts from its import, the boot's first)

    async def cmd_status(self, req):
        gc.collect()
        free, alloc = gc.mem_free(), gc.mem_alloc()
        out = {
            "version": VERSION,
            "git": _GIT,
            "board": board.NAME,
            "uptime_s": self.uptime_s(),
            "heap_free": free,
            "heap_alloc": alloc,
            "heap_high_water": self.heap_high_water,
            "utc": board.utc(),
            "store": self.store.counters(),
            "flash": board.flash_counters(),
            "jobs": self.supervisor.jobs,
            "clock": self.clock.status(),
            "han": self.coordinator.summary(),
            "leds": self.leds.shown,
        }
        if req.get("modules"):
            # the modules the hub holds now (the bench's boot import set)
            import sys

            out["modules"] = sorted(sys.modules)
        return out

    async def _dispatch(self, req):
        return await self.run_command(req.get("cmd"), req)

    async def run_command(self, cmd, req):
        # one of hub.commands, for the local port and the head-end's channel (wan.mgmt)
        fn = self.commands.get(cmd)
        if fn is None:
            raise KeyError(cmd)
        if not isinstance(fn, str):
            return await fn(self, req)
        # a feature loaded on first use (_LAZY_COMMANDS): its module goes after the command
        try:
            return await lazy.command(fn, cmd)(self, req)
        finally:
            if fn == "han.ota":
                self.ota_idle()
            else:
                lazy.drop(fn)
                if fn == "update.commands":
                    self.update_idle()
            lazy.drop("local_args")  # the commands' argument checks, loaded with them

    async def local_port(self):
        reader, writer = await board.open_uart("local")
        up = self.local_port_up
        if not up.is_set():  # the first time: the hub is READY (a restarted job is not)
            up.set()
            log("hub", "READY version=%s board=%s image=%s" % (VERSION, board.NAME, self.running or "factory"))
            self.supervisor.spawn("update", self.update_job)
        # the commands behind the installer guard (made per start of the job:
        # the hub holds no attribute for it)
        from chf import provision
        from local_port import serve

        await serve(reader, writer, provision.guarded(self._dispatch, self.installer_auth, self.commands))

    async def run(self):
        self.supervisor.spawn("board", board.control_task)
        self.supervisor.spawn("local_port", self.local_port)
        self.supervisor.watchdog(board.watchdog(), _CRITICAL)
        # The periodic work that only ticks, in this (the main) task rather
        # than a job each: every 200 ms the high-water mark of the live heap
        # (after a collection: the working set the bench publishes; without
        # it the figure would only say when the GC last ran), every second
        # the watchdog's feed (supervisor.feed: while every critical job
        # makes progress), the status LEDs and a scheduled update, every 10
        # minutes the clock's age count (right over the ticks period). An
        # error is logged (once while it repeats) and the ticks go on.
        n = 0
        last = None
        while True:
            gc.collect()
            a = gc.mem_alloc()
            if a > self.heap_high_water:
                self.heap_high_water = a
            if n % _TICKS_S == 0:
                # each on its own: one that fails does not hold the others back
                try:
                    self.supervisor.feed()
                except Exception as e:  # noqa: BLE001 - the ticks go on
                    last = _tick_error(e, last)
                try:
                    self.leds.refresh()
                except Exception as e:  # noqa: BLE001 - the ticks go on
                    last = _tick_error(e, last)
                try:
                    self.update_due()
                except Exception as e:  # noqa: BLE001
                    last = _tick_error(e, last)
                if n % _TICKS_CLOCK == 0:
                    try:
                        self.clock.age_s()
                    except Exception as e:  # noqa: BLE001
                        last = _tick_error(e, last)
            n = n + 1 if n < _TICKS_CLOCK else 1
            await asyncio.sleep_ms(_TICK_MS)


def main(running=None):
    """running: the image slot update.slots.boot() chose (None: the factory image)."""
    if board.release_console is not None and board.console_released():
        return  # the installer asked for the REPL (chub flash): the hub does not start
    from supervisor import gc_policy

    gc_policy()  # collections by bytes allocated: the free heap stays in one piece
    # the boot's image choice (main.py) is made: update.slots loads again
    # with the hub's update (update.image, on first use)
    lazy.drop("update.slots")
    lazy.drop("update")
    board.preload()  # the unix board: what its config names (a rig's choice); nothing elsewhere
    asyncio.run(Hub(running).run())
