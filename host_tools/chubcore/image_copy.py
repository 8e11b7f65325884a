"""A built app image onto a board's file system with mpremote, and the ready
check after its reset: the steps every board's flashing shares (the real
boards in `chub flash`, the emulated board in hil/flash_unix.py).

mpremote copies the image (main.py last, so a cut copy never boots) and
verifies every file by SHA-256 on the board; the reset board must then answer
`status` with the image's version.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .localport import LocalPortClient

Progress = Callable[[str, int, int], None]  # (task, done, total)


class FlashError(Exception):
    """A flash step failed; the board is not reported as flashed."""


def image_files(image: Path) -> tuple[dict, list[str]]:
    """image.json and the files to copy, main.py last (a cut copy never boots)."""
    doc_path = image / "image.json"
    if not doc_path.exists():
        raise FlashError(f"{image} is not a built image (no image.json): run chub build first")
    doc = json.loads(doc_path.read_text())
    files = sorted(doc["files"], key=lambda f: (f in ("main.py", "boot.py"), f))
    for f in files:
        if not (image / f).is_file():
            raise FlashError(f"{image / f} is missing from the image: rebuild it")
        if hashlib.sha256((image / f).read_bytes()).hexdigest() != doc["files"][f]:
            raise FlashError(f"{image / f} does not match image.json: rebuild the image")
    return doc, files


def open_transport(device: str) -> Any:
    from mpremote.transport import TransportError
    from mpremote.transport_serial import SerialTransport

    try:
        return SerialTransport(device, baudrate=115200)
    except TransportError as e:
        raise FlashError(f"cannot open {device}: {e}") from None


def copy_image(t: Any, image: Path, root: str, progress: Progress) -> dict:
    """Copy the image under `root` (modules in root/lib, main.py in root),
    replacing the old app (data elsewhere is kept), then check every file's
    SHA-256 on the board."""
    from mpremote.transport import TransportError

    doc, files = image_files(image)
    lib = root.rstrip("/") + "/lib"
    base = root.rstrip("/") or ""

    def dest(f: str) -> str:
        return f"{base}/{f}" if f in ("main.py", "boot.py") else f"{lib}/{f}"

    try:
        # the old app goes first: main.py (so nothing half-new boots), then lib
        t.exec(f"import os\ntry:\n os.remove({base + '/main.py'!r})\nexcept OSError:\n pass\n"
               f"def rm(p):\n try:\n  for e in os.ilistdir(p):\n   q=p+'/'+e[0]\n   rm(q) if e[1]==0x4000 "
               f"else os.remove(q)\n  os.rmdir(p)\n except OSError:\n  pass\nrm({lib!r})\nos.mkdir({lib!r})")
        dirs = sorted({str(Path(dest(f)).parent) for f in files} - {lib, base or "/"})
        for d in dirs:
            t.exec(f"import os\ntry:\n os.mkdir({d!r})\nexcept OSError:\n pass")
        total = sum((image / f).stat().st_size for f in files)
        done = 0
        for f in files:
            data = (image / f).read_bytes()
            t.fs_writefile(dest(f), data, chunk_size=2048,
                           progress_callback=lambda n, _s, d0=done: progress("copy", d0 + n, total))
            done += len(data)
        progress("copy", total, total)
        bad = []
        for i, f in enumerate(files):
            got = t.fs_hashfile(dest(f), "sha256").hex()
            if got != doc["files"][f]:
                bad.append(f)
            progress("check", i + 1, len(files))
    except TransportError as e:
        raise FlashError(f"copying the app failed: {e}") from None
    if bad:
        raise FlashError(f"{len(bad)} file(s) differ on the board after the copy ({', '.join(bad[:3])}): "
                         "the board is NOT flashed")
    return doc


def wait_ready(url: str, doc: dict, timeout: float) -> dict:
    """The reset board must answer `status` with the image's version."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with LocalPortClient(url, timeout=3) as c:
                st = c.call("status")
            if st.get("version") != doc["version"] or st.get("git") != doc["git"]:
                raise FlashError(f"the hub runs {st.get('version')} ({st.get('git')}), not the flashed "
                                 f"{doc['version']} ({doc['git']})")
            return st
        except FlashError:
            raise
        except Exception as e:  # noqa: BLE001 - keep asking until the deadline
            last = e
            time.sleep(0.5)
    raise FlashError(f"the hub did not report ready on {url} within {timeout:g} s ({last})")
