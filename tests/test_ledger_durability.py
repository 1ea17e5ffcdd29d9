"""Power cuts, damaged files, newer schemas and key files: loud errors, nothing lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from edge.ledger import (
    DatabaseCorrupt,
    Intent,
    KeyFileError,
    Kind,
    Ledger,
    LedgerError,
    SchemaTooNew,
    generate_key,
    load_private_key,
    save_private_key,
    verify,
)

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from edge.ledger import Intent, Kind, Ledger, load_private_key
    led = Ledger(sys.argv[1], replica="k1", key=load_private_key(Path(sys.argv[2])))
    led.append([Intent(Kind.INC, "m1", "cash", 10**9)])
    i = 0
    while True:
        i += 1
        (op,) = led.append([Intent(Kind.DEC, "m1", "cash", 1)], ref=f"tap-{i}")
        print(op.seq, flush=True)
    """
)


def test_writer_killed_mid_stream_loses_no_acknowledged_op(tmp_path):
    key_path = tmp_path / "k1.key"
    save_private_key(key_path, generate_key())
    db = tmp_path / "k1.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), str(key_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    acked = []
    assert proc.stdout is not None
    for line in proc.stdout:
        acked.append(int(line))
        if len(acked) >= 300:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    led = Ledger(db, replica="k1", key=load_private_key(key_path))
    report = verify(led)
    assert report.ok, report.problems
    head, _ = led.head()
    assert head >= acked[-1]
    stored = {o.seq for o in led.ops("k1")}
    assert set(acked) <= stored
    # nothing torn: every stored debit is whole, and value matches the chain
    assert led.purse("m1", "cash").value == 10**9 - (head - 1)
    # and the chain goes on from where it stopped
    (nxt,) = led.append([Intent(Kind.DEC, "m1", "cash", 1)], ref="after-restart")
    assert nxt.seq == head + 1
    led.close()


def test_newer_schema_is_refused_with_a_clear_error(tmp_path):
    db = tmp_path / "k1.db"
    Ledger(db, replica="k1", key=generate_key()).close()
    import sqlite3

    conn = sqlite3.connect(db)
    conn.execute(
        "INSERT INTO _sqlite_migrations (migration_set, name, applied_at)"
        " VALUES ('kiosk-edge-ledger', '0099_from_the_future', 'x')"
    )
    conn.commit()
    conn.close()
    with pytest.raises(SchemaTooNew, match="0099_from_the_future") as info:
        Ledger(db, replica="k1")
    assert "upgrade kiosk-edge" in str(info.value)


def test_damaged_file_is_refused_on_open(tmp_path):
    db = tmp_path / "k1.db"
    led = Ledger(db, replica="k1", key=generate_key())
    for i in range(200):
        led.append([Intent(Kind.INC, f"m{i}", "cash", 1)])
    led.checkpoint()
    led.close()
    raw = bytearray(db.read_bytes())
    page = 4096
    for i in range(3 * page + 16, 4 * page):  # wipe the inside of a b-tree page
        raw[i] = 0xFF
    db.write_bytes(bytes(raw))
    with pytest.raises((DatabaseCorrupt,)) as info:
        Ledger(db, replica="k1")
    assert "integrity check failed" in str(info.value)


def test_opening_another_replicas_file_is_refused(tmp_path):
    db = tmp_path / "k1.db"
    Ledger(db, replica="k1", key=generate_key()).close()
    with pytest.raises(LedgerError, match="ledger of 'k1', not of 'k2'"):
        Ledger(db, replica="k2", key=generate_key())


def test_key_file_is_owner_only_and_loads_back(tmp_path):
    path = tmp_path / "device.key"
    key = generate_key()
    save_private_key(path, key)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert load_private_key(path).private_bytes_raw() == key.private_bytes_raw()


def test_key_file_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "device.key"
    save_private_key(path, generate_key())
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_private_key(path)


def test_garbage_key_file_is_refused(tmp_path):
    path = tmp_path / "device.key"
    path.write_bytes(b"not a key")
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        load_private_key(path)
