"""`chub hht identity` and `chub hht send-gbcs`: the HHT's GBCS commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


def register(hht: click.Group) -> None:
    """Add the GBCS commands to the `hht` group."""
    from .cli import _call

    @hht.command()
    @click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
    @click.pass_context
    def identity(ctx: click.Context, as_json: bool) -> None:
        """CHF and GPF EUI-64s and public keys (KA and DS, uncompressed points)."""
        r = _call(ctx, "identity")
        if as_json:
            click.echo(json.dumps(r))
            return
        for name in ("chf", "gpf"):
            d = r.get(name, {})
            click.echo(f"{name.upper()} {d.get('eui', '?').upper()}")
            click.echo(f"  KA {d.get('ka_pub', '')}")
            click.echo(f"  DS {d.get('ds_pub', '')}")

    @hht.command("send-gbcs")
    @click.option("--in", "inp", required=True, type=click.Path(exists=True, path_type=Path), help="Command (hex text).")
    @click.option("--out", required=True, type=click.Path(path_type=Path), help="Where to write the response (hex).")
    @click.option("--alerts", type=click.Path(path_type=Path), help="Save alerts here (one hex frame per line).")
    @click.option("--wait", "wait_s", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
                  help="A buffered command (the sleepy GSME's): wait up to SECONDS for its response or alert, "
                       "which the hub sends to the head-end after the meter wakes (a `chub sim` only).")
    @click.option("--gsme-reply-here", is_flag=True,
                  help="A command for the GSME: keep its response for the HHT (`chub hht gsme-replies`), not the WAN.")
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
    @click.pass_context
    def send_gbcs(ctx: click.Context, inp: Path, out: Path, alerts: Path | None, wait_s: float | None,
                  gsme_reply_here: bool, as_json: bool) -> None:
        """Send one pre-protected GBCS command as if from the WAN; write the response.

        The response is classified: success, error (a GBCS error response), alert; a command
        for the sleepy GSME is buffered (its id printed) until the meter wakes."""
        frame = "".join(inp.read_text().split())
        try:
            cmd = bytes.fromhex(frame)
        except ValueError as e:
            raise click.BadParameter(f"{inp} is not hex: {e}") from e
        if wait_s and gsme_reply_here:
            raise click.UsageError("--wait collects from the head-end; --gsme-reply-here keeps the response on the "
                                   "hub for `chub hht gsme-replies`: choose one")
        ident = command_id(cmd)
        journal = _journal(ctx) if wait_s else None  # refused before sending when there is nothing to wait on
        r = _call(ctx, "send_gbcs", frame=frame, hht=True) if gsme_reply_here else _call(ctx, "send_gbcs", frame=frame)
        resp = r.get("response")
        got = [a.upper() for a in r.get("alerts", [])]
        result: dict = {"command": ident, "response": None, "alerts": [classify(bytes.fromhex(a)) for a in got]}
        result["buffered"] = resp is None
        if resp is None and not as_json:
            # a GSME command: the hub buffers it until the meter wakes, and
            # the meter's response then goes to the head-end (WAN outbox)
            if gsme_reply_here:
                click.echo(f"buffered: command {ident['id']} waits in the hub for the sleepy GSME; its response is "
                           "kept on the hub for `chub hht gsme-replies` when the meter wakes")
            else:
                how = f"waiting up to {wait_s:g} s for it" if wait_s else "--wait S collects it on a `chub sim`"
                click.echo(f"buffered: command {ident['id']} waits in the hub for the sleepy GSME; its response goes "
                           f"to the head-end when the meter wakes ({how})")
        if resp is None and journal is not None:
            late = wait_in_journal(journal, cmd, wait_s)
            if late.get("response"):
                resp = late["response"]
            got += late.get("alerts", [])
            result["alerts"] += [classify(bytes.fromhex(a)) for a in late.get("alerts", [])]
            result["waited_s"] = late["waited_s"]
        if resp is not None:
            out.write_text(resp.upper())
            result["response"] = classify(bytes.fromhex(resp))
            result["out"] = str(out)
        if alerts is not None:
            alerts.write_text("".join(a + "\n" for a in got))
        if as_json:
            click.echo(json.dumps(result))
        else:
            for a in result["alerts"]:
                click.echo(f"alert {a['summary']}")
                if alerts is None:
                    click.echo(f"  {a['hex']}")
            if resp is None:
                waited = f"no response within {wait_s:g} s; " if wait_s else ""
                click.echo(f"{waited}nothing written to {out}")
            else:
                c = result["response"]
                click.echo(f"{c['kind']}: {c['summary']} ({len(resp) // 2} bytes -> {out})")
        if resp is not None and result["response"]["kind"] == "error":
            sys.exit(1)

    @hht.command("gsme-replies")
    @click.option("--take", is_flag=True, help="Remove them from the hub once printed.")
    @click.pass_context
    def gsme_replies(ctx: click.Context, take: bool) -> None:
        """The GSME's responses to commands sent with `send-gbcs --gsme-reply-here` (hex, one a line)."""
        r = _call(ctx, "route_replies", take=take) if take else _call(ctx, "route_replies")
        for x in r.get("replies", []):
            click.echo(str(x.get("frame", "")).upper())

    @hht.command("protect")
    @click.option("--in", "inp", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  help="An RTDS command (hex text), e.g. ../shared/vectors/gbcs/rtds/...COMMAND_GBCS.HEX.")
    @click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
                  help="Where to write the command for this hub (hex).")
    @click.option("--to", "to_eui", default=None, metavar="EUI",
                  help="A command for a meter: the Device Log device to address it to (its MAC stays the "
                       "RTDS's: the emulated meters match commands by header and payload).")
    @click.option("--keystore", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
                  help="The test DCC keystore [default: ../shared/vectors/gbcs/keystore].")
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
    @click.pass_context
    def protect(ctx: click.Context, inp: Path, out: Path, to_eui: str | None, keystore: Path | None,
                as_json: bool) -> None:
        """Re-protect an RTDS command for this hub: a command for the RTDS CHF or GPF gets this hub's
        CHF/GPF as recipient, a new originator counter and a new MAC/signature from the keystore; a
        command for a meter is addressed to --to EUI. Then send it with `send-gbcs --in OUT`."""
        from chubcore.paths import keystore_dir
        from hil.headend.gbcs import RTDS_CHF, HeadEnd, HeadEndError, parse_frame
        from hil.meters.living import readdress

        from .hht_device_log import parse_device_eui

        try:
            raw = bytes.fromhex("".join(inp.read_text().split()))
            f = parse_frame(raw)
        except (ValueError, IndexError) as e:
            raise click.BadParameter(f"{inp} is not a GBCS frame: {e}") from None
        if f.cra != 1:
            raise click.BadParameter(f"{inp} is not a command (CRA {f.cra})")
        ks = keystore or keystore_dir()
        if not ks.is_dir():
            raise click.UsageError(f"no keystore at {ks}: give --keystore DIR")
        he = HeadEnd.for_hub(ks, _call(ctx, "identity"))
        if f.recipient in he.devices:
            if to_eui is not None:
                raise click.UsageError("--to is for a meter's command; this one is for the hub's "
                                       f"{'CHF' if f.recipient == RTDS_CHF else 'GPF'}")
            try:
                new, nf = he.rebuild(raw)
            except HeadEndError as e:
                raise click.UsageError(str(e)) from None
            how = f"for this hub's {'CHF' if f.recipient == RTDS_CHF else 'GPF'} {nf.recipient.hex().upper()}"
        else:
            if to_eui is None:
                raise click.UsageError(f"the command is for the device {f.recipient.hex().upper()}: give "
                                       "--to EUI (a device in this hub's Device Log)")
            dest = bytes.fromhex(parse_device_eui(to_eui))
            new, nf = readdress(raw, f.recipient, dest), parse_frame(readdress(raw, f.recipient, dest))
            how = f"addressed to {dest.hex().upper()}"
        out.write_text(new.hex().upper())
        if as_json:
            click.echo(json.dumps({"out": str(out), "recipient": nf.recipient.hex().upper(), "counter": nf.counter}))
        else:
            click.echo(f"protected {how}, counter {nf.counter} -> {out}")


