"""Membership facts the kiosk and the cloud check the same way: the card lifecycle, the names an
operator may give (accounts, purses, PINs) and which tier a member's progress reaches. Pure
functions, no I/O."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from edge.ledger.op import SPENDING, Kind, Op


class CardStatus(enum.StrEnum):
    ACTIVE = "active"
    FROZEN = "frozen"
    LOST = "lost"
    REPLACED = "replaced"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


_S = CardStatus
# The moves an operator may make. Lost and replaced cards never come back (a found card is a
# copy someone else may hold); cancelled is the end; an expired card can be renewed.
CARD_MOVES: dict[CardStatus, frozenset[CardStatus]] = {
    _S.ACTIVE: frozenset({_S.FROZEN, _S.LOST, _S.REPLACED, _S.CANCELLED, _S.EXPIRED}),
    _S.FROZEN: frozenset({_S.ACTIVE, _S.LOST, _S.REPLACED, _S.CANCELLED, _S.EXPIRED}),
    _S.EXPIRED: frozenset({_S.ACTIVE, _S.LOST, _S.REPLACED, _S.CANCELLED}),
    _S.LOST: frozenset({_S.REPLACED, _S.CANCELLED}),
    _S.REPLACED: frozenset({_S.CANCELLED}),
    _S.CANCELLED: frozenset(),
}


def card_move_fault(current: CardStatus, target: CardStatus) -> str | None:
    """Why a card may not go from `current` to `target`, or None if it may."""
    if target in CARD_MOVES[current]:
        return None
    if current == target:
        return f"the card is {current} already"
    allowed = ", ".join(sorted(CARD_MOVES[current])) or "nothing: it is final"
    return f"a {current} card cannot become {target} (allowed: {allowed})"


_ACCOUNT = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_PURSE = re.compile(r"^(cash|points|visits:[a-z0-9_-]{1,32})$")
MIN_PIN_DIGITS = 4
MAX_PIN_DIGITS = 12


def account_fault(account: str) -> str | None:
    """A member account id: 1-64 letters, digits or `_ . @ -` (no colon: that names cards,
    coupons and kiosks)."""
    if not account:
        return "the account id is empty"
    if not _ACCOUNT.match(account):
        return f"account id {account!r} may hold only letters, digits and _ . @ - (1-64)"
    return None


def purse_fault(purse: str) -> str | None:
    """Purses a member holds: cash, points, visits:<product>."""
    if _PURSE.match(purse):
        return None
    return f"unknown purse {purse!r} (cash, points or visits:<product>)"


def pin_fault(pin: str, min_digits: int = MIN_PIN_DIGITS) -> str | None:
    if not pin.isdigit() or not (min_digits <= len(pin) <= MAX_PIN_DIGITS):
        return f"a PIN is {min_digits} to {MAX_PIN_DIGITS} digits"
    return None


@dataclass(frozen=True, slots=True)
class TierStep:
    """A tier and what reaches it in the current window: its points, or (when `min_spend` is
    set) that much cash spent."""

    name: str
    min_points: int
    min_spend: int = 0  # minor units spent in the window; 0 = points only


def tier_reached(progress: int, steps: Sequence[TierStep], spend: int = 0) -> str:
    """The highest tier whose points threshold `progress` reaches, or whose spend threshold
    `spend` reaches ("" if none). Tiers rank by their points threshold."""
    best = ""
    top = -1
    for s in steps:
        hit = s.min_points <= progress or (s.min_spend > 0 and s.min_spend <= spend)
        if hit and s.min_points > top:
            best, top = s.name, s.min_points
    return best


def tier_rank(name: str, steps: Sequence[TierStep]) -> int:
    """The tier's threshold (its rank); -1 for a tier not configured."""
    return next((s.min_points for s in steps if s.name == name), -1)


def next_tier(progress: int, steps: Sequence[TierStep]) -> tuple[str, int] | None:
    """The next tier above what `progress` reaches and the points still needed."""
    above = sorted((s for s in steps if s.min_points > progress), key=lambda s: s.min_points)
    return (above[0].name, above[0].min_points - progress) if above else None


