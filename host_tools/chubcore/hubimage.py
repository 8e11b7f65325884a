"""The hub's signed application image (docs/firmware-update.md).

One file: a fixed header, the manifest (canonical JSON), a 64-byte ECDSA
P-256 signature (r || s, over SHA-256 of the manifest bytes) by the
manufacturer key, then the file bodies in manifest order::

    0      4   b"CHIM"
    4      1   format (1)
    5      1   0
    6      2   M, the manifest's length (big-endian)
    8      M   manifest: {"board", "version", "git", "built_utc",
                          "files": [[path, size, sha256 hex], ...],
                          "size": sum of the sizes, "total": sha256 hex}
    8+M    64  signature (all zero: unsigned)
    72+M   ... the bodies

`total` is SHA-256 of the bodies concatenated. The hub parses the same
layout in firmware/update/image.py; the CS05a form (the image inside a
ZigBee OTA file, as GBCS carries it) is `ota_wrap` / `ota_unwrap`.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

MAGIC = b"CHIM"
FORMAT = 1
HEAD = 8
SIG_LEN = 64
MAX_MANIFEST = 16384  # the hub's bound too (firmware/update/image.py)
UNSIGNED = bytes(SIG_LEN)

# The CS05a form: a ZigBee OTA upgrade file (ZCL spec 11.4) holding the image
# as its upgrade-image sub-element, followed (GBCS 11.2) by the 32-byte
# Manufacturer Image Hash, SHA-256 of everything before it.
OTA_FILE_ID = 0x0BEEF11E
OTA_HEADER_LEN = 56
OTA_MANUFACTURER = 0x1234  # private manufacturer code of the open hub
OTA_IMAGE_TYPE_HUB = 0x0100  # the CH's own application (0x0000-0x00FF are the meters', docs/ota-han.md)
OTA_TAG_UPGRADE_IMAGE = 0x0000


class ImageError(ValueError):
    """The file is not a well-formed hub image, or it does not verify."""


@dataclass
class Parsed:
    manifest: dict
    manifest_bytes: bytes
    signature: bytes
    body_offset: int

    @property
    def signed(self) -> bool:
        return self.signature != UNSIGNED


def version_tuple(v: str) -> tuple[int, ...]:
    """"1.2.3" -> (1, 2, 3); the hub compares versions the same way."""
    try:
        parts = tuple(int(p) for p in v.split("."))
    except ValueError:
        raise ImageError(f"version {v!r} is not dotted numbers") from None
    if not 1 <= len(parts) <= 4 or any(not 0 <= p <= 0xFFFF for p in parts):
        raise ImageError(f"version {v!r}: 1 to 4 numbers of 0..65535")
    return parts


def canonical(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def pack(image_dir: Path, key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
    """The image file for a `chub build` image folder (its image.json names
    the files, the board, version and git revision); signed when key is given."""
    doc = json.loads((image_dir / "image.json").read_text())
    if doc.get("frozen"):
        raise ImageError(f"{doc['board']} freezes the app into its MicroPython binary: no file image (docs/firmware-update.md)")
    version_tuple(doc["version"])
    files, bodies = [], []
    for name in doc["modules"]:
        data = (image_dir / name).read_bytes()
        files.append([name, len(data), hashlib.sha256(data).hexdigest()])
        bodies.append(data)
    body = b"".join(bodies)
    manifest = {
        "board": doc["board"], "version": doc["version"], "git": doc["git"], "built_utc": doc.get("built_utc", ""),
        "files": files, "size": len(body), "total": hashlib.sha256(body).hexdigest(),
    }
    blob = _assemble(canonical(manifest), UNSIGNED, body)
    return sign(blob, key) if key is not None else blob


def _assemble(mbytes: bytes, sig: bytes, body: bytes) -> bytes:
    if len(mbytes) > MAX_MANIFEST:
        raise ImageError(f"manifest of {len(mbytes)} bytes is over {MAX_MANIFEST}")
    return MAGIC + struct.pack(">BBH", FORMAT, 0, len(mbytes)) + mbytes + sig + body


def parse(blob: bytes) -> Parsed:
    """Header and manifest (not the signature, not the bodies)."""
    if len(blob) < HEAD or blob[:4] != MAGIC:
        raise ImageError("not a hub image (no CHIM header)")
    fmt, _, m = struct.unpack(">BBH", blob[4:HEAD])
    if fmt != FORMAT:
        raise ImageError(f"image format {fmt}, this tool reads {FORMAT}")
    if m > MAX_MANIFEST or len(blob) < HEAD + m + SIG_LEN:
        raise ImageError("truncated header or manifest")
    mbytes = blob[HEAD:HEAD + m]
    try:
        manifest = json.loads(mbytes)
    except ValueError as e:
        raise ImageError(f"manifest is not JSON: {e}") from None
    _check_manifest(manifest)
    return Parsed(manifest, mbytes, blob[HEAD + m:HEAD + m + SIG_LEN], HEAD + m + SIG_LEN)


def _check_manifest(m: dict) -> None:
    for k, t in (("board", str), ("version", str), ("git", str), ("files", list), ("size", int), ("total", str)):
        if not isinstance(m.get(k), t):
            raise ImageError(f"manifest: {k} missing or not {t.__name__}")
    version_tuple(m["version"])
    total = 0
    for f in m["files"]:
        if not (isinstance(f, list) and len(f) == 3 and isinstance(f[0], str) and isinstance(f[1], int)
                and isinstance(f[2], str) and len(f[2]) == 64):
            raise ImageError(f"manifest: bad file entry {f!r}")
        if f[0].startswith("/") or ".." in f[0].split("/") or not f[0]:
            raise ImageError(f"manifest: bad file path {f[0]!r}")
        total += f[1]
    if total != m["size"]:
        raise ImageError("manifest: size is not the sum of the file sizes")


def sign(blob: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The same image with its manifest signed by `key` (P-256)."""
    p = parse(blob)
    if not isinstance(key.curve, ec.SECP256R1):
        raise ImageError("the manufacturer key must be P-256")
    der = key.sign(p.manifest_bytes, ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return blob[:HEAD + len(p.manifest_bytes)] + sig + blob[p.body_offset:]


def verify(blob: bytes, pub: ec.EllipticCurvePublicKey | None = None, board: str | None = None) -> Parsed:
    """Every check the hub makes before it stages an image: the manifest, the
    bodies against their hashes and the total, the length, the board (when
    given) and the signature (when a public key is given). Raises ImageError."""
    p = parse(blob)
    m = p.manifest
    body = blob[p.body_offset:]
    if len(body) != m["size"]:
        raise ImageError(f"body is {len(body)} bytes, the manifest says {m['size']} (truncated or padded)")
    off = 0
    for name, size, digest in m["files"]:
        if hashlib.sha256(body[off:off + size]).hexdigest() != digest:
            raise ImageError(f"{name}: SHA-256 does not match the manifest")
        off += size
    if hashlib.sha256(body).hexdigest() != m["total"]:
        raise ImageError("total SHA-256 does not match the manifest")
    if board is not None and m["board"] != board:
        raise ImageError(f"image for board {m['board']!r}, not {board!r}")
    if pub is not None:
        if not p.signed:
            raise ImageError("image is not signed")
        r, s = int.from_bytes(p.signature[:32], "big"), int.from_bytes(p.signature[32:], "big")
        try:
            pub.verify(encode_dss_signature(r, s), p.manifest_bytes, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise ImageError("signature does not verify with the manufacturer key") from None
    return p


def inspect(blob: bytes) -> dict:
    p = parse(blob)
    m = dict(p.manifest)
    m["signed"] = p.signed
    m["bytes"] = len(blob)
    m["files"] = len(p.manifest["files"])
    return m


# -- keys --------------------------------------------------------------------


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ImageError(f"{path}: not a P-256 private key")
    return key


def load_public(path: Path) -> ec.EllipticCurvePublicKey:
    """A PEM public or private key file, or the 65-byte point as hex text."""
    data = path.read_bytes()
    if data.startswith(b"-----BEGIN"):
        if b"PRIVATE" in data:
            return load_key(path).public_key()
        pub = serialization.load_pem_public_key(data)
    else:
        pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes.fromhex(data.decode().strip()))
    if not isinstance(pub, ec.EllipticCurvePublicKey):
        raise ImageError(f"{path}: not an EC public key")
    return pub


def anchor_bytes(pub: ec.EllipticCurvePublicKey) -> bytes:
    """The manufacturer anchor as the hub stores it: the uncompressed point."""
    return pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


# -- the CS05a form: ZigBee OTA file + Manufacturer Image Hash ----------------


def ota_file_version(version: str) -> int:
    """The OTA header's file version of a hub version: a byte per part, the
    first part in the top byte, missing parts 0 ("1.2.3" -> 0x01020300).
    The hub refuses a CS05a file whose header says otherwise."""
    v = version_tuple(version)
    if any(p > 0xFF for p in v):
        raise ImageError(f"version {version!r}: an OTA file version takes parts of 0..255")
    v += (0,) * (4 - len(v))
    return v[0] << 24 | v[1] << 16 | v[2] << 8 | v[3]


def ota_wrap(blob: bytes, file_version: int | None = None) -> bytes:
    """The OTA Upgrade Image GBCS distributes (CS05a): the OTA header (file
    version `ota_file_version` of the image's version unless given), one
    upgrade-image sub-element holding `blob`, then SHA-256 of all that (32 bytes)."""
    p = parse(blob)
    if file_version is None:
        file_version = ota_file_version(p.manifest["version"])
    total = OTA_HEADER_LEN + 6 + len(blob)
    name = f"chub {p.manifest['board']} {p.manifest['version']}".encode()[:32].ljust(32, b"\0")
    head = struct.pack("<IHHHHHIH", OTA_FILE_ID, 0x0100, OTA_HEADER_LEN, 0, OTA_MANUFACTURER,
                       OTA_IMAGE_TYPE_HUB, file_version, 0x0002) + name + struct.pack("<I", total)
    assert len(head) == OTA_HEADER_LEN
    ota = head + struct.pack("<HI", OTA_TAG_UPGRADE_IMAGE, len(blob)) + blob
    return ota + hashlib.sha256(ota).digest()


def ota_unwrap(data: bytes) -> bytes:
    """The hub image inside a CS05a OTA Upgrade Image (hash and header
    checked, the header's file version against the manifest's version)."""
    if len(data) < OTA_HEADER_LEN + 6 + 32:
        raise ImageError("OTA image too short")
    ota, digest = data[:-32], data[-32:]
    if hashlib.sha256(ota).digest() != digest:
        raise ImageError("OTA Manufacturer Image Hash does not match")
    fid, _, hlen, _, manu, itype, fv, _ = struct.unpack("<IHHHHHIH", ota[:20])
    total = struct.unpack("<I", ota[52:56])[0]
    if fid != OTA_FILE_ID or hlen != OTA_HEADER_LEN or total != len(ota):
        raise ImageError("not an OTA upgrade file of the expected header")
    if (manu, itype) != (OTA_MANUFACTURER, OTA_IMAGE_TYPE_HUB):
        raise ImageError(f"OTA image for manufacturer {manu:#06x} type {itype:#06x}, not the hub's")
    tag, n = struct.unpack("<HI", ota[hlen:hlen + 6])
    if tag != OTA_TAG_UPGRADE_IMAGE or hlen + 6 + n != len(ota):
        raise ImageError("OTA sub-element is not one upgrade image")
    blob = ota[hlen + 6:]
    version = parse(blob).manifest["version"]
    try:
        want = ota_file_version(version)
    except ImageError:
        want = None
    if fv != want:
        raise ImageError(f"OTA header file version {fv:08x} is not the manifest's version {version}")
    return blob


# -- the installer's path: the image over the local port -----------------------

PIECE = 1536  # bytes per image_write (firmware/update/commands.py PIECE)


def upload(call, blob: bytes, progress=None, piece: int = PIECE) -> dict:
    """Send `blob` with the hub's image_* commands (`call(cmd, **args)`, a
    LocalPortClient's or a HubControl's) from where the hub says it is
    (a resumed download continues), then image_end; returns the hub's status.
    progress(done, total) after each piece."""
    off = call("image_write", offset=0, data=blob[:piece].hex())["received"]
    while off < len(blob):
        n = call("image_write", offset=off, data=blob[off:off + piece].hex())["received"]
        if n <= off:
            raise ImageError(f"the hub stopped taking the image at {off}")
        off = n
        if progress:
            progress(off, len(blob))
    return call("image_end")
