"""A hub-like script under micropython serving the real local port on 127.0.0.1.

The GBCS and GPF conformance tests run the real firmware modules (CHF, GPF,
security, stores on the unix board's flash) behind a small script of their
own (fault injection, seeded logs, a settable clock) and talk to it through
the real local-port protocol with the real client.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

from chubcore.localport import LocalPortClient
from chubcore.paths import default_heap
from mpy import mp


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class MpHub:
    """`script` is written to tmp/hub.py and run as `hub.py PORT [seed.json]`;
    it prints LISTENING once it accepts the local port."""

    def __init__(self, tmp: Path, script: str, seed: dict | None = None) -> None:
        self.port = free_port()
        (tmp / "hub.py").write_text(script)
        args = [str(self.port)]
        if seed is not None:
            (tmp / "seed.json").write_text(json.dumps(seed))
            args.append("seed.json")
        self.proc = mp(default_heap(), cwd=tmp).popen(["hub.py", *args], stderr=subprocess.STDOUT)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        assert "LISTENING" in line, line + self.proc.stdout.read().decode()
        self.url = f"socket://127.0.0.1:{self.port}"
        self.client = LocalPortClient(self.url, timeout=20)
        self.client.__enter__()

    def call(self, cmd: str, **args: object) -> dict:
        return self.client.call(cmd, **args)

    def send(self, frame: bytes) -> tuple[bytes | None, list[bytes]]:
        """One GBCS frame through `send_gbcs`: (response or None, alerts)."""
        r = self.call("send_gbcs", frame=frame.hex())
        resp = bytes.fromhex(r["response"]) if r["response"] else None
        return resp, [bytes.fromhex(a) for a in r["alerts"]]

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        self.proc.kill()
        self.proc.wait()
