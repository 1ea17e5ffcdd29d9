"""Bounded-counter purses on one replica: rights, value, named refusals, risk, limits."""

from __future__ import annotations

import pytest

from edge.ledger import Intent, Kind, Refusal, RiskLimit, RiskPolicy, SpendRefused


def topup(led, account, purse, amount, ref=""):
    return led.append([Intent(Kind.INC, account, purse, amount)], ref=ref)


def test_inc_gives_rights_to_the_replica_that_credits(cloud_and_kiosks):
    cloud, k1, _ = cloud_and_kiosks()
    topup(k1, "m1", "cash", 500)
    st = k1.purse("m1", "cash")
    assert st.value == 500
    assert st.rights("k1") == 500
    assert st.rights("cloud") == 0


def test_dec_within_rights_is_written_and_reduces_rights(cloud_and_kiosks):
    _, k1, _ = cloud_and_kiosks()
    topup(k1, "m1", "cash", 500)
    (op,) = k1.append([Intent(Kind.DEC, "m1", "cash", 200)], ref="tap-1")
    assert op.kind is Kind.DEC and op.amount == 200 and op.seq == 2
    st = k1.purse("m1", "cash")
    assert (st.value, st.rights("k1")) == (300, 300)


def test_dec_beyond_rights_is_refused_in_strict_mode_and_writes_nothing(cloud_and_kiosks):
    _, k1, _ = cloud_and_kiosks()
    topup(k1, "m1", "cash", 100)
    with pytest.raises(SpendRefused) as info:
        k1.append([Intent(Kind.DEC, "m1", "cash", 101)], ref="tap-1")
    assert info.value.reason is Refusal.INSUFFICIENT_RIGHTS
    assert (info.value.amount, info.value.rights) == (101, 100)
    assert k1.head()[0] == 1
    assert k1.purse("m1", "cash").value == 100


def test_rights_granted_by_the_cloud_can_be_spent_at_the_kiosk(cloud_and_kiosks):
    cloud, k1, _ = cloud_and_kiosks()
    topup(cloud, "m1", "cash", 1000)
    grant = cloud.append([Intent(Kind.XFER, "m1", "cash", 300, counterpart="k1")])
    with pytest.raises(SpendRefused):
        k1.append([Intent(Kind.DEC, "m1", "cash", 50)])
    for op in [*cloud.ops("cloud")]:
        k1.apply(op)
    assert grant[0].kind is Kind.XFER
    st = k1.purse("m1", "cash")
    assert (st.value, st.rights("k1"), st.rights("cloud")) == (1000, 300, 700)
    k1.append([Intent(Kind.DEC, "m1", "cash", 300)])
    with pytest.raises(SpendRefused):
        k1.append([Intent(Kind.DEC, "m1", "cash", 1)])


def test_xfer_beyond_rights_is_refused(cloud_and_kiosks):
    cloud, _, _ = cloud_and_kiosks()
    topup(cloud, "m1", "cash", 100)
    with pytest.raises(SpendRefused) as info:
        cloud.append([Intent(Kind.XFER, "m1", "cash", 101, counterpart="k1")])
    assert info.value.reason is Refusal.INSUFFICIENT_RIGHTS


@pytest.mark.parametrize(("author", "to"), [("k1", "k2"), ("k1", "k1"), ("cloud", "cloud")])
def test_xfer_only_between_cloud_and_a_kiosk(cloud_and_kiosks, author, to):
    ledgers = dict(zip(("cloud", "k1", "k2"), cloud_and_kiosks(), strict=True))
    led = ledgers[author]
    topup(led, "m1", "cash", 100)
    with pytest.raises(SpendRefused) as info:
        led.append([Intent(Kind.XFER, "m1", "cash", 10, counterpart=to)])
    assert info.value.reason is Refusal.XFER_NOT_VIA_CLOUD


@pytest.mark.parametrize("amount", [0, -5])
def test_non_positive_amounts_are_refused(cloud_and_kiosks, amount):
    _, k1, _ = cloud_and_kiosks()
    for kind in (Kind.INC, Kind.DEC):
        with pytest.raises(SpendRefused) as info:
            k1.append([Intent(kind, "m1", "cash", amount)])
        assert info.value.reason is Refusal.BAD_AMOUNT


