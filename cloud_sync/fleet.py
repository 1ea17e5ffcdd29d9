"""The fleet's operational records in the cloud store: each kiosk's last health report, alerts
(events with a type, a device, a time and a detail, for the console, `kiosk cloud alerts` and
webhooks), and the state of a restore from backup. Same tables on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlite_utils import Database, Migrations

from cloud_sync.errors import StoreError
from cloud_sync.protocol import Health

log = logging.getLogger(__name__)

RESTORE_KEY = "restore"


class CloudRestoring(StoreError):
    """The cloud store was restored from a backup and has not yet recovered its chain from the
    kiosks: it writes nothing new until then (a new op could fork the fleet)."""

    def __init__(self, waiting: Sequence[str]) -> None:
        self.waiting = list(waiting)
        who = ", ".join(self.waiting) or "the chain the kiosks reported"
        super().__init__(
            f"the cloud store was restored from a backup and is recovering its chain from the"
            f" kiosks (waiting for {who}); nothing new is written until then. Wait for them, or"
            " give up on a kiosk that will not come back with `kiosk cloud restore --config C"
            " --release DEVICE`"
        )


def refuse_while_restoring(conn: Any, placeholder: str = "?") -> None:
    """Raise CloudRestoring while a restore is recovering (the cloud stores' write gate)."""
    row = conn.execute(restore_state_sql(placeholder), (RESTORE_KEY,)).fetchone()
    if row is not None:
        raise CloudRestoring(RestoreState.loads(row[0]).waiting)


@dataclass(frozen=True, slots=True)
class FleetEvent:
    """An alert raised (`open`) and later cleared, or a one-off event (`open` False at once)."""

    id: int
    type: str  # kiosk_offline, fork, quarantine, clock_untrusted, reader_down, disk_low, ...
    device: str  # "" for the reconciler itself
    at_ms: int
    detail: str
    open: bool
    cleared_ms: int | None = None


@dataclass(slots=True)
class RestoreState:
    """A cloud restored from a backup writes nothing new until every kiosk enrolled at the
    restore has reported the cloud chain it holds and the cloud has that chain back."""

    started_ms: int
    waiting: list[str]  # kiosks not heard from since the restore
    wanted: int = 0  # unused since per-kiosk streams (each kiosk's stream head is in `devices`)
    released: list[str] = field(default_factory=list)  # given up by the operator

    def dumps(self) -> str:
        return json.dumps(
            {
                "started_ms": self.started_ms,
                "waiting": self.waiting,
                "wanted": self.wanted,
                "released": self.released,
            }
        )

    @staticmethod
    def loads(text: str) -> RestoreState:
        d = json.loads(text)
        return RestoreState(
            int(d["started_ms"]), list(d["waiting"]), int(d["wanted"]), d["released"]
        )


_migrations = Migrations("kiosk-edge-fleet")

# The PostgreSQL twin is migration "fleet" of cloud_sync.pgschema.
FLEET_TABLES_SQLITE = (
    "CREATE TABLE IF NOT EXISTS device_health (device TEXT PRIMARY KEY, health TEXT NOT NULL,"
    " updated_ms INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS fleet_events (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " type TEXT NOT NULL, device TEXT NOT NULL, at_ms INTEGER NOT NULL, detail TEXT NOT NULL,"
    " open INTEGER NOT NULL, cleared_ms INTEGER)",
    "CREATE INDEX IF NOT EXISTS fleet_events_open ON fleet_events (open, type, device)",
    "CREATE TABLE IF NOT EXISTS fleet_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


@_migrations(name="0001_fleet")
def _m0001(db: Database) -> None:
    for statement in FLEET_TABLES_SQLITE:
        db.execute(statement)


def prepare_sqlite(conn: sqlite3.Connection) -> None:
    _migrations.apply(Database(conn))


def restore_state_sql(placeholder: str) -> str:
    return f"SELECT value FROM fleet_state WHERE key = {placeholder}"


class FleetRecords:
    """Health, events and restore state on a connection of its own to the cloud store."""

    def __init__(self, url: str) -> None:
        self.pg = url.startswith(("postgresql://", "postgres://"))
        self._conn: Any
        if self.pg:
            import psycopg

            from cloud_sync.pgschema import prepare

            try:
                self._conn = psycopg.connect(url, autocommit=True)
            except psycopg.Error as exc:
                raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc
            prepare(self._conn)
        else:
            path = url.removeprefix("sqlite:///")
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA busy_timeout=5000")
            prepare_sqlite(self._conn)

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.pg else sql

    def _rows(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        return list(self._conn.execute(self._sql(sql), tuple(args)).fetchall())

    @contextmanager
    def _write(self) -> Iterator[None]:
        if self.pg:
            with self._conn.transaction():
                yield
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # -- health ----------------------------------------------------------------------------

    def record_health(self, device: str, health: Health, now_ms: int) -> None:
        with self._write():
            self._conn.execute(
                self._sql(
                    "INSERT INTO device_health VALUES (?, ?, ?) ON CONFLICT (device) DO UPDATE"
                    " SET health = excluded.health, updated_ms = excluded.updated_ms"
                ),
                (device, msgspec.json.encode(health).decode(), now_ms),
            )

    def healths(self) -> dict[str, Health]:
        out = {}
        for device, text in self._rows("SELECT device, health FROM device_health"):
            try:
                out[str(device)] = msgspec.json.decode(str(text), type=Health)
            except msgspec.ValidationError:  # written by another version: shown as unknown
                log.warning("health of %s unreadable", device)
        return out

    # -- events ----------------------------------------------------------------------------

    def raise_alert(self, type_: str, device: str, detail: str, now_ms: int) -> FleetEvent | None:
        """Open an alert unless one of this type is open for this device; the new event."""
        with self._write():
            found = self._rows(
                "SELECT id FROM fleet_events WHERE open = 1 AND type = ? AND device = ?",
                (type_, device),
            )
            if found:
                return None
            self._conn.execute(
                self._sql(
                    "INSERT INTO fleet_events (type, device, at_ms, detail, open)"
                    " VALUES (?, ?, ?, ?, 1)"
                ),
                (type_, device, now_ms, detail),
            )
            (new_id,) = self._rows("SELECT MAX(id) FROM fleet_events")[0]
        log.warning("alert %s %s: %s", type_, device or "reconciler", detail)
        return FleetEvent(int(new_id), type_, device, now_ms, detail, True)

    def clear_alert(self, type_: str, device: str, now_ms: int) -> bool:
        with self._write():
            cur = self._conn.execute(
                self._sql(
                    "UPDATE fleet_events SET open = 0, cleared_ms = ?"
                    " WHERE open = 1 AND type = ? AND device = ?"
                ),
                (now_ms, type_, device),
            )
        cleared = bool(cur.rowcount)
        if cleared:
            log.warning("alert %s %s cleared", type_, device or "reconciler")
        return cleared

    def events(self, *, open_only: bool = False, limit: int = 10_000) -> list[FleetEvent]:
        where = "WHERE open = 1" if open_only else ""
        rows = self._rows(
            "SELECT id, type, device, at_ms, detail, open, cleared_ms FROM fleet_events"
            f" {where} ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [
            FleetEvent(
                int(i), str(t), str(d), int(a), str(x), bool(o), None if c is None else int(c)
            )
            for i, t, d, a, x, o, c in rows
        ]

    # -- restore ---------------------------------------------------------------------------

    def restore_state(self) -> RestoreState | None:
        rows = self._rows(restore_state_sql("?"), (RESTORE_KEY,))
        return RestoreState.loads(rows[0][0]) if rows else None

    def set_restore_state(self, state: RestoreState | None) -> None:
        with self._write():
            if state is None:
                self._conn.execute(
                    self._sql("DELETE FROM fleet_state WHERE key = ?"), (RESTORE_KEY,)
                )
            else:
                self._conn.execute(
                    self._sql(
                        "INSERT INTO fleet_state VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
                        " SET value = excluded.value"
                    ),
                    (RESTORE_KEY, state.dumps()),
                )

    def close(self) -> None:
        self._conn.close()
