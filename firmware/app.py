# The hub application: mount flash, open the stores, start the task tree.
import asyncio

import board
import store
from local_port import serve as serve_local_port
from log import log
from supervisor import Supervisor
from version import VERSION


class Hub:
    """What every part of the hub shares: board, stores, supervisor, commands."""

    def __init__(self):
        self.started_ms = board.ticks_ms()
        self.root = board.mount()
        self.store = store.Store(self.root)
        self.supervisor = Supervisor()
        self.commands = {"status": self.cmd_status}

    def uptime_s(self):
        return (board.ticks_ms() - self.started_ms) // 1000

    async def cmd_status(self, req):
        free, alloc = board.heap()
        return {
            "version": VERSION,
            "board": board.NAME,
            "uptime_s": self.uptime_s(),
            "heap_free": free,
            "heap_alloc": alloc,
            "store": self.store.counters(),
            "flash": board.flash_counters(),
            "jobs": self.supervisor.jobs,
        }

    async def dispatch(self, req):
        fn = self.commands.get(req.get("cmd"))
        if fn is None:
            raise KeyError(req.get("cmd"))
        return await fn(req)

    async def local_port(self):
        reader, writer = await board.open_uart("local")
        await serve_local_port(reader, writer, self.dispatch)

    async def run(self):
        self.supervisor.spawn("board", board.control_task)
        self.supervisor.spawn("local_port", self.local_port)
        log("hub", "READY version=%s board=%s" % (VERSION, board.NAME))
        while True:
            await asyncio.sleep(3600)


def main():
    asyncio.run(Hub().run())
