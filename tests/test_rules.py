"""Each membership rule, as a pure function: a test that fails if the rule breaks."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.ledger.records import hash_pin
from edge.taps.reasons import DenyReason
from edge.taps.rules import (
    DAY_MS,
    Balance,
    Card,
    CardStatus,
    Member,
    Move,
    Notice,
    Pass,
    decide,
    decide_single_use,
    topup_bonus,
)
from tests.rules_helpers import NOW, config, state, tap

CASH = Balance(value=10_000, rights=10_000)


def test_unknown_card_is_denied():
    d = decide(dataclasses.replace(state(), card=None, member=None), tap(), config())
    assert (d.approved, d.reason) == (False, DenyReason.UNKNOWN_CARD)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (CardStatus.LOST, DenyReason.CARD_LOST),
        (CardStatus.FROZEN, DenyReason.CARD_FROZEN),
        (CardStatus.CANCELLED, DenyReason.CARD_CANCELLED),
        (CardStatus.REPLACED, DenyReason.CARD_REPLACED),
        (CardStatus.EXPIRED, DenyReason.CARD_EXPIRED),
    ],
)
def test_card_lifecycle_states_are_denied_with_their_reason(status, reason):
    s = state(card=Card("ref1", "m1", status=status), cash=CASH)
    d = decide(s, tap(), config())
    assert (d.approved, d.reason, d.debits) == (False, reason, ())


def test_active_card_pays_entry_in_cash():
    d = decide(state(cash=CASH), tap(), config())
    assert d.approved
    assert d.debits == (Move("cash", 2000),)
    assert d.remaining["cash"] == 8000
    assert d.member_name == "Alice"


def test_replacement_card_works_while_the_old_is_refused():
    old = decide(state(card=Card("old", "m1", CardStatus.REPLACED), cash=CASH), tap(), config())
    new = decide(state(card=Card("new", "m1"), cash=CASH), tap(), config())
    assert old.reason is DenyReason.CARD_REPLACED
    assert new.approved


def test_card_validity_window():
    early = state(card=Card("r", "m1", valid_from_ms=NOW + 1), cash=CASH)
    late = state(card=Card("r", "m1", valid_until_ms=NOW), cash=CASH)
    assert decide(early, tap(), config()).reason is DenyReason.CARD_NOT_YET_VALID
    assert decide(late, tap(), config()).reason is DenyReason.CARD_EXPIRED


def test_uid_only_cards_are_refused_unless_the_site_opts_in():
    products = {"swim": {"name": "S", "price": 1}}
    cfg = config(rules__products=products)
    assert not cfg.rules.accept_uid_cards  # the default
    refused = decide(state(cash=CASH), tap(uid_only=True), cfg)
    assert (refused.reason, refused.member_name) == (DenyReason.CARD_NOT_SECURE, "")
    assert decide(state(cash=CASH), tap(uid_only=False), cfg).approved
    opted_in = config(rules__accept_uid_cards=True, rules__products=products)
    assert decide(state(cash=CASH), tap(uid_only=True), opted_in).approved


def test_not_enough_balance_is_denied():
    d = decide(state(cash=Balance(1999, 1999)), tap(), config())
    assert (d.approved, d.reason) == (False, DenyReason.INSUFFICIENT_BALANCE)


def test_credit_limit_allows_overdraft_to_the_bound():
    within = state(cash=Balance(500, 500, lower_bound=-2000))
    beyond = state(cash=Balance(-100, 0, lower_bound=-2000))
    assert decide(within, tap(), config()).approved
    assert decide(beyond, tap(), config()).reason is DenyReason.INSUFFICIENT_BALANCE


def test_visit_pass_is_used_before_cash():
    d = decide(state(cash=CASH, visits__swim=Balance(3, 3)), tap(), config())
    assert d.debits == (Move("visits:swim", 1),)
    assert d.credits == ()
    assert d.remaining["visits:swim"] == 2


def test_valid_time_pass_enters_free_and_expired_one_does_not():
    valid = Member("m1", "Alice", passes=(Pass("swim", NOW - DAY_MS, NOW + 30 * DAY_MS),))
    gone = Member("m1", "Alice", passes=(Pass("swim", NOW - 30 * DAY_MS, NOW - 1),))
    d = decide(state(member=valid), tap(), config())
    assert d.approved
    assert d.debits == ()
    assert (
        decide(state(member=gone), tap(), config()).reason is DenyReason.PASS_EXPIRED
    )  # told so, not "not enough"


def test_time_pass_fails_closed_when_the_kiosk_has_not_heard_from_the_cloud():
    member = Member("m1", "Alice", passes=(Pass("swim", NOW - DAY_MS, NOW + DAY_MS),))
    fresh = dataclasses.replace(state(member=member), denylist_age_ms=3600_000)
    stale = dataclasses.replace(state(member=member), denylist_age_ms=25 * 3600_000)
    assert decide(fresh, tap(), config()).approved
    assert decide(stale, tap(), config()).reason is DenyReason.PASS_CHECK_STALE


def test_tier_discount_and_points_multiplier():
    gold = Member("m1", "Alice", tier="gold")
    d = decide(state(member=gold, cash=CASH), tap(), config())
    assert d.debits == (Move("cash", 1800),)  # 10% off 20.00
    assert d.credits == (Move("points", 36),)  # 18 units x 1 point x 200%


def test_display_says_how_far_to_the_next_tier():
    d = decide(state(cash=CASH, points=Balance(420, 420, earned=420)), tap(), config())
    assert d.to_next_tier == ("gold", 500 - 420 - 20)
    assert Notice.NEAR_NEXT_TIER in d.notices


def test_low_balance_notice():
    d = decide(state(cash=Balance(2500, 2500)), tap(), config())
    assert d.approved
    assert Notice.LOW_BALANCE in d.notices
    assert Notice.LOW_BALANCE not in decide(state(cash=CASH), tap(), config()).notices


def test_pass_expiring_soon_notice():
    member = Member("m1", "Alice", passes=(Pass("swim", NOW - DAY_MS, NOW + 3 * DAY_MS),))
    assert Notice.PASS_EXPIRING in decide(state(member=member), tap(), config()).notices


def test_anti_passback_until_exit_or_timeout():
    s = dataclasses.replace(state(cash=CASH), last_entry_ms=NOW - 10 * 60_000)
    assert decide(s, tap(), config()).reason is DenyReason.PASSBACK
    later = dataclasses.replace(s, last_entry_ms=NOW - 31 * 60_000)
    assert decide(later, tap(), config()).approved
    exit_gate = config(kiosk={"id": "g2", "site": "pool", "role": "gate", "direction": "out"})
    out = decide(s, tap(), exit_gate)
    assert out.approved
    assert out.debits == ()


PIN_MEMBER = Member("m1", "Alice", pin_hash=hash_pin("4321", b"salt-1"))
EXPENSIVE = config(rules__pin_above=1000)


def test_pin_is_asked_above_the_threshold():
    d = decide(state(member=PIN_MEMBER, cash=CASH), tap(), EXPENSIVE)
    assert d.needs_pin
    assert not d.opens_gate
    assert d.debits == ()


def test_right_pin_pays():
    d = decide(state(member=PIN_MEMBER, cash=CASH), tap(pin="4321"), EXPENSIVE)
    assert d.opens_gate
    assert d.debits == (Move("cash", 2000),)


def test_wrong_pin_is_counted_and_the_fifth_locks_for_15_minutes():
    d = decide(state(member=PIN_MEMBER, cash=CASH), tap(pin="0000"), EXPENSIVE)
    assert d.reason is DenyReason.PIN_WRONG
    assert [(w.name, w.value) for w in d.writes] == [("pin_fails", "1")]
    fourth = dataclasses.replace(PIN_MEMBER, pin_fails=4)
    d5 = decide(state(member=fourth, cash=CASH), tap(pin="0000"), EXPENSIVE)
    assert d5.reason is DenyReason.PIN_LOCKED
    assert ("pin_locked_until", str(NOW + 15 * 60_000)) in [(w.name, w.value) for w in d5.writes]
    locked = dataclasses.replace(PIN_MEMBER, pin_locked_until_ms=NOW + 1)
    assert (
        decide(state(member=locked, cash=CASH), tap(pin="4321"), EXPENSIVE).reason
        is DenyReason.PIN_LOCKED
    )


def test_right_pin_resets_the_failure_count():
    member = dataclasses.replace(PIN_MEMBER, pin_fails=2)
    d = decide(state(member=member, cash=CASH), tap(pin="4321"), EXPENSIVE)
    assert d.opens_gate
    assert [(w.name, w.value) for w in d.writes] == [("pin_fails", "0")]


POS = config(kiosk={"id": "pos-1", "site": "pool", "role": "pos", "pos_amount": 1500})


def test_point_of_sale_charges_the_configured_or_keyed_amount():
    assert decide(state(cash=CASH), tap(), POS).debits == (Move("cash", 1500),)
    assert decide(state(cash=CASH), tap(amount=250), POS).debits == (Move("cash", 250),)


def test_points_redemption_is_partial_and_cash_pays_the_rest():
    cfg = config(
        kiosk={"id": "pos-1", "site": "pool", "role": "pos", "pos_amount": 1500},
        rules={"redeem_points": True, "points_per_cash_unit": 10, "points_per_unit": 0},
    )
    d = decide(state(cash=CASH, points=Balance(30, 30)), tap(), cfg)  # 30 points = 3.00
    assert d.debits == (Move("points", 30), Move("cash", 1200))
    full = decide(state(cash=Balance(0, 0), points=Balance(500, 500)), tap(), cfg)
    assert full.debits == (Move("points", 150),)


def test_topup_bonus_takes_the_best_rule_reached():
    cfg = config(
        rules={
            "topup_bonus": [
                {"min_amount": 10000, "bonus": 1000},
                {"min_amount": 50000, "bonus": 8000},
            ]
        }
    )
    assert [topup_bonus(a, "coins", cfg) for a in (9999, 10000, 49999, 50000)] == [
        0,
        1000,
        1000,
        8000,
    ]


def test_single_use_coupon_moves_once():
    first = decide_single_use("coupon", "coupon:c1", Balance(1, 1), None, "use")
    assert first.approved
    assert first.debits == (Move("use", 1, account="coupon:c1"),)
    again = decide_single_use("coupon", "coupon:c1", Balance(0, 0), None, "use")
    assert again.reason is DenyReason.COUPON_USED
    unknown = decide_single_use("coupon", "coupon:zz", None, None, "use")
    assert unknown.reason is DenyReason.UNKNOWN_CODE


def test_voucher_moves_its_value_to_the_member():
    m = Member("m1", "Alice")
    d = decide_single_use("voucher", "voucher:v1", Balance(5000, 5000), m, "cash")
    assert d.debits == (Move("cash", 5000, account="voucher:v1"),)
    assert d.credits == (Move("cash", 5000),)


@given(
    value=st.integers(-5000, 50_000),
    bound=st.integers(-5000, 0),
    price=st.integers(0, 20_000),
    tier=st.sampled_from(["silver", "gold", "platinum", "unknown"]),
)
def test_an_approved_cash_entry_never_goes_below_the_bound(value, bound, price, tier):
    cfg = config(rules__products={"swim": {"name": "Swim", "price": price}}, rules__pin_above=0)
    s = state(member=Member("m1", "A", tier=tier), cash=Balance(value, value, lower_bound=bound))
    d = decide(s, tap(), cfg)
    if d.approved and d.debits:
        assert all(m.amount > 0 for m in d.debits)
        assert d.remaining["cash"] >= bound
