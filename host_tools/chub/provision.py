"""`chub provision`: give a hub its identity (docs/provisioning.md).

The laptop side of firmware/chf/provision.py: EUI-64s allocated from a
configured OUI and a counter in an SQLite file (never reused, even when a
run fails), key pairs made on the hub (only public keys and a proof of
possession come back), X.509 certificates from a local test CA, the
remote-party trust anchors from the GBCS keystore, a fresh installer
credential, then one commit on the hub.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chubcore.dcc import TEST_DCC, anchor_cells
from chubcore.paths import keystore_dir, state_dir
from chubcore.pki import LinkCA, TestCA, eui_from_certificate, link_pop_message  # noqa: F401 (re-exported)
from chubcore.records import DEFAULT_OUI, ProvisionDB, ProvisionError

POP_LABEL = b"chub-prov-pop"


class AlreadyProvisioned(ProvisionError):
    pass


# --- trust anchors -----------------------------------------------------------------


def test_dcc_anchors(keystore: Path, roles: tuple[str, ...] = ("acb", "supplier")) -> list[dict[str, str]]:
    """ACB and supplier trust anchors of the test DCC (vectors/gbcs/keystore)."""
    out = []
    for role in roles:
        eui, usages = TEST_DCC[role]
        a: dict[str, str] = {"eui": eui.hex(), "role": role}
        for u in usages:
            pem = keystore / f"{eui.hex()}-{u}.pem"
            if not pem.exists():
                raise ProvisionError(f"trust anchor certificate {pem} is missing")
            a.update(anchor_cells(pem, u))
        out.append(a)
    return out


# --- the run ---------------------------------------------------------------------------


@dataclass
class Result:
    chf_eui: str
    gpf_eui: str
    gen: int
    installer_id: str
    changed: bool
    certs: dict[str, str]


def _verify_pop(nonce: bytes, dev: dict[str, str]) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    eui, ka, ds, pop = (bytes.fromhex(dev[k]) for k in ("eui", "ka_pub", "ds_pub", "pop"))
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), ka)
        pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), ds)
        sig = encode_dss_signature(int.from_bytes(pop[:32], "big"), int.from_bytes(pop[32:], "big"))
        pub.verify(sig, POP_LABEL + nonce + eui + ka + ds, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError) as e:
        raise ProvisionError(f"the hub's proof of possession for {dev['eui']} does not verify: {e!r}") from None


def _verify_link_pop(nonce: bytes, chf: str, link: dict[str, str]) -> bytes:
    """The hub's head-end link key: its proof of possession -> the public key."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    try:
        pub_b, pop = bytes.fromhex(link["pub"]), bytes.fromhex(link["pop"])
        pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pub_b)
        sig = encode_dss_signature(int.from_bytes(pop[:32], "big"), int.from_bytes(pop[32:], "big"))
        pub.verify(sig, link_pop_message(nonce, bytes.fromhex(chf), pub_b), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, KeyError, TypeError) as e:
        raise ProvisionError(f"the hub's proof of possession for its link key does not verify: {e!r}") from None
    return pub_b


# what provision() is doing before each of its step() calls (the CLI's progress bar)
STEPS = (
    "allocating the EUI-64s",
    "generating key pairs on the hub",
    "issuing and staging 5 certificates",
    "staging trust anchors and the installer credential",
    "committing",
)


