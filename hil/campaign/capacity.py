"""The full HIL scenario at capacity (issue 15 item 3): the hub with every
table issue 15 names at its limit at once, its heap read there, then
everything released and checked. The three logs (CHF event and security,
WAN transactions) are not filled: the bench measures them full on their own
(`heap_logs_full_kb`; docs/proof.md, "The logs when full").

`STEPS` is scenario.py's `STEPS` followed by these (each a `step(run)`
recording what the hub acknowledged in `run.ledger`):

* `step_fill_device_log`: the CHF Device Log filled to its capacity (read
  from the hub: `device_log_list`'s `capacity`, 16) and every entry joined.
  The base steps leave five entries (the demo ESME, GSME and IHD, the RTDS
  GSME, and the RTDS ESME that CCS01 added, whitelisted: it joins here with
  the install code CCS01 carries). The rest: ESMEs up to the router's
  `max_deliveries` (8: the ESME deliveries it takes at once, each a record once sent; a
  ninth would be awaited inline in the WAN receive loop), one PPMID, one
  HCALCS, and Type 2 devices (IHD/CAD) for the remaining entries.
* `step_fill_buffers`: every GSME's command buffer filled to its limit
  (`route_status` cfg `capacity`, 32 messages) from the head-end with GCS28
  reads the sleepy meters have not collected (each with its own originator
  counter; the meter answers it with the RTDS response re-counted).
* `step_commands_in_flight`: one command (CS03A1, re-addressed and
  re-counted) to each ESME; the emulated meters hold their answers
  (`HeldEsme`) so every delivery stays in flight (`route_status`
  `deliveries`). The router's ESME timeout is raised to `HOLD_MS` first so
  that none times out meanwhile.
* `step_outbox_held`: the head-end link taken down (the modem emulator
  loses its registration and the network drops the link) and each ESME
  sends an alert of its own on the tunnel the hub opened to it (while the
  command is in flight: the hub forwards it as an alert and goes on waiting
  for the response): they wait in the WAN outbox.
* `step_read_heap`: the state checked at capacity (every entry joined,
  every GSME queue full, a delivery in flight to each ESME, the outbox
  holding the alerts, the link down) and `status`'s heap figures taken
  there (after two of `heap_watch`'s 200 ms samples): `run.capacity.heap`.
* `step_release`: the link back, the ESMEs answer, the GSMEs wake and take
  every buffered command.

`check(run)` is scenario.py's `check` (every acknowledged command answered
exactly once, the outbox drained, the logs, the HAN) plus: each ESME
executed its command once and the head-end has its response, each GSME
executed each buffered command exactly once, every queue is empty again,
no delivery is left in flight, each alert reached the head-end, and all
capacity entries are still in the Device Log and joined.

The scenario stays at the limits, not beyond them: a 17th device or a 33rd
buffered command is refused by the hub (tests/test_hil_capacity.py checks
that at capacity). The commands and answers built here keep the RTDS
frames' MACs, which no longer match the changed header (the hub routes
device-bound frames by their header and forwards device frames unchanged;
the emulated meters do not check MACs).

The bench (`chub bench --board unix32 --runs N`) measures the heap working
set and floor on this scenario (host_tools/chub/bench_proof.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chubcore.paths import vectors_dir

from ..han_setup import DeviceSpec
from ..headend.gbcs import parse_frame
from ..meters import Answer
from ..meters.esme import EsmeMeter
from . import scenario
from .scenario import GSME, Run, Violation

RTDS_ESME = DeviceSpec("esme_rtds", "00DB1234567890A0", 1, b"0123456789ABCDEF")  # CCS01's ESME and install code
ESME_CMD = "8.7.1_CS03A1/CS03A1_8.7.1_SUCCESS_COMMAND_GBCS.HEX"
ESME_RSP = "8.7.1_CS03A1/CS03A1_8.7.1_SUCCESS_RESPONSE_GBCS.HEX"
GSME_CMD = "6.11_GCS28/GCS28_6.11_SUCCESS_COMMAND_GBCS.HEX"
GSME_RSP = "6.11_GCS28/GCS28_6.11_SUCCESS_RESPONSE_GBCS.HEX"
ALERT = "NA_CS14/CS14_NA_8F12_ALERT_GBCS.HEX"
HOLD_MS = 300000  # the router's esme_timeout_ms while the ESMEs hold their answers
HEAD_END_WAIT_S = 600  # how long the head-end waits for the held responses
WAKE_POLL_S = 0.02  # a GSME's poll period while it is awake taking its commands (fast poll)
HEAP_WATCH_S = 0.45  # two of the hub's heap_watch samples (every 200 ms): nothing to poll for
JOIN_GROUP = 4  # devices powered on together (each makes first contact: a Basic report and a Time read)
EUI_PREFIX = "70B3D5C1CA00"  # the capacity devices: EUI_PREFIX + 4 hex digits


@dataclass
class Capacity:
    """What the capacity steps built and saw (`run.capacity`)."""

    limits: dict[str, int] = field(default_factory=dict)  # device_log, buffer, deliveries
    specs: dict[str, DeviceSpec] = field(default_factory=dict)  # every Device Log entry's device, by name
    esmes: dict[str, Any] = field(default_factory=dict)  # name -> HeldEsme
    gsmes: dict[str, Any] = field(default_factory=dict)  # name -> GsmeMeter
    esme_keys: dict[str, str] = field(default_factory=dict)  # ESME name -> its command's ledger key
    gsme_keys: dict[str, list[str]] = field(default_factory=dict)  # GSME name -> its commands' ledger keys
    alerts: dict[str, int] = field(default_factory=dict)  # ESME name -> its alert's counter
    heap: dict[str, Any] = field(default_factory=dict)  # status at capacity


class HeldEsme(EsmeMeter):
    """An ESME that takes each command and answers it only once `release()`d
    (the hub's delivery stays in flight meanwhile)."""

    def __init__(self, device: Any, answers: dict[bytes, Answer]) -> None:
        super().__init__(device, answers)
        self.gate = asyncio.Event()
        self.holding: list[bytes] = []  # commands it has and has not answered yet

    async def on_tunnel_data(self, data: bytes) -> bytes | None:
        self.holding.append(bytes(data))
        await self.gate.wait()
        self.holding.remove(bytes(data))
        return await super().on_tunnel_data(data)

    def release(self) -> None:
        self.gate.set()


def rtds(rel: str) -> bytes:
    return bytes.fromhex((vectors_dir() / "gbcs" / "rtds" / rel).read_text().strip())


def readdress(raw: bytes, counter: int | None = None, originator: str | None = None,
              recipient: str | None = None) -> bytes:
    """The frame with its general-signing header's originator counter,
    originator or recipient (EUI hex) replaced in place (same length; the
    MAC is left as it was)."""
    b = bytearray(raw)
    o = raw.index(b"\xdf\x09")
    if counter is not None:
        b[o + 3 : o + 11] = counter.to_bytes(8, "big")
    if originator is not None:
        b[o + 12 : o + 20] = bytes.fromhex(originator)
    if recipient is not None:
        b[o + 21 : o + 29] = bytes.fromhex(recipient)
    parse_frame(bytes(b))  # still a frame
    return bytes(b)


def new_run(workdir: Path, image: Path, heap: str | None = None) -> Run:
    """A Run for this scenario, its local-port connection kept open (one
    installer session; a fresh connection per call costs 0.3 s in
    pyserial's socket:// close, and the scenario makes ~100 calls)."""
    run = Run(workdir, image, heap=heap)
    run.system.keep_connection = True
    return run


def _cap(run: Run) -> Capacity:
    if run.capacity is None:
        run.capacity = Capacity()
    assert isinstance(run.capacity, Capacity)
    return run.capacity


def _limits(run: Run) -> dict[str, int]:
    cap = _cap(run)
    if not cap.limits:
        cfg = run.call("route_status")["cfg"]
        cap.limits = {"device_log": run.call("device_log_list")["capacity"], "buffer": cfg["capacity"],
                      "deliveries": cfg["max_deliveries"]}
    return cap.limits


def _spec(role: str, i: int, dev_type: int, sleepy: bool = False) -> DeviceSpec:
    n = 0x100 * dev_type + i
    return DeviceSpec(f"cap_{role}{i}", f"{EUI_PREFIX}{n:04X}", dev_type,
                      bytes.fromhex(f"CA{n:04X}C0DE0102030405060708090A0B"), sleepy=sleepy)


def capacity_specs(free: int, esmes_wanted: int) -> list[DeviceSpec]:
    """The devices that fill `free` Device Log entries: ESMEs until there are
    `esmes_wanted` more, then one PPMID, one HCALCS, then Type 2 devices."""
    out = [_spec("esme", i, 1) for i in range(min(free, max(0, esmes_wanted)))]
    if len(out) < free:
        out.append(_spec("ppmid", 0, 5))
    if len(out) < free:
        out.append(_spec("hcalcs", 0, 4))
    i = 0
    while len(out) < free:
        out.append(_spec("type2_", i, 6))
        i += 1
    return out


def _on_rig(run: Run, fn: Callable[[], object]) -> None:
    async def go() -> None:
        fn()

    assert run.system.rig is not None
    run.system.rig.call(go())


def _send(run: Run, key: str, raw: bytes) -> dict[str, Any]:
    """Send a built command once (rebuild=False) -> its ledger pending entry."""
    he = run.system.headend
    p = run.ledger.pending.get(key)
    if p is None:
        p = run.ledger.pending[key] = {"raw": raw, "frame": parse_frame(raw), "sent": False}
    if not p["sent"]:
        p["sent"] = True
        p["fut"] = asyncio.run_coroutine_threadsafe(he.asend_command(raw, HEAD_END_WAIT_S, rebuild=False), he.loop)
    return p


def _acked(run: Run, keys: list[str], what: str) -> None:
    """Until the hub has ACKed each of these commands; each ACK in the ledger."""
    def all_acked() -> bool:
        for k in keys:
            c = run.ledger.pending[k]["frame"].counter
            if c not in run.ledger.commands and (st := run.ack_status(c)) is not None:
                run.ledger.commands[c] = st
        return all(run.ledger.pending[k]["frame"].counter in run.ledger.commands for k in keys)

    run.until(all_acked, 60, what)
    bad = {k: run.ledger.commands[run.ledger.pending[k]["frame"].counter] for k in keys}
    bad = {k: v for k, v in bad.items() if v != "done"}
    if bad:
        raise Violation(f"{what}: not ACKed done: {bad}")


# --- the steps ---------------------------------------------------------------------

def step_fill_device_log(run: Run) -> None:
    """The Device Log filled to its capacity with devices that all join."""
    from ..han_setup import DEVICES

    cap = _cap(run)
    lim = _limits(run)
    scenario._han_up(run)
    rows = scenario.device_log(run)
    in_log = {e["eui"] for e in rows}
    known = {**DEVICES, GSME: scenario.GSME_SPEC, RTDS_ESME.name: RTDS_ESME}
    by_eui = {s.eui: s for s in known.values()}
    if not cap.specs:
        missing = [e for e in in_log if e not in by_eui]
        if missing:
            raise Violation(f"Device Log entries the capacity scenario knows no device for: {missing}")
        esmes_in_log = sum(1 for e in rows if e["type"] == 1)
        extra = capacity_specs(lim["device_log"] - len(in_log), lim["deliveries"] - esmes_in_log)
        cap.specs = {by_eui[e].name: by_eui[e] for e in in_log}
        cap.specs.update({s.name: s for s in extra})
    # in groups: devices that make first contact together beyond the hub's
    # ZCL server slots (8) are dropped as a flood and security-logged
    # (CCS01's ESME, in the log already, gets its join window opened)
    han = run.system.han
    names = [n for n in cap.specs if cap.specs[n].eui not in run.ledger.joined]
    for n in names:
        if n not in han.specs:
            han.add_device(cap.specs[n])
    for i in range(0, len(names), JOIN_GROUP):
        scenario.join_devices(run, {n: cap.specs[n] for n in names[i : i + JOIN_GROUP]}, 40)
    total = run.call("device_log_list")["total"]
    if total != lim["device_log"]:
        raise Violation(f"Device Log holds {total} entries, its capacity is {lim['device_log']}")


def _names(run: Run, dev_type: int) -> list[str]:
    return [n for n, s in _cap(run).specs.items() if s.dev_type == dev_type]


def _gsme_meters(run: Run) -> dict[str, Any]:
    """A GsmeMeter for each GSME of the Device Log (the base scenario's for
    the RTDS GSME), never waking by itself."""
    from ..meters.gsme import GsmeMeter

    cap = _cap(run)
    han = run.system.han
    for name in _names(run, 0):
        if name in cap.gsmes:
            continue
        if name == GSME:
            cap.gsmes[name] = scenario._gsme_meter(run)
            continue

        async def make(n: str = name) -> GsmeMeter:
            return GsmeMeter(han.device(n), {}, wake_s=None)

        m = han.run(make())
        m.rtds_scenarios = True
        cap.gsmes[name] = m
    return cap.gsmes


def step_fill_buffers(run: Run) -> None:
    """Every GSME's queue filled to its limit from the head-end (buffered:
    ACKed at once; the sleepy meters do not wake)."""
    cap = _cap(run)
    lim = _limits(run)
    he = run.system.headend.headend
    cmd, rsp = rtds(GSME_CMD), rtds(GSME_RSP)
    keys: list[str] = []
    for name, meter in _gsme_meters(run).items():
        eui = cap.specs[name].eui
        if name in cap.gsme_keys:  # made already (the step resumed)
            keys += cap.gsme_keys[name]
            continue
        queued = run.call("route_status")["buffer"].get(eui, 0)
        ks = cap.gsme_keys[name] = []
        for _ in range(lim["buffer"] - queued):
            c = he.next_counter()
            raw = readdress(cmd, counter=c, recipient=eui)
            meter.answers[raw] = Answer("capacity", "SUCCESS", readdress(rsp, counter=c, originator=eui))
            ks.append(f"cap_{name}_{len(ks):02d}")
            _send(run, ks[-1], raw)
        keys += ks
    _acked(run, keys, "the GSME commands buffered")


def step_commands_in_flight(run: Run) -> None:
    """One command to each ESME, held by the meter: a delivery in flight each."""
    cap = _cap(run)
    han = run.system.han
    he = run.system.headend.headend
    run.call("route_config", esme_timeout_ms=HOLD_MS)
    cmd, rsp = rtds(ESME_CMD), rtds(ESME_RSP)
    for name in _names(run, 1):
        if name in cap.esme_keys:
            continue
        eui = cap.specs[name].eui
        c = he.next_counter()
        raw = readdress(cmd, counter=c, recipient=eui)
        answers = {raw: Answer("capacity", "SUCCESS", readdress(rsp, counter=c, originator=eui))}

        async def make(n: str = name, a: dict[bytes, Answer] = answers) -> HeldEsme:
            return HeldEsme(han.device(n), a)

        cap.esmes[name] = han.run(make())
        cap.esme_keys[name] = f"cap_{name}"
        _send(run, cap.esme_keys[name], raw)
    _acked(run, list(cap.esme_keys.values()), "the ESME commands")
    run.until(lambda: all(m.holding for m in cap.esmes.values()), 30, "every ESME holding its command")


async def _push(meter: HeldEsme, frame: bytes) -> bool:
    # on the tunnel the hub opened to deliver the held command: the hub's
    # tunnel server has fewer ids (8) than the Device Log has entries
    return bool(meter.device.tunnel_push(frame))


def step_outbox_held(run: Run) -> None:
    """The head-end link down; each ESME's alert waits in the WAN outbox."""
    cap = _cap(run)
    emu = run.system.modem
    han = run.system.han
    he = run.system.headend.headend
    _on_rig(run, lambda: (emu.lose_registration(2), emu.drop_network()))
    run.until(lambda: not run.call("wan_status")["connected"], 20, "the hub to see the link go")
    alert = rtds(ALERT)
    for name, meter in cap.esmes.items():
        if name in cap.alerts:
            continue
        c = he.next_counter()
        frame = readdress(alert, counter=c, originator=cap.specs[name].eui)
        if not han.run(_push(meter, frame)):
            raise Violation(f"{name}'s alert not taken by the hub's NCP")
        cap.alerts[name] = c
    n = len(cap.alerts)
    run.until(lambda: (run.call("wan_status")["outbox_pending"] or 0) >= n, 20, f"{n} alerts in the WAN outbox")


def step_read_heap(run: Run) -> None:
    """The hub at capacity, as it says itself; its heap figures there."""
    cap = _cap(run)
    lim = _limits(run)
    rows = scenario.device_log(run)
    if len(rows) != lim["device_log"] or any(e.get("join_state") != "joined" for e in rows):
        raise Violation(f"not every one of {lim['device_log']} entries joined: "
                        f"{[(e['eui'], e.get('join_state')) for e in rows]}")
    rs = run.call("route_status")
    for name in cap.gsmes:
        if rs["buffer"].get(cap.specs[name].eui) != lim["buffer"]:
            raise Violation(f"{name}'s queue holds {rs['buffer'].get(cap.specs[name].eui)}, not {lim['buffer']}")
    if rs["deliveries"] != len(cap.esmes) or not all(m.holding for m in cap.esmes.values()):
        raise Violation(f"{rs['deliveries']} deliveries in flight for {len(cap.esmes)} ESMEs")
    ws = run.call("wan_status")
    if ws["connected"] or (ws["outbox_pending"] or 0) < len(cap.alerts):
        raise Violation(f"the outbox is not held: {ws}")
    time.sleep(HEAP_WATCH_S)
    st = run.call("status")
    cap.heap = {"heap_high_water": st["heap_high_water"], "heap_alloc": st["heap_alloc"],
                "heap_free": st["heap_free"], "outbox_pending": ws["outbox_pending"],
                "deliveries": rs["deliveries"], "buffered": sum(rs["buffer"].values()), "devices": len(rows)}


def step_release(run: Run) -> None:
    """The link back, the ESMEs answer, the GSMEs wake until they have every command."""
    cap = _cap(run)
    emu = run.system.modem
    han = run.system.han
    _on_rig(run, lambda: emu.regain_registration(1))
    for m in cap.esmes.values():
        _on_rig(run, m.release)
    esme_keys = list(cap.esme_keys.values())
    run.until(lambda: all(run.ledger.pending[k]["fut"].done() for k in esme_keys), 60, "the ESMEs' responses")
    for name, meter in cap.gsmes.items():
        keys = cap.gsme_keys.get(name, [])
        deadline = time.monotonic() + 120
        poll_s, meter.device.poll_s = meter.device.poll_s, WAKE_POLL_S
        try:
            while not all(run.ledger.pending[k]["fut"].done() for k in keys):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name}: buffered commands not answered")
                try:
                    han.run(meter.wake(timeout=2.0), timeout=120)
                except Exception as e:  # noqa: BLE001 - a frame lost: wake again
                    run.events.append(f"{name} wake: {type(e).__name__}: {e}"[:200])
        finally:
            meter.device.poll_s = poll_s
    for k in [*esme_keys, *(k for ks in cap.gsme_keys.values() for k in ks)]:
        p = run.ledger.pending[k]
        try:
            reply = p["fut"].result()
        except Exception as e:  # noqa: BLE001
            raise Violation(f"{k}: command {p['frame'].counter} never answered: {e!r}") from None
        run.ledger.commands[p["frame"].counter] = reply.ack_status or "?"


