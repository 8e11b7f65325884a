"""GPF-on-the-HAN figures for `chub bench` (issue 18), from the emulated
system (the hub under micropython, the rig's NCP emulator, the default
demo HAN: GSME, IHD, PPMID):

  tapoff_read_ms             an IHD reading tapped-off tariff data through the
                             GPF: GetTariffInformation -> the hub's Price server
                             -> PublishTariffInformation, as the IHD times it
                             (median of RUNS); the data come from a GCS01a the
                             emulated GSME executed (its RTDS response)
  ppmid_topup_round_trip_s   PPMID -> hub -> buffered -> the GSME's next wake ->
                             executed -> response routed back -> PPMID, as the
                             PPMID times it (median of TOPUPS), with the GSME
                             waking every ppmid_topup_gsme_wake_s seconds (its
                             own period; the top-ups go at moments unrelated to it)
  ppmid_topup_after_wake_s   the part after the GSME woke: its GET, the
                             command, its PUT, the hub routing the response
                             back to the PPMID (median)
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

RUNS = 11
TOPUPS = 5
GSME_WAKE_S = 3.0  # the emulated GSME's wake period for the top-up figure (a real one: ~30 min)
RTDS_GSME = ("rtds_gsme", "00DB1234567890A1", "647EC0DE0102030405060708090A0B00")


def _wait(cond: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = cond()
        except Exception:  # noqa: BLE001 - retried until the deadline
            v = None
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench: {what} not in time")
        time.sleep(0.05)


def system_figures(image: Path, heap: str) -> dict[str, Any]:
    from chubcore.paths import vectors_dir
    from hil.han_setup import DeviceSpec
    from hil.meters import rtds_answers
    from hil.meters.gsme import GsmeMeter
    from hil.meters.ihd import Ihd
    from hil.meters.ppmid import Ppmid, gsme_answer, top_up
    from hil.system import EmulatedSystem

    cmd = bytes.fromhex((vectors_dir() / "gbcs" / "rtds" / "1.1.1_GCS01a" /
                         "GCS01a_1.1.1_IMMEDIATE_TOU_SUCCESS_COMMAND_GBCS.HEX").read_text().strip())
    with tempfile.TemporaryDirectory() as tmp, EmulatedSystem(Path(tmp) / "sys", image=image, fresh=True,
                                                               heap=heap) as s:
        han = s.han  # type: ignore[attr-defined]
        _wait(lambda: s.call("han_status")["state"] == "up", 30, "the HAN")
        _wait(lambda: han.wait_joined(["gsme", "ihd", "ppmid"], 1.0), 30, "the demo devices")
        # tapped-off tariff: a GCS01a for an RTDS GSME, executed at its wake
        name, eui, code = RTDS_GSME
        spec = DeviceSpec(name, eui, 0, bytes.fromhex(code), sleepy=True)
        han.add_device(spec)
        r = s.call("device_log_add", eui=eui, type=0, install_code=spec.install_code_hex, join_timeout=600)
        if r["code"] != 0:
            raise RuntimeError(f"bench: device_log_add {r}")
        han.power_on(name)
        _wait(lambda: han.wait_joined([name], 1.0), 30, "the RTDS GSME")
        s.call("send_gbcs", timeout=40, frame=cmd.hex())
        han.run(GsmeMeter(han.device(name), rtds_answers(["1.1.1_GCS01a"]), wake_s=None).wake())
        _wait(lambda: s.call("gpf_status")["tap_applied"] >= 1, 20, "the tap-off applied")
        ihd = Ihd(han.device("ihd"))
        reads: list[float] = []
        for _ in range(RUNS + 1):
            t0 = time.perf_counter()
            if han.run(ihd.tariff()) is None:
                raise RuntimeError("bench: no tariff from the GPF")
            reads.append((time.perf_counter() - t0) * 1000)
        reads = sorted(reads[1:])
        # the PPMID's top-up, the GSME on its own wake period
        gdev = han.device("gsme")

        async def start() -> tuple[Ppmid, GsmeMeter]:
            g = GsmeMeter(gdev, answers={}, wake_s=GSME_WAKE_S)
            g.on_command.append(gsme_answer)
            g.start()
            return Ppmid(han.device("ppmid")), g

        pp, gsme = han.run(start())
        rounds: list[float] = []
        after: list[float] = []
        try:
            for i in range(TOPUPS):
                time.sleep((i * 0.37) % 1.0)  # unrelated to the GSME's phase
                n = len(pp.received)
                t0 = time.monotonic()
                if not han.run(pp.send(top_up(1000 + i, pp.eui, gdev.node.eui))):
                    raise RuntimeError("bench: the PPMID's top-up was not sent")
                _wait(lambda n=n: len(pp.received) > n, 3 * GSME_WAKE_S + 15, "the top-up response at the PPMID")
                rounds.append(pp.received_at[n] - t0)
                woke = _wake_start(gsme, pp.received_at[n])
                after.append(pp.received_at[n] - woke)
        finally:
            han.run(_stop(gsme))
    rounds.sort()
    after.sort()
    return {
        "tapoff_read_ms": round(reads[len(reads) // 2], 1),
        "ppmid_topup_round_trip_s": round(rounds[len(rounds) // 2], 2),
        "ppmid_topup_gsme_wake_s": GSME_WAKE_S,
        "ppmid_topup_after_wake_s": round(after[len(after) // 2], 3),
    }


def _wake_start(gsme: Any, answered: float) -> float:
    # the start of the GSME's last wake-up before the answer reached the PPMID
    return max((t for t in gsme.wake_times if t <= answered), default=answered)


async def _stop(g: Any) -> None:
    g.stop()
    await asyncio.sleep(0)


def figures(heap: str, image: Path | None = None) -> dict[str, Any]:
    if image is None:
        from chubcore.build import build

        with tempfile.TemporaryDirectory() as tmp:
            return system_figures(build("unix", out=Path(tmp) / "image").path, heap)
    return system_figures(image, heap)
