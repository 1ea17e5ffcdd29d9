"""`kiosk cloud ...` end to end on the SQLite store (no broker: publishing is reported, not
required)."""

from __future__ import annotations

from click.testing import CliRunner

from edge.ledger import generate_key, public_bytes, save_private_key
from kiosk.cli import cli


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
    run("cloud", "card", "link", *c, "--account", "m1", "--card", "4000 1234 5678 9017")
    assert "1000" in run("cloud", "topup", *c, "--account", "m1", "--amount", "1000", "--ref", "r1")
    assert "1000" in run("cloud", "topup", *c, "--account", "m1", "--amount", "1000", "--ref", "r1")
    out = run("cloud", "card", "lost", *c, "--site", "s1", "--card", "4000123456789017")
    assert "lost" in out and "not published" in out
    run(
        "cloud",
        "card",
        "replace",
        *c,
        "--site",
        "s1",
        "--old",
        "4000123456789017",
        "--new",
        "4000999988887779",
    )
    shown = run("cloud", "show", *c, "--account", "m1")
    assert "Alice" in shown and "cash" in shown
    assert b"4000123456789017" not in (tmp_path / "cloud.db").read_bytes()
    listed = run("cloud", "kiosks", *c)
    assert "k1" in listed and "never" in listed


def test_member_settings_coupons_and_vouchers(tmp_path):
    from cloud_sync.store import SqliteCloudStore
    from edge.ledger import load_private_key
    from edge.ledger.records import pin_matches

    key = tmp_path / "cloud.key"
    save_private_key(key, generate_key())
    cfg = tmp_path / "cloud.toml"
    cfg.write_text(
        f'[reconciler]\nkey_file = "cloud.key"\nstore = "sqlite:///{tmp_path}/cloud.db"\n'
        "[reconciler.broker]\nport = 1\nconnect_timeout_s = 0.5\n"
        '[[membership.tiers]]\nname = "Gold"\nmin_points = 500\n'
    )
    c = ("--config", str(cfg))
    run("cloud", "member", "register", *c, "--account", "m1", "--name", "Alice")
    run(
        "cloud",
        "member",
        "set",
        *c,
        "--account",
        "m1",
        "--tier",
        "Gold",
        "--pin",
        "2468",
        "--pass",
        "swim",
        "--days",
        "30",
        "--home",
        "pool-7",
    )
    run("cloud", "coupon", *c, "--code", "FREE1")
    run("cloud", "coupon", *c, "--code", "FREE1")  # a retry issues nothing more
    run("cloud", "voucher", *c, "--code", "V9", "--amount", "3000")
    bad = CliRunner().invoke(
        cli, ["cloud", "member", "set", *c, "--account", "nobody", "--tier", "Gold"]
    )
    assert bad.exit_code == 1
    assert "register it first" in bad.output
    store = SqliteCloudStore(tmp_path / "cloud.db", replica="cloud", key=load_private_key(key))
    try:
        assert store.register("m1", "tier").value == "Gold"
        assert store.register("m1", "home").value == "pool-7"  # only pool-7's kiosks know m1
        pin = store.register("m1", "pin").value
        assert pin_matches("2468", pin)
        assert "2468" not in pin
        start, end = map(int, store.register("m1", "pass:swim").value.split("-"))
        assert end - start == 30 * 86_400_000
        assert store.purse("coupon:FREE1", "use").value == 1
        assert store.purse("voucher:V9", "cash").value == 3000
    finally:
        store.close()


def test_a_card_stock_without_check_digits_is_linked_where_the_cloud_says_so(tmp_path):
    save_private_key(tmp_path / "cloud.key", generate_key())
    run("cloud", "site-key", "--file", str(tmp_path / "site.key"))
    cfg = tmp_path / "cloud.toml"
    base = (
        f'[reconciler]\nkey_file = "cloud.key"\nstore = "sqlite:///{tmp_path}/cloud.db"\n'
        'site_key_file = "site.key"\n[reconciler.broker]\nport = 1\nconnect_timeout_s = 0.5\n'
    )
    cfg.write_text(base)
    c = ("--config", str(cfg))
    run("cloud", "member", "register", *c, "--account", "m1", "--name", "Alice")
    link = ("cloud", "card", "link", *c, "--account", "m1", "--card", "6012345678")
    refused = CliRunner().invoke(cli, list(link))
    assert refused.exit_code != 0 and "check digit" in refused.output
    cfg.write_text(base + "[membership]\ncard_check_digit = false\n")
    run(*link)
    assert "6012345678" not in (tmp_path / "cloud.db").read_bytes().decode("latin-1")
