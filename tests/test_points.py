"""Points: lots that lapse oldest first with a reminder before, the member's choice to keep
their points at a point of sale, and transfers between members, through the real pipeline and
the cloud store."""

from __future__ import annotations

import pytest

from cloud_sync import admin
from cloud_sync.errors import ActionRefused
from cloud_sync.membership import MembershipSettings
from cloud_sync.store import SqliteCloudStore
from cloud_sync.upkeep import lapse_points
from edge.config import KioskConfig
from edge.feedback.outputs import screen_for
from edge.ledger import Clock, Intent, Kind, Ledger, generate_key, public_bytes
from edge.ledger.membership import DAY_MS, Lot, Spend, held_lots, lapsed_points, next_lapse
from edge.taps.pipeline import TapPipeline
from edge.taps.tokens import card_ref
from edge.validation import load
from tests.kiosk_helpers import SITE_KEY, RecordingFeedback, nfc

T0 = 1_790_000_000_000


def test_debits_use_the_oldest_lots_first_and_old_lots_lapse():
    credits = [Lot(T0, 100), Lot(T0 + 10 * DAY_MS, 50), Lot(T0 + 20 * DAY_MS, 30)]
    # 180 credited, 60 spent: from the first lot, so 40 of it is left
    lots = held_lots(credits, 120)
    assert lots == [Lot(T0, 40), Lot(T0 + 10 * DAY_MS, 50), Lot(T0 + 20 * DAY_MS, 30)]
    now = T0 + 365 * DAY_MS
    assert lapsed_points(lots, now, 365) == 40
    assert lapsed_points(lots, now, 0) == 0  # 0: points never lapse
    assert next_lapse(lots, now, 365, 30) == (50, T0 + 375 * DAY_MS)
    assert next_lapse(lots, now, 365, 5) is None
    # credits older than those read count as the oldest read, never as lapsed long ago
    assert held_lots([Lot(T0, 10)], 25) == [Lot(T0, 15), Lot(T0, 10)]


def test_a_spend_after_a_lot_lapsed_uses_the_points_still_alive():
    credits = [Lot(T0, 300), Lot(T0 + 200 * DAY_MS, 500)]
    spent = [Spend(T0 + 370 * DAY_MS, 500)]
    lots = held_lots(credits, 300, spent, lifetime_days=365)
    assert lots == [Lot(T0, 300)]  # the lapsed lot is what is left, to be written off
    off = [*spent, Spend(T0 + 371 * DAY_MS, 300, lapse=True)]
    assert held_lots(credits, 0, off, lifetime_days=365) == []


class Site:
    def __init__(self, tmp_path, membership: MembershipSettings) -> None:
        self.t = [T0]
        ck, kk = generate_key(), generate_key()
        self.store = SqliteCloudStore(tmp_path / "cloud.db", replica="cloud", key=ck)
        self.store.ledger.clock = Clock(wall_ms=lambda: self.t[0])
        self.kiosk = Ledger(tmp_path / "k1.db", replica="k1", key=kk, clock=self.store.ledger.clock)
        self.store.trust("k1", public_bytes(kk), "kiosk")
        self.kiosk.trust("cloud", public_bytes(ck), "cloud")
        self.membership = membership
        for member, name, uid in (("m1", "Alice", "04AA"), ("m2", "Bob", "04BB")):
            admin.register_member(self.store, member, name)
            admin.link_card(self.store, member, card_ref(SITE_KEY, nfc(uid)))

    def down(self) -> None:
        self.kiosk.apply_many(self.store.ops("cloud"))

    def up(self) -> None:
        self.store.ingest(list(self.kiosk.ops("k1")))

    def close(self) -> None:
        self.kiosk.close()
        self.store.close()


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path, MembershipSettings(points_lifetime_days=365, point_transfers=True))
    yield s
    s.close()


def pos_config(**rules: object) -> KioskConfig:
    return load(
        KioskConfig,
        {
            "kiosk": {"id": "k1", "site": "pool", "role": "pos", "pos_amount": 1000},
            "rules": {
                "redeem_points": True,
                "points_per_unit": 0,
                "debounce_seconds": 0,
                "points_lifetime_days": 365,
                "points_expiry_notice_days": 30,
                **rules,
            },
        },
    )


