"""rich renderings shared by the CLI and the live sim view."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def status_table(st: dict[str, Any]) -> Table:
    t = Table(title="hub status", show_header=False)
    t.add_column("item", style="bold")
    t.add_column("value")
    t.add_row("firmware", f"{st.get('version')} ({st.get('git', '?')})")
    t.add_row("board", str(st.get("board")))
    t.add_row("uptime", f"{st.get('uptime_s')} s")
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