def review_tier(
    current: str,
    progress: int,
    steps: Sequence[TierStep],
    *,
    idle_days: int = 0,
    inactive_days: int = 0,
    spend: int = 0,
) -> str:
    """The tier at the end of a window: what the window's points or spend reached (up or down),
    and at most one below the current tier after `inactive_days` without activity (0 = never)."""
    reached = tier_reached(progress, steps, spend)
    if inactive_days and idle_days >= inactive_days:
        below = [s for s in steps if s.min_points < tier_rank(current, steps)]
        lower = max(below, key=lambda s: s.min_points).name if below else current
        if tier_rank(lower, steps) < tier_rank(reached, steps):
            return lower
    return reached or current


# -- points lots: points lapse oldest first ------------------------------------------------

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Lot:
    """Points credited at one time (an accrual, a refund given back, a transfer received)."""

    wall_ms: int
    amount: int


@dataclass(frozen=True, slots=True)
class Spend:
    """Points debited at one time: spent (or taken back), or written off as lapsed."""

    wall_ms: int
    amount: int
    lapse: bool = False


def held_lots(
    credits: Sequence[Lot],
    value: int,
    debits: Sequence[Spend] = (),
    lifetime_days: int = 0,
) -> list[Lot]:
    """The lots a points purse of `value` still holds, oldest first. Each debit, in time order,
    used the oldest lots it could: a spend the oldest points still alive at its time (a kiosk
    never lets lapsed points pay), a write-off the lapsed ones. A history read only in part is
    squared with `value`: missing credits count as the oldest lot read."""
    life = lifetime_days * DAY_MS
    lots = [[c.wall_ms, c.amount] for c in sorted(credits, key=lambda c: c.wall_ms)]
    for d in sorted(debits, key=lambda d: d.wall_ms):
        earlier = [lot for lot in lots if lot[0] <= d.wall_ms and lot[1] > 0]
        lapsed = [lot for lot in earlier if life and lot[0] + life <= d.wall_ms]
        alive = [lot for lot in earlier if lot not in lapsed]
        order = lapsed + alive if d.lapse else alive + lapsed
        order += [lot for lot in lots if lot not in order]
        left = d.amount
        for lot in order:
            take = min(lot[1], left)
            lot[1] -= take
            left -= take
            if not left:
                break
    held = [Lot(w, n) for w, n in lots if n > 0]
    diff = max(value, 0) - sum(lot.amount for lot in held)
    if diff > 0:
        held.insert(0, Lot(held[0].wall_ms if held else 0, diff))
    while diff < 0 and held:  # more spent than read: the oldest go first
        take = min(held[0].amount, -diff)
        diff += take
        held[0] = Lot(held[0].wall_ms, held[0].amount - take)
        if not held[0].amount:
            held.pop(0)
    return held


LAPSE_NOTE = "points lapsed"  # the data of the cloud's write-off of lapsed points


def points_lots(ops: Iterable[Op], value: int, lifetime_days: int) -> list[Lot]:
    """The lots held, from an account's ops (any order, any purses: the points ones are used)."""
    credits: list[Lot] = []
    debits: list[Spend] = []
    for o in ops:
        if o.purse != "points":
            continue
        if o.kind is Kind.INC:
            credits.append(Lot(o.wall_ms, o.amount))
        elif o.kind in SPENDING:
            debits.append(Spend(o.wall_ms, o.amount, lapse=o.data == LAPSE_NOTE))
    return held_lots(credits, value, debits, lifetime_days)


def lapsed_points(lots: Sequence[Lot], now_ms: int, lifetime_days: int) -> int:
    """Points of the held lots older than their lifetime (0 = points never lapse)."""
    if lifetime_days <= 0:
        return 0
    return sum(lot.amount for lot in lots if lot.wall_ms + lifetime_days * DAY_MS <= now_ms)


def next_lapse(
    lots: Sequence[Lot], now_ms: int, lifetime_days: int, within_days: int
) -> tuple[int, int] | None:
    """(points, when in ms) of the next lot to lapse within `within_days`, if any: the reminder
    a member sees before points lapse."""
    if lifetime_days <= 0:
        return None
    ends = sorted(
        (lot.wall_ms + lifetime_days * DAY_MS, lot.amount)
        for lot in lots
        if now_ms < lot.wall_ms + lifetime_days * DAY_MS <= now_ms + within_days * DAY_MS
    )
    if not ends:
        return None
    first = ends[0][0]
    return sum(n for end, n in ends if end == first), first