def command_id(cmd: bytes) -> dict:
    """A command's id as the head-end knows it: originator and its counter
    (a response carries the same counter, CRA 2), recipient, message code."""
    from hil.headend.gbcs import HeadEndError, parse_frame

    try:
        f = parse_frame(cmd)
    except (HeadEndError, ValueError, IndexError):
        return {"id": "?"}  # not a frame the head-end can read: the hub refuses it with its reason
    return {"id": f"{f.originator.hex().upper()}:{f.counter}", "originator": f.originator.hex().upper(),
            "counter": f.counter, "recipient": f.recipient.hex().upper(), "message_code": f.message_code,
            "message": _message_name(f.message_code)}


_MESSAGE_NAMES: dict[int, str] | None = None


def _message_name(code: int) -> str:
    """The use case of a GBCS message code (vectors/gbcs/message-codes.tsv); '' when unknown."""
    global _MESSAGE_NAMES
    if _MESSAGE_NAMES is None:
        from chubcore.paths import vectors_dir

        names: dict[int, str] = {}
        tsv = vectors_dir() / "gbcs" / "message-codes.tsv"
        for line in tsv.read_text().splitlines()[1:] if tsv.exists() else []:
            c, _, name = line.partition("\t")
            try:
                names[int(c, 16)] = name.strip()
            except ValueError:
                continue
        _MESSAGE_NAMES = names
    return _MESSAGE_NAMES.get(code, "")


