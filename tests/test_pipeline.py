"""The decision pipeline on real ledgers: durable op before the gate, retries never debit twice,
denials audited, PIN lockout recorded as ops, top-up with bonus, single-use coupons."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import KioskConfig
from edge.ledger import Intent, Kind
from edge.ledger import records as rec
from edge.ledger.records import hash_pin
from edge.taps.pipeline import TapPipeline
from edge.taps.reasons import DenyReason
from edge.validation import load
from tests.kiosk_helpers import (
    SITE_KEY,
    RecordingFeedback,
    enroll,
    gate_config,
    grant,
    nfc,
    sync_down,
)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def site(cloud_and_kiosks):
    cloud, k1, k2 = cloud_and_kiosks()
    return cloud, k1, k2


def make_kiosk(ledger, cfg=None, clock=None):
    fx = RecordingFeedback(ledger=ledger)
    kiosk = TapPipeline(cfg or gate_config(), ledger, SITE_KEY, fx, monotonic=clock or Clock())
    return kiosk, fx


async def test_approved_tap_commits_the_op_before_the_gate_opens(site):
    cloud, k1, _ = site
    enroll(cloud, "m1", "Alice", "04AA", purses={"cash": 5000})
    grant(cloud, k1, "m1", "cash", 3000)
    sync_down(cloud, k1)
    kiosk, fx = make_kiosk(k1)
    out = await kiosk.card(nfc("04AA"))
    assert out.decision.approved
    assert fx.events == ["gate", "approved"]
    assert fx.gate_opened_with_durable_op == [True]
    assert 0 < out.started_ns < out.durable_ns <= out.gate_ns
    st = k1.purse("m1", "cash")
    assert (st.value, st.rights("k1")) == (3000, 1000)
    assert out.decision.remaining["cash"] == 3000


async def test_double_tap_shows_the_same_result_and_debits_nothing(site):
    cloud, k1, _ = site
    enroll(cloud, "m1", "Alice", "04AA", purses={"cash": 5000})
    grant(cloud, k1, "m1", "cash", 5000)
    sync_down(cloud, k1)
    clock = Clock()
    kiosk, fx = make_kiosk(k1, clock=clock)
    first = await kiosk.card(nfc("04AA"))
    clock.t += 1.0
    again = await kiosk.card(nfc("04AA"))
    assert again.decision.repeated
    assert again.tap_id == first.tap_id
    assert fx.events == ["gate", "approved", "approved"]
    assert k1.purse("m1", "cash").value == 3000
    clock.t += 10.0
    third = await kiosk.card(nfc("04AA"))
    assert third.decision.approved
    assert not third.decision.repeated
    assert k1.purse("m1", "cash").value == 1000


async def test_lost_card_is_denied_offline_and_audited(site):
    cloud, k1, _ = site
    enroll(cloud, "m1", "Alice", "04AA", purses={"cash": 5000}, status="lost")
    grant(cloud, k1, "m1", "cash", 5000)
    sync_down(cloud, k1)
    kiosk, fx = make_kiosk(k1)
    out = await kiosk.card(nfc("04AA"))
    assert out.decision.reason is DenyReason.CARD_LOST
    assert fx.events == ["denied"]
    assert [d["reason"] for d in k1.denials()] == ["CARD_LOST"]
    assert k1.purse("m1", "cash").value == 5000


async def test_balance_held_elsewhere_is_refused_in_strict_mode(site):
    cloud, k1, _ = site
    enroll(cloud, "m1", "Alice", "04AA", purses={"cash": 5000})
    grant(cloud, k1, "m1", "cash", 1000)  # the kiosk holds 10.00 of the 50.00
    sync_down(cloud, k1)
    kiosk, fx = make_kiosk(k1)
    out = await kiosk.card(nfc("04AA"))
    assert out.decision.reason is DenyReason.HELD_ELSEWHERE
    assert "gate" not in fx.events
    assert k1.purse("m1", "cash").rights("k1") == 1000


class OnlineCloud:
    """The cloud link at its seam: grants on request by writing a real xfer on the cloud ledger."""

    def __init__(self, cloud, kiosk):
        self.cloud, self.kiosk = cloud, kiosk
        self.online = True
        self.last_contact_ms = 0
        self.requests = []
        self.deny = {}

    def denied(self, card_ref):
        return self.deny.get(card_ref)

    def known_values(self, account):
        return None  # this seam syncs whole ledgers: the kiosk's own values are true

    async def lookup(self, account):
        return False  # this seam syncs whole ledgers: nothing to look up

    async def request_rights(self, account, purse, amount):
        self.requests.append((account, purse, amount))
        grant(self.cloud, self.kiosk, account, purse, amount)
        sync_down(self.cloud, self.kiosk)
        return True


async def test_online_kiosk_asks_the_cloud_for_missing_rights(site):
    cloud, k1, _ = site
    enroll(cloud, "m1", "Alice", "04AA", purses={"cash": 5000})
    grant(cloud, k1, "m1", "cash", 1000)
    sync_down(cloud, k1)
    fx = RecordingFeedback(ledger=k1)
    link = OnlineCloud(cloud, k1)
    link.last_contact_ms = 1 << 62
    kiosk = TapPipeline(gate_config(), k1, SITE_KEY, fx, rights=link)
    out = await kiosk.card(nfc("04AA"))
    assert out.decision.approved
    assert link.requests == [("m1", "cash", 1000)]
    assert k1.purse("m1", "cash").value == 3000


async def test_wrong_pins_lock_the_card_and_the_lock_is_an_op(site):
    cloud, k1, _ = site
    enroll(cloud, "m1", "Alice", "04AA", purses={"cash": 9000}, pin_hash=hash_pin("2468", b"s"))
    grant(cloud, k1, "m1", "cash", 9000)
    sync_down(cloud, k1)
    kiosk, fx = make_kiosk(k1, gate_config(pin_above=1000, debounce_seconds=0))
    for i in range(5):
        asked = await kiosk.card(nfc("04AA"))
        assert asked.decision.needs_pin
        out = await kiosk.keyed("1111")
        expect = DenyReason.PIN_LOCKED if i == 4 else DenyReason.PIN_WRONG
        assert out.decision.reason is expect
    locked = k1.register("m1", "pin_locked_until")
    assert locked is not None
    assert int(locked.value) > 0
    # the lock is an op of this kiosk's chain, so every kiosk and the cloud learn it
    assert any(o.purse == "pin_locked_until" for o in k1.ops("k1"))
    again = await kiosk.card(nfc("04AA"))
    assert again.decision.reason is DenyReason.PIN_LOCKED
    assert k1.purse("m1", "cash").value == 9000
    assert "gate" not in fx.events


async def test_right_pin_opens_the_gate(site):
    cloud, k1, _ = site
    enroll(cloud, "m1", "Alice", "04AA", purses={"cash": 9000}, pin_hash=hash_pin("2468", b"s"))
    grant(cloud, k1, "m1", "cash", 9000)
    sync_down(cloud, k1)
    kiosk, fx = make_kiosk(k1, gate_config(pin_above=1000))
    await kiosk.card(nfc("04AA"))
    out = await kiosk.keyed("2468")
    assert out.decision.opens_gate
    assert fx.events == ["pin?", "gate", "approved"]
    assert k1.purse("m1", "cash").value == 7000


def topup_config() -> KioskConfig:
    return load(
        KioskConfig,
        {
            "kiosk": {"id": "k1", "site": "pool", "role": "topup"},
            "rules": {"topup_bonus": [{"min_amount": 10000, "bonus": 1000}]},
        },
    )


async def test_topup_credits_each_coin_at_once_and_the_bonus_at_the_end(site):
    cloud, k1, _ = site
    enroll(cloud, "m1", "Alice", "04AA")
    sync_down(cloud, k1)
    clock = Clock()
    kiosk, fx = make_kiosk(k1, topup_config(), clock)
    opened = await kiosk.card(nfc("04AA"))
    assert opened.decision.approved
    for _ in range(2):
        await kiosk.coin(5000)
        assert k1.purse("m1", "cash").value in (5000, 10000)
    clock.t += 5
    done = await kiosk.card(nfc("04AA"))
    assert done.topup_total == 11000
    st = k1.purse("m1", "cash")
    # Credited, and the rights handed to the cloud for wherever the member spends next.
    assert (st.value, st.rights("k1"), st.rights("cloud")) == (11000, 0, 11000)


async def test_coin_without_a_session_is_kept_for_staff(site):
    _, k1, _ = site
    kiosk, _ = make_kiosk(k1, topup_config())
    await kiosk.coin(100)
    assert k1.purse("unclaimed:k1", "cash").value == 100


async def test_coupon_works_once_even_at_two_offline_kiosks(site):
    cloud, k1, k2 = site
    cloud.append([Intent(Kind.INC, "coupon:FREE1", rec.COUPON_PURSE, 1)])
    grant(cloud, k1, "coupon:FREE1", rec.COUPON_PURSE, 1)
    sync_down(cloud, k1)
    sync_down(cloud, k2)
    kiosk1, _ = make_kiosk(k1)
    kiosk2, _ = make_kiosk(k2)
    first = await kiosk1.code("C:FREE1")
    at_other = await kiosk2.code("C:FREE1")
    again = await kiosk1.code("C:FREE1")
    assert first.decision.approved
    assert at_other.decision.reason is DenyReason.HELD_ELSEWHERE
    assert again.decision.reason is DenyReason.COUPON_USED
    assert await kiosk1.code("X:garbage") is not None
    assert (await kiosk1.code("nonsense")).decision.reason is DenyReason.UNKNOWN_CODE


async def test_voucher_tops_up_the_member_in_session(site):
    cloud, k1, _ = site
    enroll(cloud, "m1", "Alice", "04AA")
    cloud.append([Intent(Kind.INC, "voucher:V9", "cash", 3000)])
    grant(cloud, k1, "voucher:V9", "cash", 3000)
    sync_down(cloud, k1)
    kiosk, _ = make_kiosk(k1, topup_config())
    await kiosk.card(nfc("04AA"))
    out = await kiosk.code("V:V9")
    assert out.decision.approved
    assert k1.purse("m1", "cash").value == 3000
    assert k1.purse("voucher:V9", "cash").value == 0
    assert (await kiosk.code("V:V9")).decision.reason is DenyReason.VOUCHER_USED


async def test_card_numbers_never_reach_the_ledger(site):
    cloud, k1, _ = site
    enroll(cloud, "m1", "Alice", "04A1B2C3D4E5F6", purses={"cash": 5000})
    grant(cloud, k1, "m1", "cash", 5000)
    sync_down(cloud, k1)
    kiosk, _ = make_kiosk(k1)
    await kiosk.card(nfc("04A1B2C3D4E5F6"))
    await kiosk.card(nfc("04FFFFFFFFFFFF"))
    k1.close()
    raw = b"".join(p.read_bytes() for p in Path(k1.path).parent.glob("k1.db*"))
    assert b"04A1B2C3D4E5F6" not in raw.upper()
    assert b"04FFFFFFFFFFFF" not in raw.upper()


async def test_point_of_sale_charges_the_amount_keyed_before_the_tap(site):
    cloud, k1, _ = site
    enroll(cloud, "m1", "Alice", "04AA", purses={"cash": 5000})
    grant(cloud, k1, "m1", "cash", 5000)
    sync_down(cloud, k1)
    cfg = load(
        KioskConfig,
        {"kiosk": {"id": "k1", "site": "pool", "role": "pos"}, "rules": {"debounce_seconds": 0}},
    )
    kiosk, _ = make_kiosk(k1, cfg)
    assert await kiosk.keyed("1250") is None
    out = await kiosk.card(nfc("04AA"))
    assert out.decision.approved
    assert k1.purse("m1", "cash").value == 3750
    # the keyed amount paid one sale: the next tap has nothing to pay
    again = await kiosk.card(nfc("04AA"))
    assert again.decision.reason is DenyReason.NO_AMOUNT


async def test_offline_risk_allowance_records_debt_within_its_limits(fleet):
    from edge.ledger import RiskLimit, RiskPolicy

    cloud = fleet.add("cloud", "cloud")
    k1 = fleet.add("k1", risk=RiskPolicy({"cash": RiskLimit(per_tap=2000, total=3000)}))
    enroll(cloud, "m1", "Alice", "04AA", purses={"cash": 5000})
    grant(cloud, k1, "m1", "cash", 500)
    sync_down(cloud, k1)
    kiosk, _ = make_kiosk(k1, gate_config(debounce_seconds=0))
    first = await kiosk.card(nfc("04AA"))  # 20.00 with 5.00 held: 15.00 on risk
    assert first.decision.approved
    second = await kiosk.card(nfc("04AA"))  # another 20.00 would make 35.00 of debt
    assert second.decision.reason is DenyReason.RISK_LIMIT
    st = k1.purse("m1", "cash")
    assert (st.debt, st.rights("k1")) == (2000, -1500)


async def test_a_pin_lock_written_at_one_kiosk_holds_at_another(site):
    cloud, k1, k2 = site
    enroll(cloud, "m1", "Alice", "04AA", purses={"cash": 9000}, pin_hash=hash_pin("2468", b"s"))
    grant(cloud, k1, "m1", "cash", 4000)
    grant(cloud, k2, "m1", "cash", 4000)
    sync_down(cloud, k1)
    sync_down(cloud, k2)
    kiosk1, _ = make_kiosk(k1, gate_config(pin_above=1000, debounce_seconds=0))
    for _ in range(5):
        await kiosk1.card(nfc("04AA"))
        await kiosk1.keyed("0000")
    k2.apply_many(list(k1.ops("k1")))  # in the field: via the cloud
    kiosk2, fx2 = make_kiosk(k2, gate_config(pin_above=1000))
    out = await kiosk2.card(nfc("04AA"))
    assert out.decision.reason is DenyReason.PIN_LOCKED
    assert "gate" not in fx2.events


async def test_a_tech_card_opens_the_service_screen_and_moves_nothing(site):
    cloud, k1, _ = site
    ref = enroll(cloud, "tech-1", "Field Tech", "04EE")
    cloud.append(rec.register_writes("tech-1", 2, role="tech"))
    sync_down(cloud, k1)
    fx = RecordingFeedback(ledger=k1)
    kiosk = TapPipeline(gate_config(), k1, SITE_KEY, fx, diagnostics=lambda: ["k1 ok"])
    out = await kiosk.card(nfc("04EE"))
    assert out.decision.approved
    assert out.card_ref == ref
    assert fx.events == ["service"]
    own = list(k1.ops("k1"))
    assert [o.purse for o in own] == ["service"]  # only the audit of the opening
    assert own[0].kind is Kind.SET


async def test_a_card_on_the_pushed_deny_list_is_refused_before_its_register_arrives(site):
    cloud, k1, _ = site
    ref = enroll(cloud, "m1", "Alice", "04AA", purses={"cash": 5000})
    grant(cloud, k1, "m1", "cash", 5000)
    sync_down(cloud, k1)
    link = OnlineCloud(cloud, k1)
    link.last_contact_ms = 1 << 62
    link.deny[ref] = "lost"
    kiosk = TapPipeline(gate_config(), k1, SITE_KEY, RecordingFeedback(ledger=k1), rights=link)
    out = await kiosk.card(nfc("04AA"))
    assert out.decision.reason is DenyReason.CARD_LOST
    assert k1.purse("m1", "cash").value == 5000


async def test_service_mode_is_bounded_in_time_and_every_step_is_an_op(site):
    cloud, k1, _ = site
    enroll(cloud, "tech-1", "Field Tech", "04EE")
    cloud.append(rec.register_writes("tech-1", 2, role="tech"))
    enroll(cloud, "m1", "Alice", "04AA", purses={"cash": 5000})
    grant(cloud, k1, "m1", "cash", 5000)
    sync_down(cloud, k1)
    clock = Clock()
    fx = RecordingFeedback(ledger=k1)
    cfg = gate_config(debounce_seconds=0)
    kiosk = TapPipeline(cfg, k1, SITE_KEY, fx, monotonic=clock)
    await kiosk.card(nfc("04EE"))
    assert kiosk.in_service
    member = await kiosk.card(nfc("04AA"))  # no member is served meanwhile
    assert member.decision.reason is DenyReason.OUT_OF_SERVICE
    clock.t += cfg.kiosk.service_minutes * 60 - 1
    await kiosk.tick()
    assert kiosk.in_service
    clock.t += 2
    await kiosk.tick()  # it closes by itself
    assert not kiosk.in_service
    assert fx.events[-1] == "idle"
    audit = [o.data for o in k1.ops("k1") if o.purse == "service"]
    assert audit[0].startswith("open until ")
    assert audit[0].endswith("by tech card of tech-1")
    assert audit[1] == "closed: time is up"
    assert (await kiosk.card(nfc("04AA"))).decision.approved


async def test_a_top_up_at_one_kiosk_is_spendable_at_an_online_gate(site):
    cloud, gate, topup = site
    enroll(cloud, "m1", "Alice", "04AA")
    sync_down(cloud, gate)
    sync_down(cloud, topup)
    top_cfg = load(KioskConfig, {"kiosk": {"id": "k2", "site": "pool", "role": "topup"}})
    top_kiosk, _ = make_kiosk(topup, top_cfg)
    await top_kiosk.card(nfc("04AA"))
    await top_kiosk.coin(5000)
    # The top-up kiosk handed the rights to the cloud with the credit, in one transaction.
    assert topup.purse("m1", "cash").rights("k2") == 0
    cloud.apply_many(list(topup.ops("k2")))
    assert cloud.purse("m1", "cash").rights("cloud") == 5000
    # The gate has never seen that top-up; online, it asks the cloud for the rights.
    link = OnlineCloud(cloud, gate)
    link.last_contact_ms = 1 << 62
    kiosk = TapPipeline(gate_config(), gate, SITE_KEY, RecordingFeedback(ledger=gate), rights=link)
    out = await kiosk.card(nfc("04AA"))
    assert out.decision.approved, out.decision
    assert link.requests == [("m1", "cash", 2000)]
    assert out.decision.remaining["cash"] >= 0
