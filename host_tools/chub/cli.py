"""`chub`: build, run, bench and talk to the Communications Hub."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console

from .core import build as build_mod
from .core.paths import STATE, default_heap


def _stderr() -> Console:
    """The console for progress and errors: made per call so it sees the terminal
    of the moment, and never wraps a message (a path must stay greppable)."""
    return Console(stderr=True, soft_wrap=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="chub")
def main() -> None:
    """Tools for the open smart-meter Communications Hub."""


@main.command()
@click.option("--board", default="unix", show_default=True, help="Board folder under boards/.")
@click.option("--out", type=click.Path(path_type=Path), help="Image folder (default build/BOARD/image).")
def build(board: str, out: Path | None) -> None:
    """Compile every firmware and board module with mpy-cross into an image folder."""
    try:
        with _stderr().status(f"building the {board} image"):
            img = build_mod.build(board, out)
    except build_mod.BuildError as e:
        _stderr().print(f"[red]build failed:[/red] {e}")
        sys.exit(1)
    _stderr().print(f"[green]built[/green] {len(img.modules)} modules, version {img.version} ({img.info['git']}) -> {img.path}")
    if img.info.get("manifest"):
        _stderr().print(f"frozen build: pass FROZEN_MANIFEST={img.info['manifest']} to the MicroPython ESP32 build")
    if img.info.get("app_size"):
        _stderr().print(img.info["app_size"]["text"])


@main.command()
@click.option("--headless", is_flag=True, help="No live view: print one JSON line when ready, then keep running.")
@click.option("--ready-timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for the hub.")
@click.option("--heap", default=default_heap(), show_default=True, help="MicroPython heap limit (-X heapsize).")
@click.option("--fresh", is_flag=True, help="Start from blank flash (first boot).")
@click.option("--workdir", type=click.Path(path_type=Path), default=STATE / "sim", show_default=True)
def sim(headless: bool, ready_timeout: float, heap: str, fresh: bool, workdir: Path) -> None:
    """Run the emulated system: the hub under MicroPython on the unix board, with the rig."""
    from .sim import run_sim

    sys.exit(run_sim(workdir=workdir, heap=heap, fresh=fresh, headless=headless, ready_timeout=ready_timeout))


@main.group()
@click.option("--port", default=None, help="Local port URL (socket://127.0.0.1:PORT, /dev/ttyUSB0, rfc2217://...).")
@click.option("--timeout", type=float, default=5.0, show_default=True)
@click.pass_context
def hht(ctx: click.Context, port: str | None, timeout: float) -> None:
    """The installer's hand-held terminal over the hub's local port."""
    if port is None:
        port = _sim_port()
    ctx.obj = {"port": port, "timeout": timeout}


def _sim_port() -> str:
    ready = STATE / "sim" / "ready.json"
    if ready.exists():
        return json.loads(ready.read_text())["local_port"]
    raise click.UsageError("no --port given and no running `chub sim` found")


def _call(ctx: click.Context, cmd: str, **args: object) -> dict:
    from .core.localport import LocalPortClient, LocalPortError

    try:
        with LocalPortClient(ctx.obj["port"], timeout=ctx.obj["timeout"]) as c:
            return c.call(cmd, **args)
    except LocalPortError as e:
        _stderr().print(f"[red]hub refused {cmd}:[/red] {e}")
        sys.exit(2)
    except (OSError, TimeoutError) as e:
        _stderr().print(f"[red]no answer from the hub on {ctx.obj['port']}:[/red] {e}")
        sys.exit(3)


@hht.command()
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Firmware version, board, uptime, heap and store counters."""
    from .views import status_table

    st = _call(ctx, "status")
    if as_json:
        click.echo(json.dumps(st))
    else:
        Console().print(status_table(st))


def _register_hht_commands() -> None:
    from . import hht_cache, hht_commission, hht_device_log, hht_gbcs, hht_han

    hht_device_log.register(hht)
    hht_gbcs.register(hht)
    hht_cache.register(hht)  # after hht_gbcs: adds --cache to send-gbcs
    hht_commission.register(hht)
    hht_han.register(hht)


_register_hht_commands()


def _register_board_commands() -> None:
    from . import flash, provision

    flash.register(main)
    provision.register(main)


_register_board_commands()


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@click.option("--markdown", is_flag=True, help="Print the table as Markdown (for the README).")
@click.option("--heap", default=default_heap(), show_default=True)
@click.option("--power-cut-sweep", is_flag=True, help="Only the power-cut campaign, at every flash block write.")
def bench(as_json: bool, markdown: bool, heap: str, power_cut_sweep: bool) -> None:
    """Measure the published figures in one run."""
    from .bench import run_bench

    if power_cut_sweep:
        from .bench_proof import power_cut_sweep as sweep

        raise SystemExit(sweep(as_json, heap))

    figures = run_bench(heap=heap, progress=None if as_json or markdown else _stderr().print)
    if as_json:
        click.echo(json.dumps(figures))
    elif markdown:
        click.echo("| figure | value |\n|---|---:|")
        for k, v in figures.items():
            click.echo(f"| `{k}` | {v} |")
    else:
        from .views import bench_table

        Console().print(bench_table(figures))


if __name__ == "__main__":
    main()
