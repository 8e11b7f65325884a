"""The living default system's meters (`chub sim`, `EmulatedSystem(living=True)`):
the ESME answers the hub's tunnelled commands (EsmeMeter), and the sleepy
GSME wakes on a schedule (`wake_s`; a real GSME every 1800 s): at each
wake-up it reports its readings to the GPF's mirror (RequestMirror and
ConfigureMirror once, then Metering, Prepayment and Price reports, the
summation grown by `use_per_wake` since the last one) and then GETs the
commands the hub buffered for it and PUTs their responses and alerts
(GsmeMeter.wake). The ESME reports on the same schedule (`report_s`): at
each report it sends the DCC a Billing Data Log Updated alert (0x8F0A) over
its tunnel to the hub, which forwards it to the head-end; the alert is a DLMS
DataNotification {alert code, date-time} with message code 0x0000 (the
project's device-alert code, as the CHF's own alerts), its own rising
originator counter, MAC'd to the ACB with a key pair of the emulated ESME's
own (`ka_pub`: the ACB's side of the key agreement, for a check).

Everything runs on the rig's loop; `LivingMeters.start(han)` is called from
the system's thread once the demo devices joined. Both meters answer a
Metering (0x0702) read with what they count or reported."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from chubcore.dcc import ACB

from .esme import EsmeMeter
from .gsme import GsmeMeter
from .gsme_data import METERING, SUMMATION, T_UINT48, GsmeData, MirrorReporter

GSME_WAKE_S = 1800.0  # a real GSME's wake-up interval
# The living system's heap on the boards that load .mpy files (the unix
# board): its GPF is in use from the start, and the GPF's modules take the
# eighth name pool (~28 KB in one piece), which a 768k heap cannot always
# give once the hub has run a while (docs/proof.md); the unix board's default
# heap is 1024k for the same reason.
LIVING_HEAP = "1024k"
RTDS_GSME = bytes.fromhex("00DB1234567890A1")  # the GSME the RTDS commands address
ALERT_BILLING_DATA_LOG_UPDATED = 0x8F0A  # ../shared/vectors/gbcs/alert-codes.tsv
MC_DEVICE_ALERT = 0x0000  # the message code of an alert with no use case of its own (firmware/wan/lastgasp.py)


def dlms_date_time(utc: float) -> bytes:
    """DLMS date-time (12 bytes), UTC, deviation not specified, clock status not specified."""
    t = datetime.fromtimestamp(int(utc), UTC)
    return t.year.to_bytes(2, "big") + bytes((t.month, t.day, t.isoweekday(), t.hour, t.minute, t.second,
                                               0, 0x80, 0x00, 0xFF))


def device_alert(key: ec.EllipticCurvePrivateKey, acb_ka_pub: ec.EllipticCurvePublicKey, originator: bytes,
                 counter: int, code: int, utc: float) -> bytes:
    """A device's alert frame to the ACB: DataNotification {code, date-time}, MAC'd with
    ECDH(the device's KA key, the ACB's KA public key) (docs/crypto.md)."""
    from ..headend.gbcs import Frame, protect

    body = b"\x02\x02\x12" + code.to_bytes(2, "big") + b"\x09\x0c" + dlms_date_time(utc)
    payload = b"\x0f" + (0x20000000 | (counter & 0xFFFFFF)).to_bytes(4, "big") + b"\x00" + body
    f = Frame(3, counter, originator, ACB, None, MC_DEVICE_ALERT.to_bytes(2, "big"), payload, None)
    return protect(f, key.exchange(ec.ECDH(), acb_ka_pub))


def readdress(frame: bytes, old: bytes, new: bytes) -> bytes:
    """The frame with the EUI `old` in its header (`08` EUI) replaced by `new`."""
    i = frame.find(b"\x08" + old)
    return frame if i < 0 else frame[: i + 1] + new + frame[i + 9 :]


class LivingGsme(GsmeMeter):
    """A GsmeMeter whose wake-ups also report its readings to the mirror."""

    def __init__(self, device: Any, wake_s: float | None, use_per_wake: int = 37) -> None:
        super().__init__(device, wake_s=wake_s, data=GsmeData.rtds())
        self.mirror = MirrorReporter(device, self.data)
        self.use_per_wake = use_per_wake
        self.reports = 0  # wake-ups whose readings the mirror took
        self.last_wake: float | None = None  # time.time() of the last wake-up
        self.rtds_scenarios = True  # each distinct RTDS command runs once, a byte-identical re-offer is refused
        self.eui = bytes(device.node.eui)

    def execute(self, cmd: bytes) -> list[bytes]:
        """An RTDS GSME command re-addressed to this meter (`chub hht protect
        --to EUI`) is answered as the RTDS GSME answers it, from this meter's
        EUI."""
        as_rtds = readdress(bytes(cmd), self.eui, RTDS_GSME)
        if as_rtds == bytes(cmd) or as_rtds not in self.answers:
            return super().execute(cmd)
        return [readdress(f, RTDS_GSME, self.eui) for f in super().execute(as_rtds)]

    async def _run(self) -> None:
        # a meter that has just joined reports at once, then on its schedule
        assert self.wake_s is not None
        while True:
            try:
                await self.wake_and_report()
            except (TimeoutError, ConnectionError, ValueError, AssertionError) as e:
                self.errors.append(f"wake {self.wakes}: {e!r}")
            await asyncio.sleep(self.wake_s)

    async def wake_and_report(self) -> int:
        """One wake-up: the readings to the mirror, then the buffered commands;
        -> commands collected."""
        self.last_wake = time.time()
        if self.mirror.endpoint is None:
            await self.mirror.setup()
        t, v = self.data.metering[SUMMATION]
        self.data.metering[SUMMATION] = (T_UINT48, v + self.use_per_wake if self.reports else v)
        # what it reports, it also answers when read directly (while awake or polling)
        self.device.attributes[METERING] = dict(self.data.metering)
        await self.mirror.report_all()
        self.reports += 1
        return await self.wake()


class LivingEsme(EsmeMeter):
    """An EsmeMeter whose Metering cluster (0x0702) counts: the summation
    delivered (Wh, divisor 1000: kWh) grows by `demand_w` every `tick_s`, so
    a read (`chub hht han read --cluster 0x0702`) shows a living register.
    A tunnel message that is no RTDS command goes to the device's own hook
    (the emulated device echoes it: `chub hht han tunnel`)."""

    def __init__(self, device: Any, demand_w: int = 420, tick_s: float = 1.0, report_s: float | None = None,
                 acb_ka_pub: ec.EllipticCurvePublicKey | None = None) -> None:
        plain = device.on_tunnel_data
        super().__init__(device)
        self.plain = plain
        self.demand_w, self.tick_s = demand_w, tick_s
        self.summation_wh = 8_123_456
        self._task: asyncio.Task[None] | None = None
        self._report_task: asyncio.Task[None] | None = None
        # reports: every report_s seconds, when there is an ACB to report to
        self.report_s = report_s if acb_ka_pub is not None else None
        self.acb_ka_pub = acb_ka_pub
        self._ka = ec.generate_private_key(ec.SECP256R1())
        self.ka_pub = self._ka.public_key()
        self.eui = bytes(device.node.eui)
        self.counter = time.time_ns() // 1000  # its own originator counter, rising
        self.reports = 0  # alerts the hub took over the tunnel
        self.last_report: float | None = None
        self.report_errors: list[str] = []
        self._publish()
        device.on_tunnel_data = self._on_data

    async def _on_data(self, data: bytes) -> bytes | None:
        if bytes(data) in self.answers:
            return await self.on_tunnel_data(data)
        return await self.plain(data)

    def _publish(self) -> None:
        self.device.attributes[METERING] = {
            0x0000: (T_UINT48, self.summation_wh),  # CurrentSummationDelivered
            0x0300: (0x30, 0),  # UnitOfMeasure: kWh
            0x0301: (0x22, 1),  # Multiplier
            0x0302: (0x22, 1000),  # Divisor
            0x0306: (0x18, 0),  # MeteringDeviceType: electric
            0x0400: (0x2B, self.demand_w),  # InstantaneousDemand (W)
        }

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run())
        if self.report_s is not None:
            self._report_task = loop.create_task(self._reports())

    def stop(self) -> None:
        for t in (self._task, self._report_task):
            if t is not None:
                t.cancel()
        self._task = self._report_task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            self.summation_wh += max(1, round(self.demand_w * self.tick_s / 3600))
            self._publish()

    async def report(self) -> bool:
        """One report: the Billing Data Log Updated alert to the hub; -> the hub took it."""
        assert self.acb_ka_pub is not None
        self.counter = max(self.counter + 1, time.time_ns() // 1000)
        self.last_report = time.time()
        frame = device_alert(self._ka, self.acb_ka_pub, self.eui, self.counter, ALERT_BILLING_DATA_LOG_UPDATED,
                             self.last_report)
        ok = await self.send_alert(frame)
        if ok:
            self.reports += 1
        else:
            self.report_errors.append(f"report {self.counter}: the hub did not take the alert")
        return ok

    async def _reports(self) -> None:
        assert self.report_s is not None
        while True:
            await asyncio.sleep(self.report_s)
            try:
                await self.report()
            except (TimeoutError, ConnectionError, ValueError) as e:
                self.report_errors.append(f"report {self.counter}: {e!r}")


class LivingMeters:
    """The meters of the living system on an EmulatedHan (hil.han_setup)."""

    def __init__(self, gsme_wake_s: float | None = GSME_WAKE_S,
                 acb_ka_pub: ec.EllipticCurvePublicKey | None = None) -> None:
        self.gsme_wake_s = gsme_wake_s
        self.acb_ka_pub = acb_ka_pub  # None: the ESME has no DCC to report to
        self.esme: LivingEsme | None = None
        self.gsme: LivingGsme | None = None

    def start(self, han: Any) -> LivingMeters:
        async def go() -> None:
            # the ESME reports on the GSME's schedule (half-hourly, or the demo's scaled period)
            self.esme = LivingEsme(han.device("esme"), report_s=self.gsme_wake_s, acb_ka_pub=self.acb_ka_pub)
            self.esme.start()
            self.gsme = LivingGsme(han.device("gsme"), self.gsme_wake_s)
            self.gsme.start()

        han.run(go())
        return self

    def stop(self, han: Any) -> None:
        async def go() -> None:
            if self.gsme is not None:
                self.gsme.stop()
            if self.esme is not None:
                self.esme.stop()

        try:
            han.run(go(), timeout=5)
        except Exception:  # noqa: BLE001 - the rig may be stopping already
            pass

    def summary(self) -> dict[str, Any]:
        """What the live view and tests show: per meter, what it did."""
        out: dict[str, Any] = {}
        if self.esme is not None:
            e = self.esme
            out["esme"] = {"commands": len(e.received), "answered": len(e.answered),
                           "summation_wh": e.summation_wh, "report_s": e.report_s, "reports": e.reports,
                           "last_report": e.last_report, "errors": e.report_errors[-3:]}
        if self.gsme is not None:
            g = self.gsme
            out["gsme"] = {"wake_s": g.wake_s, "wakes": g.wakes, "reports": g.reports,
                           "commands": len(g.executed), "puts": len(g.puts), "last_wake": g.last_wake,
                           "errors": g.errors[-3:]}
        return out
