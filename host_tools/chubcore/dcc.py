"""The test DCC's remote parties (data): their EUI-64s and the key usages the
GBCS keystore (vectors/gbcs/keystore) holds a certificate for, read by the
provisioning CLI (the hub's trust anchors) and by the head-end emulator.
"""

from __future__ import annotations

from pathlib import Path

ACB = bytes.fromhex("90B3D51F30000002")
SUPPLIER = bytes.fromhex("90B3D51F30010000")
NETWORK_OPERATOR = bytes.fromhex("90B3D51F30020000")
TRANSITIONAL_COS = bytes.fromhex("90B3D51F30000004")
WAN_PROVIDER = bytes.fromhex("90B3D51F30000007")
# role -> (EUI, key usages with a keystore certificate <eui>-<usage>.pem)
TEST_DCC = {
    "acb": (ACB, ("ds", "ka")),
    "supplier": (SUPPLIER, ("ds", "ka")),
    "network_operator": (NETWORK_OPERATOR, ("ds", "ka")),
    "transitional_cos": (TRANSITIONAL_COS, ("ds",)),
    "wan_provider": (WAN_PROVIDER, ("ds",)),  # its "-ka" file is another party's key
}


def anchor_cells(pem: Path, name: str) -> dict[str, str]:
    """One trust-anchor cell from a keystore certificate: {name_pub: the
    uncompressed P-256 public key, name_ski: its subject key identifier}, hex."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    raw = cert.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    return {f"{name}_pub": raw.hex(), f"{name}_ski": ski.hex()}
