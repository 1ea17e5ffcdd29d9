"""The PostgreSQL way of the README, on a throwaway cluster (initdb in a temp dir, run as the
postgres user): WAL archiving on, a base backup with pg_basebackup, more cloud ops written after
it, then point-in-time recovery from the base backup and the archive: nothing is lost."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_sync.pgstore import PgCloudStore
from edge.ledger import Intent, Kind, generate_key
from tests.mqtt_broker import free_port

BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        BIN is None or os.geteuid() != 0, reason="needs PostgreSQL's binaries and root"
    ),
]


def as_postgres(*args: str | Path) -> None:
    assert BIN is not None
    cmd = [str(BIN / str(args[0])), *map(str, args[1:])]
    done = subprocess.run(
        ["runuser", "-u", "postgres", "--", *cmd], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{args[0]}: {done.stderr}"


def start(data: Path, port: int, log: Path) -> None:
    as_postgres("pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "start")


def stop(data: Path) -> None:
    as_postgres("pg_ctl", "-D", data, "-m", "fast", "-w", "stop")


@pytest.fixture
def pg_root() -> Iterator[Path]:
    """A folder the postgres user owns (pytest's own tmp dirs are closed to other users)."""
    root = Path(tempfile.mkdtemp(prefix="kiosk-pg-"))
    pw = pwd.getpwnam("postgres")
    os.chown(root, pw.pw_uid, pw.pw_gid)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def wait_promoted(dsn: str) -> None:
    """Recovery replays the archive, then the server takes writes again."""
    import psycopg

    deadline = time.monotonic() + 60
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            if row is not None and not row[0]:
                return
            assert time.monotonic() < deadline, "recovery did not finish"
            time.sleep(0.1)


def test_base_backup_and_wal_archive_recover_every_op(pg_root):
    root = pg_root
    pw = pwd.getpwnam("postgres")
    data, archive, base = root / "data", root / "archive", root / "base"
    as_postgres("initdb", "-D", data, "-A", "trust", "-U", "postgres")
    archive.mkdir()
    os.chown(archive, pw.pw_uid, pw.pw_gid)
    port = free_port()
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(
            f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{root}'\n"
            f"wal_level = replica\narchive_mode = on\n"
            f"archive_command = 'test ! -f {archive}/%f && cp %p {archive}/%f'\n"
        )
    start(data, port, root / "log1")
    dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        key = generate_key()
        store = PgCloudStore(dsn, replica="cloud", key=key)
        store.append([Intent(Kind.INC, "m1", "cash", 1_000)], ref="before-base")
        as_postgres(
            "pg_basebackup",
            "-D",
            base,
            "-h",
            "127.0.0.1",
            "-p",
            port,
            "-U",
            "postgres",
            "-X",
            "stream",
            "-c",
            "fast",
        )
        for n in range(5):  # after the base backup: only the WAL archive has these
            store.append([Intent(Kind.INC, "m1", "cash", 100 + n)], ref=f"after-base-{n}")
        head = store.head("cloud")
        store._conn.execute("SELECT pg_switch_wal()")  # hand the last segment to the archive
        store.close()
    finally:
        stop(data)
    # The server is lost; recover from the base backup and the archive.
    shutil.rmtree(data)
    shutil.copytree(base, data)
    os.chown(data, pw.pw_uid, pw.pw_gid)
    for p in data.rglob("*"):
        os.chown(p, pw.pw_uid, pw.pw_gid)
    os.chmod(data, 0o700)
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(f"restore_command = 'cp {archive}/%f %p'\narchive_mode = off\n")
    (data / "recovery.signal").touch()
    os.chown(data / "recovery.signal", pw.pw_uid, pw.pw_gid)
    start(data, port, root / "log2")
    try:
        wait_promoted(dsn)
        store = PgCloudStore(dsn, replica="cloud", key=key)
        assert store.head("cloud") == head
        assert store.purse("m1", "cash").value == 1_000 + sum(100 + n for n in range(5))
        store.close()
    finally:
        stop(data)
