"""The OTA client (hil/meters/ota_client.py) on the rig's emulated meters.

`zcl_sender(device)` is the client's transport over the emulated HAN (a ZCL
request on cluster 0x0019, answered by the hub when the device polls if it
is sleepy). `on_cs06(client, device, frame)` is the meter's side of GBCS
CS06 Activate Firmware (message code 0x0012): it runs the verified image
(never a partial or unverified one), sets its Basic application version to
the new file version's application build byte (bits 16-23 of the ZigBee
file version), and answers with a GBCS response (CRA 2,
the command's counter, payload `00` success / `01` nothing to activate).
The rig meters do not check CS06's signature or interpret its payload.
The meter also answers the firmware version reads (ECS52, GCS38, CS08:
hil/meters/fw_version.py) with the file version it runs now (`on_ota_command`).
`esme_activation(meter, client)`, `ppmid_activation(ppmid, client)` and
`gsme_activation(meter, client)` hook both into the ESME's and the PPMID's
tunnels and the GSME's buffered commands.

`han_transfer(image, heap, body_len)` is the bench's run: a fresh emulated
system, an always-awake meter (RTDS EUI ...A4) joined, an image taken in
over the local port, and the meter's download timed.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from hil.devices import zcl as Z
from hil.headend.gbcs import Frame, parse_frame

from . import fw_version
from .ota_client import CLUSTER, OtaClient, make_image

# the emulated meters' OTA client: manufacturer code and image type of the images they take
RIG_MANUFACTURER = 0x1234
RIG_IMAGE_TYPE = 0x0001

CS06 = 0x0012
BASIC, APP_VERSION = 0x0000, 0x0001
A4_EUI = "00DB1234567890A4"


def zcl_sender(device: Any, timeout: float = 10.0) -> Any:
    async def send(frame: bytes) -> bytes:
        z = await device.request(CLUSTER, frame, timeout)
        return Z.frame(z.fc, z.tsn, z.command, z.payload)

    return send


def on_cs06(client: OtaClient, device: Any, data: bytes) -> bytes | None:
    """The meter's response to a CS06 command, or None for another command."""
    try:
        f = parse_frame(data)
    except Exception:  # noqa: BLE001 - not a GBCS frame: not ours
        return None
    if f.cra != 1 or f.message_code != CS06:
        return None
    ok = client.activate()
    if ok:
        device.attributes[BASIC][APP_VERSION] = (0x20, (client.version >> 16) & 0xFF)
    r = Frame(2, f.counter, f.recipient, f.originator, None, f.other_info, b"\x00" if ok else b"\x01", None, False)
    return r.header_and_payload()


def on_ota_command(client: OtaClient, device: Any, data: bytes) -> bytes | None:
    """The meter's response to CS06 or a firmware version read (the version it runs now), else None."""
    r = on_cs06(client, device, data)
    return r if r is not None else fw_version.answer(client.version, data)


def tunnel_activation(meter: Any, client: OtaClient) -> None:
    """CS06 and the version reads on a meter the hub reaches over its tunnel
    (an EsmeMeter, a Ppmid: `.device`, `.received`); anything else goes to
    the meter's own handler."""
    inner = meter.device.on_tunnel_data

    async def hook(data: bytes) -> bytes | None:
        r = on_ota_command(client, meter.device, data)
        if r is not None:
            meter.received.append(bytes(data))
            return r
        return await inner(data)

    meter.device.on_tunnel_data = hook


esme_activation = ppmid_activation = tunnel_activation


def gsme_activation(meter: Any, client: OtaClient) -> None:
    meter.on_command.append(lambda data: [r] if (r := on_ota_command(client, meter.device, data)) is not None else None)


def han_transfer(image: Path | None, heap: str, body_len: int = 8192) -> dict[str, Any]:
    from hil.han_setup import DeviceSpec
    from hil.system import EmulatedSystem

    spec = DeviceSpec("ota_a4", A4_EUI, 1, bytes.fromhex("A4A4C0DE0102030405060708090A0B00"))
    body = bytes((i * 31 + 7) & 0xFF for i in range(body_len))
    img = make_image(RIG_MANUFACTURER, RIG_IMAGE_TYPE, 0x00020000, body)
    with tempfile.TemporaryDirectory() as tmp:
        s = EmulatedSystem(Path(tmp), heap=heap, image=image, fresh=True)
        s.han_demo = False  # type: ignore[attr-defined]
        s.keep_connection = True  # type: ignore[attr-defined]
        s.start()
        try:
            han = s.han  # type: ignore[attr-defined]
            s.wait_until(lambda: s.call("han_status")["state"] == "up", 20, "the HAN up")
            han.add_device(spec)
            s.call("device_log_add", eui=spec.eui, type=spec.dev_type, install_code=spec.install_code_hex,
                   join_timeout=600)
            han.power_on(spec.name)
            if not han.wait_hub_joined(s, [spec.name], 20):
                raise TimeoutError("bench: the meter did not join")
            load_over_local_port(s, "esme", [spec.eui], img)
            client = OtaClient(zcl_sender(han.device(spec.name)), RIG_MANUFACTURER, RIG_IMAGE_TYPE, 0x00010000)

            async def download() -> float:
                t0 = time.perf_counter()
                assert await client.query()
                assert await client.fetch()
                return time.perf_counter() - t0

            secs = han.run(download(), timeout=600)
            if not client.hash_ok():
                raise RuntimeError("bench: the image arrived corrupted")
            return {"bytes": len(img), "seconds": secs, "block": client.block_bytes // client.blocks}
        finally:
            s.stop()


def load_over_local_port(s: Any, slot: str, euis: list[str], image: bytes, chunk: int = 1024) -> dict[str, Any]:
    """The installer's path: ota_begin, then ota_put from the durable offset."""
    st = s.call("ota_status")["images"].get(slot)
    if st is None or st["st"] not in ("loading", "ready") or st["size"] != len(image):
        s.call("ota_begin", slot=slot, euis=euis, size=len(image))
        off = 0
    else:
        off = st["durable"]
    r: dict[str, Any] = {}
    while off < len(image):
        r = s.call("ota_put", slot=slot, offset=off, data=image[off:off + chunk].hex())
        off += min(chunk, len(image) - off)
    return r
