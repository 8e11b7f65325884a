# The hub application: mount flash, open the stores, start the task tree.
import asyncio
import gc

import board
import store
from chf import commands as chf_commands
from chf import gbcs_port
from chf import provision
from han import coordinator as han_coordinator
from local_port import serve as serve_local_port
from gpf import service as gpf_service
from log import log
import route
from supervisor import Supervisor
from version import VERSION
from wan import service as wan_service

try:
    from build_info import GIT as _GIT  # stamped by `chub build`
except ImportError:
    _GIT = "source"


class Hub:
    """What every part of the hub shares: board, stores, supervisor, commands."""

    def __init__(self):
        self.started_ms = board.ticks_ms()
        self.store = store.Store(board.mount())
        self.supervisor = Supervisor()
        # local-port commands: name -> async fn(hub, req); module functions
        # (or Hub.cmd_status), so no closure per command is held
        self.commands = {"status": Hub.cmd_status}
        self.local_port_up = asyncio.Event()
        self.heap_high_water = 0
        # features install their state and local-port commands on the hub
        chf_commands.install(self)  # device log, event and security logs
        gbcs_port.install(self)  # CHF identity, GBCS use cases, send_gbcs
        han_coordinator.install(self)  # NCP, network, trust centre: job "han", han_status
        wan_service.install(self)  # modem, head-end link, outbox: job "wan", wan_status
        gpf_service.install(self)  # GPF: mirror ZCL servers, GBZ use cases, tap-off, gpf_status
        route.install(self)  # hub.route by recipient EUI-64, GSME buffer: job "route"
        __import__("leds").install(self)  # status LEDs from the hub's state: job "leds"
        provision.install(self)  # chub provision; installer authentication guards hub.dispatch

    def uptime_s(self):
        return (board.ticks_ms() - self.started_ms) // 1000

    async def cmd_status(self, req):
        free, alloc = board.heap()
        r = {
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
        }
        # the features' parts, once installed
        clk, c, leds = getattr(self, "clock", None), getattr(self, "coordinator", None), getattr(self, "leds", None)
        if clk is not None:
            r["clock"] = clk.status()
        if c is not None:
            r["han"] = c.summary()
        if leds is not None:
            r["leds"] = leds.shown
        return r

    async def route(self, frame, tag=None):
        """One remote-party GBCS frame from the WAN (tag: its link frame id) or
        the HHT -> (response or None, [alerts]). The router replaces this with
        delivery by recipient EUI-64 (CHF, GPF, tunnel, GSME buffer)."""
        return self.chf.handle(frame, tag)

    async def dispatch(self, req):
        fn = self.commands.get(req.get("cmd"))
        if fn is None:
            raise KeyError(req.get("cmd"))
        return await fn(self, req)

    async def local_port(self):
        reader, writer = await board.open_uart("local")
        self.local_port_up.set()
        await serve_local_port(reader, writer, self.dispatch)

    async def heap_watch(self):
        # High-water mark of the live heap (after a collection), sampled every
        # 200 ms: the working set the bench publishes. Without the collection
        # the figure would only say when the GC last ran.
        while True:
            gc.collect()
            a = gc.mem_alloc()
            if a > self.heap_high_water:
                self.heap_high_water = a
            await asyncio.sleep_ms(200)

    async def run(self):
        self.supervisor.spawn("board", board.control_task)
        self.supervisor.spawn("heap_watch", self.heap_watch)
        self.supervisor.spawn("local_port", self.local_port)
        await self.local_port_up.wait()
        log("hub", "READY version=%s board=%s" % (VERSION, board.NAME))
        while True:
            await asyncio.sleep(3600)


def main():
    pre = getattr(board, "preload", None)  # the unix board, for the bench's heap figures
    if pre is not None:
        pre()
    asyncio.run(Hub().run())
