"""The rig's local-port bridge across a DUT reboot (hil/rig.py).

A rebooted DUT connects its local UART again while the rig may not yet have
seen the old connection end. Found in CI: the old connection's clean-up then
cleared the new one and the next local-port client was refused."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from hil.log import DutLog
from hil.rig import Rig


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.settimeout(5)
    return s


def test_bridge_serves_the_dut_that_connected_after_the_old_one(tmp_path: Path) -> None:
    rig = Rig(DutLog(tmp_path / "rig.log")).start()
    try:
        port = rig.ports["local"]
        old = _connect(port)
        rig.log.wait_until(lambda: rig.connected["local"], 5, "the first DUT connection")
        new = _connect(port)  # the rebooted DUT, before the rig has seen the old one go
        rig.log.wait_until(lambda: rig.local_peer == new.getsockname(), 5, "the bridge on the new connection")
        old.close()  # now the old connection ends
        time.sleep(0.3)  # the rig notices (it polls every 100 ms)
        assert rig.connected["local"]  # the new connection is still up
        client = _connect(rig.bridge_port)
        client.sendall(b"ping")
        assert new.recv(4) == b"ping"
        new.sendall(b"pong")
        assert client.recv(4) == b"pong"
        for s in (client, new):
            s.close()
    finally:
        rig.stop()


def test_bridge_serves_many_clients_while_one_holds_its_connection(tmp_path: Path, hub_image: Path) -> None:
    """The live view of `chub sim` keeps one connection open; a second
    terminal's `chub hht` calls and several parallel clients (each opening an
    installer session) are all served meanwhile."""
    import threading

    from click.testing import CliRunner

    from chub.cli import main
    from chubcore.localport import LocalPortClient
    from hil.system import EmulatedSystem

    s = EmulatedSystem(tmp_path / "sys", image=hub_image, fresh=True)
    s.han_demo = False  # type: ignore[attr-defined]
    with s:
        url = s.local_port_url
        live = LocalPortClient(url, timeout=10)  # the live view
        errors: list[str] = []

        def worker() -> None:
            try:
                for _ in range(3):
                    with LocalPortClient(url, timeout=30) as c:
                        assert c.call("status")["board"] == "unix"
                        assert c.call("device_log_list")["total"] == 0  # needs an installer session
            except Exception as e:  # noqa: BLE001 - collected and asserted below
                errors.append(repr(e))

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for _ in range(10):
            assert live.call("status")["board"] == "unix"
        for t in threads:
            t.join(60)
        assert errors == []
        for _ in range(3):
            r = CliRunner().invoke(main, ["hht", "--port", url, "status", "--json"])
            assert r.exit_code == 0, r.output
        assert live.call("status")["board"] == "unix"
        live.close()
