"""ticks_ms wraps at 2**30 ms (12.4 days) on a 32-bit port: the hub's
uptime, log timestamps and installer-session expiry must stay right across
the wrap. Under the unix port a stand-in `time` module (tests/mp/esp32_standins
FakeTime) wraps at 2**30; on the 32-bit build the real one does too."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from mpy import FIRMWARE, run_mp

PRELUDE = """
import asyncio, sys
import esp32_standins as S
ft = S.install_time((1 << 30) - 5000)   # 5 s before the wrap
def walk(ms):  # the clock moves; the hub's jobs run meanwhile (every 10 s here)
    while ms > 0:
        d = min(ms, 10000)
        ft.advance(d)
        ms -= d
        mono.ms()
import mono
"""


def _run(code: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        r = run_mp(code=PRELUDE + code, heap="768k", cwd=Path(tmp))  # the board's heap: the whole app is imported
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    return r.stdout


def test_mono_counts_across_the_wrap() -> None:
    out = _run("""
t0 = mono.ms()
walk(20 * 86400 * 1000)  # 20 days: the wrap, and past 2**29 ms after it
print("D", mono.ms() - t0, mono.s())
""")
    d = [ln.split() for ln in out.splitlines() if ln.startswith("D ")][0]
    assert int(d[1]) == 20 * 86400 * 1000
    assert int(d[2]) >= 20 * 86400


def test_log_timestamps_keep_growing_past_the_wrap() -> None:
    out = _run("""
import log
log.log("t", "a")
walk(7 * 86400 * 1000)  # past 2**29 ms: ticks_diff from boot goes negative there
log.log("t", "b")
""")
    stamps = [int(ln.split()[0]) for ln in out.splitlines() if ln.endswith(" t a") or ln.endswith(" t b")]
    assert len(stamps) == 2 and stamps[0] >= 0 and stamps[1] - stamps[0] == 7 * 86400 * 1000, out


def test_uptime_across_the_wrap() -> None:
    out = _run("""
import app
class H:
    pass
h = H()
h.started_ms = mono.ms()  # what Hub.__init__ takes
walk(13 * 86400 * 1000)
print("U", app.Hub.uptime_s(h))
""")
    u = [ln.split() for ln in out.splitlines() if ln.startswith("U ")][0]
    assert int(u[1]) == 13 * 86400, out


def test_installer_session_expires_after_the_wrap() -> None:
    # the installer-session clock (chf.provision.installer_auth) runs on
    # across the wrap: a session opened before it expires after 900 s
    out = _run("""
import flashfs
from store import Store
from chf import provision
flashfs.fresh()
auth = provision.installer_auth(Store(flashfs.ROOT + "/data"))
t0 = auth.now_ms()
walk(60 * 1000)
print("S", (auth.now_ms() - t0) // 1000)
""")
    s = [ln.split() for ln in out.splitlines() if ln.startswith("S ")][0]
    assert int(s[1]) == 60, out


def test_no_plain_subtraction_of_ticks_in_the_firmware() -> None:
    # ticks are compared with ticks_diff (or mono); a "ticks_ms() - t0" is
    # wrong after the wrap
    bad = []
    pat = re.compile(r"ticks_ms\(\)\s*-|-\s*\w*\.?ticks_ms\(\)|ticks_ms\(\)\s*//")
    for p in sorted(FIRMWARE.rglob("*.py")):
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if pat.search(line):
                bad.append(f"{p.relative_to(FIRMWARE)}:{i}: {line.strip()}")
    assert bad == []
