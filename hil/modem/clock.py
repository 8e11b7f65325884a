"""Time commands (SIM7600.md §5.1, 5.2): the RTC (AT+CCLK) and whether network
time sets it (AT+CTZU) and is reported (AT+CTZR). The rig's network time is
faults.FaultInjection.network_time."""

from __future__ import annotations

import calendar
import time

from hil.modem.config import split_args
from hil.modem.core import Handler, ModemCore

GPS_EPOCH = 315964800  # 1980-01-06: what an RTC that was never set counts from


def fmt_local(utc: float, zone: int) -> str:
    """yy/MM/dd,hh:mm:ss of utc in the zone (quarter hours)."""
    t = time.gmtime(int(utc) + zone * 900)
    return f"{t.tm_year % 100:02d}/{t.tm_mon:02d}/{t.tm_mday:02d},{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


def ctzu(m: ModemCore, kind: str, args: str) -> None:
    m.ctzu = int(args) if kind == "=" else m.ctzu
    m.reply(f"+CTZU: {m.ctzu}") if kind == "?" else m.reply()


def ctzr(m: ModemCore, kind: str, args: str) -> None:
    m.ctzr = int(args) if kind == "=" else m.ctzr
    m.reply(f"+CTZR: {m.ctzr}") if kind == "?" else m.reply()


def cclk(m: ModemCore, kind: str, args: str) -> None:
    if kind == "?":
        utc = m.clock_utc()
        if utc is None:  # never set: GPS epoch plus uptime, no zone (SIM7600G-H log)
            up = int(time.monotonic() - m.boot_mono)
            m.reply(f'+CCLK: "{fmt_local(GPS_EPOCH + up, 0)}"')
            return
        z = m.rtc_zone
        m.reply(f'+CCLK: "{fmt_local(utc, z)}{"+" if z >= 0 else "-"}{abs(z):02d}"')
        return
    v = split_args(args)[0]
    local = calendar.timegm(time.strptime("20" + v[:17], "%Y/%m/%d,%H:%M:%S"))
    zone = int(v[17:]) if len(v) > 17 else 0
    m.set_clock(local - zone * 900, zone)
    m.reply()


COMMANDS: dict[str, Handler] = {"+CTZU": ctzu, "+CTZR": ctzr, "+CCLK": cclk}
