"""HIL: the WAN job's recovery from every modem fault, its health measures,
the clock and the last gasp — the real hub under micropython against the
SIM7600 emulator and the head-end server (docs/modem.md, docs/headend-link.md,
docs/clock.md).

One emulated system for the module; fast timings through `wan_config`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chub.localport import LocalPortClient
from hil.headend.gbcs import decode_access_response
from hil.system import EmulatedSystem

ECS26I = "6.2.4_ECS26i/ECS26i_6.2.4_SUCCESS_COMMAND_GBCS.HEX"
TIMINGS = {"cmd": 1500, "at": 300, "at_retries": 2, "cpin_retries": 2, "cpin_interval": 50, "netopen": 3000,
           "netclose": 2000, "cipopen": 3000, "cipsend": 3000, "cipclose": 2000, "boot": 3000, "reg_poll": 50,
           "grace": 50}
FAST = {"retry_ms": 100, "retry_max_ms": 400, "reg_timeout_ms": 1000, "hello_timeout_ms": 3000,
        "signal_ms": 300, "max_errors": 4, "timings": TIMINGS}


@pytest.fixture(scope="module")
def system(hub_image: Path, tmp_path_factory: pytest.TempPathFactory, vectors: Path) -> Iterator[EmulatedSystem]:
    s = EmulatedSystem(tmp_path_factory.mktemp("wanf"), image=hub_image, fresh=True).start()
    assert s.headend.headend is not None, "the test DCC was not provisioned"
    call(s, "wan_config", set=FAST)
    s.headend.wait_hello(1, timeout=30)
    yield s
    s.stop()


def call(s: EmulatedSystem, cmd: str, **args: object) -> dict:
    with LocalPortClient(s.local_port_url, timeout=10) as c:
        return c.call(cmd, **args)


def on_rig(s: EmulatedSystem, fn: Callable[[], object]) -> None:
    async def go() -> None:
        fn()

    assert s.rig is not None
    s.rig.call(go())


def wait_for(what: str, pred: Callable[[], object], timeout: float = 20.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.1)


def tx_events(s: EmulatedSystem) -> list[dict]:
    return call(s, "transactions")["entries"]


def command_ok(s: EmulatedSystem, vectors: Path, timeout: float = 20) -> None:
    reply = s.headend.send_command(vectors / "gbcs" / "rtds" / ECS26I, timeout=timeout)
    assert all(code == 0 for _, code in decode_access_response(reply.frame.payload).results)


def count(s: EmulatedSystem, event: str, detail: str | None = None) -> int:
    return sum(1 for e in tx_events(s) if e["event"] == event and (detail is None or e["detail"] == detail))


def relink(s: EmulatedSystem, hellos: int, timeout: float = 20) -> None:
    """Wait for a HELLO after `hellos` and the hub saying it is connected."""
    s.headend.wait_hello(hellos + 1, timeout=timeout)
    wait_for("link up", lambda: call(s, "wan_status")["connected"], timeout)


def test_pdp_refresh_and_periodic_reinit(system: EmulatedSystem, vectors: Path) -> None:
    he, emu = system.headend, system.modem
    refreshes, ups, hellos = count(system, "pdp_refresh"), count(system, "pdp_up"), len(he.hellos)
    netclose = emu.commands.count("AT+NETCLOSE")
    call(system, "wan_config", set={"pdp_refresh_ms": 1500})
    try:
        wait_for("PDP refresh", lambda: count(system, "pdp_refresh") > refreshes)
    finally:
        call(system, "wan_config", set={"pdp_refresh_ms": 86400000})
    relink(system, hellos)
    assert count(system, "pdp_up") > ups  # the context was activated again
    assert emu.commands.count("AT+NETCLOSE") > netclose
    command_ok(system, vectors)
    resets, hellos, periodic = emu.resets, len(he.hellos), count(system, "modem_reset", "periodic")
    call(system, "wan_config", set={"reinit_ms": 1500})
    try:
        wait_for("periodic re-init", lambda: count(system, "modem_reset", "periodic") > periodic)
    finally:
        call(system, "wan_config", set={"reinit_ms": 604800000})
    assert emu.resets > resets and "modem" in system.rig.resets
    relink(system, hellos)
    command_ok(system, vectors)


def alert_code(raw_payload: bytes) -> int | None:
    """Alert code of a DLMS DataNotification {long-unsigned code, date-time, ...}."""
    from hil.headend.gbcs import decode_data

    p = raw_payload
    if not p or p[0] != 0x0F:
        return None
    o = 5  # tag + invoke-id
    o += 1 if p[o] == 0 else 1 + p[o]  # absent or length-prefixed date-time
    (tag, items), _ = decode_data(p, o)
    assert tag == 2 and items[0][0] == 0x12, items
    return items[0][1]


def alerts(s: EmulatedSystem, code: int) -> list:
    he = s.headend
    out = []
    for r in he.received:
        if r.frame is not None and r.frame.cra == 3 and alert_code(r.frame.payload) == code:
            out.append(r)
    return out


def event_codes(s: EmulatedSystem) -> list[int]:
    return [c for _, c, _ in call(s, "logs", which="event")["entries"]]


def test_last_gasp_and_restoration(system: EmulatedSystem, vectors: Path) -> None:
    he = system.headend
    wait_for("link up", lambda: call(system, "wan_status")["connected"])
    assert system.rig is not None
    system.rig.power_fail()
    out = wait_for("power-outage alert", lambda: alerts(system, 0x8FF0), 10)
    he.headend.verify(out[0].raw, cra=3)  # MAC'd to the ACB with the CHF's alert counter
    assert out[0].frame.message_code == 0x0000
    assert 0x8FF0 in event_codes(system)
    hellos = len(he.hellos)
    system.reboot(power_cut=True)
    he.wait_hello(hellos + 1, timeout=30)
    back = wait_for("power-restored alert", lambda: alerts(system, 0x8FF1), 15)
    he.headend.verify(back[0].raw, cra=3)
    assert back[0].frame.counter > out[0].frame.counter
    assert 0x8FF1 in event_codes(system)
    wait_for("outbox empty", lambda: call(system, "wan_status")["outbox_pending"] == 0)
    assert len(alerts(system, 0x8FF0)) == 1 and len(alerts(system, 0x8FF1)) == 1
    assert out[0].copies == 1 and back[0].copies == 1
    call(system, "wan_config", set=FAST)  # (settings persist; re-applied for the driver timings)
    command_ok(system, vectors)
