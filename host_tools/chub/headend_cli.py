"""`chub headend`: the test DCC operator's side of remote management
(docs/headend-link.md, "Remote management"). It talks to the emulated
head-end's operator API (JSON lines on 127.0.0.1, `HeadEndServer.start_api`;
the running `chub sim` names it in its ready line as `headend_api`), which
sends management requests to the hub over the authenticated link.

    chub headend config get [--json]
    chub headend config set NAME=VALUE ...   (VALUE is JSON: 5000, "apn.x", null, true)
    chub headend logs [--which transactions|event|security] [--json]
    chub headend signal [--json]             (WAN signal + HAN link quality)
    chub headend reports [--json]            (the hub's installation and health reports)
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table


class ApiError(Exception):
    """The head-end (or the hub behind it) refused: `status` when the hub did."""

    def __init__(self, error: str, status: int | None = None) -> None:
        super().__init__(error if status is None else f"hub refused (status {status}): {error}")
        self.status = status


class HeadEndApi:
    """A client of the head-end's operator API: op(name, **args) -> result."""

    def __init__(self, addr: str, timeout: float = 15.0) -> None:
        host, _, port = addr.rpartition(":")
        self.sock = socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout)
        self.f = self.sock.makefile("rwb")

    def __enter__(self) -> HeadEndApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.f.close()
        self.sock.close()

    def op(self, op: str, **args: Any) -> Any:
        self.f.write(json.dumps({"op": op, **args}).encode() + b"\n")
        self.f.flush()
        line = self.f.readline()
        if not line:
            raise ApiError("the head-end closed the connection")
        r = json.loads(line)
        if not r.get("ok"):
            raise ApiError(str(r.get("error")), r.get("status"))
        return r["result"]

    def manage(self, cmd: str, timeout: float = 10.0, **args: Any) -> Any:
        return self.op("manage", req={"cmd": cmd, **args}, timeout=timeout)


def api_address(api: str | None, workdir: Path | None) -> str:
    """--api, else the running `chub sim`'s (on --workdir, or the only one)."""
    if api:
        return api
    from .sim import running_sims

    if workdir is not None:
        ready = Path(workdir) / "ready.json"
        if not ready.exists():
            raise click.UsageError(f"no running `chub sim` on {workdir} (no {ready})")
        sims = [json.loads(ready.read_text())]
    else:
        sims = running_sims()
    if len(sims) != 1:
        raise click.UsageError(f"give --api HOST:PORT or --workdir DIR (found {len(sims)} running `chub sim`)")
    addr = sims[0].get("headend_api")
    if not addr:
        raise click.UsageError("that `chub sim` has no head-end API")
    return addr


def parse_assignments(items: tuple[str, ...]) -> dict[str, Any]:
    """NAME=VALUE pairs; VALUE is JSON where it parses (5000, null, true,
    {"cmd": 100}), else a plain string (an APN, a host)."""
    out: dict[str, Any] = {}
    for it in items:
        name, eq, text = it.partition("=")
        if not eq or not name:
            raise click.BadParameter(f"{it!r} is not NAME=VALUE")
        try:
            out[name] = json.loads(text)
        except ValueError:
            out[name] = text
    return out


def fetch_transactions(api: HeadEndApi) -> dict:
    """Every transaction-log entry, oldest first, page by page (as `chub hht logs`)."""
    from .hht_wan import fetch

    return fetch(lambda _ctx, cmd, **args: api.manage(cmd, **args), None)


