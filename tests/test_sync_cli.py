"""`kiosk cloud ...` end to end on the SQLite store (no broker: publishing is reported, not
required)."""

from __future__ import annotations

from click.testing import CliRunner

from edge.cli import cli
from edge.ledger import generate_key, public_bytes, save_private_key


def run(*args):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_operator_commands(tmp_path):
    key = tmp_path / "cloud.key"
    save_private_key(key, generate_key())
    pki = tmp_path / "pki"
    run("cloud", "ca", "init", "--dir", str(pki))
    run("cloud", "ca", "issue", "--device", "k1", "--site", "s1", "--dir", str(pki))
    out = run("cloud", "broker-config", "--dir", str(pki), "--port", "18883")
    assert "pattern write kiosk/v1/+/%u/ops" in (pki / "mosquitto.acl").read_text()
    assert "mosquitto.conf" in out
    run("cloud", "site-key", "--file", str(tmp_path / "site.key"))
    cfg = tmp_path / "cloud.toml"
    cfg.write_text(
        f'[reconciler]\nkey_file = "cloud.key"\nstore = "sqlite:///{tmp_path}/cloud.db"\n'
        'site_key_file = "site.key"\n[reconciler.broker]\nport = 1\nconnect_timeout_s = 0.5\n'
    )
    c = ("--config", str(cfg))
    run(
        "cloud",
        "enroll",
        *c,
        "--device",
        "k1",
        "--site",
        "s1",
        "--public-key",
        public_bytes(generate_key()).hex(),
    )
    run("cloud", "member", "register", *c, "--account", "m1", "--name", "Alice")
    run("cloud", "card", "link", *c, "--account", "m1", "--card", "4000 1234 5678 9010")
    assert "1000" in run("cloud", "topup", *c, "--account", "m1", "--amount", "1000", "--ref", "r1")
    assert "1000" in run("cloud", "topup", *c, "--account", "m1", "--amount", "1000", "--ref", "r1")
    out = run("cloud", "card", "lost", *c, "--site", "s1", "--card", "4000123456789010")
    assert "lost" in out and "not published" in out
    run(
        "cloud",
        "card",
        "replace",
        *c,
        "--site",
        "s1",
        "--old",
        "4000123456789010",
        "--new",
        "4000999988887777",
    )
    shown = run("cloud", "show", *c, "--account", "m1")
    assert "Alice" in shown and "cash" in shown
    assert b"4000123456789010" not in (tmp_path / "cloud.db").read_bytes()
    listed = run("cloud", "kiosks", *c)
    assert "k1" in listed and "never" in listed
