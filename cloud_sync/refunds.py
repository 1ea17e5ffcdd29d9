"""What a refund gives back, as a pure function of the original tap's ops and what was refunded
of it already: cash (whole or part), the points it earned (taken back in proportion), and on a
whole refund the points, visits and coupon it used."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edge.ledger import Intent, Kind, Op


@dataclass(frozen=True, slots=True)
class Purchase:
    """One tap as its kiosk wrote it."""

    tap: str
    member: str
    cash: int = 0  # paid in cash (minor units)
    earned: int = 0  # points credited for it
    used: tuple[tuple[str, str, int], ...] = ()  # (account, purse, amount) of other debits


def purchase_of(tap: str, ops: Sequence[Op]) -> Purchase | None:
    """The purchase a tap's ops make (None: no debit of a member under that reference)."""
    spends = [o for o in ops if o.kind in (Kind.DEC, Kind.DEBT)]
    members = [o.account for o in spends if ":" not in o.account]
    if not members:
        return None
    member = members[0]
    cash = sum(o.amount for o in spends if o.account == member and o.purse == "cash")
    earned = sum(
        o.amount for o in ops if o.kind is Kind.INC and o.account == member and o.purse == "points"
    )
    used = tuple(
        (o.account, o.purse, o.amount)
        for o in spends
        if not (o.account == member and o.purse == "cash")
    )
    return Purchase(tap, member, cash, earned, used)


@dataclass(frozen=True, slots=True)
class Refunded:
    """What was refunded of one tap so far (the `refund:<tap>` register: cash,points,whole)."""

    cash: int = 0
    points: int = 0
    whole: bool = False

    def text(self) -> str:
        return f"{self.cash},{self.points},{int(self.whole)}"

    @classmethod
    def parse(cls, text: str | None) -> Refunded:
        if not text:
            return cls()
        cash, points, whole = text.split(",")
        return cls(int(cash), int(points), whole == "1")


@dataclass(frozen=True, slots=True)
class RefundPlan:
    credits: tuple[Intent, ...]  # cash back, points/visits/coupon used given back
    points_back: int  # earned points to take back (as far as the cloud holds them)
    after: Refunded
    uncounted: int  # points that no longer count toward tiers (taken back + given back)


class RefundRefused(ValueError):
    pass


def plan_refund(purchase: Purchase, done: Refunded, amount: int | None) -> RefundPlan:
    """`amount` None: refund all that is left; else that much cash (partial)."""
    if done.whole:
        raise RefundRefused(f"tap {purchase.tap} is refunded in full already")
    left = purchase.cash - done.cash
    whole = amount is None or amount == left
    cash = left if amount is None else amount
    if cash < 0 or cash > left:
        raise RefundRefused(f"tap {purchase.tap} has {left} left to refund, not {cash}")
    if not whole and cash <= 0:
        raise RefundRefused("a partial refund needs a positive amount")
    paid = purchase.cash
    earned_back = (
        purchase.earned - done.points
        if whole
        else min(purchase.earned * (done.cash + cash) // paid - done.points, purchase.earned)
        if paid
        else 0
    )
    credits: list[Intent] = []
    if cash:
        credits.append(Intent(Kind.INC, purchase.member, "cash", cash))
    given_back = 0
    if whole:
        for account, purse, n in purchase.used:
            credits.append(Intent(Kind.INC, account, purse, n))
            if account == purchase.member and purse == "points":
                given_back += n
    after = Refunded(done.cash + cash, done.points + earned_back, whole)
    return RefundPlan(tuple(credits), max(earned_back, 0), after, earned_back + given_back)


def refund_register(tap: str) -> str:
    return f"refund:{tap}"


__all__ = [
    "Purchase",
    "RefundPlan",
    "RefundRefused",
    "Refunded",
    "plan_refund",
    "purchase_of",
    "refund_register",
]
