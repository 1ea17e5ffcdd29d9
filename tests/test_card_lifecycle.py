"""The card lifecycle: a state machine every operator move goes through (unfreeze never revives
a lost or replaced card), expiry dates with a reminder, anonymous cards, NFC cards linked by UID
so the kiosk recognises them."""

from __future__ import annotations

import pytest

from cloud_sync import admin
from cloud_sync.errors import ActionRefused
from cloud_sync.reconciler import Reconciler
from cloud_sync.store import SqliteCloudStore
from edge.drivers.base import Token, TokenKind
from edge.ledger import Ledger, generate_key, public_bytes
from edge.ledger.membership import CARD_MOVES, CardStatus, card_move_fault
from edge.ledger.sitekey import create_site_key, load_site_secrets
from edge.taps.pipeline import TapPipeline
from edge.taps.reasons import DenyReason
from edge.taps.rules import Balance, Card, Notice, decide
from tests.kiosk_helpers import RecordingFeedback, gate_config
from tests.rules_helpers import NOW, config, state, tap

S = CardStatus
DAY = 86_400_000


@pytest.mark.parametrize(
    ("current", "target", "ok"),
    [
        (S.ACTIVE, S.FROZEN, True),
        (S.FROZEN, S.ACTIVE, True),
        (S.LOST, S.ACTIVE, False),  # unfreeze never revives a lost card
        (S.REPLACED, S.ACTIVE, False),
        (S.CANCELLED, S.ACTIVE, False),
        (S.CANCELLED, S.LOST, False),
        (S.LOST, S.REPLACED, True),
        (S.EXPIRED, S.ACTIVE, True),  # renewed
        (S.ACTIVE, S.CANCELLED, True),
    ],
)
def test_card_moves(current, target, ok):
    assert (card_move_fault(current, target) is None) is ok


def test_every_status_has_its_moves_and_cancelled_is_final():
    assert set(CARD_MOVES) == set(CardStatus)
    assert CARD_MOVES[S.CANCELLED] == frozenset()
    assert "nothing: it is final" in (card_move_fault(S.CANCELLED, S.ACTIVE) or "")


def test_card_expiring_soon_shows_a_reminder():
    soon = Card(ref="ref1", member="m1", valid_until_ms=NOW + 3 * DAY)
    d = decide(state(card=soon, cash=Balance(5000, 5000)), tap(), config())
    assert Notice.CARD_EXPIRING in d.notices
    later = Card(ref="ref1", member="m1", valid_until_ms=NOW + 60 * DAY)
    d = decide(state(card=later, cash=Balance(5000, 5000)), tap(), config())
    assert Notice.CARD_EXPIRING not in d.notices


@pytest.fixture
def cloud(tmp_path):
    ck, kk = generate_key(), generate_key()
    store = SqliteCloudStore(tmp_path / "cloud.db", replica="cloud", key=ck)
    kiosk = Ledger(tmp_path / "k1.db", replica="k1", key=kk, role="kiosk")
    store.trust("k1", public_bytes(kk), "kiosk")
    kiosk.trust("cloud", public_bytes(ck), "cloud")
    create_site_key(tmp_path / "site.key")
    secrets = load_site_secrets(tmp_path / "site.key")
    admin.register_member(store, "m1", "Alice")
    yield Reconciler(store, ck), kiosk, secrets
    kiosk.close()
    store.close()


async def test_nfc_card_linked_by_uid_is_recognised_at_the_gate(cloud):
    rec, kiosk, secrets = cloud
    uid = "04A1B2C3D4E5F6"
    admin.link_card(rec.store, "m1", admin.card_token(secrets, uid, "nfc"))
    kiosk.apply_many(rec.store.ops("cloud"))
    pipeline = TapPipeline(gate_config(), kiosk, secrets.card_ref_key, RecordingFeedback())
    out = await pipeline.card(Token(TokenKind.NTAG424_SUN, uid, True, sun_ctr=1))
    assert out.decision.reason is not DenyReason.UNKNOWN_CARD
    assert out.decision.member_name == "Alice"


async def test_a_uid_only_card_is_linked_on_purpose_and_taken_only_where_accepted(cloud):
    rec, kiosk, secrets = cloud
    uid = "04A1B2C3D4E5F6"
    admin.link_card(rec.store, "m1", admin.card_token(secrets, uid, "uid"))
    kiosk.apply_many(rec.store.ops("cloud"))
    read = Token(TokenKind.NFC_UID, uid, False)
    default = TapPipeline(gate_config(), kiosk, secrets.card_ref_key, RecordingFeedback())
    refused = await default.card(read)
    assert (refused.decision.reason, refused.decision.member_name) == (
        DenyReason.CARD_NOT_SECURE,
        "",
    )
    opted_in = gate_config(accept_uid_cards=True)
    pipeline = TapPipeline(opted_in, kiosk, secrets.card_ref_key, RecordingFeedback())
    assert (await pipeline.card(read)).decision.member_name == "Alice"


async def test_unfreeze_never_revives_a_lost_card_and_the_kiosk_still_refuses_it(cloud):
    rec, kiosk, secrets = cloud
    token = admin.card_token(secrets, "4000123412341234")
    admin.link_card(rec.store, "m1", token)
    admin.set_card_status(rec, "pool", token, "lost")
    with pytest.raises(ActionRefused, match="a lost card cannot become active"):
        admin.set_card_status(rec, "pool", token, "active")
    with pytest.raises(ActionRefused, match="a lost card cannot become active"):
        admin.link_card(rec.store, "m1", token)
    admin.set_card_status(rec, "pool", token, "cancelled")
    kiosk.apply_many(rec.store.ops("cloud"))
    pipeline = TapPipeline(gate_config(), kiosk, secrets.card_ref_key, RecordingFeedback())
    out = await pipeline.card(Token(TokenKind.BARCODE, "4000123412341234", False))
    assert out.decision.reason is DenyReason.CARD_CANCELLED


async def test_anonymous_card_and_expiry_renewal(cloud):
    rec, kiosk, secrets = cloud
    token = admin.card_token(secrets, "9000000000000001")
    account = admin.link_anonymous_card(rec.store, token, valid_until_ms=NOW - DAY)
    assert account == admin.link_anonymous_card(rec.store, token)  # the same card, same account
    kiosk.apply_many(rec.store.ops("cloud"))
    pipeline = TapPipeline(
        gate_config(), kiosk, secrets.card_ref_key, RecordingFeedback(), clock_ms=lambda: NOW
    )
    out = await pipeline.card(Token(TokenKind.BARCODE, "9000000000000001", False))
    assert out.decision.reason is DenyReason.CARD_EXPIRED
    admin.set_card_expiry(rec.store, token, NOW + 365 * DAY)
    kiosk.apply_many(rec.store.ops("cloud"))
    pipeline = TapPipeline(
        gate_config(), kiosk, secrets.card_ref_key, RecordingFeedback(), clock_ms=lambda: NOW
    )
    out = await pipeline.card(Token(TokenKind.BARCODE, "9000000000000001", False))
    assert out.decision.reason is DenyReason.INSUFFICIENT_BALANCE  # valid again: pays, has 0
