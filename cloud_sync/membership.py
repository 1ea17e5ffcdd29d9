"""`[membership]` of the cloud config: what operator actions and the cloud's own upkeep check
against (the tiers the kiosks know, the shortest PIN, when an idle member drops a tier, how long
points live, whether members may give points away, the counter's top-up bonus)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from edge.ledger.membership import MIN_PIN_DIGITS, TierStep


class TierSetting(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=32)
    min_points: int = Field(ge=0, description="points earned in the window to reach it")
    min_spend: int = Field(default=0, ge=0, description="or cash spent in the window; 0 = none")


class CounterBonus(BaseModel):
    """A counter top-up of cash of at least `min_amount` gets `bonus` extra."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_amount: int = Field(ge=1)
    bonus: int = Field(ge=0)


class MembershipSettings(BaseModel):
    """The same tiers (names and thresholds) and points lifetime as the kiosks' `[rules]`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tiers: list[TierSetting] = Field(default_factory=list)
    pin_min_digits: int = Field(default=MIN_PIN_DIGITS, ge=MIN_PIN_DIGITS, le=12)
    inactive_days: int = Field(default=0, ge=0, description="drop one tier after this; 0 = never")
    review_every_days: int = Field(
        default=0, ge=0, description="the reconciler reviews tiers this often; 0 = by hand only"
    )
    points_lifetime_days: int = Field(default=0, ge=0, description="0 = points never lapse")
    point_transfers: bool = False  # members may give points to each other (积分转赠)
    categories: list[str] = Field(default_factory=list)  # known member categories; [] = any
    topup_bonus: list[CounterBonus] = Field(default_factory=list)  # counter top-ups of cash

    def steps(self) -> list[TierStep]:
        return [TierStep(t.name, t.min_points, t.min_spend) for t in self.tiers]

    def counter_bonus(self, amount: int) -> int:
        """The best counter bonus whose minimum `amount` reaches."""
        return max((b.bonus for b in self.topup_bonus if amount >= b.min_amount), default=0)
