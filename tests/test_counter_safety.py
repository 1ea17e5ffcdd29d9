"""Counter safety (`kiosk cloud ...` at the counter): every mistake an operator can make is
refused with one line and exit 1, and nothing is written."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cloud_sync.store import SqliteCloudStore
from edge.ledger import generate_key, load_private_key, save_private_key
from kiosk.cli import cli


@pytest.fixture
def counter(tmp_path):
    key = tmp_path / "cloud.key"
    save_private_key(key, generate_key())
    CliRunner().invoke(cli, ["cloud", "site-key", "--file", str(tmp_path / "site.key")])
    cfg = tmp_path / "cloud.toml"
    cfg.write_text(
        f'[reconciler]\nkey_file = "cloud.key"\nstore = "sqlite:///{tmp_path}/cloud.db"\n'
        'site_key_file = "site.key"\n[reconciler.broker]\nport = 1\nconnect_timeout_s = 0.5\n'
        '[[membership.tiers]]\nname = "silver"\nmin_points = 0\n'
        '[[membership.tiers]]\nname = "gold"\nmin_points = 500\n'
    )

    def run(*args: str, code: int = 0) -> str:
        result = CliRunner().invoke(cli, ["cloud", args[0], *args[1:], "--config", str(cfg)])
        assert result.exit_code == code, result.output
        return result.output

    def store() -> SqliteCloudStore:
        return SqliteCloudStore(tmp_path / "cloud.db", replica="cloud", key=load_private_key(key))

    run("member", "register", "--account", "m1", "--name", "Alice")
    run("member", "register", "--account", "m2", "--name", "Bob")
    return run, store


def one_line(out: str) -> str:
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    assert "Traceback" not in out
    return lines[0]


def test_topup_to_an_account_never_registered_is_refused(counter):
    run, store = counter
    out = run("topup", "--account", "ghost", "--amount", "1000", "--ref", "R1", code=1)
    assert "no member ghost" in one_line(out)
    s = store()
    try:
        assert s.purse("ghost", "cash").value == 0
    finally:
        s.close()


def test_same_receipt_on_another_account_is_refused_not_dropped(counter):
    run, store = counter
    run("topup", "--account", "m1", "--amount", "1000", "--ref", "R1")
    run("topup", "--account", "m1", "--amount", "1000", "--ref", "R1")  # a retry: once
    out = run("topup", "--account", "m2", "--amount", "1000", "--ref", "R1", code=1)
    assert "receipt R1 was used already" in one_line(out)
    s = store()
    try:
        assert (s.purse("m1", "cash").value, s.purse("m2", "cash").value) == (1000, 0)
    finally:
        s.close()


def test_bad_purse_empty_account_unknown_tier_short_pin_are_refused(counter):
    run, _ = counter
    out = run(
        "topup", "--account", "m1", "--amount", "5", "--purse", "cassh", "--ref", "R2", code=1
    )
    assert "unknown purse 'cassh'" in one_line(out)
    assert "empty" in one_line(run("member", "register", "--account", "", "--name", "X", code=2))
    out = run("member", "set", "--account", "m1", "--tier", "diamond", code=1)
    assert "unknown tier 'diamond' (known: silver, gold)" in one_line(out)
    assert "4 to 12 digits" in one_line(
        run("member", "set", "--account", "m1", "--pin", "12", code=1)
    )
    assert "4 to 12 digits" in one_line(
        run("member", "set", "--account", "m1", "--pin", "12ab", code=1)
    )
    out = run("card", "link", "--account", "nobody", "--card", "4000123412341234", code=1)
    assert "no member nobody" in one_line(out)


def test_credit_limit_makes_overdraft_reachable_and_is_a_register(counter):
    run, store = counter
    run("member", "set", "--account", "m1", "--credit-limit", "2000")
    s = store()
    try:
        st = s.purse("m1", "cash")
        assert (st.lower_bound, st.rights("cloud")) == (-2000, 2000)
    finally:
        s.close()


def test_refund_and_correct_commands(counter):
    run, store = counter
    out = run("refund", "--ref", "nope", "--reason", "typo", code=1)
    assert "no purchase with tap id nope" in one_line(out)
    run(
        "correct",
        "--account",
        "m1",
        "--purse",
        "points",
        "--amount",
        "300",
        "--reason",
        "gift",
        "--ref",
        "c1",
    )
    out = run(
        "correct",
        "--account",
        "m1",
        "--purse",
        "points",
        "--amount",
        "-900",
        "--reason",
        "typo",
        "--ref",
        "c2",
        code=1,
    )
    assert "the cloud holds 300 of points" in one_line(out)


def test_card_commands_link_by_nfc_uid_and_keep_the_lifecycle(counter, tmp_path):
    from cloud_sync import admin
    from edge.ledger.sitekey import load_site_secrets

    run, store = counter
    run("card", "link", "--account", "m1", "--nfc-uid", "04:a1:b2:c3:d4:e5:f6")
    token = admin.card_token(load_site_secrets(tmp_path / "site.key"), "04A1B2C3D4E5F6", "nfc")
    s = store()
    try:
        assert admin.card_owner(s, token) == "m1"
    finally:
        s.close()
    run("card", "lost", "--site", "pool", "--nfc-uid", "04A1B2C3D4E5F6")
    out = run("card", "unfreeze", "--site", "pool", "--nfc-uid", "04A1B2C3D4E5F6", code=1)
    assert "a lost card cannot become active" in one_line(out)
    assert "4, 7 or 10 bytes" in run("card", "link", "--account", "m1", "--nfc-uid", "0411", code=2)
    run("card", "link", "--anonymous", "--card", "9000000000000001", "--valid-until", "2030-01-31")
    run("card", "cancel", "--site", "pool", "--card", "9000000000000001")