def provision(  # noqa: C901 - one run, step by step
    client: Any,
    db: ProvisionDB,
    ca: TestCA,
    *,
    link_ca: LinkCA | None = None,
    keystore: Path,
    force: bool = False,
    oui: str | None = None,
    installer_id: str | None = None,
    port: str | None = None,
    step: Callable[[str], None] = lambda s: None,
    after_stage: Callable[[str], None] | None = None,
) -> Result:
    """One provisioning run over a LocalPortClient; `step(text)` after each
    of the len(STEPS) steps. `after_stage(name)` is a test hook called after
    each step on the hub (to interrupt a run)."""
    from chubcore.localport import LocalPortError
    info = client.call("prov_info")
    if info["provisioned"] and not force:
        known = db.hub(info["chf_eui"])
        if known and known["state"] != "provisioned":
            # a run of ours whose answer to the commit was lost: the hub has it if our credential opens it
            try:
                client.authenticate(bytes.fromhex(known["installer_key"]))
            except LocalPortError:
                known = None
            else:
                db.record_hub(known["chf_eui"], known["gpf_eui"], known["run"], "provisioned", known["installer_id"],
                              bytes.fromhex(known["installer_key"]), port, info["gen"], None)
                known = db.hub(info["chf_eui"])
        if known and known["state"] == "provisioned" and known["gen"] == info["gen"]:
            return Result(info["chf_eui"], info["gpf_eui"], info["gen"], known["installer_id"], False,
                          json.loads(known["certs"] or "{}"))
        raise AlreadyProvisioned(f"the hub is already provisioned (CHF {info['chf_eui']}, generation {info['gen']}"
                                 f"{'' if known else ', not by this laptop'}): --force re-provisions it")
    anchors = test_dcc_anchors(keystore)
    chf, gpf, run = db.allocate(oui)
    step(f"allocated CHF {chf} and GPF {gpf}")
    inst_id = (installer_id or getpass.getuser() or "installer")[:32]
    key = secrets.token_bytes(32)
    # recorded before the hub can hold it: an interrupted commit never strands a hub
    db.record_hub(chf, gpf, run, "pending", inst_id, key, port)
    nonce = secrets.token_bytes(16)
    begun = client.call("prov_begin", chf_eui=chf, gpf_eui=gpf, nonce=nonce.hex(), force=force, timeout=60)
    gen = begun["gen"]
    for name, eui in (("chf", chf), ("gpf", gpf)):
        dev = begun[name]
        if dev["eui"].upper() != eui:
            raise ProvisionError(f"the hub staged {name} EUI {dev['eui']}, not {eui}")
        _verify_pop(nonce, dev)
    step("key pairs generated on the hub, proofs of possession verified")
    if after_stage:
        after_stage("begin")
    certs: dict[str, str] = {}
    for name in ("chf", "gpf"):
        dev = begun[name]
        for usage in ("ka", "ds"):
            der = ca.issue(bytes.fromhex(dev["eui"]), bytes.fromhex(dev[f"{usage}_pub"]), usage)
            certs[f"{name}_{usage}"] = der.hex()
            client.call("prov_stage", gen=gen, cert={"device": name, "usage": usage, "der": der.hex()})
            if after_stage:
                after_stage(f"cert {name}_{usage}")
    # the head-end link: a TLS client certificate for the hub's link key, and
    # the head-end link CA as the only anchor the hub accepts the head-end by
    link_pub = _verify_link_pop(nonce, chf, begun.get("link") or {})
    der = ca.issue_link(bytes.fromhex(chf), link_pub)
    certs["chf_link"] = der.hex()
    client.call("prov_stage", gen=gen, cert={"device": "chf", "usage": "link", "der": der.hex()})
    client.call("prov_stage", gen=gen, link_anchor=(link_ca or LinkCA(ca.folder)).der.hex())
    if after_stage:
        after_stage("cert chf_link")
    step("5 certificates issued and staged (GBCS KA and DS for the CHF and GPF, the head-end link's)")
    for name in ("chf", "gpf"):
        client.call("prov_stage", gen=gen, device=name, anchors=anchors)
    client.call("prov_stage", gen=gen, installer={"id": inst_id, "key": key.hex()})
    step(f"trust anchors ({', '.join(a['role'] for a in anchors)}) and the installer credential staged")
    if after_stage:
        after_stage("staged")
    done = client.call("prov_commit", gen=gen)
    db.record_hub(chf, gpf, run, "provisioned", inst_id, key, port, gen, certs)
    step(f"committed: generation {done['gen']}")
    if not done.get("applied", True):
        raise ProvisionError("committed, but the hub ran short of memory applying it: power-cycle the hub "
                             "(it finishes at boot), then run chub provision again to check")
    # the new credential must work: authenticate afresh and read back
    client.authenticate(key)
    back = client.call("prov_info")
    ident = client.call("identity")
    if not back["provisioned"] or back["gen"] != gen or back["chf_eui"].upper() != chf:
        raise ProvisionError(f"the hub does not report the committed provisioning: {back}")
    for name in ("chf", "gpf"):
        if ident[name]["ka_pub"] != begun[name]["ka_pub"] or ident[name]["ds_pub"] != begun[name]["ds_pub"]:
            raise ProvisionError(f"the hub's {name} keys are not the certified ones")
    return Result(chf, gpf, gen, inst_id, True, certs)