def register(main: click.Group) -> None:
    @main.group()
    @click.option("--api", default=None, help="The head-end's operator API, HOST:PORT (default: the running sim's).")
    @click.option("--workdir", type=click.Path(path_type=Path), default=None,
                  help="Use the `chub sim` running on this workdir.")
    @click.option("--timeout", type=float, default=15.0, show_default=True)
    @click.pass_context
    def headend(ctx: click.Context, api: str | None, workdir: Path | None, timeout: float) -> None:
        """The test DCC operator: manage the hub remotely over the head-end link."""
        ctx.obj = {"api": api, "workdir": workdir, "timeout": timeout}

    def run(ctx: click.Context, fn: Any) -> Any:
        err = Console(stderr=True, soft_wrap=True)
        try:
            addr = api_address(ctx.obj["api"], ctx.obj["workdir"])
            with HeadEndApi(addr, ctx.obj["timeout"]) as api:
                return fn(api)
        except ApiError as e:
            err.print(f"[red]{e}[/red]")
            sys.exit(2)
        except OSError as e:
            err.print(f"[red]no answer from the head-end:[/red] {e}")
            sys.exit(3)

    @headend.group()
    def config() -> None:
        """Read or set the hub's WAN settings (the same schema as `wan_config` locally)."""

    @config.command("get")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_context
    def config_get(ctx: click.Context, as_json: bool) -> None:
        r = run(ctx, lambda api: api.manage("wan_config"))
        _settings(r, as_json)

    @config.command("set")
    @click.argument("assignments", nargs=-1, required=True)
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_context
    def config_set(ctx: click.Context, assignments: tuple[str, ...], as_json: bool) -> None:
        changes = parse_assignments(assignments)
        r = run(ctx, lambda api: api.manage("wan_config", set=changes))
        _settings({k: r[k] for k in changes if k in r} if not as_json else r, as_json)

    @headend.command("logs")
    @click.option("--which", type=click.Choice(["transactions", "event", "security"]), default="transactions",
                  show_default=True)
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_context
    def logs(ctx: click.Context, which: str, as_json: bool) -> None:
        """The hub's transaction, event or security log, read over the link."""
        if which == "transactions":
            r = run(ctx, fetch_transactions)
        else:
            r = run(ctx, lambda api: api.manage("logs", which=which))
        if as_json:
            click.echo(json.dumps(r))
            return
        t = Table(title=f"hub {which} log ({len(r['entries'])})")
        if which == "transactions":
            for col in ("seq", "utc", "event", "id", "detail"):
                t.add_column(col)
            for e in r["entries"]:
                t.add_row(str(e["seq"]), str(e["utc"]), str(e["event"]), str(e["id"]), e["detail"])
        else:
            for col in ("time (s since 2000)", "code", "data", "count"):
                t.add_column(col)
            for tm, code, data, *n in r["entries"]:
                t.add_row(str(tm), f"0x{code:04X}", _text(data), str(n[0] if n else 1))
        Console().print(t)

    @headend.command("signal")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_context
    def signal(ctx: click.Context, as_json: bool) -> None:
        """The WAN signal (30 s average, last CSQ, cell, registration) and each HAN device's link quality."""
        def go(api: HeadEndApi) -> dict:
            st = api.manage("wan_status")
            rows = api.manage("device_log_list")
            return {"wan": {k: st.get(k) for k in ("signal_avg_dbm", "signal_dbm", "cell", "reg", "state")},
                    "han": [{"eui": e[0], "rssi": e[7], "lqi": e[8]} for e in rows["entries"]]}

        r = run(ctx, go)
        if as_json:
            click.echo(json.dumps(r))
            return
        Console().print(r["wan"])
        t = Table(title="HAN link quality (min, mean, max)")
        for col in ("eui", "rssi", "lqi"):
            t.add_column(col)
        for d in r["han"]:
            t.add_row(d["eui"], str(d["rssi"]), str(d["lqi"]))
        Console().print(t)

    @headend.command("reports")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_context
    def reports(ctx: click.Context, as_json: bool) -> None:
        """The hub's reports the head-end received (installation, signal/health)."""
        r = run(ctx, lambda api: api.op("reports"))
        if as_json:
            click.echo(json.dumps(r))
            return
        for rep in r:
            Console().print(rep)


def _text(hexdata: str) -> str:
    b = bytes.fromhex(hexdata)
    return b.decode() if b and all(32 <= c < 127 for c in b) else hexdata


def _settings(r: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(r))
        return
    t = Table(title="hub WAN settings")
    t.add_column("name")
    t.add_column("value")
    for k in sorted(r):
        t.add_row(k, json.dumps(r[k]))
    Console().print(t)
