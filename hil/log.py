"""The per-DUT log: one file, every line timestamped and prefixed by its source,
and `expect`-style waits whose failure shows the tail and the file's path."""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class ExpectTimeout(AssertionError):
    pass


class DutLog:
    def __init__(self, path: Path, keep: int = 5000):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = path.open("a", buffering=1, encoding="utf-8")
        self._lines: deque[tuple[int, str, str]] = deque(maxlen=keep)
        self._n = 0
        self._cond = threading.Condition()
        self._listeners: list = []

    def write(self, source: str, text: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime()) + f".{int(time.time() * 1000) % 1000:03d}"
        with self._cond:
            for line in text.splitlines() or [""]:
                self._n += 1
                self._lines.append((self._n, source, line))
                self._f.write(f"{stamp} {source:<6}| {line}\n")
                for fn in self._listeners:
                    fn(source, line)
            self._cond.notify_all()

    def subscribe(self, fn) -> None:
        with self._cond:
            self._listeners.append(fn)

    @property
    def position(self) -> int:
        """A cursor: expect(after=pos) only looks at lines written after it."""
        return self._n

    def lines(self, source: str | None = "dut", after: int = 0) -> list[str]:
        """The kept lines from `source` (every source when None) written after cursor `after`."""
        with self._cond:
            return [line for n, src, line in self._lines if n > after and (source is None or src == source)]

    def tail(self, n: int = 30) -> str:
        with self._cond:
            rows = list(self._lines)[-n:]
        return "\n".join(f"{src:<6}| {line}" for _, src, line in rows)

    def expect(self, pattern: str, timeout: float = 10.0, source: str | None = "dut", after: int = 0) -> re.Match[str]:
        """Wait for a line from `source` matching `pattern` (regex), written after cursor `after`."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = after
        with self._cond:
            while True:
                for n, src, line in self._lines:
                    if n <= seen:
                        continue
                    seen = n
                    if source and src != source:
                        continue
                    m = rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ExpectTimeout(
                        f"no {source or 'log'} line matching {pattern!r} within {timeout:g} s\n"
                        f"--- last lines of {self.path} ---\n{self.tail()}"
                    )
                self._cond.wait(min(left, 0.2))

    def wait_until(self, cond: Callable[[], T], timeout: float = 15.0,
                   what: str | Callable[[], str] = "the condition", interval: float = 0.05) -> T:
        """Poll `cond()` until it returns something true and return that; an
        exception from `cond` propagates. At `timeout` it fails naming `what`
        (a callable is asked then, e.g. to show the last value seen), this
        log's path and its last lines."""
        deadline = time.monotonic() + timeout
        while True:
            v = cond()
            if v:
                return v
            if time.monotonic() > deadline:
                raise ExpectTimeout(
                    f"timed out after {timeout:g} s waiting for {what() if callable(what) else what}\n"
                    f"--- last lines of {self.path} ---\n{self.tail()}"
                )
            time.sleep(interval)

    def close(self) -> None:
        with self._cond:
            self._f.close()
