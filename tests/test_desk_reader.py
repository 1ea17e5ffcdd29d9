"""Linking an NFC card at the operator's desk: a tap on a real PC/SC reader (our own pcscd with the
vpcd virtual reader and a card emulator) gives the same card reference a kiosk computes from the
UID it reads, so the gate then recognises the card."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("smartcard", reason="pyscard not installed (pip install -e '.[hw]')")

from cloud_sync import admin
from cloud_sync.desk_reader import read_uid
from cloud_sync.errors import ActionRefused
from cloud_sync.store import SqliteCloudStore
from edge.drivers.base import Token, TokenKind
from edge.ledger import generate_key, load_private_key, save_private_key
from edge.ledger.sitekey import load_site_secrets
from edge.taps.tokens import card_ref
from kiosk.cloud import cloud
from tests.card_emulator import VpcdCard, plain_tag
from tests.pcscd_process import VPCD_READER, Pcscd, wait_reader_empty

pytestmark = pytest.mark.pcsc

UID = "04A1B2C3D4E5F6"


def _tap_soon(card: VpcdCard) -> threading.Thread:
    """The operator lays the card on the reader a moment after the command starts waiting."""
    thread = threading.Thread(target=card.insert, daemon=True)
    thread.start()
    return thread


def test_the_desk_reader_reads_the_uid_of_a_card_laid_on_it(pcscd: Pcscd) -> None:
    card = VpcdCard(plain_tag(UID))
    tapper = _tap_soon(card)
    try:
        assert read_uid(VPCD_READER, timeout_s=20) == UID
    finally:
        tapper.join(5)
        card.remove()
        wait_reader_empty()


def test_no_card_within_the_wait_is_one_plain_refusal(pcscd: Pcscd) -> None:
    with pytest.raises(ActionRefused, match="no card on"):
        read_uid(VPCD_READER, timeout_s=1)
    with pytest.raises(ActionRefused, match="no PC/SC reader matching"):
        read_uid("No Such Reader 99", timeout_s=1)


def test_card_link_by_desk_tap_gives_the_reference_a_kiosk_computes(
    pcscd: Pcscd, tmp_path: Path
) -> None:
    key = tmp_path / "cloud.key"
    save_private_key(key, generate_key())
    runner = CliRunner()
    assert runner.invoke(cloud, ["site-key", "--file", str(tmp_path / "site.key")]).exit_code == 0
    cfg = tmp_path / "cloud.toml"
    cfg.write_text(
        f'[reconciler]\nkey_file = "cloud.key"\nstore = "sqlite:///{tmp_path}/cloud.db"\n'
        'site_key_file = "site.key"\n[reconciler.broker]\nport = 1\nconnect_timeout_s = 0.5\n'
    )
    args = ["--config", str(cfg)]
    res = runner.invoke(cloud, ["member", "register", "--account", "m1", "--name", "Ann", *args])
    assert res.exit_code == 0, res.output
    card = VpcdCard(plain_tag(UID))
    tapper = _tap_soon(card)
    try:
        res = runner.invoke(
            cloud, ["card", "link", "--account", "m1", "--reader", VPCD_READER, *args]
        )
    finally:
        tapper.join(5)
        card.remove()
        wait_reader_empty()
    assert res.exit_code == 0, res.output
    secrets = load_site_secrets(tmp_path / "site.key")
    # Linked as an NTAG 424 card: the reference a kiosk computes from its verified SUN UID.
    at_the_gate = card_ref(secrets.card_ref_key, Token(TokenKind.NTAG424_SUN, UID, True))
    store = SqliteCloudStore(tmp_path / "cloud.db", replica="cloud", key=load_private_key(key))
    try:
        assert admin.card_owner(store, at_the_gate) == "m1"
        assert admin.card_status(store, at_the_gate) == "active"
    finally:
        store.close()
