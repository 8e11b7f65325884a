"""The SIM7600 emulator's configuration, its link record and the AT text
helpers the command groups share."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

CME_TEXT = {
    3: "operation not allowed", 4: "operation not supported", 10: "SIM not inserted",
    11: "SIM PIN required", 12: "SIM PUK required", 13: "SIM failure", 14: "SIM busy",
    16: "incorrect password", 30: "no network service", 100: "unknown",
    148: "unspecified GPRS error", 149: "PDP authentication failure",
}
MAX_SEND = 1500  # largest AT+CIPSEND payload and largest pushed / read block


@dataclass
class Sim7600Config:
    revision: str = "LE20B04SIM7600G22"
    model: str = "SIMCOM_SIM7600G-H"
    iccid: str = "8944500000000000000F"
    imsi: str = "234500000000000"
    imei: str = "862636050029311"
    operator: str = "Operator"
    plmn: str = "234-50"
    tac: int = 0x1A2D
    cell: int = 27447574
    cpsi_tail: str = "301,EUTRAN-BAND20,6300,3,3,-105,-951,-652,12"
    ip: str = "10.64.12.34"
    rssi: int = 21
    reg_stat: int = 1  # what the network would give a ready SIM
    pin: str | None = None  # SIM locked with this PIN at boot
    sim_present: bool = True
    cmee: int = 0  # factory default not confirmed: the driver must set it
    connect_host: str = "127.0.0.1"
    port_map: dict[int, int] = field(default_factory=dict)
    boot_delay: float = 0.0
    netopen_delay: float = 0.0
    cipopen_delay: float = 0.0
    ok_before_result: bool = True  # OK then +CIPOPEN/+CIPCLOSE (S3 shows both orders)
    ipclose_on_drop: bool = True  # +IPCLOSE before +CIPEVENT on a network drop
    prompt: bytes = b"\r\n>"
    boot_on_connect: bool = True


@dataclass
class Link:
    """One TCP link (AT+CIPOPEN=<n>) and the real connection behind it."""

    host: str
    port: int
    writer: asyncio.StreamWriter | None = None
    task: asyncio.Task[None] | None = None
    rx: bytearray = field(default_factory=bytearray)  # buffer mode: data not yet read
    open: bool = False
    peer: str = ""


def framed(line: str | bytes) -> bytes:
    """A line as the modem sends it: CR LF <line> CR LF."""
    b = line.encode() if isinstance(line, str) else line
    return b"\r\n" + b + b"\r\n"


def split_args(args: str) -> list[str]:
    """The comma-separated arguments of a set command, quotes removed."""
    out: list[str] = []
    cur = ""
    q = False
    for ch in args:
        if ch == '"':
            q = not q
        elif ch == "," and not q:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return out
