"""HIL: remote management over the head-end link (issue 21), the real hub
under micropython behind the SIM7600 emulator and the TLS head-end. Every WAN
setting read and set by the head-end (MGMT frames) with the local port's
schema, bad values and other commands refused with the reason, each change
in the event log with its origin and kept across a reboot, a host/port
change that loses the link rolled back after `fallback_ms`, the `chub
headend` commands, the periodic report at this hub's time in the send
window, and the installation report's signal average and cell equal to what
`chub hht signal` shows.

One emulated system per module (fresh flash); each test leaves the link up.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from chub.cli import main as chub_main
from hil.headend.server import ManageError
from hil.system import EmulatedSystem

LINK_KEYS = ("host", "port", "apn")
EV_SETTINGS_CHANGED = 0x8FDA
EV_SETTINGS_ROLLED_BACK = 0x8FDB


@pytest.fixture(scope="module")
def system(hub_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedSystem]:
    s = EmulatedSystem(tmp_path_factory.mktemp("mgmt"), image=hub_image, fresh=True).start()
    s.keep_connection = True
    s.call_timeout = 10
    s.call("wan_config", set={"retry_ms": 100, "retry_max_ms": 1000})
    s.headend.wait_hello(1, timeout=30)
    s.wait_until(lambda: s.call("wan_status")["connected"], 20, "link")
    yield s
    s.drop_connection()
    s.stop()


def linked(s: EmulatedSystem, timeout: float = 30) -> None:
    s.wait_until(lambda: s.call("wan_status")["connected"] and s.headend.connected, timeout, "link up")


def tx(s: EmulatedSystem) -> list[dict]:
    return s.call("transactions")["entries"]


def events(s: EmulatedSystem, code: int) -> list[str]:
    out = []
    for _tm, c, data, *_ in s.call("logs", which="event")["entries"]:
        if c == code:
            out.append(bytes.fromhex(data).decode())
    return out


def other_value(name: str, v: object) -> object:
    """A valid value other than v for setting `name` (ints +1 stay in their
    ranges and cross-checks at the settings the module runs with)."""
    if isinstance(v, bool):
        return not v
    if isinstance(v, int):
        return v + 1
    return {"pin": "1234" if v is None else None, "on_exhausted": "drop" if v == "keep" else "keep",
            "timings": {"cmd": 2500} if v is None else None, "radio": None}[name]


def test_every_setting_read_and_set_remotely(system: EmulatedSystem) -> None:
    he = system.headend
    local = system.call("wan_config")
    remote = he.manage({"cmd": "wan_config"})
    assert remote == local  # one schema, one store: the same settings both ways
    skip = {*LINK_KEYS, "radio", "remote_mgmt"}  # the link-cutting ones below; remote_mgmt is local only
    for name, v in sorted(local.items()):
        if name in skip:
            continue
        new = other_value(name, v)
        got = he.manage({"cmd": "wan_config", "set": {name: new}})
        assert got[name] == new, name
        assert system.call("wan_config")[name] == new, name  # the installer sees the head-end's value
        assert he.manage({"cmd": "wan_config", "set": {name: v}})[name] == v
    # radio: a change ends the session (planned), the link comes back with it
    n = len(he.hellos)
    assert he.manage({"cmd": "wan_config", "set": {"radio": "auto"}})["radio"] == "auto"
    he.wait_hello(n + 1, timeout=30)
    linked(system)
    assert he.manage({"cmd": "wan_config", "set": {"radio": None}})["radio"] is None
    ev = [e for e in tx(system) if e["event"] == "mgmt"]
    assert ev and all(e["detail"] == "wan_config" for e in ev)


def test_bad_values_and_other_commands_refused_with_reason(system: EmulatedSystem) -> None:
    he = system.headend
    before = system.call("wan_config")
    refused = sum(1 for e in tx(system) if e["event"] == "mgmt_refused")
    cases = [
        ({"cmd": "wan_config", "set": {"port": "x"}}, 5, "port must be an integer"),
        ({"cmd": "wan_config", "set": {"retry_ms": 5}}, 5, "retry_ms must be 100..600000"),
        ({"cmd": "wan_config", "set": {"nope": 1}}, 5, "nope unknown wan setting"),
        ({"cmd": "wan_config", "set": {"apn": "a\"b"}}, 5, "apn must be"),
        ({"cmd": "wan_config", "set": {"remote_mgmt": False}}, 5, "set on the local port only"),
        ({"cmd": "wan_config", "set": {"report_period_s": 1}}, 5, "report_period_s must not be shorter"),
        ({"cmd": "link_cert", "cert": "00"}, 4, "not a management command: link_cert"),
        ({"cmd": "prov_begin"}, 4, "not a management command"),
        ({"cmd": "wan_config", "_from": "headend"}, 5, "argument _from not allowed"),
    ]
    for req, status, why in cases:
        with pytest.raises(ManageError) as e:
            he.manage(req)
        assert e.value.status == status and why in e.value.error, (req, e.value)
    assert system.call("wan_config") == before  # nothing stored
    got = [e for e in tx(system) if e["event"] == "mgmt_refused"]
    assert len(got) == refused + len(cases)
    # the installer can switch the channel off; then the head-end is refused
    system.call("wan_config", set={"remote_mgmt": False})
    with pytest.raises(ManageError) as e:
        he.manage({"cmd": "wan_status"})
    assert e.value.status == 6 and "remote_mgmt" in e.value.error
    system.call("wan_config", set={"remote_mgmt": True})
    assert he.manage({"cmd": "wan_status"})["connected"] is True


def test_changes_logged_with_origin_and_kept_across_reboot(system: EmulatedSystem) -> None:
    he = system.headend
    he.manage({"cmd": "wan_config", "set": {"max_errors": 9, "stuck_ms": 900000}})
    system.call("wan_config", set={"ping_ms": 45000})
    got = events(system, EV_SETTINGS_CHANGED)
    assert "headend max_errors,stuck_ms" in got and "local ping_ms" in got
    # the head-end reads the event log over the link too
    remote = he.manage({"cmd": "logs", "which": "event"})["entries"]
    assert any(c == EV_SETTINGS_CHANGED and bytes.fromhex(d) == b"headend max_errors,stuck_ms"
               for _, c, d, *_ in remote)
    n = len(he.hellos)
    system.reboot()
    he.wait_hello(n + 1, timeout=40)
    linked(system)
    cfg = he.manage({"cmd": "wan_config"})
    assert (cfg["max_errors"], cfg["stuck_ms"], cfg["ping_ms"]) == (9, 900000, 45000)
    he.manage({"cmd": "wan_config", "set": {"max_errors": 6, "stuck_ms": 1800000, "ping_ms": 60000}})


def test_link_change_kept_when_the_link_returns_rolled_back_when_not(system: EmulatedSystem) -> None:
    he = system.headend
    # a new host name the network resolves (the emulator connects every host
    # to the head-end): the link comes back, the change stays
    n = len(he.hellos)
    assert he.manage({"cmd": "wan_config", "set": {"host": "he2.chub.test", "fallback_ms": 5000}})["host"] == \
        "he2.chub.test"
    he.wait_hello(n + 1, timeout=30)
    linked(system)
    system.wait_until(lambda: any(e["event"] == "fallback" and e["detail"] == "kept" for e in tx(system)), 10,
                      "fall-back cleared")
    assert system.call("wan_config")["host"] == "he2.chub.test"
    # a port nothing listens on: the link is lost, the old port returns
    # after fallback_ms and the link with it
    n = len(he.hellos)
    t0 = time.monotonic()
    assert he.manage({"cmd": "wan_config", "set": {"port": 4060}})["port"] == 4060
    he.wait_hello(n + 1, timeout=40)
    took = time.monotonic() - t0
    linked(system)
    assert took >= 5.0, took  # not before fallback_ms
    assert system.call("wan_config")["port"] == 4059
    assert any(e["event"] == "fallback" and e["detail"] == "port" for e in tx(system))
    assert "fallback port" in events(system, EV_SETTINGS_ROLLED_BACK)
    assert "headend fallback_ms,host" in events(system, EV_SETTINGS_CHANGED)
    n = len(he.hellos)
    he.manage({"cmd": "wan_config", "set": {"host": "headend.chub.test"}})
    he.wait_hello(n + 1, timeout=30)
    linked(system)


def test_chub_headend_commands(system: EmulatedSystem) -> None:
    api = f"127.0.0.1:{system.headend.api_port}"
    r = CliRunner().invoke(chub_main, ["headend", "--api", api, "config", "get", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == system.call("wan_config")
    r = CliRunner().invoke(chub_main, ["headend", "--api", api, "config", "set", "signal_ms=7000", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["signal_ms"] == 7000 and system.call("wan_config")["signal_ms"] == 7000
    r = CliRunner().invoke(chub_main, ["headend", "--api", api, "config", "set", "signal_ms=5"])
    assert r.exit_code == 2 and "signal_ms must be 100.." in r.output
    r = CliRunner().invoke(chub_main, ["headend", "--api", api, "config", "set", "signal_ms=10000"])
    assert r.exit_code == 0, r.output
    local = system.call("transactions")
    r = CliRunner().invoke(chub_main, ["headend", "--api", api, "logs", "--json"])
    assert r.exit_code == 0, r.output
    remote = json.loads(r.output)
    # page by page over the link, oldest first: what the installer saw, and
    # more (each management request is logged too)
    seqs = [e["seq"] for e in remote["entries"]]
    assert remote["total"] >= local["total"] and seqs == sorted(set(seqs))
    assert set(e["seq"] for e in local["entries"]) <= set(seqs)
    r = CliRunner().invoke(chub_main, ["headend", "--api", api, "logs", "--which", "event"])
    assert r.exit_code == 0 and "0x8FDA" in r.output, r.output
    r = CliRunner().invoke(chub_main, ["headend", "--api", api, "signal", "--json"])
    assert r.exit_code == 0, r.output
    sig = json.loads(r.output)
    assert sig["wan"]["cell"][3] == system.modem.cfg.cell and sig["han"], sig


def slot_ms(eui: bytes, k: int, length_ms: int) -> int:
    """wan.window.offset_ms, written again from its doc."""
    return int.from_bytes(hashlib.sha256(eui + k.to_bytes(4, "big")).digest()[:4], "big") % length_ms


def test_periodic_report_at_this_hubs_time_in_the_window(system: EmulatedSystem) -> None:
    he = system.headend
    eui = he.hellos[-1].eui
    n = len(he.reports)
    he.manage({"cmd": "wan_config", "set": {"sched_window_ms": 6000, "report_period_s": 12, "window_start_s": 0}})
    try:
        he.wait(lambda: any(r.body.get("t") == "health" for r in he.reports[n:]), 40, "health report")
        rep = next(r for r in he.reports[n:] if r.body.get("t") == "health")
        k = rep.body["k"]
        due = k * 12 + slot_ms(eui, k, 6000) / 1000
        # the hub's clock is the head-end's (seconds): never early, late by
        # at most its second's resolution and the link
        assert due - 0.3 <= rep.utc <= due + 4.0, (rep.utc, due)
        assert rep.body["cell"][3] == system.modem.cfg.cell and rep.body["signal_avg_dbm"] is not None
        assert any(e["event"] == "report" and e["detail"] == "health" for e in tx(system))
    finally:
        he.manage({"cmd": "wan_config", "set": {"report_period_s": 86400, "sched_window_ms": 1800000,
                                                "window_start_s": 7200}})


def test_installation_report_matches_hht_signal(system: EmulatedSystem) -> None:
    """Last in the module: the report leaves once the modem's 30 s signal
    window has been sampled after the first link."""
    he = system.headend
    try:
        he.wait(lambda: any(r.body.get("t") == "install" for r in he.reports), 60, "installation report")
    except TimeoutError as e:
        raise AssertionError(f"{e}: {tx(system)} {[r.body for r in he.reports]}") from e
    rep = [r for r in he.reports if r.body.get("t") == "install"]
    assert len(rep) == 1  # once, after the first link after provisioning (relinks and a reboot since)
    system.drop_connection()  # the hand-held terminal takes the local port
    r = CliRunner().invoke(chub_main, ["hht", "--port", system.local_port_url, "signal", "--json"])
    assert r.exit_code == 0, r.output
    shown = json.loads(r.output)["wan"]
    body = rep[0].body
    assert body["signal_avg_dbm"] == shown["signal_avg_dbm"]
    assert body["cell"] == [shown["rat"], shown["plmn"], shown["area"], shown["cell_id"]]
    assert body["reg"] == shown["registration"]
