"""`chub hht han ...`: the HAN from the installer's terminal (docs/hht.md).

* `read --eui EUI --cluster C --attr A [--attr A ...]`: the hub reads ZCL
  attributes from a joined device (local-port command `han_zcl_read`);
* `tunnel --eui EUI --data HEX`: one message over the ZSE tunnel to a device
  and its reply (`han_tunnel`);
* `rotate-key`: a new HAN network key, broadcast then switched to
  (`han_rotate_key`; the hub writes it to the security log).

Clusters and attributes are numbers (0x0702, 1794) or zigpy's names
(`smartenergy_metering`, `current_summ_delivered`); type and status names in
the output are zigpy's too. Like every changing or personal-data command,
these need an installer session: the client opens one by itself.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from .hht_device_log import parse_eui

_HEX = "0123456789abcdef"


def _number(value: str, bits: int) -> int | None:
    v = value.strip().lower()
    try:
        n = int(v, 16) if v.startswith("0x") else int(v, 10)
    except ValueError:
        return None
    if not 0 <= n < (1 << bits):
        raise click.BadParameter(f"{value!r} does not fit in {bits} bits")
    return n


def parse_cluster(value: str) -> int:
    """A ZCL cluster id: a number or zigpy's cluster name (e.g. `basic`, `time`,
    `smartenergy_metering`)."""
    n = _number(value, 16)
    if n is not None:
        return n
    from zigpy.zcl import Cluster

    name = value.strip().lower()
    for cid, cls in Cluster._registry.items():  # noqa: SLF001 - zigpy's cluster table
        if cls.ep_attribute == name:
            return int(cid)
    raise click.BadParameter(f"{value!r}: a cluster id (0x0702) or a zigpy cluster name (smartenergy_metering)")


def parse_attr(cluster: int, value: str) -> int:
    n = _number(value, 16)
    if n is not None:
        return n
    from zigpy.zcl import Cluster

    cls = Cluster._registry.get(cluster)  # noqa: SLF001
    name = value.strip()
    if cls is not None:
        for aid, a in cls.attributes.items():
            if a.name == name:
                return int(aid)
    raise click.BadParameter(f"{value!r}: an attribute id, or one of cluster 0x{cluster:04X}'s attribute names")


def describe(cluster: int, rec: list[Any]) -> dict[str, Any]:
    """One [attr, status, type, value] record from the hub, with names."""
    import zigpy.zcl.foundation as f
    from zigpy.zcl import Cluster

    aid, status, typ, value = rec
    cls = Cluster._registry.get(cluster)  # noqa: SLF001
    attr = cls.attributes.get(aid) if cls is not None else None
    try:
        st = f.Status(status).name
    except ValueError:
        st = f"0x{status:02X}"
    tname = None
    if typ is not None:
        try:
            tname = f.DataType.from_type_id(typ).name
        except (KeyError, ValueError):
            tname = f"0x{typ:02X}"
    return {"attr": aid, "name": attr.name if attr is not None else None, "status": status, "status_name": st,
            "type": typ, "type_name": tname, "value": value}


def _call(ctx: click.Context, cmd: str, wait_s: float, **args: object) -> dict:
    """A local-port call that may take the hub `wait_s` to answer (the
    client's --timeout is raised to that for this call)."""
    from .cli import _call as call

    obj = ctx.obj
    old = obj["timeout"]
    obj["timeout"] = max(old, wait_s + 5)
    try:
        return call(ctx, cmd, **args)
    finally:
        obj["timeout"] = old


def _fail(what: str, r: dict) -> None:
    reason = r.get("reason")
    Console(stderr=True, soft_wrap=True).print(
        f"[red]{what} failed[/red]{f' ({reason})' if reason else ''}: {r.get('error', r)}")
    sys.exit(4)


def register(hht: click.Group) -> None:
    @hht.group("han")
    def han() -> None:
        """The HAN: read device attributes, tunnel to a device, rotate the network key."""

    @han.command("read")
    @click.option("--eui", required=True, help="The device's EUI-64 (16 hex digits).")
    @click.option("--cluster", required=True, help="Cluster id (0x0702) or zigpy name (smartenergy_metering).")
    @click.option("--attr", "attrs", required=True, multiple=True, help="Attribute id or name; repeat for more.")
    @click.option("--ep", type=click.IntRange(1, 240), default=1, show_default=True, help="The device's endpoint.")
    @click.option("--timeout-ms", type=click.IntRange(100, 120000), default=10000, show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
    @click.pass_context
    def read(ctx: click.Context, eui: str, cluster: str, attrs: tuple[str, ...], ep: int, timeout_ms: int,
             as_json: bool) -> None:
        """Read ZCL attributes of a joined device through the hub."""
        e = parse_eui(eui)
        cid = parse_cluster(cluster)
        ids = [parse_attr(cid, a) for a in attrs]
        r = _call(ctx, "han_zcl_read", timeout_ms / 1000, eui=e, cluster=cid, attrs=ids, ep=ep,
                  timeout_ms=timeout_ms)
        if not r.get("ok"):
            _fail(f"read of cluster 0x{cid:04X} on {e}", r)
        recs = [describe(cid, x) for x in r["records"]]
        if as_json:
            click.echo(json.dumps({"eui": e, "cluster": cid, "ep": ep, "records": recs}))
            return
        t = Table(title=f"{e} cluster 0x{cid:04X} ep {ep}")
        for col in ("attr", "name", "status", "type", "value"):
            t.add_column(col)
        for x in recs:
            t.add_row(f"0x{x['attr']:04X}", x["name"] or "", x["status_name"], x["type_name"] or "",
                      "" if x["value"] is None else str(x["value"]))
        Console().print(t)

    @han.command("tunnel")
    @click.option("--eui", required=True, help="The device's EUI-64 (16 hex digits).")
    @click.option("--data", required=True, help="The message (hex).")
    @click.option("--timeout-ms", type=click.IntRange(100, 120000), default=30000, show_default=True)
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_context
    def tunnel(ctx: click.Context, eui: str, data: str, timeout_ms: int, as_json: bool) -> None:
        """Send one message over the ZSE tunnel to a device; print its reply (hex)."""
        e = parse_eui(eui)
        msg = "".join(data.split()).lower()
        if not msg or len(msg) % 2 or any(c not in _HEX for c in msg):
            raise click.BadParameter("--data must be hex bytes")
        r = _call(ctx, "han_tunnel", timeout_ms / 1000, eui=e, data=msg, timeout_ms=timeout_ms)
        if not r.get("ok"):
            _fail(f"tunnel to {e}", r)
        if as_json:
            click.echo(json.dumps({"eui": e, "reply": r["reply"], "ms": r.get("ms")}))
        else:
            click.echo(r["reply"].upper())
            click.echo(f"reply: {len(r['reply']) // 2} bytes in {r.get('ms')} ms", err=True)

    @han.command("rotate-key")
    @click.option("--switch-delay", type=click.IntRange(0, 3600), default=0, show_default=True,
                  help="Seconds between broadcasting the new key and switching to it.")
    @click.option("--json", "as_json", is_flag=True, help="Print the hub's answer as JSON.")
    @click.pass_context
    def rotate_key(ctx: click.Context, switch_delay: int, as_json: bool) -> None:
        """A new HAN network key (from the hub's RNG): broadcast, then switched to."""
        r = _call(ctx, "han_rotate_key", switch_delay + 10, switch_delay_s=switch_delay)
        if not r.get("ok"):
            _fail("network key rotation", r)
        click.echo(json.dumps(r) if as_json else "network key rotated (security log 0x8FE2)")
