"""`[membership]` of the cloud config: what operator actions and the cloud's own upkeep check
against (the tiers the kiosks know, the shortest PIN, when an idle member drops a tier, how long
points live, whether members may give points away, the counter's top-up bonus)."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, field

from edge.ledger.membership import MIN_PIN_DIGITS, TierStep
from edge.validation import Settings

NonNegative = Annotated[int, Meta(ge=0)]


class TierSetting(Settings, frozen=True, kw_only=True):
    name: Annotated[str, Meta(min_length=1, max_length=32)]
    min_points: NonNegative  # points earned in the window to reach it
    min_spend: NonNegative = 0  # or cash spent in the window; 0 = none


class CounterBonus(Settings, frozen=True, kw_only=True):
    """A counter top-up of cash of at least `min_amount` gets `bonus` extra."""

    min_amount: Annotated[int, Meta(ge=1)]
    bonus: NonNegative


class MembershipSettings(Settings, frozen=True, kw_only=True):
    """The same tiers (names and thresholds) and points lifetime as the kiosks' `[rules]`."""

    tiers: list[TierSetting] = field(default_factory=list)
    pin_min_digits: Annotated[int, Meta(ge=MIN_PIN_DIGITS, le=12)] = MIN_PIN_DIGITS
    inactive_days: NonNegative = 0  # drop one tier after this; 0 = never
    review_every_days: NonNegative = 0  # the reconciler reviews tiers this often; 0 = by hand only
    points_lifetime_days: NonNegative = 0  # 0 = points never lapse
    point_transfers: bool = False  # members may give points to each other (积分转赠)
    categories: list[str] = field(default_factory=list)  # known member categories; [] = any
    topup_bonus: list[CounterBonus] = field(default_factory=list)  # counter top-ups of cash
    # Card numbers carry a Luhn check digit (ours do). False for a card stock printed by a system
    # before this one, without it; the kiosks' `[rules] card_check_digit` says the same.
    card_check_digit: bool = True

    def steps(self) -> list[TierStep]:
        return [TierStep(t.name, t.min_points, t.min_spend) for t in self.tiers]

    def counter_bonus(self, amount: int) -> int:
        """The best counter bonus whose minimum `amount` reaches."""
        return max((b.bonus for b in self.topup_bonus if amount >= b.min_amount), default=0)