def test_a_retried_tap_returns_the_same_ops_and_debits_once(cloud_and_kiosks):
    _, k1, _ = cloud_and_kiosks()
    topup(k1, "m1", "cash", 500)
    first = k1.append([Intent(Kind.DEC, "m1", "cash", 100)], ref="tap-7")
    again = k1.append([Intent(Kind.DEC, "m1", "cash", 100)], ref="tap-7")
    assert again == first
    assert k1.purse("m1", "cash").value == 400


def test_a_tap_writes_all_its_ops_or_none(cloud_and_kiosks):
    _, k1, _ = cloud_and_kiosks()
    topup(k1, "m1", "cash", 500)
    with pytest.raises(SpendRefused):
        k1.append(
            [Intent(Kind.DEC, "m1", "cash", 100), Intent(Kind.DEC, "m1", "visits:swim", 1)],
            ref="tap-1",
        )
    assert k1.purse("m1", "cash").value == 500
    assert k1.head()[0] == 1


def test_risk_allowance_records_debt_bounded_per_tap_and_in_total(cloud_and_kiosks):
    risk = RiskPolicy({"cash": RiskLimit(per_tap=300, total=500)})
    _, k1, _ = cloud_and_kiosks(risk=risk)
    topup(k1, "m1", "cash", 100)
    (op,) = k1.append([Intent(Kind.DEC, "m1", "cash", 350)], ref="a")  # shortfall 250
    assert op.kind is Kind.DEBT
    st = k1.purse("m1", "cash")
    assert (st.value, st.rights("k1"), st.debt) == (-250, -250, 350)
    with pytest.raises(SpendRefused) as per_tap:
        k1.append([Intent(Kind.DEC, "m2", "cash", 301)], ref="b")
    assert per_tap.value.reason is Refusal.RISK_PER_TAP
    k1.append([Intent(Kind.DEC, "m2", "cash", 250)], ref="c")  # open debt now 500
    with pytest.raises(SpendRefused) as total:
        k1.append([Intent(Kind.DEC, "m3", "cash", 1)], ref="d")
    assert total.value.reason is Refusal.RISK_TOTAL


def test_risk_allowance_does_not_cover_units_it_does_not_name(cloud_and_kiosks):
    risk = RiskPolicy({"cash": RiskLimit(per_tap=300, total=500)})
    _, k1, _ = cloud_and_kiosks(risk=risk)
    with pytest.raises(SpendRefused) as info:
        k1.append([Intent(Kind.DEC, "m1", "visits:swim", 1)])
    assert info.value.reason is Refusal.INSUFFICIENT_RIGHTS


def test_credit_limit_is_held_by_the_cloud_and_lowers_the_bound(cloud_and_kiosks):
    cloud, k1, _ = cloud_and_kiosks()
    cloud.append([Intent(Kind.SET, "m1", "limit:cash", 1, data="2000")])
    st = cloud.purse("m1", "cash")
    assert (st.lower_bound, st.rights("cloud"), st.rights("k1")) == (-2000, 2000, 0)
    cloud.append([Intent(Kind.XFER, "m1", "cash", 500, counterpart="k1")])
    for op in cloud.ops("cloud"):
        k1.apply(op)
    k1.append([Intent(Kind.DEC, "m1", "cash", 500)])
    st = k1.purse("m1", "cash")
    assert st.value == -500 and st.value >= st.lower_bound


def test_registers_keep_the_highest_version_whatever_the_order(cloud_and_kiosks):
    cloud, k1, k2 = cloud_and_kiosks()
    cloud.append([Intent(Kind.SET, "card:abc", "status", 2, data="lost")])
    cloud.append([Intent(Kind.SET, "card:abc", "status", 1, data="active")])
    assert cloud.register("card:abc", "status").value == "lost"
    ops = list(cloud.ops("cloud"))
    k1.apply(ops[0])
    k1.apply(ops[1])
    assert k1.register("card:abc", "status").value == "lost"
    assert k2.register("card:abc", "status") is None
