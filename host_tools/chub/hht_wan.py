"""`chub hht logs --which transactions`: the WAN transaction log (PDP set-up,
link up/down, acknowledgements, rejections, modem resets, clock steps), read
page by page over the local port (docs/headend-link.md)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import click
from rich.console import Console
from rich.table import Table


def fetch(call: Callable[..., dict], ctx: click.Context) -> dict:
    """Every entry, oldest first (the hub answers newest pages first)."""
    entries: list[dict] = []
    before = None
    total = 0
    while True:
        r = call(ctx, "transactions", **({} if before is None else {"before": before}))
        total = r["total"]
        entries = r["entries"] + entries
        if not r["entries"] or len(entries) >= total:
            break
        before = r["entries"][0]["seq"]
    return {"total": total, "entries": entries}


def transactions(call: Callable[..., dict], ctx: click.Context, as_json: bool) -> None:
    r = fetch(call, ctx)
    if as_json:
        click.echo(json.dumps(r))
        return
    t = Table(title=f"WAN transaction log ({len(r['entries'])})")
    for col in ("seq", "time (UTC)", "event", "id", "detail"):
        t.add_column(col)
    for e in r["entries"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e["utc"]))
        t.add_row(str(e["seq"]), when, str(e["event"]), str(e["id"]), e["detail"])
    Console().print(t)
