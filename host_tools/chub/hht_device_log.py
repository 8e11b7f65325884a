"""`chub hht device-log ...` and `chub hht logs`: the CHF Device Log and the
event/security logs over the local port. `register(hht)` adds the commands to
the `hht` click group."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

from chubcore.device_log import HISTORIC, ROW, TYPES

_TYPE_BY_NAME = {n.upper().replace(" ", ""): i for i, n in enumerate(TYPES)} | {"IHD": 6, "TYPE2": 6}


def parse_type(value: str) -> int:
    v = value.strip().upper().replace(" ", "")
    if v.isdigit() and int(v) < len(TYPES):
        return int(v)
    if v in _TYPE_BY_NAME:
        return _TYPE_BY_NAME[v]
    raise click.BadParameter(f"{value!r}: one of 0-6 or {', '.join(TYPES)}")


def parse_eui(value: str) -> str:
    v = value.replace(":", "").replace("-", "").upper()
    if len(v) != 16 or any(c not in "0123456789ABCDEF" for c in v):
        raise click.BadParameter(f"{value!r} is not an EUI-64 (16 hex digits)")
    return v


def parse_device_eui(value: str) -> str:
    """parse_eui, also refusing the EUIs no device has: all ones (the
    broadcast address) and all zeros."""
    v = parse_eui(value)
    if v in ("FFFFFFFFFFFFFFFF", "0000000000000000"):
        raise click.BadParameter(f"{value!r}: EUI-64 {v} is not a device address")
    return v


def check_install_code(value: str) -> bytes:
    """Install code with its CRC (hex) -> bytes; the CRC-16/X-25 is checked
    by zigpy before anything is sent."""
    from zigpy.util import convert_install_code

    try:
        code = bytes.fromhex(value.replace(":", "").replace(" ", "").replace("-", ""))
    except ValueError:
        raise click.BadParameter("install code is not hex") from None
    try:
        convert_install_code(code)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    return code


def _call(ctx: click.Context, cmd: str, **args: object) -> dict:
    from .cli import _call as call

    return call(ctx, cmd, **args)


def _fetch_list(ctx: click.Context) -> dict:
    first = _call(ctx, "device_log_list")
    entries = list(first["entries"])
    while len(entries) < first["total"]:
        page = _call(ctx, "device_log_list", offset=len(entries))
        if not page["entries"]:
            break
        entries += page["entries"]
    out = {k: v for k, v in first.items() if k not in ("entries", "offset")}
    out["entries"] = [dict(zip(ROW, r, strict=True)) for r in entries]
    for e in out["entries"]:
        e["type_name"] = TYPES[e["type"]] if e["type"] is not None else "unknown"
    out["historic"] = [dict(zip(HISTORIC, h, strict=True)) for h in first["historic"]]
    return out


def _triple(t: list[int] | None) -> str:
    return "-" if not t else f"{t[0]}/{t[1]}/{t[2]}"


def register(hht: click.Group) -> None:
    @hht.group("device-log")
    def device_log() -> None:
        """The CHF Device Log (the HAN whitelist) and the Historic Device Log."""

    @device_log.command("list")
    @click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
    @click.pass_context
    def list_(ctx: click.Context, as_json: bool) -> None:
        """Devices, their join state and HAN statistics; then the historic log."""
        from .views import data_column, key_column, out_console, unix_from_2000, utc_text

        d = _fetch_list(ctx)
        if as_json:
            # every time in --json output is Unix time (seconds since 1970 UTC), as in `status`
            for e in d["entries"]:
                e["window_end"], e["last_comm"] = unix_from_2000(e["window_end"]), unix_from_2000(e["last_comm"])
            for h in d["historic"]:
                h["removed"] = unix_from_2000(h["removed"])
            d["utc"] = unix_from_2000(d.get("utc"))
            click.echo(json.dumps(d))
            return
        t = Table(title=f"CHF Device Log ({d['total']}/{d['capacity']})")
        key_column(t, "EUI-64")
        for col in ("type", "join state", "key", "node", "RSSI min/avg/max", "LQI min/avg/max",
                    "last comm (UTC)", "tx ok/fail"):
            t.add_column(col, overflow="fold")
        for e in d["entries"]:
            node = "-" if e["node_id"] is None else f"0x{e['node_id']:04X}"
            js = e["join_state"] + (f" until {utc_text(e['window_end'])}" if e["window_end"] else "")
            t.add_row(e["eui"], e["type_name"], js, e["key_state"], node, _triple(e["rssi"]), _triple(e["lqi"]),
                      utc_text(e["last_comm"]) if e["last_comm"] else "never", f"{e['tx_ok']}/{e['tx_fail']}")
        h = Table(title=f"Historic Device Log ({len(d['historic'])})")
        key_column(h, "EUI-64")
        h.add_column("type")
        data_column(h, "key hash")
        h.add_column("removed (UTC)")
        for e in d["historic"]:
            h.add_row(e["eui"], TYPES[e["type"]] if e["type"] is not None else "unknown", e["key_hash"],
                      utc_text(e["removed"]))
        c = out_console()
        c.print(t)
        c.print(h)

    @device_log.command("add")
    @click.option("--eui", required=True, callback=lambda c, p, v: parse_device_eui(v),
                  help="EUI-64, 16 hex digits.")
    @click.option("--type", "dev_type", required=True, callback=lambda c, p, v: parse_type(v),
                  help="0-6 or GSME, ESME, CHF, GPF, HCALCS, PPMID, 'Type 2' (IHD).")
    @click.option("--install-code", required=True, callback=lambda c, p, v: check_install_code(v),
                  help="Install code with its CRC, hex.")
    @click.option("--join-timeout", type=click.IntRange(0, 65535), default=3600, show_default=True,
                  help="Seconds the device may join.")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_context
    def add(ctx: click.Context, eui: str, dev_type: int, install_code: bytes, join_timeout: int,
            as_json: bool) -> None:
        """Whitelist a device and open its join window (GBCS CCS01)."""
        r = _call(ctx, "device_log_add", eui=eui, type=dev_type, install_code=install_code.hex(),
                  join_timeout=join_timeout)
        _report(r, as_json)

    @device_log.command("remove")
    @click.option("--eui", required=True, callback=lambda c, p, v: parse_eui(v))
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_context
    def remove(ctx: click.Context, eui: str, as_json: bool) -> None:
        """Remove a device; its key hash goes to the Historic log (GBCS CCS02)."""
        _report(_call(ctx, "device_log_remove", eui=eui), as_json)

    @hht.command("logs")
    @click.option("--which", type=click.Choice(["event", "security", "transactions"]), default="event",
                  show_default=True)
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_context
    def logs(ctx: click.Context, which: str, as_json: bool) -> None:
        """The CHF event or security log (UTC date-times, code names, the data in full),
        or the WAN transaction log. --json times are Unix time (seconds since 1970)."""
        if which == "transactions":
            from .hht_wan import transactions

            transactions(_call, ctx, as_json)
            return
        from .views import code_name, data_column, out_console, unix_from_2000, utc_text

        r = _call(ctx, "logs", which=which)
        if as_json:
            # entries [time, code, data hex, count?], time as Unix time (seconds since 1970 UTC);
            # "names": code (0xXXXX) -> its name
            r["entries"] = [[unix_from_2000(e[0]), *e[1:]] for e in r["entries"]]
            r["names"] = {f"0x{e[1]:04X}": code_name(e[1]) for e in r["entries"]}
            click.echo(json.dumps(r))
            return
        lost = f", {r['lost']} lost" if r.get("lost") else ""
        t = Table(title=f"CHF {which} log ({len(r['entries'])}/{r['capacity']}{lost})")
        t.add_column("time (UTC)", no_wrap=True, min_width=20)
        t.add_column("code", no_wrap=True, min_width=6)
        t.add_column("name", overflow="fold")
        data_column(t, "data")
        t.add_column("count", no_wrap=True)
        for tm, code, data, *n in r["entries"]:
            t.add_row(utc_text(tm), f"0x{code:04X}", code_name(code), data, str(n[0] if n else 1))
        out_console().print(t)


def _report(r: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(r))
    else:
        colour = "green" if r["code"] == 0 else "red"
        Console().print(f"[{colour}]{r['message']}[/{colour}] (GBCS code {r['code']})")
    if r["code"] != 0:
        sys.exit(1)
