"""Routing figures for `chub bench` (issue 5 part A; docs/routing.md).

From bench/mp_route.py under micropython (the GSME command buffer on the
emulated flash, 200 commands of the RTDS GSME command sizes, up to 3 queued):
  buffer_flash_bytes_per_byte    block erases x 4096 / payload bytes buffered
                                 (a block written = one 4096-byte erase +
                                 program cycle; what wears the flash)
  buffer_program_bytes_per_byte  bytes programmed / payload bytes
  buffer_block_writes_per_command  writeblocks calls (littlefs programs <= 128 B)
  buffer_block_erases_per_command
  journal_flash_bytes_per_byte   the same workload on the store's Journal
  flash_life_years_at_500_per_day  256-block (1 MB) partition x 100 000 rated
                                 erase cycles / (erases per command x 500 a day),
                                 wear spread evenly by littlefs
From the emulated system (hub under micropython, rig NCP + meters, head-end
over the emulated modem):
  esme_round_trip_ms             head-end -> ESME -> head-end, as the head-end sees it
  esme_round_trip_ch_ms          the hub's share: that minus the time spent outside
                                 the hub on the HAN side, traced in the NCP emulator
                                 (each fragment's emulated air time: unicast taken ..
                                 reported sent; the meter: last fragment delivered ..
                                 its reply handed to the radio); the modem emulator
                                 and the loopback link stay in (they are small)
  hub_block_erases_per_gsme_command  the whole hub path of one GSME command:
                                 WAN receipt, buffer, GET, PUT, outbox, ack
  flash_life_years_at_500_per_day_hub  as above for that whole path
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from .bench_trace import trace_ncp

PARTITION_BLOCKS = 256
RATED_CYCLES = 100_000
PER_DAY = 500
ESME_RUNS = 10
GSME_RUNS = 10


def life_years(erases_per_command: float) -> float:
    if erases_per_command <= 0:
        return float("inf")
    return round(PARTITION_BLOCKS * RATED_CYCLES / (erases_per_command * PER_DAY * 365), 1)


def buffer_figures(heap: str) -> dict[str, Any]:
    from .bench import BENCH, _last_json, _mp

    with tempfile.TemporaryDirectory() as tmp:
        fig = _last_json(_mp([str(BENCH / "mp_route.py"), "figures", str(Path(tmp) / "f.bin")], heap,
                             cwd=Path(tmp)), "FIGURES")
    b, j = fig["buffer"], fig["journal"]
    return {
        "buffer_flash_bytes_per_byte": round(b["erase_bytes_per_byte"], 2),
        "buffer_program_bytes_per_byte": round(b["program_bytes_per_byte"], 2),
        "buffer_block_writes_per_command": round(b["writes_per_message"], 1),
        "buffer_block_erases_per_command": round(b["erases_per_message"], 3),
        "journal_flash_bytes_per_byte": round(j["erase_bytes_per_byte"], 1),
        "flash_life_years_at_500_per_day": life_years(b["erases_per_message"]),
    }


def _rtds(rel: str) -> bytes:
    from chubcore.paths import vectors_dir

    return bytes.fromhex((vectors_dir() / "gbcs" / "rtds" / rel).read_text().strip())


def system_figures(image: Path, heap: str) -> dict[str, Any]:
    from chubcore.localport import LocalPortClient
    from hil.han_setup import DeviceSpec
    from hil.meters import rtds_answers
    from hil.meters.esme import EsmeMeter
    from hil.meters.gsme import GsmeMeter
    from hil.system import EmulatedSystem

    esme_spec = DeviceSpec("bench_esme", "00DB1234567890A0", 1, bytes.fromhex("E5E0C0DE00112233445566778899AA00"))
    gsme_spec = DeviceSpec("bench_gsme", "00DB1234567890A1", 0, bytes.fromhex("647EC0DE0102030405060708090A0B00"),
                           sleepy=True)
    esme_cmd = _rtds("8.7.1_CS03A1/CS03A1_8.7.1_SUCCESS_COMMAND_GBCS.HEX")
    gsme_cmd = _rtds("6.11_GCS28/GCS28_6.11_SUCCESS_COMMAND_GBCS.HEX")  # not a TOM command
    gsme_rsp = _rtds("6.11_GCS28/GCS28_6.11_SUCCESS_RESPONSE_GBCS.HEX")
    with tempfile.TemporaryDirectory() as tmp:
        s = EmulatedSystem(Path(tmp), heap=heap, image=image, fresh=True)
        s.han_demo = False  # type: ignore[attr-defined]
        with s, LocalPortClient(s.local_port_url, timeout=15) as c:
            han, server = s.han, s.headend  # type: ignore[attr-defined]
            _wait(lambda: c.call("han_status")["state"] == "up", 20)
            for spec in (esme_spec, gsme_spec):
                han.add_device(spec)
                c.call("device_log_add", eui=spec.eui, type=spec.dev_type, install_code=spec.install_code_hex,
                       join_timeout=600)
                han.power_on(spec.name)
            if not han.wait_hub_joined(c, [esme_spec.name, gsme_spec.name], 30):
                raise RuntimeError("bench meters did not join")
            _wait(lambda: server.connected, 20)
            answers = rtds_answers(["8.7.1_CS03A1", "6.11_GCS28"])

            async def meters() -> tuple[EsmeMeter, GsmeMeter]:
                return (EsmeMeter(han.device(esme_spec.name), answers),
                        GsmeMeter(han.device(gsme_spec.name), answers, wake_s=None))

            esme, gsme = han.run(meters())
            emu = han.emu
            marks, untrace = trace_ncp(emu)

            total, share = [], []
            foreign = 0  # rounds with other HAN traffic in them (e.g. the hub reading a new device's versions)
            while len(total) < ESME_RUNS + 1:
                marks.clear()
                rtt = server.send_command(esme_cmd, timeout=15, rebuild=False).round_trip
                # outside the hub: each fragment's emulated air time (the NCP
                # takes it .. reports it sent) and the meter's time (the last
                # fragment delivered .. its reply handed to the radio)
                done = [t for k, t in marks if k == "sent"]
                # a unicast the hub starts after the reply (still in the air
                # when the head-end has the response) is no part of it
                tx = [t for k, t in marks if k == "tx" and any(d >= t for d in done)]
                rx = [t for k, t in marks if k == "rx"]
                air = [min((d for d in done if d >= t), default=None) for t in tx]
                reply = [r for r in rx if air and air[-1] is not None and r >= air[-1]]
                if not tx or None in air or not reply:
                    foreign += 1
                    if foreign > ESME_RUNS:
                        raise RuntimeError(f"bench: unexpected HAN trace {marks}")
                    continue
                outside = sum(d - t for t, d in zip(tx, air, strict=True)) + (reply[0] - air[-1])
                total.append(rtt)
                share.append(rtt - outside)
            total, share = total[1:], share[1:]  # the first one also opens the tunnel
            untrace()

            # the whole hub path of GSME commands: flash erases
            f0 = c.call("status")["flash"]
            n0 = len(server.received)
            for _ in range(GSME_RUNS):
                ack = server.send_raw(gsme_cmd, timeout=15)
                if ack != "done":
                    raise RuntimeError(f"GSME command not buffered: {ack}")
                gsme.forget_counters()  # the same RTDS command (same counter) each time
                if han.run(gsme.wake()) != 1:
                    raise RuntimeError("the GSME did not get its command")
            _wait(lambda: sum(r.raw == gsme_rsp for r in server.received[n0:]) >= GSME_RUNS, 20)
            _wait(lambda: c.call("wan_status").get("outbox_pending") == 0, 20)
            f1 = c.call("status")["flash"]
    erases = (f1["erases"] - f0["erases"]) / GSME_RUNS
    return {
        "esme_round_trip_ms": round(sorted(total)[len(total) // 2] * 1000, 1),
        "esme_round_trip_ch_ms": round(sorted(share)[len(share) // 2] * 1000, 1),
        "hub_block_erases_per_gsme_command": round(erases, 2),
        "hub_block_writes_per_gsme_command": round((f1["writes"] - f0["writes"]) / GSME_RUNS, 1),
        "flash_life_years_at_500_per_day_hub": life_years(erases),
    }


def _wait(cond: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("bench: condition not met in time")
        time.sleep(0.05)


def figures(heap: str, image: Path | None = None) -> dict[str, Any]:
    out = buffer_figures(heap)
    if image is None:
        from chubcore.build import build

        with tempfile.TemporaryDirectory() as tmp:
            out.update(system_figures(build("unix", out=Path(tmp) / "image").path, heap))
    else:
        out.update(system_figures(image, heap))
    return out
