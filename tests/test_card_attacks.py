"""Cards (issue 12 item 5), attacked as a card cloner would: a UID clone of a SUN card, a SUN
URL replayed at a second kiosk, a captured URL on a tag of another UID, a guessed card number,
a card keyed with a retired master key. On real daemons, broker and reconciler where the
attack crosses kiosks; on the reader's code and the pipeline otherwise."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from click.testing import CliRunner

from cloud_sync import admin
from cloud_sync.errors import ActionRefused
from cloud_sync.store import SqliteCloudStore
from edge.drivers.base import Token, TokenKind
from edge.drivers.cardformats import Unreadable, classify
from edge.drivers.nfc_cards import Ntag424Tag
from edge.drivers.nfc_tap import CardPresented, CardRejected, SunVerifier, read_tap
from edge.drivers.ntag424 import RejectReason, SiteKeys
from edge.drivers.sun_counters import MemoryCounterStore
from edge.ledger import Intent, Kind, Ledger, generate_key, public_bytes
from edge.ledger import records as rec
from edge.ledger.chain import KioskAuthority, TapContext, authority_refusal
from edge.ledger.errors import SpendRefused
from edge.ledger.records import check_digit_ok
from edge.ledger.sitekey import SiteSecrets, card_keys_of, create_site_key, load_site_secrets
from edge.taps.pipeline import TapPipeline
from edge.taps.reasons import DenyReason
from edge.taps.tokens import card_ref
from kiosk.cloud import cloud
from provisioning.cards import allocate, parse_range
from tests.kiosk_helpers import SITE_KEY, RecordingFeedback, enroll, gate_config, grant
from tests.mqtt_broker import eventually
from tests.test_member_truth import START, venue

UID = "04A1B2C3D4E5F6"
KEYS = SiteKeys(bytes.fromhex("00112233445566778899AABBCCDDEEFF"), system_id=b"pool")


class _OtherUid:
    """A tag of another UID serving a real card's SUN file (a URL captured with a phone and
    written to a blank tag): the reader's GET UID answers this tag's UID."""

    def __init__(self, card: Ntag424Tag, uid: bytes) -> None:
        self.card, self.uid = card, uid

    def transmit(self, apdu: bytes) -> bytes:
        if apdu[:2] == b"\xff\xca":
            return self.uid + b"\x90\x00"
        return self.card.transmit(apdu)


def _verifier(*keys: SiteKeys) -> SunVerifier:
    return SunVerifier(list(keys), MemoryCounterStore(b"k" * 32))


def _site(tmp_path: Path) -> tuple[Ledger, Ledger]:
    cloud_key, kiosk_key = generate_key(), generate_key()
    cloud_led = Ledger(tmp_path / "cloud.db", replica="cloud", key=cloud_key, role="cloud")
    kiosk = Ledger(tmp_path / "k1.db", replica="k1", key=kiosk_key)
    cloud_led.trust("k1", public_bytes(kiosk_key), "kiosk")
    kiosk.trust("cloud", public_bytes(cloud_key), "cloud")
    return cloud_led, kiosk


# -- a UID clone of a SUN card ------------------------------------------------------------------


async def test_a_uid_clone_of_a_sun_card_is_refused_and_never_that_card(tmp_path: Path) -> None:
    cloud_led, kiosk = _site(tmp_path)
    enroll(cloud_led, "m1", "Alice", UID, purses={"cash": 10_000})  # her NTAG 424 (SUN)
    grant(cloud_led, kiosk, "m1", "cash", 10_000)
    kiosk.apply_many(list(cloud_led.ops("cloud")))
    clone = Token(TokenKind.NFC_UID, UID, authenticated=False)  # her UID on a magic card
    for accept in (False, True):  # refused by default; a site that opts in does not know it
        feedback = RecordingFeedback()
        pipeline = TapPipeline(gate_config(accept_uid_cards=accept), kiosk, SITE_KEY, feedback)
        out = await pipeline.card(clone)
        reason = DenyReason.UNKNOWN_CARD if accept else DenyReason.CARD_NOT_SECURE
        assert (out.decision.approved, out.decision.reason) == (False, reason)
        assert out.decision.member_name == ""
    assert kiosk.purse("m1", "cash").value == 10_000  # nothing debited
    real = TapPipeline(gate_config(), kiosk, SITE_KEY, RecordingFeedback())
    paid = await real.card(Token(TokenKind.NTAG424_SUN, UID, True, sun_ctr=1))
    assert paid.decision.approved and paid.decision.member_name == "Alice"


async def test_the_uid_switch_leaves_swiped_and_scanned_numbers_alone(tmp_path: Path) -> None:
    cloud_led, kiosk = _site(tmp_path)
    number = parse_range("90000000000-90099999999").number(12_345)
    swipe = Token(TokenKind.MAGSTRIPE, number, authenticated=False)
    scan = Token(TokenKind.BARCODE, number, authenticated=False)
    cloud_led.append(rec.member_intents("m1", "Bob", 1))
    cloud_led.append(rec.card_intents(card_ref(SITE_KEY, swipe), "m1", 1))
    cloud_led.append([Intent(Kind.INC, "m1", "cash", 5_000)])
    grant(cloud_led, kiosk, "m1", "cash", 5_000)
    kiosk.apply_many(list(cloud_led.ops("cloud")))
    cfg = gate_config(debounce_seconds=0)
    assert not cfg.rules.accept_uid_cards
    pipeline = TapPipeline(cfg, kiosk, SITE_KEY, RecordingFeedback())
    for token in (swipe, scan):
        out = await pipeline.card(token)
        assert out.decision.approved and out.decision.member_name == "Bob"


def load_or_make_secrets(tmp_path: Path) -> SiteSecrets:
    path = tmp_path / "site.key"
    if not path.exists():
        create_site_key(path)
    return load_site_secrets(path)


# -- the reader's UID and the SUN's -------------------------------------------------------------


def test_a_captured_sun_url_on_a_tag_of_another_uid_is_refused() -> None:
    card = Ntag424Tag.for_site(bytes.fromhex(UID), KEYS)
    verifier = _verifier(KEYS)
    forged = _OtherUid(card, bytes.fromhex("04112233445566"))
    event = read_tap(forged, verifier)
    assert isinstance(event, CardRejected)
    assert event.reason is RejectReason.UID_MISMATCH
    # The check comes before the counter: the real card's next read still passes.
    real = read_tap(card, verifier)
    assert isinstance(real, CardPresented) and real.token.sun_ctr == 2


# -- a SUN URL replayed at a second kiosk --------------------------------------------------------


@pytest.mark.mqtt
async def test_a_sun_url_read_at_one_gate_is_refused_at_the_other(tmp_path: Path) -> None:
    async with venue(tmp_path) as (v, _):
        first = await v.tap("gate-1")
        assert first.decision.approved
        await v.stored("gate-1")
        read = v.card.read_ctr
        gate2 = v.daemons["gate-2"].ledger
        account = rec.card_account(first.card_ref)

        def known() -> bool:
            reg = gate2.register(account, rec.SUN_COUNTER)
            return reg is not None and reg.version >= read

        await eventually(known, what="gate-2 knows the counter read at gate-1")
        # The URL gate-1 read, served again by a clone with the same UID (a magic tag).
        v.card.replay_next = True
        replay = await v.tap("gate-2")
        assert (replay.decision.approved, replay.decision.reason) == (
            False,
            DenyReason.CARD_NOT_SECURE,
        )
        assert v.cloud_cash() == START - 2_000  # only the real entry was paid
        # The real card is not locked out at gate-2: its next read is a new counter (whether it
        # is approved then depends on a rights round trip within its budget, not on the card).
        again = await v.tap("gate-2")
        assert again.decision.reason is not DenyReason.CARD_NOT_SECURE


async def test_a_replayed_counter_is_refused_once_the_kiosk_knows_it(tmp_path: Path) -> None:
    """The same attack on one kiosk's pipeline: the register arrived in its stream."""
    cloud_led, kiosk = _site(tmp_path)
    ref = enroll(cloud_led, "m1", "Alice", UID, purses={"cash": 10_000})
    grant(cloud_led, kiosk, "m1", "cash", 10_000)
    cloud_led.append([Intent(Kind.SET, rec.card_account(ref), rec.SUN_COUNTER, 7, data="")])
    kiosk.apply_many(list(cloud_led.ops("cloud")))
    pipeline = TapPipeline(gate_config(), kiosk, SITE_KEY, RecordingFeedback())
    replay = await pipeline.card(Token(TokenKind.NTAG424_SUN, UID, True, sun_ctr=7))
    assert replay.decision.reason is DenyReason.CARD_NOT_SECURE
    fresh = await pipeline.card(Token(TokenKind.NTAG424_SUN, UID, True, sun_ctr=8))
    assert fresh.decision.approved
    # The counter went into the tap's own transaction: the scope learns it from this kiosk.
    reg = kiosk.register(rec.card_account(ref), rec.SUN_COUNTER)
    assert reg is not None and (reg.version, reg.replica) == (8, "k1")


