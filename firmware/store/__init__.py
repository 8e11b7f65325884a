# Power-cut-safe storage for the hub: atomic key-value files (config/state)
# and append-only journals (queues, bounded logs). See docs/storage.md.
import os

from log import KindError
import store.journal  # the submodules, used as store.journal.Journal, store.kv.KV:
import store.kv  # names Journal, KV, home less in this package's dict


class Store:
    """One root folder of stores; instances are cached by name."""

    def __init__(self, root):
        self.root = root.rstrip("/") or "/"
        # the root's folders, made where missing
        cur = "/" if root.startswith("/") else ""
        for part in root.split("/"):
            if part:
                cur = cur + part if (not cur or cur.endswith("/")) else cur + "/" + part
                try:
                    os.mkdir(cur)
                except OSError:
                    pass  # exists (or is a mount point)
        self.stats = {}
        self._home = store.kv.home(self.root, self.stats)  # the KVs' shared part: their RAM copies by name
        self._journals = {}
        self.answers = {}  # gbcs.security Answers by path: one per file, shared by re-built RemoteParties

    def kv(self, name, keep=True):
        """The KV store `name` (a new KV object on the one RAM copy of every
        holder); keep=False asks for a cold one (no RAM copy, see KV): cold
        once any holder asks, since a read from flash is right for every
        holder."""
        return store.kv.KV(None, name, None, keep, self._home)

    def journal(self, name, **kw):
        j = self._journals.get(name)
        if j is None:
            j = store.journal.Journal(None, name, at=self._home, **kw)
            self._journals[name] = j
        return j

    def ringlog(self, name, capacity, keep_open=True, **kw):
        """A bounded log: the newest `capacity` entries are kept, older ones
        are dropped on append (Journal). keep_open=False: no file held open
        between operations."""
        j = self._journals.get(name)
        if j is None:
            if capacity < 1:
                raise KindError("JournalError", "ringlog: capacity must be >= 1")
            j = store.journal.Journal(None, name, capacity, keep_open=keep_open, at=self._home, **kw)
            self._journals[name] = j
        return j

    def counters(self):
        c = dict(self.stats)
        for k in ("kv_writes", "journal_appends", "journal_acks", "compactions",
                  "torn_records_discarded"):
            c.setdefault(k, 0)
        c["journal_pending"] = sum(len(j) for j in self._journals.values())
        return c

    def close(self):
        for j in self._journals.values():
            j.close()
