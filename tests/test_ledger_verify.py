"""Verification names tampering by replica and seq; `kiosk ledger` CLI verify/show/export."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from click.testing import CliRunner

from edge.ledger import Intent, Kind, verify
from kiosk.cli import cli


def tamper(ledger, sql, *args):
    """Edit the file behind the ledger's back, as an attacker with the SD card would."""
    conn = sqlite3.connect(ledger.path, isolation_level=None)
    conn.execute(sql, args)
    conn.close()


def history(cloud, k1):
    cloud.append([Intent(Kind.INC, "m1", "cash", 1000)], ref="topup-1")
    cloud.append([Intent(Kind.XFER, "m1", "cash", 400, counterpart="k1")])
    for op in cloud.ops("cloud"):
        k1.apply(op)
    for i in range(5):
        k1.append([Intent(Kind.DEC, "m1", "cash", 50)], ref=f"tap-{i}")


def test_intact_ledger_verifies(cloud_and_kiosks):
    cloud, k1, _ = cloud_and_kiosks()
    history(cloud, k1)
    report = verify(k1)
    assert report.ok, report.problems
    assert report.total_ops == 7
    assert {c.replica: c.head_seq for c in report.chains.values()} == {"cloud": 2, "k1": 5}


def test_changed_amount_is_named_with_replica_and_seq(cloud_and_kiosks):
    cloud, k1, _ = cloud_and_kiosks()
    history(cloud, k1)
    tamper(k1, "UPDATE ops SET amount = 5 WHERE replica = 'k1' AND seq = 3")
    report = verify(k1)
    first = report.problems[0]
    assert (first.replica, first.seq) == ("k1", 3)
    assert "signature" in first.what


def test_flipped_byte_in_the_file_is_found(cloud_and_kiosks, tmp_path):
    cloud, k1, _ = cloud_and_kiosks()
    history(cloud, k1)
    sig = next(o for o in k1.ops("k1") if o.seq == 4).sig
    k1.checkpoint()
    path = k1.path
    k1.close()
    raw = bytearray(Path(path).read_bytes())
    at = raw.find(sig)
    assert at > 0
    raw[at + 10] ^= 0x01
    Path(path).write_bytes(bytes(raw))
    result = CliRunner().invoke(cli, ["ledger", "verify", "--db", path])
    assert result.exit_code == 1
    assert "TAMPERED replica=k1 seq=4" in result.output


def test_deleted_op_is_a_seq_gap(cloud_and_kiosks):
    cloud, k1, _ = cloud_and_kiosks()
    history(cloud, k1)
    tamper(k1, "DELETE FROM ops WHERE replica = 'k1' AND seq = 2")
    problem = verify(k1).problems[0]
    assert (problem.replica, problem.seq) == ("k1", 3)
    assert "seq gap" in problem.what


def test_edited_purse_total_is_found(cloud_and_kiosks):
    cloud, k1, _ = cloud_and_kiosks()
    history(cloud, k1)
    tamper(k1, "UPDATE shares SET xin = 100000 WHERE replica = 'k1'")
    report = verify(k1)
    assert not report.ok
    assert any("purse total xin" in p.what and p.replica == "k1" for p in report.problems)


def test_replaced_key_in_the_keyring_is_found(cloud_and_kiosks, fleet):
    cloud, k1, _ = cloud_and_kiosks()
    history(cloud, k1)
    from edge.ledger import generate_key, public_bytes

    other_key = public_bytes(generate_key())
    tamper(k1, "UPDATE replicas SET public_key = ? WHERE replica = 'cloud'", other_key)
    path = k1.path
    k1.close()
    result = CliRunner().invoke(cli, ["ledger", "verify", "--db", path])
    assert result.exit_code == 1
    assert "TAMPERED replica=cloud seq=1" in result.output


def test_cli_verify_show_export_on_an_intact_ledger(cloud_and_kiosks):
    cloud, k1, _ = cloud_and_kiosks()
    history(cloud, k1)
    path = k1.path
    runner = CliRunner()
    ok = runner.invoke(cli, ["ledger", "verify", "--db", path])
    assert ok.exit_code == 0, ok.output
    assert "ok: 7 ops in 2 chains" in ok.output
    shown = runner.invoke(cli, ["ledger", "show", "--db", path, "--account", "m1"])
    assert shown.exit_code == 0
    line = next(ln for ln in shown.output.splitlines() if ln.startswith("m1"))
    assert line.split()[:3] == ["m1", "cash", "750"]
    assert "cloud=600" in line and "k1=150" in line
    exported = runner.invoke(cli, ["ledger", "export", "--db", path])
    rows = [json.loads(ln) for ln in exported.output.splitlines()]
    assert [(r["replica"], r["seq"]) for r in rows][:3] == [("cloud", 1), ("cloud", 2), ("k1", 1)]
    assert rows[2]["kind"] == "dec" and rows[2]["amount"] == 50 and rows[2]["ref"] == "tap-0"


def test_cli_refuses_a_missing_file(tmp_path):
    result = CliRunner().invoke(cli, ["ledger", "verify", "--db", str(tmp_path / "nope.db")])
    assert result.exit_code == 2
    assert "does not exist" in result.output
    assert not (tmp_path / "nope.db").exists()


def test_verify_is_read_only(cloud_and_kiosks):
    cloud, k1, _ = cloud_and_kiosks()
    history(cloud, k1)
    before = sqlite3.connect(k1.path).execute("SELECT COUNT(*) FROM ops").fetchone()
    verify(k1)
    assert sqlite3.connect(k1.path).execute("SELECT COUNT(*) FROM ops").fetchone() == before