def test_a_kiosk_writes_sane_sun_counters_only(tmp_path: Path) -> None:
    _, kiosk = _site(tmp_path)
    with pytest.raises(SpendRefused):  # not a card's
        kiosk.append([Intent(Kind.SET, "m1", rec.SUN_COUNTER, 5, data="")])
    with pytest.raises(SpendRefused):  # above a 3-byte counter
        kiosk.append([Intent(Kind.SET, "card:x", rec.SUN_COUNTER, rec.SUN_CTR_MAX + 1, data="")])
    (op,) = kiosk.append([Intent(Kind.SET, "card:x", rec.SUN_COUNTER, 900_000, data="")])
    # A stolen kiosk writing a far counter to lock a card is held for review by the cloud.
    why = authority_refusal(
        op,
        KioskAuthority(),
        tap=TapContext(),
        rights_before=0,
        credited_today=0,
        now_ms=0,
        counter_before=12,
    )
    assert why is not None and "jumps" in why
    near = authority_refusal(
        op,
        KioskAuthority(),
        tap=TapContext(),
        rights_before=0,
        credited_today=0,
        now_ms=0,
        counter_before=899_990,
    )
    assert near is None


# -- a guessed card number -----------------------------------------------------------------------


def test_card_numbers_are_random_and_a_neighbour_fails_the_check_digit(tmp_path: Path) -> None:
    rng = parse_range("90000000000-90099999999")
    numbers = allocate(tmp_path / "issued.sqlite", rng, 50, "barcode", "b1")
    payloads = sorted(int(n[:-1]) for n in numbers)
    assert max(b - a for a, b in itertools.pairwise(payloads)) > 1  # not a run
    for number in numbers:
        if number[-2] == "9":
            continue  # +1 would carry into a second digit: Luhn's promise is one changed digit
        plus_one = str(int(number[:-1]) + 1) + number[-1]  # the next number, same check digit
        assert isinstance(classify(plus_one), Unreadable)  # the scanner refuses it
        with pytest.raises(ActionRefused, match="check digit"):  # the operator too
            admin.card_token(load_or_make_secrets(tmp_path), plus_one)


