# The hub's own reports to the head-end (docs/headend-link.md, "Reports"):
# JSON in a link frame REPORT, queued in the outbox (kind KIND_REPORT: kept
# on flash, resent until the head-end ACKs it, like a GBCS message).
#   {"t": "install", ...signal}: once, on the first link after provisioning
#     (wan.session, after the modem's signal window has been sampled)
#   {"t": "health", "k": window, ...signal, outbox, connects, drops, resets}:
#     once per send window (wan.window) at this hub's time in it; KV
#     "wan_report" "t" keeps the time of the last one (UTC ms). The job
#     (WanService.report) loads this module for each step and drops it
#     (with wan.window) for the nap between.
# signal = {signal_avg_dbm, signal_dbm, cell, reg} (wan.session.signal_report).
from micropython import const
import asyncio
import json

from log import log
from wan import outbox as ob
from wan.window import next_send

_NAP_MS = const(5000)  # the longest sleep: a settings change or a clock step is seen this soon


def queue(outbox, txlog, kind, body, cls):
    body["t"] = kind
    seq = outbox.add(json.dumps(body).encode(), cls, ob.KIND_REPORT)
    txlog.add("report", seq, kind)
    return seq


async def run(wan, utc, eui):
    """The report job's loop (as WanService.report runs it, with this module
    loaded for each step): `wan` is the WanService (settings, outbox, txlog,
    session), utc() the hub's UTC seconds, eui its CHF EUI-64."""
    while True:
        await asyncio.sleep_ms(await step(wan, utc, eui))


async def step(wan, utc, eui):
    """One turn of the job "report": the periodic signal/health report at
    this hub's time in each send window -> the ms to wait before the next
    turn. A report due within _NAP_MS is waited for and queued here; else
    the job naps _NAP_MS (a settings change or a clock step is seen this
    soon). Nothing is sent while the clock is not valid (the window is a
    time of day)."""
    kv = wan.store.kv("wan_report")
    cfg = wan.settings
    now_ms = utc() * 1000
    nxt = None
    if wan.clock.valid:
        nxt = next_send(now_ms, eui, cfg["window_start_s"], cfg["report_period_s"], cfg["sched_window_ms"])
    if nxt is None:
        return _NAP_MS
    t, k = nxt
    last = kv.get("t")
    if last is not None and t <= last:
        # a report left at `last` (before a reboot, or the clock went
        # back): the first time after it (one call: next_send looks at
        # most two windows ahead, whatever the settings were then)
        t, k = next_send(last, eui, cfg["window_start_s"], cfg["report_period_s"], cfg["sched_window_ms"])
    wait = t - now_ms
    if wait > _NAP_MS:
        return _NAP_MS
    await asyncio.sleep_ms(max(0, wait))
    s = wan.session
    body = s.signal_report() if s is not None else {}
    body["k"] = k
    body["outbox"] = len(wan.outbox)
    if s is not None:
        body["connects"] = s.connects
        body["drops"] = s.drops
        body["resets"] = s.resets
    queue(wan.outbox, wan.txlog, "health", body, ob.NON_CRITICAL)
    kv.set("t", t)
    wan.wake()
    log("wan", "health report for window %d" % k)
    return 0
