"""The CPython LocalPortClient against the esp32 board module's console
under micropython, on stand-ins of the esp32 port (tests/mp/esp32_standins.py):
the bytes the client writes reach a 260-byte ring at 115200 baud and are lost
when it is full, while the hub's loop stalls 60 ms in every 80 (flash
erases, ECDH). A 4 KB request must still get through: the client sends at
most WINDOW bytes beyond what the hub acknowledged (docs/local-port.md)."""

from __future__ import annotations

import re
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from chubcore.localport import LocalPortClient
from mpy import mp

HUB = r"""
import asyncio
import sys
import time

import esp32_standins as S
import local_port as lp

con = S.Console()
S.install("esp32_devkitc")
B = S.boot(con)


async def echo(req):
    return {"x": req.get("x")}


async def stall():
    while True:
        time.sleep_ms(60)
        await asyncio.sleep_ms(20)


async def client(r, w):
    async def out():
        while True:
            o = con.take()
            if o:
                w.write(o)
                await w.drain()
            await asyncio.sleep_ms(2)

    t = asyncio.create_task(out())
    while True:
        d = await r.read(512)
        if not d:
            break
        con.send(d)
    t.cancel()
    print("DROPPED", con.dropped, "VIOLATIONS", len(S.VIOLATIONS))


async def main():
    await asyncio.start_server(client, "127.0.0.1", int(sys.argv[1]))
    print("PORT", sys.argv[1])
    lr, lw = await B.open_uart("local")
    asyncio.create_task(stall())
    await lp.serve(lr, lw, echo)


asyncio.run(main())
"""


def test_a_4kb_request_through_a_stalling_esp32_console() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "hub.py"
        script.write_text(HUB)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = mp("512k", cwd=Path(tmp)).popen([str(script), str(port)], stdin=None, stderr=subprocess.STDOUT)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().decode()
            m = re.match(r"PORT (\d+)", line)
            assert m and int(m.group(1)), line
            big = "c" * 3900
            with LocalPortClient(f"socket://127.0.0.1:{m.group(1)}", timeout=30, credential=False) as c:
                t0 = time.monotonic()
                assert c.call("echo", x=big) == {"x": big}
                assert c.call("echo", x="small") == {"x": "small"}
                took = time.monotonic() - t0
            time.sleep(0.3)
        finally:
            proc.kill()
            out = proc.communicate(timeout=10)[0].decode()
    assert "DROPPED 0 VIOLATIONS 0" in out, out[-2000:]
    assert took < 30