async def test_a_swiped_number_with_a_wrong_check_digit_is_refused_before_lookup(
    tmp_path: Path,
) -> None:
    _, kiosk = _site(tmp_path)
    pipeline = TapPipeline(gate_config(), kiosk, SITE_KEY, RecordingFeedback())
    typo = parse_range("90000000000-90099999999").number(12_345)[:-1] + "0"
    if check_digit_ok(typo):
        typo = typo[:-1] + "1"
    out = await pipeline.card(Token(TokenKind.MAGSTRIPE, typo, authenticated=False))
    assert out.decision.reason is DenyReason.UNKNOWN_CARD
    assert out.card_ref == ""  # no reference computed, nothing looked up


async def test_a_card_stock_without_check_digits_works_only_where_the_site_says_so(
    tmp_path: Path,
) -> None:
    """A venue's magstripe cards printed by its previous system carry no Luhn digit: refused by
    default, taken at a kiosk whose `[rules] card_check_digit = false`, and linked by the
    operator only where the cloud's `[membership] card_check_digit = false` says the same."""
    cloud_led, kiosk = _site(tmp_path)
    enroll(cloud_led, "m1", "Alice", UID, purses={"cash": 10_000})
    legacy = "6012345678"
    assert not check_digit_ok(legacy)
    swipe = Token(TokenKind.MAGSTRIPE, legacy, authenticated=False)
    cloud_led.append(rec.card_intents(card_ref(SITE_KEY, swipe), "m1", 1))
    grant(cloud_led, kiosk, "m1", "cash", 10_000)
    kiosk.apply_many(list(cloud_led.ops("cloud")))
    strict = TapPipeline(gate_config(), kiosk, SITE_KEY, RecordingFeedback())
    assert (await strict.card(swipe)).decision.reason is DenyReason.UNKNOWN_CARD
    old_stock = TapPipeline(
        gate_config(card_check_digit=False), kiosk, SITE_KEY, RecordingFeedback()
    )
    out = await old_stock.card(swipe)
    assert out.decision.approved and out.decision.member_name == "Alice"
    secrets = load_or_make_secrets(tmp_path)
    with pytest.raises(ActionRefused, match="check digit"):
        admin.card_token(secrets, legacy)
    assert admin.card_token(secrets, legacy, check_digit=False) == card_ref(
        secrets.card_ref_key, swipe
    )


