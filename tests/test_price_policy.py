"""Member categories with their own prices and discount, a card's own discount rate, and the
order in which they combine (docs/membership-rules.md), as pure functions and through the
pipeline with the registers the cloud writes."""

from __future__ import annotations

import pytest

from cloud_sync import admin
from cloud_sync.errors import ActionRefused
from cloud_sync.membership import MembershipSettings
from cloud_sync.store import SqliteCloudStore
from edge.config import Category, Tier
from edge.ledger import Intent, Kind, Ledger, generate_key, public_bytes
from edge.taps.pipeline import TapPipeline
from edge.taps.rules import member_price
from edge.taps.tokens import card_ref
from tests.kiosk_helpers import SITE_KEY, RecordingFeedback, gate_config, nfc

STUDENT = Category(discount_pct=5, prices={"swim": 1200})
GOLD = Tier(name="gold", min_points=0, discount_pct=10)


@pytest.mark.parametrize(
    ("price", "category", "tier", "card", "paid"),
    [
        (2000, None, Tier(name="-", min_points=0), 0, 2000),  # list price
        (1200, STUDENT, Tier(name="-", min_points=0), 0, 1140),  # category price, its 5%
        (1200, STUDENT, GOLD, 0, 1080),  # the better of category and tier: 10%, never both
        (1200, STUDENT, GOLD, 50, 540),  # then the card's rate on what is left
        (999, None, GOLD, 0, 899),  # 899.1: the fraction of a fen goes to the member
    ],
)
def test_the_order_in_which_prices_and_discounts_combine(price, category, tier, card, paid):
    assert member_price(price, category, tier, card) == paid


@pytest.fixture
def site(tmp_path):
    ck, kk = generate_key(), generate_key()
    store = SqliteCloudStore(tmp_path / "cloud.db", replica="cloud", key=ck)
    kiosk = Ledger(tmp_path / "k1.db", replica="k1", key=kk)
    store.trust("k1", public_bytes(kk), "kiosk")
    kiosk.trust("cloud", public_bytes(ck), "cloud")
    yield store, kiosk
    kiosk.close()
    store.close()


async def test_category_price_and_card_discount_through_the_pipeline(site):
    store, kiosk = site
    membership = MembershipSettings(categories=["student"])
    admin.register_member(store, "m1", "Alice")
    token = card_ref(SITE_KEY, nfc("04AA"))
    admin.link_card(store, "m1", token)
    admin.set_member(store, "m1", category="student", membership=membership)
    with pytest.raises(ActionRefused, match="unknown category 'vip'"):
        admin.set_member(store, "m1", category="vip", membership=membership)
    admin.set_card_discount(store, token, 50)
    with pytest.raises(ActionRefused, match="0 to 100"):
        admin.set_card_discount(store, token, 101)
    store.append([Intent(Kind.INC, "m1", "cash", 5000)], ref="counter")
    store.grant("m1", "cash", "k1", 5000, 1, "g1")
    kiosk.apply_many(store.ops("cloud"))
    cfg = gate_config(
        categories={"student": {"discount_pct": 5, "prices": {"swim": "12.00"}}},
        debounce_seconds=0,
    )
    out = await TapPipeline(cfg, kiosk, SITE_KEY, RecordingFeedback()).card(nfc("04AA"))
    assert [(m.purse, m.amount) for m in out.decision.debits] == [("cash", 570)]
    assert kiosk.purse("m1", "cash").value == 5000 - 570
