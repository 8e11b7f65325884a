"""`chub provision` against the real hub on the emulated board: EUI-64s from
the laptop's OUI counter, key pairs made on the hub (the private keys are read
back from the board's flash after the run and never appear in anything the
hub sent), certificates checked with `cryptography`, idempotence, --force,
an interrupted run, bad inputs, and the installer credential in force."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from chub import provision as P
from chub.cli import main
from chubcore.localport import NOT_AUTHORISED, TEST_INSTALLER_KEY, LocalPortClient, LocalPortError
from chubcore.paths import default_heap, keystore_dir
from chubcore.records import ProvisionDB, ProvisionError
from mpy import run_mp

pytestmark = pytest.mark.skipif(not keystore_dir().is_dir(), reason="GBCS keystore (vectors) not available")

# The hub as a whole now leaves ~80 KB free in a 512k heap, fragmented enough
# that provisioning's 1-2 KB allocations fail now and then; these runs use
# PROVISION_HEAP (see docs/provisioning.md) until the hub's heap is slimmer.
PROVISION_HEAP = "1024k"


@pytest.fixture
def chub_dut(rig, hil_log, tmp_path: Path, hub_image: Path, request: pytest.FixtureRequest):  # noqa: ANN001, ANN201
    """The plugin's unix DUT (the `hub` fixture's) with a heap of at least PROVISION_HEAP."""
    from types import SimpleNamespace

    from hil.dut import UnixDut
    from hil.system import attach_peripherals

    heap = request.config.getoption("--chub-heap") or default_heap()
    if int(heap.rstrip("kK")) < int(PROVISION_HEAP[:-1]):
        heap = PROVISION_HEAP
    attach_peripherals(SimpleNamespace(rig=rig, log=hil_log, local_port_url=rig.local_port_url, han_demo=False))
    d = UnixDut(hub_image, tmp_path / "board", rig, hil_log, heap=heap)
    pos = hil_log.position
    d.start()
    d.wait_ready(timeout=30, after=pos)
    yield d
    d.stop()


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "state"
    monkeypatch.setenv("CHUB_STATE", str(d))
    return d


class RecordingClient(LocalPortClient):
    """Keeps every byte the hub sent."""

    def __init__(self, *a, **kw) -> None:  # noqa: ANN002, ANN003
        self.received = bytearray()
        super().__init__(*a, **kw)

    def _absorb(self, data: bytes) -> None:
        self.received += data
        super()._absorb(data)


def _flash_file(dut, name: str) -> bytes:  # noqa: ANN001
    """A file read straight from the board's flash file (the hub stopped)."""
    code = (
        "import vfs, binascii\nfrom blockdev import FileBlockDevice\n"
        f"bd = FileBlockDevice({str(dut.flash_path)!r}, {dut.flash_blocks})\n"
        "vfs.mount(vfs.VfsLfs2(bd), '/f')\n"
        f"print(binascii.hexlify(open('/f/{name}', 'rb').read()).decode())\n"
    )
    r = run_mp(code=code)
    assert r.returncode == 0, r.stderr
    return bytes.fromhex(r.stdout.strip())


def _flash_kv(dut, name: str) -> dict:  # noqa: ANN001
    return json.loads(_flash_file(dut, f"{name}.kv")[9:])


def _run(url: str, *args: str) -> object:
    return CliRunner().invoke(main, ["provision", "--port", url, *args])


def _private_matches(d_hex: str, q_hex: str) -> bool:
    d = ec.derive_private_key(int(d_hex, 16), ec.SECP256R1())
    from cryptography.hazmat.primitives import serialization

    q = d.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return q.hex() == q_hex


