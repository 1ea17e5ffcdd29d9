"""Refunds and corrections through the real parts: a kiosk pipeline sells, its ops reach the
cloud store, the operator refunds by the tap id, and the kiosk applies the cloud's signed ops."""

from __future__ import annotations

import pytest

from cloud_sync import admin
from cloud_sync.errors import ActionRefused
from cloud_sync.refunds import Purchase, Refunded, RefundRefused, plan_refund
from cloud_sync.store import SqliteCloudStore
from edge.ledger import Intent, Kind, Ledger, generate_key, public_bytes
from edge.ledger import records as rec
from edge.taps.pipeline import TapPipeline
from edge.taps.tokens import card_ref
from tests.kiosk_helpers import SITE_KEY, RecordingFeedback, gate_config, nfc


@pytest.fixture
def site(tmp_path):
    ck, kk = generate_key(), generate_key()
    store = SqliteCloudStore(tmp_path / "cloud.db", replica="cloud", key=ck)
    kiosk = Ledger(tmp_path / "k1.db", replica="k1", key=kk, role="kiosk")
    store.trust("k1", public_bytes(kk), "kiosk")
    kiosk.trust("cloud", public_bytes(ck), "cloud")
    admin.register_member(store, "m1", "Alice")
    admin.link_card(store, "m1", card_ref(SITE_KEY, nfc("04AA")))
    store.append([Intent(Kind.INC, "m1", "cash", 10_000)], ref="counter-1")
    store.grant("m1", "cash", "k1", 10_000, 1, "g1")
    yield store, kiosk
    kiosk.close()
    store.close()


def up(store, kiosk):
    store.ingest(list(kiosk.ops("k1")))


def down(store, kiosk):
    kiosk.apply_many(store.ops("cloud"))


async def sell(store, kiosk, cfg=None):
    down(store, kiosk)
    pipeline = TapPipeline(
        cfg or gate_config(points_per_unit=10), kiosk, SITE_KEY, RecordingFeedback()
    )
    out = await pipeline.card(nfc("04AA"))
    assert out.decision.approved
    up(store, kiosk)
    return out


def test_refund_plan_whole_part_and_never_more_than_paid():
    p = Purchase("t1", "m1", cash=2000, earned=200, used=(("coupon:X", "use", 1),))
    half = plan_refund(p, Refunded(), 1000)
    assert [(i.purse, i.amount) for i in half.credits] == [("cash", 1000)]
    assert (half.points_back, half.after) == (100, Refunded(1000, 100, False))
    rest = plan_refund(p, half.after, None)
    assert [(i.account, i.amount) for i in rest.credits] == [("m1", 1000), ("coupon:X", 1)]
    assert (rest.points_back, rest.after.whole) == (100, True)
    with pytest.raises(RefundRefused, match="refunded in full"):
        plan_refund(p, rest.after, 1)
    with pytest.raises(RefundRefused, match="1000 left to refund, not 1500"):
        plan_refund(p, half.after, 1500)


async def test_whole_refund_gives_cash_back_and_takes_points_back_on_every_replica(site):
    store, kiosk = site
    sold = await sell(store, kiosk)
    assert kiosk.purse("m1", "cash").value == 8000
    assert kiosk.purse("m1", "points").value == 200
    # the kiosk's idle points come back to the cloud (a recall), so the cloud can take them back
    kiosk.append([Intent(Kind.XFER, "m1", "points", 200, counterpart="cloud")], ref="recall-1")
    up(store, kiosk)
    done = admin.refund(store, sold.tap_id, amount=None, reason="pool closed")
    assert (done.cash, done.points_back, done.points_short) == (2000, 200, 0)
    again = admin.refund(store, sold.tap_id, amount=None, reason="pool closed")
    assert again.repeated
    down(store, kiosk)
    assert kiosk.purse("m1", "cash").value == 10_000
    assert kiosk.purse("m1", "points").value == 0
    assert next(o.data for o in store.by_ref(done.ops[0].ref)) == "pool closed"
    assert kiosk.register("m1", admin.PROGRESS_OFFSET).value == "200"  # tier progress undone
    with pytest.raises(ActionRefused, match="refunded in full"):
        admin.refund(store, sold.tap_id, amount=500, reason="again")


async def test_partial_refund_and_points_a_kiosk_still_holds_are_reported(site):
    store, kiosk = site
    sold = await sell(store, kiosk)
    done = admin.refund(store, sold.tap_id, amount=500, reason="lane closed half the time")
    assert (done.cash, done.points_back, done.points_short) == (500, 0, 50)
    down(store, kiosk)
    assert kiosk.purse("m1", "cash").value == 8500
    with pytest.raises(ActionRefused, match="1500 left to refund, not 1600"):
        admin.refund(store, sold.tap_id, amount=1600, reason="too much")


async def test_a_coupon_scan_is_not_a_purchase_to_refund(site):
    store, kiosk = site
    admin.issue_single_use(store, "coupon", "FREE1")
    store.grant(rec.COUPON_PREFIX + "FREE1", rec.COUPON_PURSE, "k1", 1, 1, "g-c")
    down(store, kiosk)
    pipeline = TapPipeline(gate_config(), kiosk, SITE_KEY, RecordingFeedback())
    used = await pipeline.code("C:FREE1")
    assert used.decision.approved
    up(store, kiosk)
    with pytest.raises(ActionRefused, match="no purchase"):
        admin.refund(store, used.tap_id, amount=None, reason="x")


def test_unknown_tap_and_missing_reason_are_refused(site):
    store, _ = site
    with pytest.raises(ActionRefused, match="no purchase with tap id nope"):
        admin.refund(store, "nope", amount=None, reason="r")
    with pytest.raises(ActionRefused, match="needs a reason"):
        admin.refund(store, "nope", amount=None, reason=" ")


def test_corrections_carry_their_reason_and_apply_once(site):
    store, kiosk = site
    admin.correct(store, "m1", "points", 300, reason="birthday", ref="c1")
    admin.correct(store, "m1", "points", 300, reason="birthday", ref="c1")
    with pytest.raises(ActionRefused, match="used for another correction"):
        admin.correct(store, "m1", "points", 50, reason="x", ref="c1")
    admin.correct(store, "m1", "points", -100, reason="typo", ref="c2")
    with pytest.raises(ActionRefused, match="the cloud holds 200 of points"):
        admin.correct(store, "m1", "points", -500, reason="too much", ref="c3")
    down(store, kiosk)
    assert kiosk.purse("m1", "points").value == 200
