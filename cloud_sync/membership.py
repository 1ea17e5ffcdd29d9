"""`[membership]` of the cloud config: what operator actions check against (the tiers the
kiosks know, the shortest PIN, when an idle member drops a tier)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from edge.ledger.membership import MIN_PIN_DIGITS, TierStep


class TierSetting(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=32)
    min_points: int = Field(ge=0, description="points earned in the window to reach it")


class MembershipSettings(BaseModel):
    """The same tiers as the kiosks' `[rules] tiers` (names and thresholds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tiers: list[TierSetting] = Field(default_factory=list)
    pin_min_digits: int = Field(default=MIN_PIN_DIGITS, ge=MIN_PIN_DIGITS, le=12)
    inactive_days: int = Field(default=0, ge=0, description="drop one tier after this; 0 = never")

    def steps(self) -> list[TierStep]:
        return [TierStep(t.name, t.min_points) for t in self.tiers]
