"""Batch card issuing: Luhn numbers from a range never reused, refs the kiosk will compute, a
printable PDF, and NTAG 424 personalisation of a blank card read back as a verified SUN tap."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

from edge.drivers.base import TokenKind
from edge.drivers.cardformats import Barcode, Magstripe, classify, luhn_valid
from edge.drivers.nfc_cards import BlankNtag424
from edge.drivers.nfc_tap import CardPresented, SunVerifier, read_tap
from edge.drivers.ntag424 import SiteKeys
from edge.drivers.sun_counters import MemoryCounterStore
from edge.ledger.sitekey import create_site_key, load_site_secrets
from edge.taps.tokens import card_ref
from provisioning.cards import allocate, luhn_digit, parse_range
from provisioning.cards_cli import issue_cards
from provisioning.errors import ProvisionError
from provisioning.ntag424_writer import PersonaliseError, app_master_key, personalise

HAVE_PRINTING = all(importlib.util.find_spec(m) for m in ("segno", "barcode", "PIL"))
UID = bytes.fromhex("04958CAA5C5E80")


@pytest.fixture
def site_key(tmp_path: Path) -> Path:
    path = tmp_path / "pool-7.site.key"
    create_site_key(path)
    return path


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_luhn_digit_makes_valid_numbers() -> None:
    assert luhn_digit("7992739871") == "3"  # the textbook example
    for payload in ("90000000", "90000001", "123456789012345"):
        assert luhn_valid(payload + luhn_digit(payload))


def test_ranges_that_look_like_bank_cards_are_refused() -> None:
    with pytest.raises(ProvisionError, match="bank card"):
        parse_range("40000000-40009999")
    with pytest.raises(ProvisionError):
        parse_range("900-9999")


def test_numbers_are_never_issued_twice(tmp_path: Path) -> None:
    reg = tmp_path / "issued.sqlite"
    rng = parse_range("90000000-90000009")
    first = allocate(reg, rng, 6, "barcode", "b1")
    second = allocate(reg, rng, 4, "magstripe", "b2")
    assert not set(first) & set(second)
    assert len(set(first + second)) == 10
    with pytest.raises(ProvisionError, match="only 0 numbers left"):
        allocate(reg, rng, 1, "barcode", "b3")


def test_barcode_batch_csv_refs_match_what_a_kiosk_computes(tmp_path: Path, site_key: Path) -> None:
    csv_path, pdf, n = issue_cards(
        count=5, kind="barcode", number_range="90000000-90009999", out=tmp_path / "out",
        site_key_file=site_key, site="pool-7", pdf=False, batch="b1",
    )  # fmt: skip
    assert (n, pdf) == (5, None)
    key = load_site_secrets(site_key).card_ref_key
    table = rows(csv_path)
    assert len(table) == 5
    for row in table:
        scanned = classify(row["card_number"])  # what the wedge reader makes of the printed code
        assert isinstance(scanned, Barcode)
        from edge.drivers.base import Token

        token = Token(TokenKind.BARCODE, scanned.number, authenticated=False)
        assert row["card_ref"] == card_ref(key, token)
        assert row["card_ref"] != row["card_number"]


def test_magstripe_track2_decodes_to_the_same_card(tmp_path: Path, site_key: Path) -> None:
    csv_path, _, _ = issue_cards(
        count=2, kind="magstripe", number_range="80000000000-80000099999", out=tmp_path,
        site_key_file=site_key, site="pool-7", pdf=False,
    )  # fmt: skip
    for row in rows(csv_path):
        swiped = classify(row["track2"])
        assert isinstance(swiped, Magstripe)
        assert swiped.number == row["card_number"]


@pytest.mark.skipif(not HAVE_PRINTING, reason="printing extra not installed (kiosk-edge[cards])")
@pytest.mark.parametrize("qr", [False, True])
def test_pdf_sheet_is_written(tmp_path: Path, site_key: Path, qr: bool) -> None:
    _, pdf, _ = issue_cards(
        count=30, kind="barcode", number_range="90000000-90009999", out=tmp_path,
        site_key_file=site_key, site="pool-7", qr=qr,
    )  # fmt: skip
    assert pdf is not None
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    assert b"/Count 2" in data  # 30 codes: 2 pages of 24


def keys() -> SiteKeys:
    return SiteKeys(master=bytes.fromhex("6B1D0E5F9A3C47D2B8E0F1A2C3D4E5F6"), system_id=b"pool-7")


def test_a_blank_ntag424_is_personalised_and_taps_as_a_verified_card() -> None:
    card = BlankNtag424(UID)
    result = personalise(card, keys(), "https://tap.example/k")
    assert result.uid_hex == UID.hex().upper()
    assert card.keys[2] == keys().meta_read_key
    assert card.keys[3] == keys().file_read_key(UID)
    assert card.keys[0] == app_master_key(keys(), UID)
    assert card.keys[0] != bytes(16)
    # A kiosk of the site reads it: authenticated, and every tap moves the counter.
    verifier = SunVerifier(keys(), MemoryCounterStore(b"k" * 32))
    for _ in range(2):
        card.reset()
        event = read_tap(card, verifier)
        assert isinstance(event, CardPresented)
        assert event.token.authenticated
        assert event.token.value == UID.hex().upper()
    # Another site's kiosk does not accept it.
    other = SiteKeys(master=bytes(range(16)), system_id=b"pool-7")
    card.reset()
    event = read_tap(card, SunVerifier(other, MemoryCounterStore(b"k" * 32)))
    assert not isinstance(event, CardPresented)


def test_a_personalised_card_cannot_be_personalised_again() -> None:
    card = BlankNtag424(UID)
    personalise(card, keys(), "https://tap.example/k")
    card.reset()
    with pytest.raises(PersonaliseError, match="not blank"):
        personalise(card, keys(), "https://tap.example/k")


def test_ntag424_batch_records_uid_refs_and_gives_back_unused_numbers(
    tmp_path: Path, site_key: Path
) -> None:
    blanks = [BlankNtag424(bytes.fromhex(f"04AABBCCDDEE{i:02X}")) for i in range(3)]
    csv_path, _, n = issue_cards(
        count=3, kind="ntag424", number_range="90000000-90009999", out=tmp_path,
        site_key_file=site_key, site="pool-7", pdf=False, links=blanks,
    )  # fmt: skip
    assert n == 3
    secrets = load_site_secrets(site_key)
    from edge.drivers.base import Token

    table = rows(csv_path)
    for row, card in zip(table, blanks, strict=True):
        token = Token(TokenKind.NTAG424_SUN, card.uid.hex().upper(), authenticated=True)
        assert row["uid_ref"] == card_ref(secrets.card_ref_key, token)
    # Only two cards turn up for a batch of three: the third number goes back to the pool.
    reg = site_key.with_name(site_key.name + ".issued.sqlite")
    more = [BlankNtag424(bytes.fromhex(f"04AABBCCDDEF{i:02X}")) for i in range(2)]
    with pytest.raises(ProvisionError, match="only 2 of 3"):
        issue_cards(
            count=3, kind="ntag424", number_range="90000000-90009999", out=tmp_path,
            site_key_file=site_key, site="pool-7", pdf=False, links=more, batch="b2",
        )  # fmt: skip
    import sqlite3

    with sqlite3.connect(reg) as db:
        assert db.execute("SELECT count(*) FROM issued").fetchone()[0] == 5
