"""Last accepted SUN read counter per card, so a replayed URL is refused (survives restarts).

Cards are named by HMAC-SHA256(key, UID): the store never holds a UID in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
import threading
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

__all__ = ["CounterStore", "MemoryCounterStore", "SqliteCounterStore"]


class CounterStore(Protocol):
    """Accepts a card's read counter only if it is above the last one accepted."""

    def advance(self, uid: bytes, read_ctr: int) -> bool:
        """Record `read_ctr` for `uid` and return True if it is above the last; else False."""
        ...


def _card_name(key: bytes, uid: bytes) -> bytes:
    return hmac.new(key, uid, hashlib.sha256).digest()


class MemoryCounterStore:
    """In-process store, for the simulated reader and the demo (forgets on restart)."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._last: dict[bytes, int] = {}
        self._lock = threading.Lock()

    def advance(self, uid: bytes, read_ctr: int) -> bool:
        name = _card_name(self._key, uid)
        with self._lock:
            if read_ctr <= self._last.get(name, -1):
                return False
            self._last[name] = read_ctr
            return True


class SqliteCounterStore:
    """Durable store: one row per card, updated with a conditional upsert (atomic, one commit)."""

    def __init__(self, path: str | Path, key: bytes) -> None:
        self._key = key
        self._lock = threading.Lock()
        # Called from the reader's worker thread; the lock serialises use of the connection.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS sun_counter (card BLOB PRIMARY KEY, ctr INTEGER NOT NULL)"
        )

    def advance(self, uid: bytes, read_ctr: int) -> bool:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO sun_counter (card, ctr) VALUES (?, ?) ON CONFLICT (card) "
                "DO UPDATE SET ctr = excluded.ctr WHERE excluded.ctr > sun_counter.ctr",
                (_card_name(self._key, uid), read_ctr),
            )
            return cur.rowcount == 1

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
