"""The laptop's provisioning records (docs/provisioning.md): an SQLite file
in the state dir with the OUI and EUI counter, every EUI-64 handed out, and
every hub with its installer credential. `chub provision` writes them; the
local-port client reads a hub's installer credential from them.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from .paths import state_dir

DEFAULT_OUI = "02CB0F"  # locally administered (bit 1 of the first octet): a test OUI


class ProvisionError(Exception):
    """A provisioning run that cannot go on; the message says why."""


class ProvisionDB:
    """SQLite: the OUI and EUI counter, every EUI-64 handed out, every hub and
    its installer credential. Allocation is one IMMEDIATE transaction, so two
    runs never get the same EUI-64."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else state_dir() / "provision.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS config (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS euis (eui TEXT PRIMARY KEY, role TEXT NOT NULL, run INTEGER NOT NULL,
                                             allocated_utc TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS hubs (chf_eui TEXT PRIMARY KEY, gpf_eui TEXT NOT NULL, run INTEGER NOT NULL,
                                             state TEXT NOT NULL, gen INTEGER, installer_id TEXT NOT NULL,
                                             installer_key TEXT NOT NULL, port TEXT, certs TEXT,
                                             updated_utc TEXT NOT NULL);
            """
        )

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> ProvisionDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM config WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def oui(self, configured: str | None = None) -> str:
        """The OUI, fixed at first use (a different --oui later is refused)."""
        have = self.get("oui")
        want = _norm_oui(configured) if configured else None
        if have is None:
            have = want or DEFAULT_OUI
            self.db.execute("INSERT INTO config VALUES ('oui', ?), ('next', '0')", (have,))
        elif want and want != have:
            raise ProvisionError(f"this laptop's records use OUI {have}; refusing --oui {want} "
                                 f"(use another --state-dir for another OUI)")
        return have

    def allocate(self, oui: str | None = None) -> tuple[str, str, int]:
        """(chf_eui, gpf_eui, run): the next even counter for the CHF, +1 for the GPF."""
        o = self.oui(oui)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            n = int(self.get("next", "0") or 0)
            n += n & 1
            if n + 1 >= 1 << 40:
                raise ProvisionError(f"OUI {o}: all EUI-64s are used")
            chf, gpf = f"{o}{n:010X}", f"{o}{n + 1:010X}"
            now = _now()
            run = n // 2 + 1
            self.db.execute("INSERT INTO euis VALUES (?, 'chf', ?, ?), (?, 'gpf', ?, ?)", (chf, run, now, gpf, run, now))
            self.db.execute("UPDATE config SET value = ? WHERE key = 'next'", (str(n + 2),))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return chf, gpf, run

    def record_hub(self, chf: str, gpf: str, run: int, state: str, installer_id: str, key: bytes,
                   port: str | None = None, gen: int | None = None, certs: dict | None = None) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO hubs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (chf.upper(), gpf.upper(), run, state, gen, installer_id, key.hex(), port,
             json.dumps(certs) if certs else None, _now()),
        )

    def hub(self, chf: str) -> dict[str, Any] | None:
        cur = self.db.execute("SELECT * FROM hubs WHERE chf_eui = ?", (chf.upper(),))
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cur.description], row, strict=True))

    def allocated(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT eui FROM euis ORDER BY eui")]

    @classmethod
    def lookup_credential(cls, chf_eui: str) -> bytes | None:
        """The installer credential recorded for a hub, if this laptop has one."""
        path = state_dir() / "provision.sqlite"
        if not path.exists():
            return None
        with cls(path) as db:
            h = db.hub(chf_eui)
        return bytes.fromhex(h["installer_key"]) if h else None


def _norm_oui(v: str) -> str:
    s = v.replace(":", "").replace("-", "").upper()
    if len(s) != 6 or any(c not in "0123456789ABCDEF" for c in s):
        raise ProvisionError(f"{v!r} is not an OUI (6 hex digits)")
    if int(s[:2], 16) & 1:
        raise ProvisionError(f"OUI {s} has the group bit set")
    return s


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