# -- card master key versions ---------------------------------------------------------------------


def test_an_old_key_version_is_accepted_during_rotation_and_refused_after(tmp_path: Path) -> None:
    runner = CliRunner()
    site_key = tmp_path / "site.key"
    assert runner.invoke(cloud, ["site-key", "--file", str(site_key)]).exit_code == 0
    cfg = tmp_path / "cloud.toml"
    cfg.write_text(
        f'[reconciler]\nkey_file = "cloud.key"\nstore = "sqlite:///{tmp_path}/cloud.db"\n'
        'site_key_file = "site.key"\n'
    )
    keys_file = tmp_path / "pool.cardkeys"
    args = ["--config", str(cfg), "--file", str(keys_file)]
    res = runner.invoke(cloud, ["card-keys", "rotate", *args])
    assert res.exit_code == 0, res.output
    assert "version 2 current, version 1 previous" in res.output
    assert keys_file.stat().st_mode & 0o077 == 0
    assert runner.invoke(cloud, ["card-keys", "rotate", *args]).exit_code != 0  # one at a time
    secrets = load_site_secrets(site_key)

    def sun_keys(held: dict[int, bytes]) -> list[SiteKeys]:
        return [SiteKeys(m, system_id=b"pool", version=v) for v, m in held.items()]

    during = card_keys_of(secrets, keys_file)
    assert set(during) == {1, 2} and during[1] == secrets.sun_master
    old_card = Ntag424Tag.for_site(bytes.fromhex(UID), sun_keys({1: during[1]})[0])
    new_card = Ntag424Tag.for_site(bytes.fromhex("04000000000001"), sun_keys({2: during[2]})[0])
    kiosk = _verifier(*sun_keys(during))
    for card, version in ((old_card, 1), (new_card, 2)):
        event = read_tap(card, kiosk)
        assert isinstance(event, CardPresented) and event.token.key_version == version

    res = runner.invoke(cloud, ["card-keys", "finish", *args])
    assert res.exit_code == 0 and "version 2 current" in res.output
    after = card_keys_of(secrets, keys_file)
    assert set(after) == {2}
    kiosk = _verifier(*sun_keys(after))
    refused = read_tap(old_card, kiosk)
    assert isinstance(refused, CardRejected) and refused.reason is RejectReason.BAD_MAC
    assert isinstance(read_tap(new_card, kiosk), CardPresented)
    assert during[2].hex() not in res.output  # the key is never shown


def test_the_cloud_store_keeps_the_highest_counter(tmp_path: Path) -> None:
    store = SqliteCloudStore(tmp_path / "c.db", replica="cloud", key=generate_key())
    try:
        store.append([Intent(Kind.SET, "card:x", rec.SUN_COUNTER, 9, data="")])
        store.append([Intent(Kind.SET, "card:x", rec.SUN_COUNTER, 4, data="")])
        reg = store.register("card:x", rec.SUN_COUNTER)
        assert reg is not None and reg.version == 9  # a max register
    finally:
        store.close()
