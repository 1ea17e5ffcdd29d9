"""Top-up bonus rules by channel: coins earn the kiosk's bonus, vouchers none unless a rule
names them, the counter its own bonus at the cloud; a voucher's money goes to the cloud like
coins, so the gate where the member spends next can be granted it."""

from __future__ import annotations

from cloud_sync import admin
from cloud_sync.membership import CounterBonus, MembershipSettings
from cloud_sync.store import SqliteCloudStore
from edge.config import KioskConfig
from edge.ledger import Intent, Kind, generate_key
from edge.taps.pipeline import TapPipeline
from edge.taps.rules import topup_bonus
from edge.validation import load
from tests.kiosk_helpers import SITE_KEY, RecordingFeedback, enroll, grant, nfc, sync_down
from tests.test_pipeline import Clock


def topup_config(*rules: dict[str, object]) -> KioskConfig:
    return load(
        KioskConfig,
        {"kiosk": {"id": "k1", "site": "pool", "role": "topup"}, "rules": {"topup_bonus": rules}},
    )


def test_bonus_rules_apply_to_their_channels_only():
    cfg = topup_config(
        {"min_amount": 5000, "bonus": 500},
        {"min_amount": 5000, "bonus": 200, "channels": ["voucher"]},
    )
    assert topup_bonus(5000, "coins", cfg) == 500
    assert topup_bonus(5000, "voucher", cfg) == 200
    assert topup_bonus(5000, "voucher", topup_config({"min_amount": 5000, "bonus": 500})) == 0


async def test_voucher_money_goes_to_the_cloud_and_earns_no_coin_bonus(cloud_and_kiosks):
    cloud, k1, _ = cloud_and_kiosks()
    enroll(cloud, "m1", "Alice", "04AA")
    cloud.append([Intent(Kind.INC, "voucher:V9", "cash", 10000)])
    grant(cloud, k1, "voucher:V9", "cash", 10000)
    sync_down(cloud, k1)
    clock = Clock()
    cfg = topup_config({"min_amount": 10000, "bonus": 1000})
    kiosk = TapPipeline(cfg, k1, SITE_KEY, RecordingFeedback(ledger=k1), monotonic=clock)
    await kiosk.card(nfc("04AA"))
    assert (await kiosk.code("V:V9")).decision.approved
    await kiosk.coin(500)
    done = await kiosk.card(nfc("04AA"))
    assert done.topup_total == 10500  # 100.00 voucher + 5.00 coin, no bonus on either
    st = k1.purse("m1", "cash")
    assert (st.value, st.rights("k1"), st.rights("cloud")) == (10500, 0, 10500)
    cloud.apply_many(list(k1.ops("k1")))
    assert cloud.purse("m1", "cash").rights("cloud") == 10500


async def test_a_voucher_rule_gives_its_bonus(cloud_and_kiosks):
    cloud, k1, _ = cloud_and_kiosks()
    enroll(cloud, "m1", "Alice", "04AA")
    cloud.append([Intent(Kind.INC, "voucher:V9", "cash", 10000)])
    grant(cloud, k1, "voucher:V9", "cash", 10000)
    sync_down(cloud, k1)
    cfg = topup_config({"min_amount": 10000, "bonus": 800, "channels": ["voucher", "coins"]})
    kiosk = TapPipeline(cfg, k1, SITE_KEY, RecordingFeedback(ledger=k1), monotonic=Clock())
    await kiosk.card(nfc("04AA"))
    await kiosk.code("V:V9")
    assert (await kiosk.card(nfc("04AA"))).topup_total == 10800


def test_counter_top_up_gets_the_counter_bonus_once(tmp_path):
    store = SqliteCloudStore(tmp_path / "cloud.db", replica="cloud", key=generate_key())
    try:
        admin.register_member(store, "m1", "Alice")
        membership = MembershipSettings(topup_bonus=[CounterBonus(min_amount=20000, bonus=2000)])
        admin.top_up(store, "m1", "cash", 20000, "R-1", membership)
        admin.top_up(store, "m1", "cash", 20000, "R-1", membership)  # a retry
        admin.top_up(store, "m1", "cash", 5000, "R-2", membership)  # below the minimum
        assert store.purse("m1", "cash").value == 27000
    finally:
        store.close()