# --- the CLI ---------------------------------------------------------------------------


def register(main: Any) -> None:
    import click
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.table import Table

    @main.command("provision")
    @click.option("--port", default=None, help="The hub's local port URL (default: the running `chub sim`).")
    @click.option("--force", is_flag=True, help="Re-provision a hub that is already provisioned.")
    @click.option("--oui", default=None, help=f"OUI for the EUI-64s (fixed at first use; default {DEFAULT_OUI}).")
    @click.option("--installer", "installer_id", default=None, help="Installer id stored on the hub (default: user).")
    @click.option("--keystore", type=click.Path(path_type=Path), default=None,
                  help="GBCS keystore with the trust anchors (default: vectors/gbcs/keystore).")
    @click.option("--state-dir", type=click.Path(path_type=Path), default=None,
                  help="Where the EUI records, credentials and the test CA live (default .chub, or $CHUB_STATE).")
    @click.option("--timeout", type=float, default=10.0, show_default=True)
    @click.option("--json", "as_json", is_flag=True)
    def provision_cmd(port: str | None, force: bool, oui: str | None, installer_id: str | None,
                      keystore: Path | None, state_dir: Path | None, timeout: float, as_json: bool) -> None:
        """Give a hub its EUI-64s, on-device key pairs with certificates, trust anchors and an installer credential."""
        from .cli import _sim_port, _stderr

        old_state = os.environ.get("CHUB_STATE")
        if state_dir is not None:
            os.environ["CHUB_STATE"] = str(state_dir)
        port = port or _sim_port()
        err = _stderr()
        try:
            _run(port, force, oui, installer_id, keystore, timeout, as_json, err)
        finally:
            if old_state is None:
                os.environ.pop("CHUB_STATE", None)
            else:
                os.environ["CHUB_STATE"] = old_state

    def _run(port: str, force: bool, oui: str | None, installer_id: str | None, keystore: Path | None,
             timeout: float, as_json: bool, err: Any) -> None:
        import sys

        from chubcore.localport import LocalPortClient, LocalPortError

        # on a terminal: a bar naming the step under way (stderr); each done step stays as a line
        bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), console=err, transient=True)
        task = bar.add_task(STEPS[0], total=len(STEPS))

        def step(text: str) -> None:
            bar.console.print(f"  {text}")
            done = int(bar.tasks[0].completed) + 1
            bar.update(task, advance=1, refresh=True,
                       description=STEPS[done] if done < len(STEPS) else "checking the new credential")

        try:
            with LocalPortClient(port, timeout=timeout) as c, ProvisionDB() as db, bar:
                r = provision(c, db, TestCA(), keystore=keystore or keystore_dir(), force=force, oui=oui,
                              installer_id=installer_id, port=port, step=step)
        except AlreadyProvisioned as e:
            err.print(f"[red]refused:[/red] {e}")
            sys.exit(1)
        except ProvisionError as e:
            err.print(f"[red]provisioning failed:[/red] {e}")
            sys.exit(1)
        except LocalPortError as e:
            err.print(f"[red]the hub refused:[/red] {e}")
            sys.exit(2)
        except (OSError, TimeoutError) as e:
            err.print(f"[red]no answer from the hub on {port}:[/red] {e}")
            sys.exit(3)
        if as_json:
            click.echo(json.dumps({"chf_eui": r.chf_eui, "gpf_eui": r.gpf_eui, "gen": r.gen,
                                   "installer_id": r.installer_id, "changed": r.changed}))
            return
        if not r.changed:
            err.print(f"[green]already provisioned[/green] by this laptop (CHF {r.chf_eui}, generation {r.gen}): "
                      "nothing to do (--force re-provisions)")
            return
        t = Table(title="provisioned", show_header=False)
        t.add_row("CHF EUI-64", r.chf_eui)
        t.add_row("GPF EUI-64", r.gpf_eui)
        t.add_row("generation", str(r.gen))
        t.add_row("installer", r.installer_id)
        t.add_row("records", str(state_dir() / "provision.sqlite"))
        Console().print(t)
