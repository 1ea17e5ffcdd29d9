"""A fleet scenario: fleet size, network, outages, policy limits and escrow policy, from TOML."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from msgspec import Meta, field
from msgspec.structs import replace

from cloud_sync.settings import EscrowPolicy
from edge import validation
from edge.errors import KioskError
from edge.validation import Settings, SettingsFault


class ScenarioError(KioskError):
    """A scenario file is unreadable or invalid."""


Fraction = Annotated[float, Meta(ge=0, lt=1)]
Positive = Annotated[int, Meta(gt=0)]


class Fleet(Settings, frozen=True, kw_only=True):
    sites: Annotated[int, Meta(ge=1)] = 5
    kiosks: Annotated[int, Meta(ge=3)] = 50
    members: Annotated[int, Meta(ge=1)] = 5000
    hours: Annotated[float, Meta(gt=0, le=24 * 7)] = 24.0
    seed: int = 1

    @property
    def site_count(self) -> int:
        """Sites actually used: every site needs a gate, a point of sale and a top-up kiosk."""
        return max(1, min(self.sites, self.kiosks // 3))


class Network(Settings, frozen=True, kw_only=True):
    delay_ms: tuple[int, int] = (15, 60)
    loss: Fraction = 0.0
    duplicate: Fraction = 0.0

    def __post_init__(self) -> None:
        lo, hi = self.delay_ms
        if not 0 <= lo <= hi:
            raise ValueError("delay_ms must be [low, high] with 0 <= low <= high")


class Outage(Settings, frozen=True, kw_only=True):
    kind: Literal["site", "kiosk", "cloud"]
    target: str = ""
    start: Annotated[float, Meta(ge=0)]  # hours from the start of the run
    hours: Annotated[float, Meta(gt=0)]

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


class Policies(Settings, frozen=True, kw_only=True):
    common_cap: Positive = 5000
    risk_per_tap: Positive = 2000
    risk_total: Positive = 20000


class Scenario(Settings, frozen=True, kw_only=True):
    fleet: Fleet = Fleet()
    network: Network = Network()
    policies: Policies = Policies()
    escrow: EscrowPolicy = EscrowPolicy()
    outage: list[Outage] = field(default_factory=list)

    def with_fleet(self, **changes: object) -> Scenario:
        given = {k: v for k, v in changes.items() if v is not None}
        if not given:
            return self
        return replace(self, fleet=replace(self.fleet, **given))

    def within_sites(self) -> Scenario:
        """Site outages moved to the last site where the fleet is too small to have theirs (the
        default scenario's evening outage of s1 on a 3-kiosk fleet, which has one site)."""
        n = self.fleet.site_count
        sites, last = {f"s{i}" for i in range(n)}, f"s{n - 1}"
        moved = [
            replace(o, target=last) if o.kind == "site" and o.target not in sites else o
            for o in self.outage
        ]
        return replace(self, outage=moved)

    def with_escrow(self, escrow: EscrowPolicy) -> Scenario:
        return replace(self, escrow=escrow)


def default_text() -> str:
    return resources.files("kiosk.sim").joinpath("default.toml").read_text()


def parse(text: str, origin: str = "scenario") -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{origin}: not valid TOML: {exc}") from None
    try:
        return validation.load(Scenario, data)
    except SettingsFault as exc:
        raise ScenarioError(f"{origin}: invalid scenario: {exc}") from None


def load(path: Path | None) -> Scenario:
    """The scenario in `path`, or the default one (a day with a 2-hour site outage)."""
    if path is None:
        return parse(default_text(), "default scenario")
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read scenario: {exc}") from exc
    return parse(text, str(path))
