"""Put the WAN side on an emulated system: the SIM7600 emulator on the hub's
modem UART, the head-end link server (TLS, chubcore.pki.headend_context)
behind it, and (once the hub is ready) the test DCC trust anchors from the
GBCS keystore and the hub's head-end link certificate (TestCA) with the link
anchor (LinkCA), both CAs in the state dir (docs/headend-link.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chubcore.paths import keystore_dir
from chubcore.pki import LinkCA, TestCA, headend_context

from .headend.gbcs import HeadEnd
from .headend.server import HeadEndServer
from .modem.sim7600 import Sim7600Config, Sim7600Emulator

HEADEND_PORT = 4059  # the firmware's default head-end port (KV "wan")


def attach(system: Any, config: Sim7600Config | None = None) -> tuple[Sim7600Emulator, HeadEndServer]:
    """Before the hub starts: modem emulator + head-end server on the rig."""
    rig = system.rig
    server = HeadEndServer(tls=headend_context())
    port = rig.call(server.start())
    rig.call(server.start_api())  # the operator's API (chub headend)
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
    """After the hub is ready: the hub's head-end link certificate (for the
    link key the hub made; issued by the state dir's TestCA) and the link
    anchor to the hub (link_cert), the hub's keys to the head-end and the
    test DCC anchors to the hub. Returns None when the keystore is not
    available (the link certificate is installed all the same)."""
    from chubcore.localport import LocalPortClient

    ks = keystore or keystore_dir()
    with LocalPortClient(system.local_port_url, timeout=10) as c:
        ident = c.call("identity")
        pub = bytes.fromhex(c.call("link_info")["pub"])
        cert = TestCA().issue_link(bytes.fromhex(ident["chf"]["eui"]), pub)
        c.call("link_cert", cert=cert.hex(), anchor=LinkCA().der.hex())
        if not ks.is_dir():
            return None
        he = HeadEnd.for_hub(ks, ident)
        c.call("provision_test_dcc", anchors=he.test_dcc_anchors())
    system.headend.headend = he
    return he
