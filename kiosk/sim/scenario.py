"""A fleet scenario: fleet size, network, outages, policy limits and escrow policy, from TOML."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cloud_sync.settings import EscrowPolicy
from edge.errors import KioskError
from edge.validation import settings_faults


class ScenarioError(KioskError):
    """A scenario file is unreadable or invalid."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Fleet(_Model):
    sites: int = Field(default=5, ge=1)
    kiosks: int = Field(default=50, ge=3)
    members: int = Field(default=5000, ge=1)
    hours: float = Field(default=24.0, gt=0, le=24 * 7)
    seed: int = 1

    @property
    def site_count(self) -> int:
        """Sites actually used: every site needs a gate, a point of sale and a top-up kiosk."""
        return max(1, min(self.sites, self.kiosks // 3))


class Network(_Model):
    delay_ms: tuple[int, int] = (15, 60)
    loss: float = Field(default=0.0, ge=0, lt=1)
    duplicate: float = Field(default=0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _ordered(self) -> Network:
        lo, hi = self.delay_ms
        if not 0 <= lo <= hi:
            raise ValueError("delay_ms must be [low, high] with 0 <= low <= high")
        return self


class Outage(_Model):
    kind: Literal["site", "kiosk", "cloud"]
    target: str = ""
    start: float = Field(ge=0, description="hours from the start of the run")
    hours: float = Field(gt=0)

    @property
    def start_ms(self) -> int:
        return int(self.start * 3_600_000)

    @property
    def end_ms(self) -> int:
        return int((self.start + self.hours) * 3_600_000)

    @property
    def label(self) -> str:
        what = "cloud" if self.kind == "cloud" else f"{self.kind} {self.target}"
        return f"{what} {self.start:g}h+{self.hours:g}h"


class Policies(_Model):
    common_cap: int = Field(default=5000, gt=0)
    risk_per_tap: int = Field(default=2000, gt=0)
    risk_total: int = Field(default=20000, gt=0)


class Scenario(_Model):
    fleet: Fleet = Fleet()
    network: Network = Network()
    policies: Policies = Policies()
    escrow: EscrowPolicy = EscrowPolicy()
    outage: list[Outage] = Field(default_factory=list)

    def with_fleet(self, **changes: object) -> Scenario:
        given = {k: v for k, v in changes.items() if v is not None}
        if not given:
            return self
        return self.model_copy(update={"fleet": self.fleet.model_copy(update=given)})

    def with_escrow(self, escrow: EscrowPolicy) -> Scenario:
        return self.model_copy(update={"escrow": escrow})


def default_text() -> str:
    return resources.files("kiosk.sim").joinpath("default.toml").read_text()


def parse(text: str, origin: str = "scenario") -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{origin}: not valid TOML: {exc}") from None
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(f"{origin}: invalid scenario: {settings_faults(exc)}") from None


def load(path: Path | None) -> Scenario:
    """The scenario in `path`, or the default one (a day with a 2-hour site outage)."""
    if path is None:
        return parse(default_text(), "default scenario")
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read scenario: {exc}") from exc
    return parse(text, str(path))
