"""`chub flash`: the click command (docs/flashing.md); the steps are in
flash_board.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from chubcore import build as build_mod
from chubcore.image_copy import FlashError
from chubcore.paths import BUILD

from .flash_board import flash_board


def register(main: Any) -> None:
    @main.command("flash")
    @click.option("--board", required=True,
                  help="Board folder under boards/ (esp32_s3, ...; unix: the emulated board).")
    @click.option("--port", required=True,
                  help="Serial port of the board (/dev/ttyUSB0); for --board unix, the emulated board's folder.")
    @click.option("--firmware", type=click.Path(path_type=Path), default=None,
                  help="MicroPython .bin to write first (esptool); without it only the app image is copied.")
    @click.option("--erase", is_flag=True, help="Erase the whole flash first (the hub's data too).")
    @click.option("--image", type=click.Path(path_type=Path), default=None,
                  help="Image folder (default build/BOARD/image, built if missing).")
    @click.option("--ready-timeout", type=float, default=30.0, show_default=True)
    @click.option("--heap", default=None, help="Emulated board only: the MicroPython heap of the boot check "
                                               "(default: boards/unix/board.json default_heap).")
    def flash_cmd(board: str, port: str, firmware: Path | None, erase: bool, image: Path | None,
                  ready_timeout: float, heap: str | None) -> None:
        """Flash MicroPython (esptool) and the hub's app image (mpremote), reset, and check the hub is ready."""
        from .cli import _stderr

        err = _stderr()
        try:
            spec = build_mod.board_spec(board)
        except build_mod.BuildError as e:
            err.print(f"[red]flash failed:[/red] {e}")
            sys.exit(1)
        img = image or (BUILD / board / "image")
        try:
            if image is None and not (img / "image.json").exists():
                err.print(f"building the {board} image first")
                build_mod.build(board)
            cols = (TextColumn("{task.description:<8}"), BarColumn(), TextColumn("{task.fields[shown]:>17}"),
                    TimeRemainingColumn())
            with Progress(*cols, console=err, transient=False) as bar:
                tasks: dict[str, Any] = {}

                def progress(name: str, done: int, total: int) -> None:
                    # bytes for the data moves, counts for the rest
                    shown = (f"{done / 1024:.0f}/{total / 1024:.0f} KiB" if name in ("write", "verify", "copy")
                             else f"{done}/{total}")
                    if name not in tasks:
                        tasks[name] = bar.add_task(name, total=total, shown=shown)
                    bar.update(tasks[name], completed=done, total=total, shown=shown)

                r = flash_board(board, port, img, firmware, erase, progress, ready_timeout, heap)
        except (FlashError, build_mod.BuildError) as e:
            err.print(f"[red]flash failed:[/red] {e}")
            sys.exit(1)
        st = r["status"]
        err.print(f"[green]done[/green]: {spec['name']} on {port} runs {st['version']} ({st['git']}), "
                  f"board {st['board']}, ready")
