"""`chub hht firmware ...`: meter firmware over the HAN from the installer's
terminal (docs/ota-han.md).

* `status`: the images the hub holds for the ESME, GSME and PPMID (state,
  bytes stored), and per device what it runs, how far its download is and
  what Upgrade End it reported (local-port command `ota_status`);
* `update --image FILE --device esme|gsme|ppmid --eui EUI [--eui ...]`: the
  image (a ZigBee OTA file ending in the GBCS manufacturer image hash) sent
  to the hub in 1 KB chunks (`ota_begin`, `ota_put`) with a progress bar,
  resuming from what the hub holds in flash when the same image was
  interrupted; the hub checks the hash and the OTA header at the last chunk,
  then tells the devices (`ota_notify`). Activation is GBCS CS06 to the
  device, not this command.

Both need an installer session: the client opens one by itself.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .hht_device_log import parse_eui

CHUNK = 1024
HASH_LEN = 32
OTA_MAGIC = 0x0BEEF11E


def check_image(data: bytes) -> tuple[int, int, int]:
    """(manufacturer, image type, file version) of an image the hub would
    take, or click.BadParameter: the hash and the OTA header checked here
    before anything is sent."""
    if len(data) < 56 + HASH_LEN or int.from_bytes(data[:4], "little") != OTA_MAGIC:
        raise click.BadParameter("not a ZigBee OTA file")
    if hashlib.sha256(data[:-HASH_LEN]).digest() != data[-HASH_LEN:]:
        raise click.BadParameter("the image's last 32 bytes are not its SHA-256 (manufacturer image hash)")
    if int.from_bytes(data[52:56], "little") != len(data):
        raise click.BadParameter("the OTA header's total image size is not the file's size")
    return (int.from_bytes(data[10:12], "little"), int.from_bytes(data[12:14], "little"),
            int.from_bytes(data[14:18], "little"))


def register(hht: click.Group) -> None:
    from .cli import _call, _stderr, open_client

    @hht.group("firmware")
    def firmware() -> None:
        """Meter firmware over the HAN: the hub's images and each device's download."""

    @firmware.command("status")
    @click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
    @click.pass_context
    def status(ctx: click.Context, as_json: bool) -> None:
        """The images the hub holds and each device's transfer."""
        st = _call(ctx, "ota_status")
        if as_json:
            click.echo(json.dumps(st))
            return
        t = Table(title="images")
        for col in ("device", "state", "stored", "size", "version", "for"):
            t.add_column(col)
        for slot, m in sorted(st["images"].items()):
            v = m.get("v")
            t.add_row(slot, m["st"], str(m["durable"]), str(m["size"]), "" if v is None else f"0x{v:08X}",
                      " ".join(m["eui"]))
        Console().print(t)
        t = Table(title="devices")
        for col in ("eui", "runs", "downloaded to", "upgrade end"):
            t.add_column(col)
        for eh, d in sorted(st["devices"].items()):
            end = "" if d["transferred"] is None else (
                f"0x{d['transferred']:08X} " + ("ok" if d["code"] == 0 else f"failed 0x{d['code']:02X}"))
            t.add_row(eh, "" if d["running"] is None else f"0x{d['running']:08X}",
                      "" if d["offset"] is None else str(d["offset"]), end)
        Console().print(t)

    @firmware.command("test-image")
    @click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Where to write it.")
    @click.option("--version", "version", default="0x00020000", show_default=True,
                  help="The OTA file version (hex or decimal).")
    @click.option("--size", default=4096, show_default=True, type=click.IntRange(1, 1 << 20),
                  help="Bytes of (made-up) firmware in the image.")
    def test_image(out: Path, version: str, size: int) -> None:
        """Write an image the emulated meters take (the rig's manufacturer and image type)."""
        from hil.meters.ota_client import make_image
        from hil.meters.ota_rig import RIG_IMAGE_TYPE, RIG_MANUFACTURER

        try:
            v = int(version, 0)
        except ValueError as e:
            raise click.BadParameter(f"{version!r} is not a number", param_hint="--version") from e
        if not 0 <= v <= 0xFFFFFFFF:
            raise click.BadParameter("must fit 32 bits", param_hint="--version")
        body = hashlib.sha256(b"chub test image %d" % v).digest() * (size // 32 + 1)
        data = make_image(RIG_MANUFACTURER, RIG_IMAGE_TYPE, v, body[:size])
        out.write_bytes(data)
        click.echo(f"test image 0x{v:08X} (manufacturer 0x{RIG_MANUFACTURER:04X}, type 0x{RIG_IMAGE_TYPE:04X}, "
                   f"{len(data)} bytes) -> {out}")

    @firmware.command("update")
    @click.option("--image", "image", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--device", "slot", required=True, type=click.Choice(["esme", "gsme", "ppmid"]))
    @click.option("--eui", "euis", required=True, multiple=True, help="A device to offer it to; repeat for more.")
    @click.pass_context
    def update(ctx: click.Context, image: Path, slot: str, euis: tuple[str, ...]) -> None:
        """Send a meter image to the hub (resumable), then notify the devices."""
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        from chubcore.localport import LocalPortError

        data = image.read_bytes()
        mf, it, v = check_image(data)
        targets = [parse_eui(e) for e in euis]
        try:
            with open_client(ctx) as c:
                held = c.call("ota_status")["images"].get(slot)
                if held and held["st"] in ("loading", "ready") and held["size"] == len(data) and \
                        sorted(held["eui"]) == sorted(targets) and (held["st"] == "loading" or held.get("v") == v):
                    off = held["size"] if held["st"] == "ready" else held["durable"]
                else:
                    c.call("ota_begin", slot=slot, euis=targets, size=len(data))
                    off = 0
                with Progress(*Progress.get_default_columns()[:1], BarColumn(), DownloadColumn(),
                              TransferSpeedColumn(), console=_stderr()) as bar:
                    task = bar.add_task(f"{slot} 0x{v:08X}", total=len(data), completed=off)
                    while off < len(data):
                        c.call("ota_put", slot=slot, offset=off, data=data[off:off + CHUNK].hex())
                        off += min(CHUNK, len(data) - off)
                        bar.update(task, completed=off)
                sent = c.call("ota_notify", slot=slot)["sent"]
        except LocalPortError as e:
            _stderr().print(f"[red]hub refused the image:[/red] {e}")
            sys.exit(2)
        except (OSError, TimeoutError) as e:
            _stderr().print(f"[red]no answer from the hub on {ctx.obj['port']}:[/red] {e}")
            sys.exit(3)
        click.echo(f"{slot} image 0x{v:08X} (manufacturer 0x{mf:04X}, type 0x{it:04X}, {len(data)} bytes) "
                   f"ready on the hub; notified: {' '.join(sent) or 'none'}")
