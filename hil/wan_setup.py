"""Put the WAN side on an emulated system: the SIM7600 emulator on the hub's
modem UART, the head-end link server behind it, and (once the hub is ready)
the test DCC trust anchors from the GBCS keystore.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chub.core.paths import keystore_dir

from .headend.gbcs import HeadEnd
from .headend.server import HeadEndServer
from .modem.sim7600 import Sim7600Config, Sim7600Emulator

HEADEND_PORT = 4059  # the firmware's default head-end port (KV "wan")


def attach(system: Any, config: Sim7600Config | None = None) -> tuple[Sim7600Emulator, HeadEndServer]:
    """Before the hub starts: modem emulator + head-end server on the rig."""
    rig = system.rig
    server = HeadEndServer()
    port = rig.call(server.start())
    cfg = config or Sim7600Config()
    cfg.port_map[HEADEND_PORT] = port
    cfg.boot_on_connect = False  # each UART connection is a power-on: hw_reset() boots it
    emu = Sim7600Emulator(cfg)

    async def handler(reader, writer) -> None:  # noqa: ANN001
        emu.hw_reset()  # the hub (and its modem) was powered on
        await emu.serve(reader, writer)

    rig.attach("modem", handler)
    rig.on_reset(lambda name: emu.hw_reset() if name == "modem" else None)
    system.modem = emu
    system.headend = server
    return emu, server


def provision(system: Any, keystore: Path | None = None) -> HeadEnd | None:
    """After the hub is ready: give the head-end the hub's keys and the hub
    the test DCC anchors. Returns None when the keystore is not available."""
    ks = keystore or keystore_dir()
    if not ks.is_dir():
        return None
    from chub.core.localport import LocalPortClient

    with LocalPortClient(system.local_port_url, timeout=10) as c:
        he = HeadEnd.for_hub(ks, c.call("identity"))
        c.call("provision_test_dcc", anchors=he.test_dcc_anchors())
    system.headend.headend = he
    return he
