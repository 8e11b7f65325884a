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

The hub's own image (docs/firmware-update.md) goes the same way:

* `status` also shows the hub's image state (board, running slot and
  version, on trial or confirmed, the staged image, its activation time,
  the stored minimum version; local-port command `image_status`);
* `update --image hub.chim --device hub [--activate-at WHEN]`: a signed hub
  image (or its CS05a OTA form, unwrapped here) checked on the laptop
  (structure, hashes, signed, the hub's board), sent with `image_write`
  from where the hub has it (resumable) with a progress bar, verified by
  the hub (`image_end`); with `--activate-at` (`now`, a UTC time
  `2026-12-07T22:00` or epoch seconds) activated at that time
  (`image_activate`), else left staged;
* `activate --at WHEN`: activate the staged, verified image.

All need an installer session: the client opens one by itself.
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


def parse_when(text: str) -> int:
    """`now` (0), epoch seconds, or an ISO 8601 time (UTC unless it names
    its offset) -> UTC seconds for image_activate."""
    from datetime import UTC, datetime

    t = text.strip()
    if t.lower() == "now":
        return 0
    if t.isdigit():
        v = int(t)
    else:
        try:
            d = datetime.fromisoformat(t.replace("Z", "+00:00"))
        except ValueError as e:
            raise click.BadParameter(f"{text!r}: now, epoch seconds or a UTC time like 2026-12-07T22:00") from e
        if d.tzinfo is None:
            d = d.replace(tzinfo=UTC)
        v = int(d.timestamp())
    if not 0 <= v <= 0xFFFFFFFF:
        raise click.BadParameter(f"{text!r}: out of the hub's time range")
    return v


def read_hub_image(path: Path) -> bytes:
    """The signed hub image in `path` (a CS05a OTA file is unwrapped), its
    structure and hashes checked and its signature present; else
    click.BadParameter."""
    from chubcore import hubimage as hi

    data = path.read_bytes()
    try:
        if data[:4] != hi.MAGIC and len(data) >= 4 and int.from_bytes(data[:4], "little") == OTA_MAGIC:
            data = hi.ota_unwrap(data)
        p = hi.verify(data)
    except hi.ImageError as e:
        raise click.BadParameter(str(e), param_hint="--image") from None
    if not p.signed:
        raise click.BadParameter("the image is not signed (chub image sign): the hub refuses it", param_hint="--image")
    return data


def hub_summary(st: dict, version: str | None) -> list[tuple[str, str]]:
    """The rows of the hub image table from image_status (and `status`'s version)."""
    if st["running"] == "factory":
        run = "factory image"
    else:
        run = f"slot {st['running']}"
    if st["trial"] is not None and st["trial"] == st["running"]:
        run += ", on trial (confirmed after READY and its self-check)"
    elif st["running"] != "factory":
        run += ", confirmed"
    rows = [("board", st.get("board") or "?"), ("running", f"{version or '?'} ({run})"),
            ("minimum version", st.get("min_version") or "none"),
            ("manufacturer anchor", "set" if st.get("anchor") else "NOT SET: every image is refused")]
    if st["state"] != "idle":
        staged = f"{st['version']} in slot {st['slot']}: {st['state']}"
        if st["state"] == "receiving" and st.get("image_bytes"):
            staged += f" ({st['received']} of {st['image_bytes']} bytes)"
        if st["state"] == "scheduled":
            at = st.get("activate_at") or 0
            staged += " now" if at == 0 else f" at {_utc(at)}"
        rows.append(("staged", staged))
    else:
        rows.append(("staged", "none"))
    if st.get("last_error"):
        rows.append(("last refusal", st["last_error"]))
    return rows


def _utc(t: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def register(hht: click.Group) -> None:
    from .cli import _call, _stderr, open_client

    @hht.group("firmware")
    def firmware() -> None:
        """Firmware: the hub's own image and the meter images it serves over the HAN."""

    @firmware.command("status")
    @click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
    @click.pass_context
    def status(ctx: click.Context, as_json: bool) -> None:
        """The hub's image state, the meter images the hub holds and each device's transfer."""
        st = _call(ctx, "ota_status")
        hub = _call(ctx, "image_status")
        hub["running_version"] = _call(ctx, "status").get("version")
        if as_json:
            click.echo(json.dumps({**st, "hub": hub}))
            return
        t = Table(title="hub image")
        t.add_column("")
        t.add_column("")
        for k, v in hub_summary(hub, hub["running_version"]):
            t.add_row(k, v)
        Console().print(t)
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
    @click.option("--device", "slot", required=True, type=click.Choice(["hub", "esme", "gsme", "ppmid"]),
                  help="hub: the hub's own signed image; else the meter image's device type.")
    @click.option("--eui", "euis", multiple=True, help="A device to offer a meter image to; repeat for more.")
    @click.option("--activate-at", "activate_at", default=None,
                  help="hub image: activate it at this time (now, epoch seconds, or UTC like 2026-12-07T22:00); "
                       "without it the image is left staged (chub hht firmware activate).")
    @click.pass_context
    def update(ctx: click.Context, image: Path, slot: str, euis: tuple[str, ...], activate_at: str | None) -> None:
        """Send a meter image to the hub (resumable), then notify the devices; or (--device hub) the hub's
        own image, then activate it at a time."""
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        from chubcore.localport import LocalPortError

        if slot == "hub":
            if euis:
                raise click.BadParameter("a hub image is for the hub itself: no --eui", param_hint="--eui")
            _update_hub(ctx, image, None if activate_at is None else parse_when(activate_at))
            return
        if activate_at is not None:
            raise click.BadParameter("a meter image is activated by GBCS CS06 to the device",
                                     param_hint="--activate-at")
        if not euis:
            raise click.BadParameter("name the devices to offer the image to", param_hint="--eui")
        data = image.read_bytes()
        if data[:4] == b"CHIM":
            raise click.BadParameter("this is a hub image: --device hub", param_hint="--image")
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

    def _update_hub(ctx: click.Context, image: Path, at: int | None) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        from chubcore import hubimage as hi
        from chubcore.localport import LocalPortError

        blob = read_hub_image(image)
        m = hi.parse(blob).manifest
        try:
            with open_client(ctx) as c:
                st = c.call("image_status")
                if st.get("board") and st["board"] != m["board"]:
                    raise click.BadParameter(f"the image is for board {m['board']!r}, the hub is {st['board']!r}",
                                             param_hint="--image")
                if not st.get("anchor"):
                    _stderr().print("[red]the hub has no manufacturer anchor[/red] (image_anchor): "
                                    "it refuses every image")
                    sys.exit(2)
                if st["state"] in ("verified", "scheduled") and st["total"] != m["total"]:
                    _stderr().print(f"the hub's staged {st['version']} ({st['state']}) is replaced by this one")
                with Progress(*Progress.get_default_columns()[:1], BarColumn(), DownloadColumn(),
                              TransferSpeedColumn(), console=_stderr()) as bar:
                    task = bar.add_task(f"hub {m['version']}", total=len(blob))
                    st = hi.upload(c.call, blob, progress=lambda done, n: bar.update(task, completed=done))
                    bar.update(task, completed=len(blob))
                if at is not None:
                    st = c.call("image_activate", total=st["total"], at=at)
        except LocalPortError as e:
            _stderr().print(f"[red]hub refused the image:[/red] {e}")
            sys.exit(2)
        except hi.ImageError as e:
            _stderr().print(f"[red]hub stopped taking the image:[/red] {e}")
            sys.exit(2)
        except (OSError, TimeoutError) as e:
            _stderr().print(f"[red]no answer from the hub on {ctx.obj['port']}:[/red] {e}")
            sys.exit(3)
        msg = f"hub image {m['version']} ({m['board']}, {len(blob)} bytes) verified on the hub in slot {st['slot']}"
        if at is None:
            msg += "; activate it with: chub hht firmware activate --at now|TIME"
        else:
            msg += "; activates " + ("now: the hub resets into it" if at == 0 else f"at {_utc(at)}")
        click.echo(msg)

    @firmware.command("activate")
    @click.option("--at", "when", default="now", show_default=True,
                  help="now, epoch seconds, or a UTC time like 2026-12-07T22:00.")
    @click.pass_context
    def activate(ctx: click.Context, when: str) -> None:
        """Activate the hub image staged and verified on the hub (the hub resets into it at that time)."""
        at = parse_when(when)
        st = _call(ctx, "image_status")
        if st["state"] not in ("verified", "scheduled"):
            _stderr().print(f"[red]no verified hub image on the hub[/red] (state {st['state']})")
            sys.exit(2)
        st = _call(ctx, "image_activate", total=st["total"], at=at)
        click.echo(f"hub image {st['version']} in slot {st['slot']} activates "
                   + ("now: the hub resets into it" if at == 0 else f"at {_utc(at)}"))
