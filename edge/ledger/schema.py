"""The ledger's SQLite schema, as numbered migrations (sqlite-utils), and the open-time checks."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from edge.ledger.errors import DatabaseCorrupt, NotALedger, SchemaTooNew, sqlite_fault

if TYPE_CHECKING:
    from sqlite_utils import Database

MIGRATION_SET = "kiosk-edge-ledger"
MIGRATIONS_TABLE = "_sqlite_migrations"  # sqlite-utils' own bookkeeping table
Migration = Callable[["Database"], None]

# Numbered migrations, applied in order by sqlite-utils. Never edit one that has shipped.
MIGRATIONS: dict[str, Migration] = {}


def migration(name: str) -> Callable[[Migration], Migration]:
    def register(fn: Migration) -> Migration:
        MIGRATIONS[name] = fn
        return fn

    return register


@migration("0001_initial")
def _m0001(db: Database) -> None:
    for stmt in (
        # Keyring: who may write chains here, and with which public key.
        """CREATE TABLE replicas (
            replica TEXT PRIMARY KEY,
            public_key BLOB NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('cloud', 'kiosk'))
        )""",
        """CREATE TABLE ops (
            replica TEXT NOT NULL,
            seq INTEGER NOT NULL,
            wall_ms INTEGER NOT NULL,
            mono_ms INTEGER NOT NULL,
            kind INTEGER NOT NULL,
            account TEXT NOT NULL,
            purse TEXT NOT NULL,
            amount INTEGER NOT NULL,
            counterpart TEXT NOT NULL,
            ref TEXT NOT NULL,
            data TEXT NOT NULL,
            prev BLOB NOT NULL,
            hash BLOB NOT NULL,
            sig BLOB NOT NULL,
            PRIMARY KEY (replica, seq)
        ) WITHOUT ROWID""",
        # A tap id is unique per replica: a retried tap finds its ops instead of debiting twice.
        "CREATE INDEX ops_ref ON ops (replica, ref)",
        "CREATE INDEX ops_account ON ops (account, purse)",
        """CREATE TABLE heads (
            replica TEXT PRIMARY KEY,
            seq INTEGER NOT NULL,
            hash BLOB NOT NULL
        )""",
        # Remote ops that arrived before their predecessor: applied when the gap fills.
        """CREATE TABLE pending (
            replica TEXT NOT NULL,
            seq INTEGER NOT NULL,
            op BLOB NOT NULL,
            PRIMARY KEY (replica, seq)
        )""",
        # Materialised per-replica totals of each purse, kept in the op's own transaction.
        """CREATE TABLE shares (
            account TEXT NOT NULL,
            purse TEXT NOT NULL,
            replica TEXT NOT NULL,
            inc INTEGER NOT NULL DEFAULT 0,
            dec INTEGER NOT NULL DEFAULT 0,
            debt INTEGER NOT NULL DEFAULT 0,
            xin INTEGER NOT NULL DEFAULT 0,
            xout INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (account, purse, replica)
        ) WITHOUT ROWID""",
        """CREATE TABLE registers (
            account TEXT NOT NULL,
            name TEXT NOT NULL,
            value TEXT NOT NULL,
            version INTEGER NOT NULL,
            replica TEXT NOT NULL,
            PRIMARY KEY (account, name)
        ) WITHOUT ROWID""",
        # Decisions that move nothing (denials) are kept too.
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            wall_ms INTEGER NOT NULL,
            ref TEXT NOT NULL,
            account TEXT NOT NULL,
            purse TEXT NOT NULL,
            amount INTEGER NOT NULL,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL
        )""",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ):
        db.execute(stmt)


def known_migrations() -> list[str]:
    return list(MIGRATIONS)


def applied_migrations(conn: sqlite3.Connection) -> list[str]:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (MIGRATIONS_TABLE,)
    ).fetchone()
    if exists is None:
        return []
    rows = conn.execute(
        f"SELECT name FROM {MIGRATIONS_TABLE} WHERE migration_set = ? ORDER BY rowid",
        (MIGRATION_SET,),
    )
    return [str(r[0]) for r in rows]


def _checked(conn: sqlite3.Connection, path: str) -> list[str]:
    """Integrity check and the migrations applied, refusing a schema newer than ours."""
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
        applied = applied_migrations(conn)
    except sqlite3.DatabaseError as exc:  # damaged, not a database, or a full disk
        raise sqlite_fault(path, exc) from exc
    result = "; ".join(str(r[0]) for r in rows)
    if result != "ok":
        raise DatabaseCorrupt(path, result)
    unknown = [name for name in applied if name not in MIGRATIONS]
    if unknown:
        raise SchemaTooNew(path, unknown)
    return applied


def open_read_only(path: str) -> sqlite3.Connection:
    """A connection that cannot change the file (SQLite URI `mode=ro`), to a file checked to be
    an intact ledger of a schema this version knows: `kiosk ledger verify` never writes."""
    file = Path(path).resolve()
    # With no write-ahead log beside it no kiosk has the file open: read it as immutable, so
    # SQLite creates no -wal/-shm files either (and works on a full or read-only disk). With a
    # log, a kiosk may be writing: share its locks, read-only.
    wal = file.with_name(file.name + "-wal")
    uri = file.as_uri() + ("?mode=ro" if wal.exists() else "?mode=ro&immutable=1")
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise sqlite_fault(path, exc) from exc
    try:
        applied = _checked(conn, path)
        if len(applied) < len(MIGRATIONS):
            raise NotALedger(path)
    except BaseException:
        conn.close()
        raise
    return conn


def prepare(conn: sqlite3.Connection, path: str) -> None:
    """Check integrity, refuse a newer schema, then apply pending migrations.

    sqlite-utils is imported only when there is a migration to apply (first start, upgrade):
    it costs ~13 MB of resident memory a kiosk need not carry every day.
    """
    applied = _checked(conn, path)
    if len(applied) == len(MIGRATIONS):
        return
    from sqlite_utils import Database, Migrations

    registry = Migrations(MIGRATION_SET)
    for name, fn in MIGRATIONS.items():
        registry(name=name)(fn)
    registry.apply(Database(conn))
