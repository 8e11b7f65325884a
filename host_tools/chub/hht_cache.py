"""`chub hht send-gbcs --cache DIR --out DIR`: the HHT's cache mode. A folder
of pre-protected GBCS commands (one hex file each, as a DCC user prepared
them) is sent to the hub in name order, exactly as from the WAN, and each
response is saved beside its name; a command the hub refuses is recorded and
the run goes on. `register(hht)` adds `--cache` to the existing send-gbcs
command (its single-command mode is unchanged)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

SUFFIXES = (".hex", ".txt", ".gbcs")


def commands_in(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise click.UsageError(f"no command files ({', '.join(SUFFIXES)}) in {folder}")
    return files


def read_command(path: Path) -> str:
    frame = "".join(path.read_text().split())
    try:
        if not bytes.fromhex(frame):
            raise ValueError("empty")
    except ValueError as e:
        raise click.UsageError(f"{path} is not a hex GBCS command: {e}") from None
    return frame


def run_cache(call: Any, folder: Path, out: Path) -> list[dict[str, Any]]:
    """Send every command; write NAME.resp.hex, NAME.alerts (if any) or
    NAME.error per command and summary.json; return the summary."""
    from chubcore.localport import LocalPortError

    files = commands_in(folder)
    frames = [(p, read_command(p)) for p in files]  # all checked before the first is sent
    out.mkdir(parents=True, exist_ok=True)
    summary = []
    for p, frame in frames:
        stem = p.stem
        rec: dict[str, Any] = {"command": p.name}
        try:
            r = call("send_gbcs", frame=frame)
        except LocalPortError as e:
            (out / f"{stem}.error").write_text(f"{e}\n")
            rec.update(ok=False, error=str(e))
            summary.append(rec)
            continue
        resp = r.get("response")
        if resp is not None:
            (out / f"{stem}.resp.hex").write_text(resp.upper() + "\n")
        alerts = [a.upper() for a in r.get("alerts", [])]
        if alerts:
            (out / f"{stem}.alerts").write_text("".join(a + "\n" for a in alerts))
        rec.update(ok=resp is not None, response_bytes=len(resp) // 2 if resp else 0, alerts=len(alerts))
        if resp is None:
            rec["error"] = "no response"
        summary.append(rec)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def register(hht: click.Group) -> None:
    from .cli import _stderr

    cmd = hht.commands.get("send-gbcs")
    if cmd is None:
        return
    for p in cmd.params:
        if p.name in ("inp", "out"):
            p.required = False
    cmd.params.append(click.Option(["--cache"], type=click.Path(exists=True, file_okay=False, path_type=Path),
                                   help="Cache mode: send every command file in this folder; --out is then "
                                        "the folder for the responses."))
    single = cmd.callback
    assert single is not None

    @click.pass_context
    def callback(ctx: click.Context, cache: Path | None = None, **kw: Any) -> None:
        if cache is None:
            if kw.get("inp") is None or kw.get("out") is None:
                raise click.UsageError("send-gbcs needs --in and --out (or --cache DIR --out DIR)")
            return ctx.invoke(single, **kw)
        if kw.get("out") is None:
            raise click.UsageError("cache mode needs --out DIR for the responses")
        from .cli import open_client

        try:
            with open_client(ctx) as client:
                summary = run_cache(client.call, cache, kw["out"])
        except (OSError, TimeoutError) as e:
            _stderr().print(f"[red]no answer from the hub on {ctx.obj['port']}:[/red] {e}")
            sys.exit(3)
        bad = [s for s in summary if not s["ok"]]
        for s in summary:
            mark = "ok " if s["ok"] else "ERR"
            detail = f"{s['response_bytes']} bytes" if s["ok"] else s["error"]
            click.echo(f"{mark} {s['command']}: {detail}" + (f", {s['alerts']} alert(s)" if s.get("alerts") else ""))
        click.echo(f"{len(summary) - len(bad)}/{len(summary)} responses saved in {kw['out']}", err=True)
        if bad:
            sys.exit(1)

    cmd.callback = callback
