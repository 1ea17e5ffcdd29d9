"""Tiers that move by themselves: the kiosk applies the tier a member's points reach at the tap
(price and "close to the next tier" note agree), refunded points stop counting, and the cloud's
review at the end of a window moves tiers down."""

from __future__ import annotations

import pytest

from cloud_sync import admin
from cloud_sync.membership import MembershipSettings, TierSetting
from cloud_sync.store import SqliteCloudStore
from edge.feedback.outputs import screen_for
from edge.ledger import Intent, Kind, Ledger, generate_key, public_bytes
from edge.ledger.membership import TierStep, review_tier
from edge.taps.pipeline import TapPipeline
from edge.taps.rules import Balance, Member, decide
from edge.taps.tokens import card_ref
from tests.kiosk_helpers import SITE_KEY, RecordingFeedback, nfc
from tests.rules_helpers import config, state, tap

STEPS = [TierStep("silver", 0), TierStep("gold", 500), TierStep("platinum", 2000)]


def test_points_reach_gold_so_the_tap_pays_the_gold_price_and_the_note_agrees():
    member = Member(id="m1", name="Alice", tier="silver")
    d = decide(
        state(member=member, cash=Balance(5000, 5000), points=Balance(600, 0, earned=600)),
        tap(),
        config(),
    )
    assert d.debits[0].amount == 1800  # 20.00 less gold's 10%
    assert d.tier == "gold"
    assert d.to_next_tier == ("platinum", 2000 - 600 - 36)  # gold earns double: 18 * 2 points


def test_refunded_points_do_not_count_toward_the_tier():
    member = Member(id="m1", name="Alice", tier="silver", progress_offset=200)
    s = state(member=member, cash=Balance(5000, 5000), points=Balance(600, 0, earned=600))
    assert decide(s, tap(), config()).debits[0].amount == 2000


def test_a_tier_set_higher_by_the_cloud_is_kept():
    member = Member(id="m1", name="Alice", tier="platinum")
    s = state(member=member, cash=Balance(5000, 5000), points=Balance(10, 0, earned=10))
    d = decide(s, tap(), config())
    assert (d.tier, d.debits[0].amount, d.to_next_tier) == ("platinum", 1600, None)


@pytest.mark.parametrize(
    ("current", "progress", "idle", "after"),
    [
        ("silver", 600, 0, "gold"),  # up
        ("platinum", 600, 0, "gold"),  # window missed: down to what it reached
        ("gold", 600, 200, "silver"),  # idle past the limit: one down
        ("platinum", 0, 200, "silver"),  # idle and nothing earned: what the window reached
    ],
)
def test_review_at_the_end_of_a_window(current, progress, idle, after):
    got = review_tier(current, progress, STEPS, idle_days=idle, inactive_days=180)
    assert got == after


async def test_automatic_upgrade_through_the_pipeline_and_review_at_the_cloud(tmp_path):
    ck, kk = generate_key(), generate_key()
    store = SqliteCloudStore(tmp_path / "cloud.db", replica="cloud", key=ck)
    kiosk = Ledger(tmp_path / "k1.db", replica="k1", key=kk, role="kiosk")
    try:
        store.trust("k1", public_bytes(kk), "kiosk")
        kiosk.trust("cloud", public_bytes(ck), "cloud")
        membership = MembershipSettings(
            tiers=[TierSetting(name=s.name, min_points=s.min_points) for s in STEPS]
        )
        admin.register_member(store, "m1", "Alice")
        admin.set_member(store, "m1", tier="silver", membership=membership)
        admin.link_card(store, "m1", card_ref(SITE_KEY, nfc("04AA")))
        store.append([Intent(Kind.INC, "m1", "cash", 10_000)], ref="counter-1")
        store.append([Intent(Kind.INC, "m1", "points", 600)], ref="points-1")
        store.grant("m1", "cash", "k1", 10_000, 1, "g1")
        kiosk.apply_many(store.ops("cloud"))
        cfg = config(kiosk={"id": "k1", "site": "pool", "role": "gate", "product": "swim"})
        out = await TapPipeline(cfg, kiosk, SITE_KEY, RecordingFeedback()).card(nfc("04AA"))
        assert out.decision.debits[0].amount == 1800
        assert "platinum" in screen_for(out, cfg).note
        store.ingest(list(kiosk.ops("k1")))
        changes = admin.review_tiers(store, membership, now_ms=store.ledger.clock.wall_ms())
        assert [(c.before, c.after) for c in changes] == [("silver", "gold")]
        # the next window starts at 0: a review with no new points moves gold down to silver
        changes = admin.review_tiers(store, membership, now_ms=store.ledger.clock.wall_ms())
        assert [(c.before, c.after) for c in changes] == [("gold", "silver")]
    finally:
        kiosk.close()
        store.close()


def test_spend_in_the_window_reaches_a_tier_too():
    steps = [TierStep("silver", 0), TierStep("gold", 500, min_spend=100_000)]
    assert review_tier("silver", 10, steps, spend=100_000) == "gold"
    assert review_tier("silver", 10, steps, spend=99_999) == "silver"
    member = Member(id="m1", name="Alice", tier="silver", spend_offset=20_000)
    tiers = [
        {"name": "silver", "min_points": 0},
        {"name": "gold", "min_points": 500, "min_spend": "500.00", "discount_pct": 10},
    ]
    cfg = config(rules={"tiers": tiers})
    spent = Balance(5000, 5000, spent=70_000)  # 700.00 spent, 200.00 of it before the window
    s = state(member=member, cash=spent, points=Balance(0, 0))
    assert decide(s, tap(), cfg).debits[0].amount == 1800
    assert decide(s, tap(), cfg).upgraded_from == "silver"
    s = state(member=member, cash=Balance(5000, 5000, spent=60_000), points=Balance(0, 0))
    assert decide(s, tap(), cfg).debits[0].amount == 2000


def test_the_reconciler_sweep_reviews_tiers_on_its_schedule(tmp_path):
    from cloud_sync.reconciler import Reconciler

    ck = generate_key()
    store = SqliteCloudStore(tmp_path / "cloud.db", replica="cloud", key=ck)
    try:
        membership = MembershipSettings(
            tiers=[TierSetting(name=s.name, min_points=s.min_points) for s in STEPS],
            review_every_days=30,
        )
        admin.register_member(store, "m1", "Alice")
        admin.set_member(store, "m1", tier="platinum", membership=membership)
        store.append([Intent(Kind.INC, "m1", "points", 600)], ref="points-1")
        now = [store.ledger.clock.wall_ms()]
        rec = Reconciler(store, ck, membership=membership, clock=lambda: now[0])
        rec.sweep()  # the first window starts
        assert store.register("m1", "tier").value == "platinum"
        now[0] += 29 * 86_400_000
        rec.sweep()
        assert store.register("m1", "tier").value == "platinum"
        now[0] += 2 * 86_400_000
        rec.sweep()  # 31 days: the window ends, 600 points reach gold only
        assert store.register("m1", "tier").value == "gold"
        rec.sweep()  # not again before another 30 days
        assert store.register("m1", "tier").value == "gold"
    finally:
        store.close()