async def test_points_reminder_then_lapsed_points_are_refused_and_written_off(site):
    store = site.store
    store.append([Intent(Kind.INC, "m1", "points", 300)], ref="old")
    site.t[0] = T0 + 200 * DAY_MS
    store.append([Intent(Kind.INC, "m1", "points", 500)], ref="newer")
    store.append([Intent(Kind.INC, "m1", "cash", 5000)], ref="counter")
    store.grant("m1", "cash", "k1", 5000, 1, "g1")
    store.grant("m1", "points", "k1", 800, 1, "g2")
    site.down()
    cfg = pos_config(points_per_cash_unit=100)
    pipeline = TapPipeline(
        cfg, site.kiosk, SITE_KEY, RecordingFeedback(), clock_ms=lambda: site.t[0]
    )
    await pipeline.keyed("0")  # the member keeps their points for this sale
    site.t[0] = T0 + 350 * DAY_MS
    kept = await pipeline.card(nfc("04AA"))
    assert [(m.purse, m.amount) for m in kept.decision.debits] == [("cash", 1000)]
    assert kept.decision.points_lapsing == (300, T0 + 365 * DAY_MS)
    assert screen_for(kept, cfg).note == "300 pts lapse " + "09-21"  # T0 + 365 d, UTC
    # past the first lot's lifetime: only the 500 newer points can pay
    site.t[0] = T0 + 370 * DAY_MS
    paid = await pipeline.card(nfc("04AA"))
    assert [(m.purse, m.amount) for m in paid.decision.debits] == [
        ("points", 500),
        ("cash", 500),
    ]
    # the cloud writes the lapsed lot off once the kiosk has handed its idle points back
    site.up()
    assert [x.written_off for x in lapse_points(store, site.membership, site.t[0])] == [0]
    back = Intent(Kind.XFER, "m1", "points", 300, counterpart="cloud")
    site.kiosk.append([back], ref="recall-1")
    site.up()
    site.t[0] += DAY_MS
    lapses = lapse_points(store, site.membership, site.t[0])
    assert [(x.member, x.lapsed, x.written_off) for x in lapses] == [("m1", 300, 300)]
    assert lapse_points(store, site.membership, site.t[0]) == []  # nothing left to lapse
    assert store.purse("m1", "points").value == 0
    site.down()
    assert site.kiosk.purse("m1", "points").value == 0


async def test_point_transfer_moves_points_once_and_not_toward_the_receivers_tier(site):
    store = site.store
    store.append([Intent(Kind.INC, "m1", "points", 400)], ref="earned")
    done = admin.transfer_points(
        store, site.membership, "m1", "m2", 150, ref="gift-1", now_ms=site.t[0]
    )
    again = admin.transfer_points(
        store, site.membership, "m1", "m2", 150, ref="gift-1", now_ms=site.t[0]
    )
    assert again.ops == done.ops
    assert (store.purse("m1", "points").value, store.purse("m2", "points").value) == (250, 150)
    assert store.register("m2", admin.PROGRESS_OFFSET).value == "150"
    with pytest.raises(ActionRefused, match="used for another transfer"):
        admin.transfer_points(
            store, site.membership, "m1", "m2", 10, ref="gift-1", now_ms=site.t[0]
        )
    with pytest.raises(ActionRefused, match="m1 has 250 points to give, not 900"):
        admin.transfer_points(store, site.membership, "m1", "m2", 900, ref="g2", now_ms=site.t[0])
    closed = MembershipSettings(point_transfers=False)
    with pytest.raises(ActionRefused, match="does not allow point transfers"):
        admin.transfer_points(store, closed, "m1", "m2", 10, ref="g3", now_ms=site.t[0])
    site.down()
    assert site.kiosk.purse("m2", "points").value == 150


async def test_points_a_kiosk_holds_cannot_be_given_until_handed_back(site):
    store = site.store
    store.append([Intent(Kind.INC, "m1", "points", 400)], ref="earned")
    store.grant("m1", "points", "k1", 300, 1, "g-points")
    with pytest.raises(ActionRefused, match="the cloud holds 100 of the points of m1, not 200"):
        admin.transfer_points(store, site.membership, "m1", "m2", 200, ref="g", now_ms=site.t[0])
