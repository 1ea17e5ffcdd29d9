"""Backup and restore of the SQLite cloud store. A backup is a consistent copy taken online
with SQLite's backup API while the reconciler runs. A restore puts it back and marks the store
as recovering: the cloud writes nothing new until every kiosk enrolled in it has reported the
stream it holds and handed back what the copy lacks (cloud_sync.reconciler), while the kiosks
send again their own ops the copy lacks. The streams file is copied beside the store.
(PostgreSQL: base backup and WAL archiving, see the README.)"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import time
from pathlib import Path

from cloud_sync.errors import StoreError
from cloud_sync.fleet import FleetRecords, RestoreState
from cloud_sync.streams import backup_streams

log = logging.getLogger(__name__)


def sqlite_path(url: str) -> Path:
    if url.startswith(("postgresql://", "postgres://")):
        raise StoreError(
            "the store is PostgreSQL: back it up with pg_basebackup and WAL archiving"
            " (README, Operations), not with kiosk cloud backup"
        )
    return Path(url.removeprefix("sqlite:///"))


def streams_copy(out: Path) -> Path:
    """Where a backup keeps its copy of the kiosks' streams (beside the store's copy)."""
    return out.with_name(out.name + ".streams")


def backup(url: str, out: Path, streams: Path | None = None) -> int:
    """Copy the store to `out` consistently while it is in use, and the streams file (first:
    every op it has routed is then in the store's copy); the number of store pages copied."""
    src_path = sqlite_path(url)
    if not src_path.exists():
        raise StoreError(f"{src_path}: no cloud store there")
    if streams is not None and streams.exists():
        backup_streams(streams, streams_copy(out))
    tmp = out.with_name(out.name + ".part")
    tmp.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{src_path}?mode=ro", uri=True)
    dst = sqlite3.connect(tmp)
    try:
        src.execute("PRAGMA busy_timeout=5000")
        src.backup(dst, pages=256)  # in steps: the reconciler's writes go on between them
        (pages,) = dst.execute("PRAGMA page_count").fetchone()
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    finally:
        dst.close()
        src.close()
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, out)
    return int(pages)


def _check_backup(path: Path) -> None:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            (ok,) = conn.execute("PRAGMA integrity_check").fetchone()
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: not a cloud store backup ({exc})") from exc
    if ok != "ok" or not {"devices", "ops", "heads"} <= tables:
        raise StoreError(f"{path}: not a cloud store backup (integrity: {ok})")


def restore(url: str, source: Path, streams: Path | None = None) -> RestoreState:
    """Put a backup in the store's place (the reconciler stopped) and mark it recovering; its
    copy of the streams too, marked to be rerouted once the kiosks handed back theirs."""
    target = sqlite_path(url)
    _check_backup(source)
    if streams is not None and streams_copy(source).exists():
        for suffix in ("-wal", "-shm"):
            Path(f"{streams}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(streams_copy(source), streams)
        book = sqlite3.connect(streams)
        try:
            book.execute(
                "INSERT INTO meta VALUES ('restored', 1) ON CONFLICT (key) DO UPDATE SET value = 1"
            )
            book.commit()
        finally:
            book.close()
    tmp = target.with_name(target.name + ".restoring")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(tmp)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    os.replace(tmp, target)
    fleet = FleetRecords(str(target))
    try:
        conn = sqlite3.connect(target)
        try:
            devices = [r[0] for r in conn.execute("SELECT device FROM devices ORDER BY device")]
        finally:
            conn.close()
        state = RestoreState(started_ms=time.time_ns() // 1_000_000, waiting=devices)
        fleet.set_restore_state(state)
    finally:
        fleet.close()
    log.warning("cloud store restored from %s; waiting for %d kiosks", source, len(devices))
    return state


def release(fleet: FleetRecords, device: str, cloud_head: int) -> RestoreState | None:
    """Stop waiting for a kiosk that will not come back (what only it held is lost); the
    restore ends if nothing else is awaited. The state left, None when the restore ended."""
    state = fleet.restore_state()
    if state is None:
        raise StoreError("no restore is in progress")
    if device not in state.waiting:
        raise StoreError(f"{device!r} is not awaited (waiting for: {', '.join(state.waiting)})")
    state.waiting.remove(device)
    state.released.append(device)
    if not state.waiting and cloud_head >= state.wanted:
        fleet.set_restore_state(None)
        return None
    fleet.set_restore_state(state)
    return state
