"""`chub hht signal` and `chub hht commission`: what an installer checks on
site (docs/provisioning.md, "Commissioning"). `register(hht)` adds them."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from chubcore.device_log import ROW, TYPES

from .hht_device_log import parse_eui

REGISTERED = {1: "registered, home", 5: "registered, roaming"}
CLOCK_FLOOR = 1704067200  # 2024-01-01: an RTC before this was never set


def csq_from_dbm(dbm: float | None) -> int | None:
    """3GPP TS 27.007 +CSQ <rssi>: 0 = -113 dBm or less ... 31 = -51 dBm or more."""
    if dbm is None:
        return None
    return max(0, min(31, round((dbm + 113) / 2)))


def device_rows(call: Any) -> list[dict[str, Any]]:
    first = call("device_log_list")
    rows = list(first["entries"])
    while len(rows) < first["total"]:
        page = call("device_log_list", offset=len(rows))
        if not page["entries"]:
            break
        rows += page["entries"]
    return [dict(zip(ROW, r, strict=True)) for r in rows]


def signal_report(call: Any) -> dict[str, Any]:
    wan = call("wan_status")
    cell = wan.get("cell")
    han = []
    for d in device_rows(call):
        han.append({"eui": d["eui"], "type": TYPES[d["type"]] if d["type"] is not None else "unknown",
                    "join_state": d["join_state"], "rssi": d["rssi"], "lqi": d["lqi"]})
    return {
        "wan": {
            "csq_avg": csq_from_dbm(wan.get("signal_avg_dbm")), "signal_avg_dbm": wan.get("signal_avg_dbm"),
            "csq": csq_from_dbm(wan.get("signal_dbm")), "signal_dbm": wan.get("signal_dbm"),
            "rat": cell[0] if cell else None, "plmn": cell[1] if cell else None,
            "area": cell[2] if cell else None, "cell_id": cell[3] if cell else None,
            "registration": wan.get("reg"),
        },
        "han": han,
    }


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


PROBE_TIMEOUT_MS = 5000
_SLEEPY = (0,)  # the GSME sleeps: it is not probed (it is reachable only when it wakes)
_HUB_OWN = (2, 3)  # the CHF and the GPF: the hub's own halves


def reachable(call: Any, d: dict[str, Any], utc: int | None, han_up: bool) -> tuple[bool, str]:
    """Is this Device Log entry a meter the hub can reach now? -> (ok, why).
    It must be joined and heard since the hub started (the hub shows "not
    heard since start" for a device it kept joined across a restart); a
    device that is awake (not the GSME) must also answer a read of its
    Basic cluster's ZCL version now."""
    js = d["join_state"]
    if js != "joined":
        why = {"not heard since start": "not heard since the hub started: it may not be on the network now",
               "restored": "restored from a backup: not heard since"}.get(js, js)
        return False, why
    if d["type"] in _SLEEPY or d["type"] in _HUB_OWN:
        return True, "joined" + (", sleepy: heard since start" if d["type"] in _SLEEPY else "")
    if not han_up:
        return False, "joined, but the HAN is down"
    from chubcore.localport import LocalPortError

    try:
        r = call("han_zcl_read", eui=d["eui"], cluster=0x0000, attrs=[0x0000], timeout_ms=PROBE_TIMEOUT_MS)
    except LocalPortError as e:
        return False, f"joined, but the read to check it failed: {e}"
    if not r.get("ok"):
        return False, f"joined, but not reachable now ({r.get('reason')}: {r.get('error')})"
    return True, "joined, answered now"


def commission_checks(call: Any, expected: list[str]) -> list[Check]:
    """The commissioning checklist, from status, wan_status, han_status and the Device Log."""
    st = call("status")
    wan = call("wan_status")
    han = call("han_status")
    out = []
    reg = wan.get("reg")
    out.append(Check("WAN registered", reg in REGISTERED,
                     REGISTERED.get(reg, f"registration status {reg}") +
                     (f", CSQ {csq_from_dbm(wan.get('signal_avg_dbm'))}" if wan.get("signal_avg_dbm") is not None else "")))
    cell = wan.get("cell")
    out.append(Check("head-end reached", bool(wan.get("connected")),
                     f"link {wan.get('state')}, {wan.get('connects', 0)} connect(s)"
                     + (f", cell {cell[1]}/{cell[3]}" if cell else "")
                     + (f", last error {wan['last_error']}" if wan.get("last_error") and not wan.get("connected") else "")))
    formed = han.get("state") == "up" and han.get("pan_id") is not None
    out.append(Check("HAN formed", formed,
                     f"{han.get('state')}, channel {han.get('channel')}, PAN 0x{han.get('pan_id') or 0:04X}"
                     if formed else f"HAN {han.get('state')}"))
    devices = {d["eui"].upper(): d for d in device_rows(call)}
    want = [e.upper() for e in expected] or sorted(devices)
    if not want:
        out.append(Check("meters joined", False, "no meter expected (--expect) and none in the Device Log"))
    for eui in want:
        d = devices.get(eui)
        if d is None:
            out.append(Check(f"{eui} joined", False, "not in the Device Log (add it with hht device-log add)"))
            continue
        name = TYPES[d["type"]] if d["type"] is not None else "device"
        rssi = d["rssi"][1] if d["rssi"] else None
        ok, detail = reachable(call, d, st.get("utc"), han.get("state") == "up")
        out.append(Check(f"{name} {eui} joined", ok, detail + (f", RSSI {rssi} dBm" if rssi is not None else "")))
    clock = st.get("clock")
    if isinstance(clock, dict):
        out.append(Check("clock valid", bool(clock.get("valid")),
                         f"source {clock.get('source')}, synced {clock.get('age_s')} s ago" if clock.get("valid")
                         else f"not valid (source {clock.get('source')})"))
    else:
        utc = st.get("utc") or 0
        out.append(Check("clock valid", utc >= CLOCK_FLOOR, f"RTC only (no network time on this firmware): {utc}"))
    return out


def register(hht: click.Group) -> None:
    from .cli import _call

    @hht.command()
    @click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
    @click.pass_context
    def signal(ctx: click.Context, as_json: bool) -> None:
        """WAN signal (CSQ average, cell ID) and HAN RSSI/LQI per device."""
        r = signal_report(lambda cmd, **kw: _call(ctx, cmd, **kw))
        if as_json:
            click.echo(json.dumps(r))
            return
        w = r["wan"]
        t = Table(title="WAN", show_header=False)
        t.add_row("CSQ (average)", "-" if w["csq_avg"] is None else f"{w['csq_avg']} ({w['signal_avg_dbm']} dBm)")
        t.add_row("CSQ (last)", "-" if w["csq"] is None else f"{w['csq']} ({w['signal_dbm']} dBm)")
        t.add_row("cell", "-" if w["cell_id"] is None else f"{w['rat']} {w['plmn']} area {w['area']} cell {w['cell_id']}")
        t.add_row("registration", REGISTERED.get(w["registration"], str(w["registration"])))
        from .views import key_column

        h = Table(title="HAN (min/avg/max)")
        key_column(h, "EUI-64")
        for col in ("type", "join state", "RSSI dBm", "LQI"):
            h.add_column(col, overflow="fold")
        for d in r["han"]:
            h.add_row(d["eui"], d["type"], d["join_state"], _triple(d["rssi"]), _triple(d["lqi"]))
        c = Console()
        c.print(t)
        c.print(h)

    @hht.command()
    @click.option("--expect", multiple=True, callback=lambda c, p, v: [parse_eui(x) for x in v],
                  help="EUI-64 of a meter that must have joined (repeat; default: every Device Log entry).")
    @click.option("--wait", type=float, default=0.0, show_default=True,
                  help="Keep checking for up to this many seconds until everything passes.")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_context
    def commission(ctx: click.Context, expect: list[str], wait: float, as_json: bool) -> None:
        """The commissioning checklist: WAN registered, head-end reached, HAN formed, meters joined, clock valid."""
        from .cli import _stderr

        deadline = time.monotonic() + wait
        # progress on stderr while --wait keeps checking (stdout stays the table or the JSON)
        with _stderr().status("commissioning: checking ...") as progress:
            while True:
                checks = commission_checks(lambda cmd, **kw: _call(ctx, cmd, **kw), expect)
                if all(c.ok for c in checks) or time.monotonic() >= deadline:
                    break
                waiting = ", ".join(c.name for c in checks if not c.ok)
                progress.update(f"commissioning: {sum(c.ok for c in checks)}/{len(checks)} checks pass; waiting "
                                f"for {waiting} ({deadline - time.monotonic():.0f} s left)")
                time.sleep(1.0)
        ok = all(c.ok for c in checks)
        if as_json:
            click.echo(json.dumps({"pass": ok, "checks": [c.__dict__ for c in checks]}))
        else:
            from .views import out_console

            t = Table(title="commissioning")
            t.add_column("check", no_wrap=True, overflow="ignore")  # names carry full EUIs
            t.add_column("result", no_wrap=True)
            t.add_column("detail", overflow="fold")
            for c in checks:
                t.add_row(c.name, "[green]PASS[/green]" if c.ok else "[red]FAIL[/red]", c.detail)
            out_console().print(t)
            out_console().print("[green]commissioned[/green]" if ok else
                            f"[red]not commissioned[/red]: {sum(not c.ok for c in checks)} check(s) failed")
        if not ok:
            sys.exit(1)


def _triple(t: list[int] | None) -> str:
    return "-" if not t else f"{t[0]}/{t[1]}/{t[2]}"
