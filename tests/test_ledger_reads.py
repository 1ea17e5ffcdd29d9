"""The tap's batched reads answer exactly what the one-purse reads answer."""

from __future__ import annotations

import random

from edge.ledger import Clock, Intent, Kind, Ledger

ACCOUNTS = ("m1", "m2", "m3", "coupon:x")
PURSES = ("cash", "points", "visits:swim")


def _busy_ledgers(cloud_and_kiosks) -> tuple[Ledger, Ledger]:
    """A cloud and a kiosk holding credits, debits, transfers and credit limits of several
    accounts, purses and replicas, in a shuffled order of wall times."""
    cloud, k1, _ = cloud_and_kiosks()
    rnd = random.Random(7)
    cloud.append([Intent(Kind.SET, "m1", "limit:cash", 1, data="2000")])
    cloud.append([Intent(Kind.SET, "m3", "limit:points", 1, data="5")])
    cloud.append([Intent(Kind.SET, "m2", "name", 1, data="Ann")])  # a register, not a limit
    for account in ACCOUNTS:
        for purse in PURSES[: rnd.randint(1, 3)]:
            cloud.append([Intent(Kind.INC, account, purse, 10_000)])
            cloud.append([Intent(Kind.XFER, account, purse, 5_000, counterpart="k1")])
    k1.apply_many(list(cloud.ops("cloud")))
    for i in range(120):
        account, purse = rnd.choice(ACCOUNTS), rnd.choice(PURSES)
        kind = rnd.choice((Kind.INC, Kind.DEC))
        if k1.purse(account, purse).rights("k1") < 10:
            kind = Kind.INC
        wall = rnd.randint(0, 10**6)
        k1.clock = Clock(wall_ms=lambda: wall)  # noqa: B023 - used before the next turn
        k1.append([Intent(kind, account, purse, rnd.randint(1, 10))], ref=f"t{i}")
    cloud.apply_many(list(k1.ops("k1")))
    return cloud, k1


def test_purses_of_an_account_equal_each_purse_read_alone(cloud_and_kiosks):
    for led in _busy_ledgers(cloud_and_kiosks):
        seen = 0
        for account in ACCOUNTS:
            batched = led.purses(account)
            alone = [led.purse(account, p.purse) for p in batched]
            assert batched == alone
            assert [p.purse for p in batched] == sorted(p.purse for p in batched)
            seen += len(batched)
        assert seen > len(ACCOUNTS)
        assert led.purse("m1", "cash").credit_limit == 2000
        assert led.purses() == [p for a in sorted(ACCOUNTS) for p in led.purses(a)]


def test_history_of_one_purse_is_the_account_history_filtered(cloud_and_kiosks):
    _, k1 = _busy_ledgers(cloud_and_kiosks)
    for account in ACCOUNTS:
        for limit in (1, 7, 50, 500):
            everything = k1.history(account, limit)
            for purse in PURSES:
                assert k1.history(account, limit, purse=purse) == [
                    op for op in everything if op.purse == purse
                ]


def test_a_tap_reads_no_history_where_points_never_lapse(cloud_and_kiosks):
    """A member's history only grows; a tap's work must not. Points lots (read from the
    history) are read only where points lapse, and then they are there."""
    from edge.taps.members import read_balances

    cloud, k1, _ = cloud_and_kiosks()
    for i in range(600):
        cloud.append([Intent(Kind.INC, "m1", "points", 1)], ref=f"earn{i}")
    k1.apply_many(list(cloud.ops("cloud")))
    statements: list[str] = []
    k1._conn.set_trace_callback(statements.append)
    never = read_balances(k1, "m1", points_lifetime_days=0)
    k1._conn.set_trace_callback(None)
    assert never["points"].value == 600 and never["points"].lots == ()
    assert not [s for s in statements if "FROM ops" in s]
    lapsing = read_balances(k1, "m1", points_lifetime_days=365)
    assert sum(lot.amount for lot in lapsing["points"].lots) > 0
