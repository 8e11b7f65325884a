"""rich renderings shared by the CLI and the live sim view."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.table import Table


def status_table(st: dict[str, Any]) -> Table:
    t = Table(title="hub status", show_header=False)
    t.add_column("item", style="bold")
    t.add_column("value")
    t.add_row("firmware", f"{st.get('version')} ({st.get('git', '?')})")
    t.add_row("board", str(st.get("board")))
    t.add_row("uptime", f"{st.get('uptime_s')} s")
    clock = st.get("clock") or {}
    t.add_row("clock (UTC)", f"{utc_text(st.get('utc'), 1970)}" + (f" ({clock.get('source')}, "
              f"{'valid' if clock.get('valid') else 'not valid'})" if clock else ""))
    t.add_row("heap", f"{st.get('heap_alloc', 0) // 1024} KiB used, {st.get('heap_free', 0) // 1024} KiB free")
    for k, v in sorted(st.get("flash", {}).items()):
        t.add_row(f"flash {k}", str(v))
    for k, v in sorted(st.get("store", {}).items()):
        t.add_row(f"store {k}", str(v))
    for name, job in sorted(st.get("jobs", {}).items()):
        extra = f" (restarts {job['restarts']}, last {job['last_error']})" if job.get("restarts") else ""
        t.add_row(f"task {name}", f"{job['state']}{extra}")
    return t


def bench_table(figures: dict[str, Any]) -> Table:
    t = Table(title="chub bench")
    t.add_column("figure")
    t.add_column("value", justify="right")
    for k, v in figures.items():
        t.add_row(k, f"{v:.3f}" if isinstance(v, float) else str(v))
    return t


# --- output made for people: full keys, UTC times, code names -----------------

EPOCH_2000 = 946684800  # the hub's log and Device Log times count seconds from 2000-01-01 UTC


def out_console() -> Console:
    """The console for a command's table on stdout: the terminal's width, or
    160 columns when piped (tables never cut a key or data, see key_column)."""
    import sys

    return Console() if sys.stdout.isatty() else Console(width=160)


def key_column(t: Table, name: str) -> None:
    """A column that is never cut or wrapped (an EUI-64: the key people type
    and grep); the table's other columns give way."""
    t.add_column(name, no_wrap=True, min_width=16, overflow="ignore")


def data_column(t: Table, name: str) -> None:
    """A column folded onto more lines when narrow, never cut (hex data)."""
    t.add_column(name, overflow="fold")


def utc_text(t: int | None, epoch: int = 2000) -> str:
    """Seconds since 2000-01-01 (the hub's logs; epoch=1970: Unix time) as
    `YYYY-MM-DD HH:MM:SSZ`; `-` for none."""
    import time

    if t is None:
        return "-"
    base = EPOCH_2000 if epoch == 2000 else 0
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(int(t) + base))


def unix_from_2000(t: int | None) -> int | None:
    """A hub time (seconds since 2000) as Unix time (seconds since 1970)."""
    return None if t is None else int(t) + EPOCH_2000


_CODE_NAMES: dict[int, str] | None = None


def code_name(code: int) -> str:
    """The name of an event/alert code: GBCS's (vectors/gbcs/alert-codes.tsv),
    else its constant's name in firmware/codes.py (the hub's private codes,
    EV_NETWORK_KEY_ROTATED: "network key rotated"); '' when unknown."""
    global _CODE_NAMES
    if _CODE_NAMES is None:
        import re

        from chubcore.paths import FIRMWARE, vectors_dir

        names: dict[int, str] = {}
        codes = FIRMWARE / "codes.py"
        if codes.exists():
            rx = re.compile(r"^(?:EV_|ALERT_)?(\w+) = const\(0x([0-9A-Fa-f]{4})\)")
            for line in codes.read_text().splitlines():
                m = rx.match(line)
                if m:  # EV_NETWORK_KEY_ROTATED -> "network key rotated"
                    names.setdefault(int(m.group(2), 16), m.group(1).replace("_", " ").lower())
        tsv = vectors_dir() / "gbcs" / "alert-codes.tsv"
        if tsv.exists():
            for line in tsv.read_text().splitlines()[1:]:
                hexcode, _, name = line.partition("\t")
                try:
                    names[int(hexcode, 16)] = " ".join(name.split())
                except ValueError:
                    continue
        _CODE_NAMES = names
    return _CODE_NAMES.get(int(code), "")