def test_provision_issues_certificates_and_keeps_private_keys_on_the_hub(hub, state: Path) -> None:
    with RecordingClient(hub.dut.local_port_url, timeout=10) as c, ProvisionDB() as db:
        before = c.call("identity")
        r = P.provision(c, db, P.TestCA(), keystore=keystore_dir(), installer_id="alice")
        sent = bytes(c.received)
        ident = c.call("identity")
        # the commit's apply loads the CHF's credentials code (with its DER and
        # P-256, ~2.9 KB) for the anchor cells: it goes after
        held = set(c.call("status", modules=True)["modules"])
    assert not held & {"chf.credentials", "gbcs.der", "gbcs.p256"}, sorted(held & {"chf.credentials", "gbcs.der",
                                                                                   "gbcs.p256"})
    assert r.changed and r.gen == 1 and r.installer_id == "alice"
    assert (r.chf_eui, r.gpf_eui) == ("02CB0F0000000000", "02CB0F0000000001")
    assert ident["chf"]["eui"].upper() == r.chf_eui and ident["gpf"]["eui"].upper() == r.gpf_eui
    assert ident["chf"]["ka_pub"] != before["chf"]["ka_pub"]  # new key pairs, made on the hub
    ca = x509.load_pem_x509_certificate((state / "ca" / "ca.pem").read_bytes())
    for name in ("chf", "gpf"):
        for usage in ("ka", "ds"):
            cert = x509.load_der_x509_certificate(bytes.fromhex(r.certs[f"{name}_{usage}"]))
            ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
            from cryptography.hazmat.primitives import serialization

            q = cert.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
            assert q.hex() == ident[name][f"{usage}_pub"]
            ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
            assert ku.key_agreement == (usage == "ka") and ku.digital_signature == (usage == "ds")
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            assert san.critical and cert.subject == x509.Name([])
            assert P.eui_from_certificate(cert.public_bytes(serialization.Encoding.DER)).hex() == ident[name]["eui"]
    hub.dut.stop()
    idkv = _flash_kv(hub.dut, "identity")
    for name in ("chf", "gpf"):
        rec = idkv[name]
        for usage in ("ka", "ds"):
            d = rec[f"{usage}_d"]
            assert _private_matches(d, ident[name][f"{usage}_pub"])  # the certified key is this private key's
            # neither hex nor raw bytes of any private key ever came over the local port
            assert d.encode() not in sent.lower() and bytes.fromhex(d) not in sent
            assert _flash_file(hub.dut, f"cert_{name}_{usage}.der").hex() == r.certs[f"{name}_{usage}"]
    # the head-end link: a TLS client certificate for a key made on the hub, and the link CA as its anchor
    link = x509.load_der_x509_certificate(bytes.fromhex(r.certs["chf_link"]))
    ca.public_key().verify(link.signature, link.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
    eku = link.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
    assert P.eui_from_certificate(bytes.fromhex(r.certs["chf_link"])).hex() == ident["chf"]["eui"]
    key = _flash_kv(hub.dut, "link")["key"]
    assert _private_matches(key["d"], key["q"]) and key["q"] in r.certs["chf_link"]
    assert key["d"].encode() not in sent.lower() and bytes.fromhex(key["d"]) not in sent
    assert _flash_file(hub.dut, "cert_chf_link.der").hex() == r.certs["chf_link"]
    assert _flash_file(hub.dut, "cert_link_anchor.der") == P.LinkCA().der
    prov = _flash_kv(hub.dut, "prov")
    assert "ka_d" not in json.dumps(prov) and "key" not in prov["state"]  # no private keys, no credential
    assert prov["applied"] == 1


def test_progress_on_a_terminal(hub, state: Path) -> None:
    """On a terminal, a progress bar names the step under way (stderr); the
    done steps stay as lines; stdout keeps the JSON."""
    import subprocess

    from chubcore.paths import venv_tool

    env = {**os.environ, "CHUB_STATE": str(state), "FORCE_COLOR": "1", "TTY_INTERACTIVE": "1", "COLUMNS": "100"}
    r = subprocess.run([venv_tool("chub"), "provision", "--port", hub.local_port_url, "--json"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["changed"] is True
    for doing in P.STEPS:
        assert doing in r.stderr, (doing, r.stderr[-2000:])
    assert "5/5" in r.stderr and "committed: generation" in r.stderr


def test_rerun_is_a_no_op_force_reprovisions_and_euis_are_never_reused(hub, state: Path) -> None:
    url = hub.dut.local_port_url
    r1 = _run(url, "--json")
    assert r1.exit_code == 0, r1.output
    first = json.loads(r1.output.strip().splitlines()[-1])
    r2 = _run(url)
    assert r2.exit_code == 0 and "already provisioned" in r2.output and "nothing to do" in r2.output
    # another laptop (no records of this hub) is refused without --force
    other = CliRunner().invoke(main, ["provision", "--port", url, "--state-dir", str(state.parent / "other")])
    assert other.exit_code != 0 and "already provisioned" in other.output
    r3 = _run(url, "--force", "--json")
    assert r3.exit_code == 0, r3.output
    second = json.loads(r3.output.strip().splitlines()[-1])
    assert second["gen"] == 2 and second["chf_eui"] not in (first["chf_eui"], first["gpf_eui"])
    with ProvisionDB() as db:
        assert db.allocated() == [f"02CB0F000000000{i}" for i in range(4)]
        old, new = db.hub(first["chf_eui"]), db.hub(second["chf_eui"])
    # the first credential no longer opens the hub; the new one does
    with LocalPortClient(url, credential=bytes.fromhex(old["installer_key"])) as c:
        with pytest.raises(LocalPortError) as ei:
            c.call("device_log_list")
        assert ei.value.status == NOT_AUTHORISED
    with LocalPortClient(url, credential=bytes.fromhex(new["installer_key"])) as c:
        assert c.call("device_log_list")["total"] == 0
    with LocalPortClient(url, credential=TEST_INSTALLER_KEY) as c:  # the factory credential is gone too
        with pytest.raises(LocalPortError):
            c.call("logs")


def test_interrupted_run_leaves_the_hub_unprovisioned(hub) -> None:
    url = hub.dut.local_port_url

    class Cut(Exception):
        pass

    def cut(step: str) -> None:
        if step == "cert chf_ds":
            raise Cut(step)

    with LocalPortClient(url, timeout=10) as c, ProvisionDB() as db:
        before = c.call("identity")
        with pytest.raises(Cut):
            P.provision(c, db, P.TestCA(), keystore=keystore_dir(), after_stage=cut)
        info = c.call("prov_info")
        assert not info["provisioned"] and info["staged"]
        assert c.call("identity") == before  # nothing of the run is in force
    # the laptop "crashed"; the hub is power-cycled: the stage is gone
    hub.dut.stop()
    pos = hub.log.position
    hub.dut.start()
    hub.dut.wait_ready(30, after=pos)
    with LocalPortClient(url, timeout=10) as c, ProvisionDB() as db:
        info = c.call("prov_info")
        assert not info["provisioned"] and not info["staged"]
        assert c.call("identity") == before
        r = P.provision(c, db, P.TestCA(), keystore=keystore_dir())
        # the interrupted run's EUI-64s are burnt, not handed out again
        assert r.chf_eui == "02CB0F0000000002"


def test_hub_refuses_bad_provisioning_steps(hub) -> None:
    with LocalPortClient(hub.dut.local_port_url, timeout=10) as c, ProvisionDB() as db:
        ca = P.TestCA()
        nonce = os.urandom(16).hex()

        def bad(cmd: str, want: str, **kw: object) -> None:
            with pytest.raises(LocalPortError) as ei:
                c.call(cmd, **kw)
            assert ei.value.status == 5 and want in ei.value.message, ei.value.message

        bad("prov_commit", "nothing staged", gen=1)
        bad("prov_begin", "different", chf_eui="02CB0F0000000010", gpf_eui="02CB0F0000000010", nonce=nonce)
        bad("prov_begin", "group address", chf_eui="03CB0F0000000010", gpf_eui="02CB0F0000000011", nonce=nonce)
        bad("prov_begin", "nonce", chf_eui="02CB0F0000000010", gpf_eui="02CB0F0000000011", nonce="00")
        b = c.call("prov_begin", chf_eui="02CB0F0000000010", gpf_eui="02CB0F0000000011", nonce=nonce)
        g = b["gen"]
        bad("prov_stage", "stale", gen=g + 1, installer={"id": "x", "key": "00" * 32})
        # a certificate for another key (the GPF's KA key offered as the CHF's)
        wrong = ca.issue(bytes.fromhex(b["chf"]["eui"]), bytes.fromhex(b["gpf"]["ka_pub"]), "ka")
        bad("prov_stage", "not for the staged key", gen=g, cert={"device": "chf", "usage": "ka", "der": wrong.hex()})
        bad("prov_stage", "not a DER", gen=g, cert={"device": "chf", "usage": "ka", "der": "0102"})
        bad("prov_stage", "installer key", gen=g, installer={"id": "x", "key": "00" * 8})
        bad("prov_stage", "bad trust anchor", gen=g, device="chf", anchors=[{"eui": "00", "role": "acb"}])
        bad("prov_stage", "needs trust anchors", gen=g, device="chf", anchors=[])
        bad("prov_stage", "device chf|gpf", gen=g, device="esme", anchors=[])
        good = ca.issue(bytes.fromhex(b["chf"]["eui"]), bytes.fromhex(b["chf"]["ka_pub"]), "ka")
        r = c.call("prov_stage", gen=g, cert={"device": "chf", "usage": "ka", "der": good.hex()})
        assert "chf_ds certificate" in r["missing"] and "installer credential" in r["missing"]
        bad("prov_commit", "missing", gen=g)
        assert not c.call("prov_info")["provisioned"]
        assert c.call("prov_abort")["discarded"]
        with pytest.raises(ProvisionError, match="OUI"):
            db.allocate("01CB0F")  # group bit
        db.allocate()
        with pytest.raises(ProvisionError, match="refusing --oui"):
            db.allocate("0ACB0F")


def test_strangers_cannot_change_the_hub(hub) -> None:
    """Unauthenticated writes and personal-data reads get NotAuthorised; open
    reads still work; a captured session tag cannot be replayed."""
    url = hub.dut.local_port_url
    with LocalPortClient(url, credential=False) as c:
        assert c.call("status")["board"] == "unix"
        assert c.call("identity")["chf"]["eui"]
        assert c.call("prov_info")["credential"] is True
        for cmd, kw in (("device_log_add", {"eui": "00DB1234567890A0", "type": 1, "install_code": "00" * 18}),
                        ("device_log_remove", {"eui": "00DB1234567890A0"}), ("send_gbcs", {"frame": "00"}),
                        ("device_log_list", {}), ("logs", {}), ("provision_test_dcc", {"anchors": []}),
                        ("console_release", {}),
                        ("prov_begin", {"chf_eui": "02CB0F0000000010", "gpf_eui": "02CB0F0000000011"})):
            with pytest.raises(LocalPortError) as ei:
                c.call(cmd, **kw)
            assert ei.value.status == NOT_AUTHORISED, (cmd, ei.value)
        with pytest.raises(LocalPortError) as ei:
            c.call("auth", mac="00" * 32)  # no challenge
        assert ei.value.status == NOT_AUTHORISED
        with pytest.raises(LocalPortError) as ei:
            c.authenticate(b"\x11" * 32)  # wrong credential
        assert "wrong installer credential" in ei.value.message
    from chubcore.localport import request_tag

    a = LocalPortClient(url)  # the emulated board's factory (test) credential
    assert a.call("device_log_list")["total"] == 0
    with pytest.raises(LocalPortError, match="not shared with a REPL"):
        a.call("console_release")  # the emulated board's console is a TCP line, not a REPL
    a.end_session()
    assert a.call("device_log_list")["total"] == 0  # a fresh session
    key, n = a._session, a._n
    assert key is not None and n == 1
    a._session = None  # leave without ending the session
    a.close()
    with LocalPortClient(url, credential=False) as b:
        # a bystander replaying the request it saw is refused
        with pytest.raises(LocalPortError) as ei:
            b.call("device_log_list", auth=[n, request_tag(key, n, {"cmd": "device_log_list"}).hex()])
        assert ei.value.status == NOT_AUTHORISED and "stale" in ei.value.message
        # a tag for another command, or a made-up one, is refused too
        with pytest.raises(LocalPortError) as ei:
            b.call("logs", auth=[n + 1, request_tag(key, n + 1, {"cmd": "device_log_list"}).hex()])
        assert "bad session tag" in ei.value.message
        # only whoever holds the session key can go on
        assert b.call("logs", auth=[n + 2, request_tag(key, n + 2, {"cmd": "logs"}).hex()])["which"] == "event"
