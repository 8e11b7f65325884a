"""`chub image build | sign | verify | inspect | key`: the hub's signed
application image (chubcore.hubimage, docs/firmware-update.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console

from chubcore import hubimage as hi


def _err() -> Console:
    return Console(stderr=True, soft_wrap=True)


def _fail(msg: str) -> None:
    _err().print(f"[red]{msg}[/red]")
    sys.exit(1)


def write_image(src: Path, out: Path, key_file: Path | None, ota: bool = False) -> dict:
    """Pack the `chub build` folder `src` into `out` (signed with key_file
    when given; in the CS05a OTA form when ota); returns its inspect()."""
    key = hi.load_key(key_file) if key_file else None
    blob = hi.pack(src, key)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(hi.ota_wrap(blob) if ota else blob)
    return hi.inspect(blob)


def _read(path: Path) -> bytes:
    data = path.read_bytes()
    if data[:4] != hi.MAGIC:
        data = hi.ota_unwrap(data)  # the CS05a form: the image inside
    return data


@click.group("image")
def image() -> None:
    """The hub's signed application image (build, sign, verify, inspect)."""


@image.command("build")
@click.option("--board", default="unix", show_default=True, help="Board to build (when --from is not given).")
@click.option("--from", "src", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="An image folder `chub build` made (default: build the board now).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The image file to write.")
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Manufacturer P-256 key (PEM) to sign with.")
@click.option("--ota", is_flag=True, help="Write the CS05a form (ZigBee OTA file + Manufacturer Image Hash).")
def build_cmd(board: str, src: Path | None, out: Path, key_file: Path | None, ota: bool) -> None:
    """Pack an image folder into one image file."""
    try:
        if src is None:
            from chubcore import build as build_mod

            src = build_mod.build(board).path
        info = write_image(src, out, key_file, ota)
    except (hi.ImageError, OSError, ValueError) as e:
        _fail(f"image build failed: {e}")
    _err().print(f"[green]image[/green] {info['board']} {info['version']} ({info['git']}), {info['files']} files, "
                 f"{info['bytes']} bytes, {'signed' if info['signed'] else 'unsigned'} -> {out}")


@image.command("sign")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--out", type=click.Path(path_type=Path), help="Write here (default: in place).")
def sign_cmd(path: Path, key_file: Path, out: Path | None) -> None:
    """Sign (or re-sign) an image with the manufacturer key."""
    try:
        blob = hi.sign(_read(path), hi.load_key(key_file))
    except (hi.ImageError, ValueError) as e:
        _fail(f"sign failed: {e}")
    (out or path).write_bytes(blob)
    _err().print(f"[green]signed[/green] {out or path}")


@image.command("verify")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Manufacturer public key: PEM (public or private) or the 65-byte point as hex.")
@click.option("--board", default=None, help="Also check the image is for this board.")
def verify_cmd(path: Path, key_file: Path, board: str | None) -> None:
    """Every check the hub makes: hashes, length, board, signature. Exit 1 on failure."""
    try:
        p = hi.verify(_read(path), hi.load_public(key_file), board=board)
    except (hi.ImageError, ValueError) as e:
        _fail(f"refused: {e}")
    m = p.manifest
    click.echo(f"verified: {m['board']} {m['version']} ({m['git']}), {len(m['files'])} files, total {m['total']}")


@image.command("inspect")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def inspect_cmd(path: Path, as_json: bool) -> None:
    """The manifest of an image (nothing verified)."""
    try:
        info = hi.inspect(_read(path))
    except (hi.ImageError, ValueError) as e:
        _fail(f"not a hub image: {e}")
    if as_json:
        click.echo(json.dumps(info))
        return
    for k in ("board", "version", "git", "built_utc", "files", "size", "bytes", "total", "signed"):
        click.echo(f"{k:10} {info.get(k)}")


@image.command("key")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="PEM file for the new private key.")
def key_cmd(out: Path) -> None:
    """Make a manufacturer P-256 key (a test key: keep a real one offline);
    prints the anchor (the public point, hex) to provision on the hub."""
    if out.exists():
        _fail(f"{out} exists")
    k = hi.new_key()
    out.write_bytes(hi.key_pem(k))
    out.chmod(0o600)
    click.echo(hi.anchor_bytes(k.public_key()).hex())