CAPACITY_STEPS: list[Callable[[Run], None]] = [step_fill_device_log, step_fill_buffers, step_commands_in_flight,
                                              step_outbox_held, step_read_heap, step_release]
STEPS: list[Callable[[Run], None]] = [*scenario.STEPS, *CAPACITY_STEPS]


def check(run: Run) -> dict:
    """scenario.check, then the capacity scenario's own invariants."""
    out = scenario.check(run)
    cap = _cap(run)
    he = run.system.headend
    frames = [r.frame for r in he.received if r.frame is not None]
    for name, m in cap.esmes.items():
        raw = run.ledger.pending[cap.esme_keys[name]]["raw"]
        if m.received.count(raw) != 1 or m.holding:
            raise Violation(f"{name} got its command {m.received.count(raw)} times (holding {len(m.holding)})")
    for name, ks in cap.gsme_keys.items():
        ex = cap.gsmes[name].executed
        for k in ks:
            n = ex.count(run.ledger.pending[k]["raw"])
            if n != 1:
                raise Violation(f"{name}: buffered command {k} executed {n} times")
    for name, c in cap.alerts.items():
        n = sum(1 for f in frames if f.cra == 3 and f.counter == c)
        if n != 1:
            raise Violation(f"{name}'s alert (counter {c}) reached the head-end {n} times")
    rs = run.call("route_status")
    if any(rs["buffer"].values()) or rs["deliveries"]:
        raise Violation(f"left in the router after the release: buffer {rs['buffer']}, "
                        f"deliveries {rs['deliveries']}")
    now = {e["eui"] for e in scenario.device_log(run) if e.get("join_state") == "joined"}
    lost = sorted(s.eui for s in cap.specs.values() if s.eui not in now)
    if lost:
        raise Violation(f"devices no longer joined after the release: {lost}")
    out.update({"capacity_devices": len(cap.specs), "capacity_esmes": len(cap.esmes),
                "capacity_buffered": sum(len(ks) for ks in cap.gsme_keys.values()), "capacity_alerts": len(cap.alerts),
                "heap_at_capacity": dict(cap.heap)})
    return out
