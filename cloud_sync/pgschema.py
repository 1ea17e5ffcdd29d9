"""The PostgreSQL cloud store's schema as numbered migrations, and the open-time check that
refuses a schema newer than this code knows.

Migration N is `MIGRATIONS[N - 1]`: append new ones, never edit or reorder one that has shipped.
`schema_version` holds one row per applied migration. Every migration not yet applied runs in
one transaction (PostgreSQL's DDL is transactional) under an advisory lock, so two reconcilers
starting together migrate once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg

from cloud_sync.errors import StoreError
from cloud_sync.store import FORK_TABLES

Migration = Callable[[psycopg.Connection], None]
SCHEMA_LOCK = 0x6B696F736B  # advisory lock id of schema changes ("kiosk")


def _sql(*statements: str) -> Migration:
    def apply(conn: psycopg.Connection) -> None:
        for statement in statements:
            conn.execute(statement.encode())

    return apply


# IF NOT EXISTS in 0001: a database created before migrations existed adopts version 1 as is.
_M0001_INITIAL = _sql(
    """CREATE TABLE IF NOT EXISTS replicas (
        replica TEXT PRIMARY KEY, public_key BYTEA NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('cloud', 'kiosk')))""",
    """CREATE TABLE IF NOT EXISTS ops (
        replica TEXT NOT NULL, seq BIGINT NOT NULL, wall_ms BIGINT NOT NULL,
        mono_ms BIGINT NOT NULL, kind SMALLINT NOT NULL, account TEXT NOT NULL,
        purse TEXT NOT NULL, amount BIGINT NOT NULL, counterpart TEXT NOT NULL, ref TEXT NOT NULL,
        data TEXT NOT NULL, prev BYTEA NOT NULL, sig BYTEA NOT NULL, hash BYTEA NOT NULL,
        PRIMARY KEY (replica, seq))""",
    "CREATE INDEX IF NOT EXISTS ops_ref ON ops (replica, ref)",
    "CREATE INDEX IF NOT EXISTS ops_account ON ops (account, purse)",
    "CREATE TABLE IF NOT EXISTS heads (replica TEXT PRIMARY KEY, seq BIGINT NOT NULL,"
    " hash BYTEA NOT NULL)",
    "CREATE TABLE IF NOT EXISTS pending (replica TEXT NOT NULL, seq BIGINT NOT NULL,"
    " op BYTEA NOT NULL, PRIMARY KEY (replica, seq))",
    """CREATE TABLE IF NOT EXISTS shares (
        account TEXT NOT NULL, purse TEXT NOT NULL, replica TEXT NOT NULL,
        inc BIGINT NOT NULL DEFAULT 0, dec BIGINT NOT NULL DEFAULT 0,
        debt BIGINT NOT NULL DEFAULT 0, xin BIGINT NOT NULL DEFAULT 0,
        xout BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (account, purse, replica))""",
    """CREATE TABLE IF NOT EXISTS registers (
        account TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
        version BIGINT NOT NULL, replica TEXT NOT NULL, PRIMARY KEY (account, name))""",
    "CREATE INDEX IF NOT EXISTS registers_name ON registers (name)",
    """CREATE TABLE IF NOT EXISTS devices (
        device TEXT PRIMARY KEY, site TEXT NOT NULL, online BIGINT NOT NULL DEFAULT 0,
        head BIGINT NOT NULL DEFAULT 0, queue_depth BIGINT NOT NULL DEFAULT 0,
        recovering BIGINT NOT NULL DEFAULT 0, cloud_head BIGINT NOT NULL DEFAULT 0,
        last_seen_ms BIGINT NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS denylist (
        site TEXT NOT NULL, version BIGINT NOT NULL, entries TEXT NOT NULL,
        wall_ms BIGINT NOT NULL, PRIMARY KEY (site, version))""",
    """CREATE TABLE IF NOT EXISTS claims (
        claim_id TEXT PRIMARY KEY, key BYTEA NOT NULL, site TEXT NOT NULL,
        device TEXT NOT NULL DEFAULT '', created_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL,
        used_ms BIGINT, used_by TEXT NOT NULL DEFAULT '', request BYTEA NOT NULL DEFAULT '',
        certificate BYTEA NOT NULL DEFAULT '', reenroll BOOLEAN NOT NULL DEFAULT FALSE)""",
)

_M0004_DEVICE_TRUST = _sql(
    "ALTER TABLE devices ADD COLUMN role TEXT NOT NULL DEFAULT 'gate',"
    " ADD COLUMN trust TEXT NOT NULL DEFAULT 'ok', ADD COLUMN trust_reason TEXT NOT NULL"
    " DEFAULT '', ADD COLUMN credit_day BIGINT NOT NULL DEFAULT 0,"
    " ADD COLUMN credit_today BIGINT NOT NULL DEFAULT 0",
    """CREATE TABLE held (
        device TEXT NOT NULL, seq BIGINT NOT NULL, op BYTEA NOT NULL, reason TEXT NOT NULL,
        held_ms BIGINT NOT NULL, PRIMARY KEY (device, seq))""",
)

_M0002_DEVICE_FLAGS = _sql(
    """CREATE TABLE device_flags (
        sender TEXT PRIMARY KEY, refused BIGINT NOT NULL DEFAULT 0,
        last_refusal TEXT NOT NULL DEFAULT '', skewed BIGINT NOT NULL DEFAULT 0,
        last_skew TEXT NOT NULL DEFAULT '')""",
)

# Kiosk health reports, alerts (events) and restore state (cloud_sync.fleet).
_M0003_FLEET = _sql(
    "CREATE TABLE device_health (device TEXT PRIMARY KEY, health TEXT NOT NULL,"
    " updated_ms BIGINT NOT NULL)",
    "CREATE TABLE fleet_events (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " type TEXT NOT NULL, device TEXT NOT NULL, at_ms BIGINT NOT NULL, detail TEXT NOT NULL,"
    " open BIGINT NOT NULL, cleared_ms BIGINT)",
    "CREATE INDEX fleet_events_open ON fleet_events (open, type, device)",
    "CREATE TABLE fleet_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)

# Reports (cloud_sync.reports) read ops by time range, and members by their first name write.
_M0005_REPORTS = _sql(
    "CREATE INDEX IF NOT EXISTS ops_wall ON ops (wall_ms)",
    "CREATE INDEX IF NOT EXISTS ops_kind_purse ON ops (kind, purse, wall_ms)",
)

# A forked kiosk's set-aside branches and the debt they recorded (the SQLite twin is
# migration 0005_forks of cloud_sync.store: the same statements).
_M0006_FORKS = _sql(*FORK_TABLES)

MIGRATIONS: list[tuple[str, Migration]] = [
    ("initial", _M0001_INITIAL),
    ("device_flags", _M0002_DEVICE_FLAGS),
    ("fleet", _M0003_FLEET),
    ("device_trust", _M0004_DEVICE_TRUST),
    ("report_indexes", _M0005_REPORTS),
    ("forks", _M0006_FORKS),
]


def schema_version(conn: psycopg.Connection) -> int:
    """The newest migration applied to this database; 0 for an empty one."""
    row = conn.execute(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version"
        if _has_version_table(conn)
        else "SELECT 0"
    ).fetchone()
    return int(row[0]) if row else 0


def _has_version_table(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    return bool(row and row[0])


def prepare(conn: psycopg.Connection, migrations: list[tuple[str, Migration]] = MIGRATIONS) -> int:
    """Refuse a newer schema, then apply the migrations this database lacks; the version."""
    known = len(migrations)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
            " name TEXT NOT NULL, applied_ms BIGINT NOT NULL)"
        )
        current = schema_version(conn)
        if current > known:
            raise StoreError(
                f"the PostgreSQL cloud store has schema version {current}, this kiosk-edge knows"
                f" up to {known}: upgrade kiosk-edge on this host before opening it"
            )
        for number in range(current + 1, known + 1):
            name, migrate = migrations[number - 1]
            migrate(conn)
            conn.execute(
                "INSERT INTO schema_version VALUES (%s, %s, %s)",
                (number, name, time.time_ns() // 1_000_000),
            )
    return known
