"""The full HIL scenario the proof campaigns run, as a list of steps.

A `Run` owns one emulated system (the hub under micropython on the unix board,
the rig's NCP emulator with its HAN, the SIM7600 emulator and the head-end) and
a `Ledger` of what the hub acknowledged: local-port writes that returned,
head-end commands the hub ACKed, joins the hub recorded. Steps are plain
functions `step(run)`; each is written so that running it again after a power
cut resumes it (a local-port write is repeated, a command the hub never ACKed
is resent by the head-end, an ACKed one is only waited for). The campaigns
(`power_cut`, `faults`) interleave their disturbances with these steps and
then call `check(run)`, which raises `Violation` naming what was lost,
duplicated or inconsistent.

The GSME step buffers two RTDS commands for a sleepy gas meter (the RTDS
GSME, 00DB1234567890A1, joined with the others), then wakes the meter until
it has GET each command and PUT each response. Its invariants: every
buffered command executed by the meter exactly once, its response at the
head-end exactly once. One window is the protocol's, not the hub's: a PUT
the hub's NCP acknowledged on the radio just before the power went (the
hub had not yet put it in its outbox) is gone, and the meter has no reason
to send it again. `check` allows a missing response only for such a PUT
(acknowledged at most PUT_WINDOW_S before the NCP lost its host) and
reports how many there were (`gsme_put_window`).

To extend the scenario: write `def step_x(run)`
that records what the hub acknowledged in `run.ledger`, append it to `STEPS`,
and add its invariant to `check`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chubcore.paths import vectors_dir

from ..dut import UnixDut
from ..han_setup import DeviceSpec
from ..headend.gbcs import parse_frame
from ..log import DutLog, ExpectTimeout
from ..rig import Rig
from ..system import EmulatedSystem, attach_peripherals
from ..wan_setup import provision as provision_wan

ECS26I = "6.2.4_ECS26i/ECS26i_6.2.4_SUCCESS_COMMAND_GBCS.HEX"
# the sleepy gas meter of the GSME step: the RTDS GSME's EUI, so RTDS commands reach it as they are
GSME = "gsme_rtds"
GSME_SPEC = DeviceSpec(GSME, "00DB1234567890A1", 0, bytes.fromhex("647EC0DE0102030405060708090A0B00"), sleepy=True)
# a read (GCS28) and a tap-off command (GCS07: the GPF keeps its copy until the response)
GSME_CMDS = (("gcs28", "6.11_GCS28/GCS28_6.11_SUCCESS_COMMAND_GBCS.HEX"),
             ("gcs07", "3.1_GCS07/GCS07_3.1_SUCCESS_COMMAND_GBCS.HEX"))
PUT_WINDOW_S = 1.0
CCS01 = "8.11_CCS01/CCS01_8.11_SUCCESS_COMMAND_GBCS.HEX"
JOINERS = ("esme", "gsme", "ihd")
# fast WAN timings so a reboot reconnects in well under a second
WAN_CFG = {"retry_ms": 100, "retry_max_ms": 800}


class Violation(AssertionError):
    """A campaign invariant broke (loss, duplication, inconsistency)."""


class HubDown(Exception):
    """The hub stopped answering (power cut or crash) during a step."""


@dataclass
class Ledger:
    """What the hub acknowledged, as seen from the rig."""

    dl_added: dict[str, int] = field(default_factory=dict)  # eui -> type (call returned code 0)
    dl_removed: set[str] = field(default_factory=set)
    joined: set[str] = field(default_factory=set)  # EUIs the hub's Device Log showed joined
    commands: dict[int, str] = field(default_factory=dict)  # head-end command counter -> ACK status
    pending: dict[str, Any] = field(default_factory=dict)  # step -> command in flight (raw, Frame)
    clock_set: int | None = None  # head-end time the hub confirmed
    network: dict[str, Any] | None = None  # HAN (channel, PAN ids) once the hub had it up
    gsme: dict[str, int] = field(default_factory=dict)  # GSME command key -> its counter, once buffered (ACKed)
    gsme_window: set[int] = field(default_factory=set)  # counters whose PUT went into a hub losing power
    forms: int = 0
    steps_done: list[str] = field(default_factory=list)


class Run:
    """One emulated system driven through the scenario."""

    def __init__(self, workdir: Path, image: Path, heap: str | None = None, seed: int = 1):
        self.workdir = Path(workdir)
        self.image = Path(image)
        self.heap = heap
        self.seed = seed
        self.ledger = Ledger()
        self.system = EmulatedSystem(self.workdir, heap=heap, image=self.image, fresh=True)
        self.system.han_demo = False  # type: ignore[attr-defined]
        self.reboots = 0
        self.recovery_s: list[float] = []
        self.events: list[str] = []
        self.day_offset = 0  # seconds the emulated day has moved the clocks on (faults campaign)
        self.clock_jumps = 0  # board clock jumps injected (logs may then be out of time order)
        self.gsme: Any = None  # the GsmeMeter of the GSME step (hil/meters/gsme.py), made on first use
        self.preload: list[str] = []  # modules the board imports before the hub (UnixDut.preload)
        self.capacity: Any = None  # hil/campaign/capacity.py's state, made by its first step

    # --- life cycle ---------------------------------------------------------
    @property
    def dut(self) -> UnixDut:
        assert self.system.dut is not None
        return self.system.dut

    @property
    def log(self) -> DutLog:
        return self.system.log

    def power_on(self, cut_after: int = 0, ready_timeout: float = 40.0,
                 before_start: Callable[[Run], None] | None = None) -> bool:
        """First power-on (fresh flash). With cut_after=N the board loses
        power at its Nth block write; before_start(run) may hook the rig's
        emulators first. True when the hub reached READY."""
        s = self.system
        (s.workdir / "flash.bin").unlink(missing_ok=True)
        s.rig = Rig(s.log).start()
        s.dut = UnixDut(s.image, s.workdir, s.rig, s.log, heap=s.heap)  # type: ignore[arg-type]
        s.dut.preload = self.preload
        attach_peripherals(s)
        if before_start is not None:
            before_start(self)
        pos = s.log.position
        s.dut.start(cut_after=cut_after)
        try:
            s.boot_to_ready_s = s.dut.wait_ready(40.0, after=pos)
        except ExpectTimeout:
            if s.dut.alive:
                raise
            return False
        return True

    def reboot(self, ready_timeout: float = 40.0) -> float:
        """Power back on after the hub went down (or cut it now); returns
        seconds from power-on to READY."""
        s = self.system
        if self.dut.alive:
            self.dut.power_cut()
        deadline = time.monotonic() + 5
        while s.rig and any(s.rig.connected.values()) and time.monotonic() < deadline:
            time.sleep(0.02)
        pos = s.log.position
        self.dut.start()
        t = self.dut.wait_ready(ready_timeout, after=pos)
        self.reboots += 1
        return t

    def stop(self) -> None:
        self.system.stop()

    # --- talking to the hub ---------------------------------------------------
    def call(self, cmd: str, timeout: float = 8.0, **args: Any) -> dict:
        """The system's `call`; HubDown when the hub is not running (a cut)."""
        if not self.dut.alive:
            raise HubDown(cmd)
        try:
            return self.system.call(cmd, timeout=timeout, **args)
        except Exception as e:
            if not self.dut.alive:
                raise HubDown(f"{cmd}: {e}") from None
            raise

    def until(self, cond: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self.dut.alive:
                raise HubDown(what)
            try:
                v = cond()
                if v:
                    return v
            except HubDown:
                raise
            except Exception as e:  # noqa: BLE001 - keep polling
                last = e
            time.sleep(0.1)
        if not self.dut.alive:
            raise HubDown(what)
        raise TimeoutError(f"timed out waiting for {what} ({last})")

    def wan_idle(self, timeout: float = 20.0) -> dict:
        return self.until(lambda: (st := self.call("wan_status"))["connected"] and st["outbox_pending"] == 0 and st,
                          timeout, "the WAN connected with an empty outbox")

    # --- head-end commands with the ledger ------------------------------------------
    def submit(self, step: str, rel: str, rebuild: bool = True, timeout: float = 20.0) -> dict[str, Any]:
        """The head-end's command for this step, made once (an RTDS file,
        rebuilt for the hub unless rebuild=False) and sent once; after a cut
        the head-end resends it itself while the hub has not ACKed it.
        -> the ledger's pending entry (raw, frame, fut: its response)."""
        he = self.system.headend
        p = self.ledger.pending.get(step)
        if p is None:
            raw = bytes.fromhex((vectors_dir() / "gbcs" / "rtds" / rel).read_text().strip())
            if rebuild:
                assert he.headend is not None
                raw, f = he.headend.rebuild(raw)
            else:
                f = parse_frame(raw)
            p = self.ledger.pending[step] = {"raw": raw, "frame": f, "sent": False}
        if not p["sent"]:
            p["sent"] = True
            p["fut"] = asyncio.run_coroutine_threadsafe(he.asend_command(p["raw"], timeout, rebuild=False), he.loop)
        return p

    def ack_status(self, counter: int) -> str | None:
        """The hub's link ACK of the head-end command with this counter, once it came."""
        pc = self.system.headend._by_counter.get(counter)
        return (pc.ack_status or "?") if pc is not None and pc.acked.is_set() else None

    def command(self, step: str, rel: str, timeout: float = 20.0) -> None:
        """Send (or, after a cut, keep waiting for) one head-end command."""
        he = self.system.headend
        p = self.submit(step, rel, timeout=timeout)
        f, fut = p["frame"], p["fut"]
        deadline = time.monotonic() + timeout
        while not fut.done():
            st = self.ack_status(f.counter)
            if st is not None:
                self.ledger.commands[f.counter] = st
            if not self.dut.alive:
                raise HubDown(step)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{step}: no response to counter {f.counter}")
            time.sleep(0.05)
        try:
            reply = fut.result()
        except TimeoutError:
            pc = he._by_counter.get(f.counter)
            status = pc.ack_status if pc is not None else None
            raise Violation(f"{step}: command {f.counter} never answered (the hub's last ACK: {status}; "
                            f"ACKs before: {self.ledger.commands.get(f.counter)})") from None
        self.ledger.commands[f.counter] = reply.ack_status or "?"
        # the response carries the command's counter and the hub's MAC
        assert reply.frame.counter == f.counter


# --- the steps ---------------------------------------------------------------------

def step_provision(run: Run) -> None:
    """Head-end gets the hub's keys, the hub the test DCC anchors (idempotent)."""
    run.call("status")
    if provision_wan(run.system) is None:
        raise RuntimeError("the test keystore is missing")
    run.call("wan_config", set=WAN_CFG)
    run.system.headend.wait_hello(1, timeout=30)


def _han_up(run: Run) -> dict:
    st = run.until(lambda: (s := run.call("han_status"))["state"] == "up" and s, 30, "the HAN up")
    net = {"channel": st["channel"], "pan_id": st["pan_id"], "ext_pan_id": st["ext_pan_id"].upper()}
    if run.ledger.network is None:
        run.ledger.network = net
    return st


def step_join(run: Run) -> None:
    """Three devices whitelisted by install code over the local port; they join."""
    from ..han_setup import DEVICES

    _han_up(run)
    han = run.system.han
    if GSME not in han.specs:
        han.add_device(GSME_SPEC)
    join_devices(run, {**{n: DEVICES[n] for n in JOINERS}, GSME: GSME_SPEC}, 20)


def join_devices(run: Run, specs: dict[str, DeviceSpec], timeout: float) -> None:
    """Each device whitelisted by its install code on the local port (once:
    the ledger's dl_added; a device already in the log gets its join window
    opened) and powered on, until the hub's Device Log shows them all joined."""
    han = run.system.han
    for name, spec in specs.items():
        if spec.eui in run.ledger.dl_added:
            continue
        r = run.call("device_log_add", eui=spec.eui, type=spec.dev_type, install_code=spec.install_code_hex,
                     join_timeout=3600)
        if r["code"] != 0:
            raise Violation(f"device_log_add {name}: {r}")
        run.ledger.dl_added[spec.eui] = spec.dev_type
    for name in specs:
        han.power_on(name)
    want = {spec.eui for spec in specs.values()}

    def recorded() -> bool:
        got = joined(run)
        # devices on the network talk now and then (a ZCL Basic report)
        for name, spec in specs.items():
            if spec.eui not in got and han.nodes[name].joined:
                han.send(name, bytes((0x18, 0x01, 0x0A, 0, 0, 0x20, 3)))
        return want <= got

    run.until(recorded, timeout, "the hub to record the joins")
    run.ledger.joined |= want


def step_device_log_change(run: Run) -> None:
    """A CHF Device Log change on the local port: the PPMID added, then removed."""
    from ..han_setup import DEVICES

    spec = DEVICES["ppmid"]
    if spec.eui not in run.ledger.dl_added and spec.eui not in run.ledger.dl_removed:
        r = run.call("device_log_add", eui=spec.eui, type=spec.dev_type, install_code=spec.install_code_hex,
                     join_timeout=60)
        if r["code"] != 0:
            raise Violation(f"device_log_add ppmid: {r}")
        run.ledger.dl_added[spec.eui] = spec.dev_type
    if spec.eui not in run.ledger.dl_removed:
        r = run.call("device_log_remove", eui=spec.eui)
        if r["code"] != 0 and "not in" not in r.get("message", ""):
            raise Violation(f"device_log_remove ppmid: {r}")
        run.ledger.dl_removed.add(spec.eui)
        run.ledger.dl_added.pop(spec.eui, None)


def step_gbcs_read(run: Run) -> None:
    """ECS26i (read CHF identity) from the head-end over the WAN."""
    run.command("ecs26i", ECS26I)


def step_gbcs_device_log(run: Run) -> None:
    """CCS01 (add a device to the CHF Device Log) from the head-end."""
    run.command("ccs01", CCS01)


def step_clock_sync(run: Run) -> None:
    """The head-end sends its time; the hub's clock takes it."""
    he = run.system.headend
    target = int(time.time()) + 3600  # an hour ahead: a visible step
    he.time_offset = 3600
    for _ in range(3):  # a valid clock takes a step over 10 s once three readings agree (docs/clock.md)
        he.send_time(target)

    def synced() -> bool:
        st = run.call("status")
        clk = st.get("clock") or {}
        utc = clk.get("utc", st.get("utc", 0))
        return abs(utc - target) < 30 and clk.get("valid", True)

    run.until(synced, 15, "the hub's clock from the head-end")
    run.ledger.clock_set = target


def _gsme_meter(run: Run) -> Any:
    if run.gsme is None:
        from ..meters import rtds_answers
        from ..meters.gsme import GsmeMeter

        han = run.system.han
        answers = rtds_answers([rel.split("/")[0] for _, rel in GSME_CMDS])

        async def make() -> GsmeMeter:
            return GsmeMeter(han.device(GSME), answers, wake_s=None)

        run.gsme = han.run(make())
        run.gsme.rtds_scenarios = True  # the RTDS counters are not in order across scenarios
    return run.gsme


def _note_put_window(run: Run) -> None:
    """The hub went down: PUTs its NCP took just before that may never have
    reached its outbox (the protocol's window, see the module docstring)."""
    gsme, lost_at = run.gsme, run.system.han.emu.host_lost_at
    if gsme is None or lost_at is None:
        return
    pending = {run.ledger.pending[k]["frame"].counter for k, _ in GSME_CMDS
               if k in run.ledger.pending and not run.ledger.pending[k]["fut"].done()}
    for frame, t in zip(gsme.puts, gsme.put_times, strict=True):
        if 0 <= lost_at - t <= PUT_WINDOW_S:
            c = parse_frame(frame).counter
            if c in pending:
                run.ledger.gsme_window.add(c)


def step_gsme_buffer(run: Run) -> None:
    """Two commands for the sleepy GSME from the head-end (buffered: ACKed at
    once), then the meter wakes until it has executed both and PUT the responses."""
    try:
        _gsme_buffer(run)
    except HubDown:
        _note_put_window(run)
        raise


def _gsme_buffer(run: Run) -> None:
    gsme = _gsme_meter(run)
    for key, rel in GSME_CMDS:
        # its response comes once the meter has woken: the head-end waits long
        counter = run.submit(key, rel, rebuild=False, timeout=600)["frame"].counter
        run.ledger.commands[counter] = run.until(lambda c=counter: run.ack_status(c), 20, f"{key} buffered by the hub")
        run.ledger.gsme[key] = counter

    def settled(key: str) -> bool:
        p = run.ledger.pending[key]
        if p["fut"].done():
            return True
        # its PUT went into the window: executed, and nothing will come
        return p["frame"].counter in run.ledger.gsme_window and p["raw"] in gsme.executed

    deadline = time.monotonic() + 90
    while not all(settled(k) for k, _ in GSME_CMDS):
        if time.monotonic() > deadline:
            raise TimeoutError(f"GSME commands not answered: {[k for k, _ in GSME_CMDS if not settled(k)]}")
        try:
            run.system.han.run(gsme.wake(timeout=2.0), timeout=20)
        except Exception as e:  # noqa: BLE001 - the hub may be down, or a frame lost: wake again
            run.events.append(f"gsme wake: {type(e).__name__}: {e}"[:200])
        if not run.dut.alive:
            raise HubDown("the GSME's wake-up")
        run.until(lambda: run.call("status"), 10, "the hub answering")
        if not all(settled(k) for k, _ in GSME_CMDS):
            time.sleep(0.3)


STEPS: list[Callable[[Run], None]] = [step_provision, step_join, step_device_log_change, step_gbcs_read,
                                     step_gbcs_device_log, step_gsme_buffer, step_clock_sync]


def device_log(run: Run) -> list[dict]:
    """The CHF Device Log rows as dicts (all pages)."""
    from chubcore.device_log import ROW

    rows: list[dict] = []
    while True:
        r = run.call("device_log_list", offset=len(rows))
        rows += [dict(zip(ROW, e, strict=False)) for e in r["entries"]]
        if not r["entries"] or len(rows) >= r["total"]:
            return rows


def joined(run: Run) -> set[str]:
    return {e["eui"] for e in device_log(run) if e.get("join_state") == "joined"}


# --- the checks ------------------------------------------------------------------------

def check(run: Run) -> dict:
    """After the scenario (and any disturbance): raise Violation unless nothing
    acknowledged was lost, nothing was delivered twice, the logs are
    consistent and the HAN resumed without re-forming or re-joining."""
    he = run.system.headend
    han = run.system.han
    out: dict[str, Any] = {}
    run.wan_idle(30)
    # -- commands: every ACKed one answered exactly once -----------------------
    frames = [r for r in he.received if r.frame is not None]
    by_counter: dict[tuple[int, int], set[int]] = {}
    for r in frames:
        by_counter.setdefault((r.frame.cra, r.frame.counter), set()).add(r.id)
    for counter, status in run.ledger.commands.items():
        if status not in ("done", "duplicate"):
            raise Violation(f"command {counter} acknowledged with {status}")
        ids = by_counter.get((2, counter), set())
        if not ids and counter not in run.ledger.gsme_window:
            raise Violation(f"acknowledged command {counter}: its response never reached the head-end")
    for (cra, counter), ids in by_counter.items():
        if len(ids) > 1:
            raise Violation(f"CRA {cra} counter {counter} delivered {len(ids)} times (hub frame ids {sorted(ids)})")
    bad = [r for r in he.received if r.frame is None]
    if bad:
        raise Violation(f"{len(bad)} unparseable frames from the hub: {bad[0].error}")
    out["responses"] = sum(1 for k in by_counter if k[0] == 2)
    # -- the GSME's buffered commands: each executed by the meter exactly once ---
    if run.ledger.gsme:
        ex = run.gsme.executed if run.gsme is not None else []
        for key, counter in run.ledger.gsme.items():
            n = ex.count(run.ledger.pending[key]["raw"])
            if n != 1:
                raise Violation(f"buffered GSME command {key} (counter {counter}) executed {n} times")
        out["gsme_commands"] = len(run.ledger.gsme)
        out["gsme_put_window"] = sum(1 for c in run.ledger.gsme.values() if not by_counter.get((2, c)))
    out["alerts"] = sum(1 for k in by_counter if k[0] == 3)
    # -- the CHF Device Log ---------------------------------------------------------
    rows = device_log(run)
    euis = [e["eui"] for e in rows]
    if len(euis) != len(set(euis)):
        raise Violation(f"Device Log has duplicate entries: {euis}")
    for eui in run.ledger.dl_added:
        if eui not in euis:
            raise Violation(f"acknowledged Device Log entry {eui} lost")
    for eui in run.ledger.dl_removed:
        if eui in euis:
            raise Violation(f"removed Device Log entry {eui} came back")
    # still joined in the log (heard since the hub's last start or not)
    now_joined = {e["eui"] for e in rows if e.get("join_state") in ("joined", "not heard since start")}
    if not run.ledger.joined <= now_joined:
        raise Violation(f"joined devices forgotten: {sorted(run.ledger.joined - now_joined)}")
    # -- the logs: readable, in order ---------------------------------------------------
    for which in ("event", "security"):
        ent = run.call("logs", which=which)["entries"]
        times = [e[0] for e in ent]
        # in time order, unless the campaign jumped the board's clock back
        if times != sorted(times) and not run.clock_jumps:
            raise Violation(f"{which} log out of order: {times}")
        out[f"{which}_log"] = len(ent)
    # -- the HAN: same network, no re-forming, no re-joining ------------------------------
    st = _han_up(run)
    net = run.ledger.network
    if net is not None:
        now = {"channel": st["channel"], "pan_id": st["pan_id"], "ext_pan_id": st["ext_pan_id"].upper()}
        if now != net:
            raise Violation(f"the HAN changed across the cut: {net} -> {now}")
    forms = han.commands.count("formNetwork")
    if forms != 1:
        raise Violation(f"the network was formed {forms} times")

    for name in (*JOINERS, GSME):
        if name in han.specs and han.specs[name].eui in run.ledger.joined:
            node = han.nodes[name]
            if not node.joined:
                raise Violation(f"{name} dropped off the network")
    out["joins"] = {n: han.state[n]["attempts"] for n in JOINERS}
    return out


def run_steps(run: Run, steps: list[Callable[[Run], None]] | None = None, max_reboots: int = 3) -> None:
    """Run the steps in order; when the hub goes down in one, power it back
    on, note the recovery time and resume that step."""
    for step in steps or STEPS:
        tries = 0
        while True:
            try:
                step(run)
                run.ledger.steps_done.append(step.__name__)
                break
            except Exception as e:
                if not isinstance(e, HubDown) and run.dut.alive:
                    raise
                tries += 1
                if tries > max_reboots:
                    raise
                run.events.append(f"down in {step.__name__}")
                t0 = time.monotonic()
                run.reboot()
                if step is not step_provision and "step_provision" in run.ledger.steps_done:
                    run.system.headend.wait_hello(len(run.system.headend.hellos) + 1, timeout=30)
                run.recovery_s.append(time.monotonic() - t0)