def live_view(ready: dict[str, Any], answers: dict[str, Any], meters: dict[str, Any], log: Any, size: Any,
              error: str | None = None) -> Group:
    """`chub sim`'s live view: a header saying how to stop, the meters (full
    EUIs), one line each for the hub, WAN and clock, then the newest log
    lines first in the height that is left (80x24 shows every part)."""
    from rich.panel import Panel
    from rich.text import Text

    head = Text.assemble(("chub sim", "bold"), f"  {ready['local_port']}  boot to ready "
                         f"{ready['boot_to_ready_s']} s  ", ("Ctrl-C to stop", "bold yellow"))
    parts: list[Any] = [head]
    used = 1
    if error is not None:
        parts.append(Text(f"local port: {error}", style="red"))
        used += 1
    dl = answers.get("device_log_list")
    if dl is not None:
        t = Table(title=None, box=None, pad_edge=False, padding=(0, 1))
        key_column(t, "meter EUI-64")
        for col, w in (("type", 6), ("state", 7), ("heard UTC", 9)):
            t.add_column(col, overflow="ellipsis", no_wrap=True, min_width=w)
        # the activity column takes what is left of the width (never the EUI's room)
        t.add_column("activity", overflow="ellipsis", no_wrap=True, max_width=max(12, size.width - 50))
        types = {0: "GSME", 1: "ESME", 2: "CHF", 3: "GPF", 4: "HCALCS", 5: "PPMID", 6: "IHD"}
        for e in dl.get("entries", []):
            kind = types.get(e[1], str(e[1]))
            m = meters.get(kind.lower())
            act = ""
            if kind == "GSME" and m:
                act = f"wakes {m['wakes']}, every {m['wake_s']:g} s, cmds {m['commands']}"
            elif kind == "ESME" and m:
                act = f"{m['summation_wh'] / 1000:.3f} kWh, cmds {m['commands']}, reports {m.get('reports', 0)}"
            t.add_row(e[0], kind, str(e[5]), utc_text(e[9])[11:] if e[9] else "never", act)
        parts.append(t)
        used += 1 + len(dl.get("entries", []))
    st, wan = answers.get("status"), answers.get("wan_status")
    if st is not None:
        clock = st.get("clock", {})
        parts.append(Text(f"hub   {st.get('version')} up {st.get('uptime_s')} s, heap "
                          f"{st.get('heap_free', 0) // 1024} KiB free, HAN {st.get('han', {}).get('state')} "
                          f"channel {st.get('han', {}).get('channel')}", no_wrap=True, overflow="ellipsis"))
        parts.append(Text(f"clock {utc_text(st.get('utc'), 1970)} ({clock.get('source')}, "
                          f"{'valid' if clock.get('valid') else 'not valid'})", no_wrap=True, overflow="ellipsis"))
        used += 2
    if wan is not None:
        parts.append(Text(f"WAN   {wan.get('state')}, outbox {wan.get('outbox_pending')}, signal "
                          f"{wan.get('signal_dbm')} dBm, connects {wan.get('connects')}", no_wrap=True,
                          overflow="ellipsis"))
        used += 1
    room = max(3, size.height - used - 3)
    lines = log.tail(room).splitlines()[::-1]
    body = Text("\n".join(lines), no_wrap=True, overflow="ellipsis")
    parts.append(Panel(body, title=f"log, newest first ({ready['log']})", title_align="left", height=room + 2))
    return Group(*parts)