def _alert_code(payload: bytes) -> int | None:
    """The alert code of a GBZ alert (profile 01 09, count, code) or a DLMS
    DataNotification (0F, invoke id, date-time, {long-unsigned code, ...})."""
    if payload[:2] == b"\x01\x09" and len(payload) >= 5:
        return int.from_bytes(payload[3:5], "big")
    if payload[:1] == b"\x0f" and len(payload) > 6:
        o = 5
        o += 1 if payload[o] == 0 else 1 + payload[o]
        if payload[o : o + 1] == b"\x02" and payload[o + 2 : o + 3] == b"\x12":
            return int.from_bytes(payload[o + 3 : o + 5], "big")
    return None


def _response_error(payload: bytes) -> tuple[bool, str | None]:
    """(read, why): whether a response payload could be read here, and why
    it is a GBCS error response (None: a success). DLMS access-response:
    a result other than 0 (success); GBZ: a ZCL Default Response whose
    status is not 0 (an encrypted component cannot be read); an ASN.1
    Response Code (INTEGER `02 01 XX`) other than 0."""
    from hil.headend.gbcs import HeadEndError, decode_access_response
    from hil.headend.gpf import gbz_components

    p = payload
    if len(p) == 3 and p[:2] == b"\x02\x01":
        return True, None if p[2] == 0 else f"response code {p[2]}"
    try:
        if p[:1] == b"\xda":
            r = decode_access_response(p)
            bad = [res for _, res in r.results if res != 0]
            return True, f"DLMS results {[res for _, res in r.results]}" if bad else None
        if p[:2] == b"\x01\x09":
            comps = gbz_components(p)
            if any("body" not in c for c in comps):
                return False, None
            bad = [c["body"][1] for c in comps if c["cmd"] == 0x0B and len(c["body"]) >= 2 and c["body"][1]]
            return True, f"ZCL status 0x{bad[0]:02X}" if bad else None
    except (HeadEndError, IndexError, ValueError):
        return False, None
    return False, None


def classify(frame: bytes) -> dict:
    """A frame from the hub, for people and scripts: kind "alert" (CRA 3,
    with its code and name), "error" (a GBCS error response), "success"
    (a response whose payload reads as one) or "response" (encrypted: not
    read here), with message code and use case, originator and counter."""
    from hil.headend.gbcs import parse_frame

    from .views import code_name

    out: dict = {"hex": frame.hex().upper()}
    try:
        f = parse_frame(frame)
    except (ValueError, IndexError) as e:
        out.update(kind="unreadable", summary=f"not a GBCS frame ({e})")
        return out
    mc = f.message_code
    out.update(cra=f.cra, message_code=mc, message=_message_name(mc), originator=f.originator.hex().upper(),
               counter=f.counter)
    what = f"message code 0x{mc:04X} {out['message']}".rstrip()
    if f.cra == 3:
        code = _alert_code(f.payload)
        out.update(kind="alert", alert_code=code, alert_name=code_name(code) if code is not None else "")
        out["summary"] = (f"0x{code:04X} {out['alert_name']}".rstrip() if code is not None else "code not read") + \
            f" ({what})"
        return out
    read, why = _response_error(f.payload)
    out["kind"] = "error" if why else ("success" if read else "response")
    out["summary"] = what + (f": {why}" if why else "" if read else " (encrypted payload: not read here)")
    return out


def wait_in_journal(journal: Path, cmd: bytes, wait_s: float) -> dict:
    """Up to wait_s seconds for a buffered command's response (CRA 2, its
    counter) or an alert from its recipient in the sim's head-end journal
    (frames that came after the call): {"response": hex | None, "alerts":
    [hex], "waited_s"}."""
    import time

    from hil.headend.gbcs import parse_frame

    want = parse_frame(cmd)
    t0 = time.time()
    seen = 0
    alerts: list[str] = []
    while True:
        lines = journal.read_text().splitlines()
        for line in lines[seen:]:
            r = json.loads(line)
            if r["t"] < t0 - 1:
                continue
            try:
                f = parse_frame(bytes.fromhex(r["hex"]))
            except (ValueError, IndexError):
                continue
            if f.cra == 2 and f.counter == want.counter and f.originator == want.recipient:
                return {"response": r["hex"], "alerts": alerts, "waited_s": round(time.time() - t0, 1)}
            if f.cra == 3 and f.originator == want.recipient:
                alerts.append(r["hex"])
        seen = len(lines)
        if time.time() - t0 >= wait_s:
            return {"response": None, "alerts": alerts, "waited_s": round(time.time() - t0, 1)}
        time.sleep(0.5)


def _journal(ctx: click.Context) -> Path:
    """The head-end journal of the `chub sim` behind `chub hht` (sim.HEADEND_JOURNAL)."""
    from .sim import HEADEND_JOURNAL, running_sims

    wd = ctx.obj.get("workdir")
    if wd is None:
        port = ctx.obj["port"]
        for r in running_sims():
            if r["local_port"] == port:
                wd = Path(r["workdir"])
    if wd is None or not (Path(wd) / HEADEND_JOURNAL).exists():
        raise click.UsageError("--wait collects late responses from a `chub sim`'s head-end only (a real hub "
                               "sends them to its head-end): none found for this port; try --workdir DIR")
    return Path(wd) / HEADEND_JOURNAL
