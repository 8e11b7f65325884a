"""`chub hht identity` and `chub hht send-gbcs`: the HHT's GBCS commands."""

from __future__ import annotations

import json
from pathlib import Path

import click


def register(hht: click.Group) -> None:
    """Add the GBCS commands to the `hht` group."""
    from .cli import _call

    @hht.command()
    @click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
    @click.pass_context
    def identity(ctx: click.Context, as_json: bool) -> None:
        """CHF and GPF EUI-64s and public keys (KA and DS, uncompressed points)."""
        r = _call(ctx, "identity")
        if as_json:
            click.echo(json.dumps(r))
            return
        for name in ("chf", "gpf"):
            d = r.get(name, {})
            click.echo(f"{name.upper()} {d.get('eui', '?').upper()}")
            click.echo(f"  KA {d.get('ka_pub', '')}")
            click.echo(f"  DS {d.get('ds_pub', '')}")

    @hht.command("send-gbcs")
    @click.option("--in", "inp", required=True, type=click.Path(exists=True, path_type=Path), help="Command (hex text).")
    @click.option("--out", required=True, type=click.Path(path_type=Path), help="Where to write the response (hex).")
    @click.option("--alerts", type=click.Path(path_type=Path), help="Save alerts here (one hex frame per line).")
    @click.option("--gsme-reply-here", is_flag=True,
                  help="A command for the GSME: keep its response for the HHT (`chub hht gsme-replies`), not the WAN.")
    @click.pass_context
    def send_gbcs(ctx: click.Context, inp: Path, out: Path, alerts: Path | None, gsme_reply_here: bool) -> None:
        """Send one pre-protected GBCS command as if from the WAN; write the response."""
        frame = "".join(inp.read_text().split())
        try:
            bytes.fromhex(frame)
        except ValueError as e:
            raise click.BadParameter(f"{inp} is not hex: {e}") from e
        r = _call(ctx, "send_gbcs", frame=frame, hht=True) if gsme_reply_here else _call(ctx, "send_gbcs", frame=frame)
        resp = r.get("response")
        if resp is not None:
            out.write_text(resp.upper())
        got = [a.upper() for a in r.get("alerts", [])]
        if alerts is not None:
            alerts.write_text("".join(a + "\n" for a in got))
        else:
            for a in got:
                click.echo(f"alert {a}")
        if resp is None:
            # a GSME command: the hub buffers it until the meter wakes, and
            # the meter's response then goes to the head-end (WAN outbox)
            to = "is kept for `chub hht gsme-replies`" if gsme_reply_here else "goes to the head-end"
            click.echo(f"buffered: no response now (a command for the sleepy GSME waits in the hub until the "
                       f"meter wakes; its response {to}); nothing written to {out}", err=True)
        else:
            click.echo(f"response: {len(resp) // 2} bytes -> {out}", err=True)

    @hht.command("gsme-replies")
    @click.option("--take", is_flag=True, help="Remove them from the hub once printed.")
    @click.pass_context
    def gsme_replies(ctx: click.Context, take: bool) -> None:
        """The GSME's responses to commands sent with `send-gbcs --gsme-reply-here` (hex, one a line)."""
        r = _call(ctx, "route_replies", take=take) if take else _call(ctx, "route_replies")
        for x in r.get("replies", []):
            click.echo(str(x.get("frame", "")).upper())
