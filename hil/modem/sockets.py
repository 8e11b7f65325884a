"""Socket commands (SIM7600.md §4.5-4.9): open, send, read (buffer mode) and
close TCP links. Each link is a real TCP connection to cfg.connect_host, on
the port the hub asks or its cfg.port_map entry; the data path between the
link and the hub is in ModemCore."""

from __future__ import annotations

import asyncio

from hil.modem.config import MAX_SEND, Link, framed, split_args
from hil.modem.core import Handler, ModemCore


async def cipopen(m: ModemCore, kind: str, args: str) -> None:
    if kind == "?":
        lines = []
        for n in range(10):
            lk = m.links.get(n)
            lines.append(f'+CIPOPEN: {n},"TCP","{lk.host}",{lk.port},-1' if lk and lk.open
                         else f"+CIPOPEN: {n}")
        m.reply(*lines)
        return
    a = split_args(args)
    link = int(a[0])
    if not 0 <= link <= 9 or len(a) < 4:
        raise ValueError(args)
    if a[1].upper() != "TCP":
        m.reply(f"+CIPOPEN: {link},4", final="ERROR")
        return
    host, port = a[2], int(a[3])
    if not m.netopen:
        m.reply(f"+CIPOPEN: {link},2", final="ERROR")
        return
    if link in m.links and m.links[link].open:
        m.reply(f"+CIPOPEN: {link},4", final="ERROR")
        return
    lk = Link(host, port)
    m.links[link] = lk

    async def connect() -> str:
        if m.socket_open_failures:
            return f"+CIPOPEN: {link},{m.socket_open_failures.pop(0)}"
        if host.endswith(".invalid"):
            return f"+CIPOPEN: {link},11"
        if m.cfg.cipopen_delay:
            await asyncio.sleep(m.cfg.cipopen_delay)
        try:
            r, w = await asyncio.open_connection(m.cfg.connect_host, m.cfg.port_map.get(port, port))
        except OSError:
            return f"+CIPOPEN: {link},10"
        m.open_link(link, lk, r, w)
        return f"+CIPOPEN: {link},0"

    await m.reply_open(connect)


def cipsend(m: ModemCore, kind: str, args: str) -> None:
    a = split_args(args)
    link = int(a[0])
    lk = m.links.get(link)
    if not m.netopen:
        m.reply(final="+CIPERROR: 2")
        return
    if lk is None or not lk.open:
        m.reply(final="+CIPERROR: 4")
        return
    if len(a) > 1 and a[1] == "":
        m.expect_payload(link, None)
    else:
        n = int(a[1])
        if not 0 < n <= MAX_SEND:
            raise ValueError(n)
        m.expect_payload(link, n)
    m.write(m.cfg.prompt)


def ciprxget(m: ModemCore, kind: str, args: str) -> None:
    if kind == "?":
        m.reply(f"+CIPRXGET: {m.rxget_mode}")
        return
    a = split_args(args)
    mode = int(a[0])
    if mode in (0, 1) and len(a) == 1:
        m.rxget_mode = mode
        m.reply()
        return
    link = int(a[1])
    lk = m.links.get(link)
    if mode == 4:
        m.reply(f"+CIPRXGET: 4,{link},{len(lk.rx) if lk else 0}")
        return
    if mode not in (2, 3):
        raise ValueError(mode)
    if lk is None or not lk.rx:
        m.reply("+IP ERROR: No data", final="ERROR")
        return
    want = int(a[2]) if len(a) > 2 and a[2] else MAX_SEND
    k = min(want, len(lk.rx), MAX_SEND if mode == 2 else MAX_SEND // 2)
    data = bytes(lk.rx[:k])
    del lk.rx[:k]
    head = framed(f"+CIPRXGET: {mode},{link},{k},{len(lk.rx)}")
    body = data if mode == 2 else framed(data.hex().upper())
    m.write(head + body + framed(b"OK"))
    after = m.after_read.pop(0) if m.after_read else None
    if after is not None:  # more data lands right behind the reply: its URC follows the OK at once
        m.deliver(link, lk, after)


async def cipclose(m: ModemCore, kind: str, args: str) -> None:
    if kind == "?":
        flags = ",".join("1" if (n in m.links and m.links[n].open) else "0" for n in range(10))
        m.reply(f"+CIPCLOSE: {flags}")
        return
    link = int(split_args(args)[0])
    lk = m.links.get(link)
    if lk is None or not lk.open:
        m.reply(f"+CIPCLOSE: {link},4", final="ERROR")
        return
    m.close_link(lk)
    if m.cfg.ok_before_result:
        m.reply()
        m.urc(f"+CIPCLOSE: {link},0")
    else:
        m.reply(f"+CIPCLOSE: {link},0")


COMMANDS: dict[str, Handler] = {
    "+CIPOPEN": cipopen, "+CIPSEND": cipsend, "+CIPRXGET": ciprxget, "+CIPCLOSE": cipclose,
}
