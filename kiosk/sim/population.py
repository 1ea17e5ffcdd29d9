"""Who is in the simulated fleet and what they do: sites and kiosks, members with habits, and
the day's timeline of taps, drawn from the seed alone (the same for every policy)."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from edge.config import KioskConfig
from edge.validation import load
from kiosk.sim.scenario import Scenario

HOUR_MS = 3_600_000
GATE_PRICE = 1500
POS_PRICES = (300, 450, 600, 800, 1200, 1800, 2500, 4000)
COIN_SETS = ((2000,), (5000,), (5000, 5000), (10000,), (2000, 2000, 1000))
# Share of the day's visits that start in each hour (a pool/gym: early, lunch, evening rush).
HOURLY = (
    0, 0, 0, 0, 0, 1, 4, 8, 7, 4, 3, 4, 6, 5, 3, 3, 5, 8, 9, 8, 5, 3, 1, 0,
)  # fmt: skip


class Role(enum.StrEnum):
    GATE = "gate"
    POS = "pos"
    TOPUP = "topup"


@dataclass(frozen=True, slots=True)
class KioskSpec:
    id: str
    site: str
    role: Role

    def config(self) -> KioskConfig:
        """The kiosk's config: the same rules everywhere, its own role."""
        kiosk: dict[str, object] = {"id": self.id, "site": self.site, "role": self.role.value}
        if self.role is Role.GATE:
            kiosk["product"] = "swim"
        return load(
            KioskConfig,
            {
                "kiosk": kiosk,
                "rules": {
                    "products": {"swim": {"name": "Swim", "price": GATE_PRICE}},
                    "tiers": [{"name": "gold", "min_points": 0, "discount_pct": 10}],
                    "topup_bonus": [{"min_amount": 10000, "bonus": 500}],
                    "debounce_seconds": 3.0,
                },
            },
        )


@dataclass(frozen=True, slots=True)
class MemberSpec:
    id: str
    uid: str  # the card's NFC UID (the ledger holds only its HMAC)
    home: str
    cash: int
    visits: int  # visits:swim on a count pass
    time_pass: bool  # pass:swim valid all day
    tier: str
    coupon: str  # a coupon id the member holds ("" = none)


class Action(enum.StrEnum):
    GATE = "gate"
    BUY = "buy"
    TOPUP = "topup"
    COUPON = "coupon"


@dataclass(frozen=True, slots=True)
class Tap:
    """One thing a member does at a kiosk (an attempt; a refused one may be retried)."""

    at_ms: int
    n: int  # position in the timeline: ties break by it
    member: int
    kiosk: str
    action: Action
    amount: int = 0  # buy: price; topup: total of coins
    coins: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Population:
    sites: tuple[str, ...]
    kiosks: tuple[KioskSpec, ...]
    members: tuple[MemberSpec, ...]
    taps: tuple[Tap, ...]

    def at_site(self, site: str, role: Role) -> list[KioskSpec]:
        return [k for k in self.kiosks if k.site == site and k.role is role]


def layout(scenario: Scenario) -> tuple[tuple[str, ...], tuple[KioskSpec, ...]]:
    """Sites s0.. and their kiosks: one top-up kiosk each, then gates and points of sale."""
    n_sites = scenario.fleet.site_count
    sites = tuple(f"s{i}" for i in range(n_sites))
    kiosks: list[KioskSpec] = []
    total = scenario.fleet.kiosks
    for i, site in enumerate(sites):
        count = total // n_sites + (1 if i < total % n_sites else 0)
        gates = max(1, round(count * 0.4))
        for j in range(count):
            role = Role.TOPUP if j == 0 else Role.GATE if j <= gates else Role.POS
            kiosks.append(KioskSpec(f"{site}-{role.value}{j}", site, role))
    return sites, tuple(kiosks)


def _members(rng: random.Random, n: int, sites: tuple[str, ...]) -> list[MemberSpec]:
    out = []
    for i in range(n):
        low = rng.random() < 0.15
        cash = rng.randrange(0, 1500, 50) if low else int(min(60000, rng.lognormvariate(8.9, 0.7)))
        out.append(
            MemberSpec(
                id=f"m{i:06d}",
                uid=f"04{i:012X}",
                home=rng.choice(sites),
                cash=cash - cash % 50,
                visits=rng.choice((2, 5, 10)) if rng.random() < 0.2 else 0,
                time_pass=rng.random() < 0.1,
                tier="gold" if rng.random() < 0.2 else "",
                coupon=f"c{i:06d}" if rng.random() < 0.1 else "",
            )
        )
    return out


def _start_ms(rng: random.Random, hours: float) -> int | None:
    hour = rng.choices(range(24), weights=HOURLY)[0]
    at = int((hour + rng.random()) * HOUR_MS)
    return at if at < hours * HOUR_MS else None


def build(scenario: Scenario) -> Population:
    """Everything from the seed: the same members and timeline for every policy."""
    rng = random.Random(scenario.fleet.seed)
    sites, kiosks = layout(scenario)
    by_role = {
        (s, r): [k.id for k in kiosks if k.site == s and k.role is r] for s in sites for r in Role
    }
    members = _members(rng, scenario.fleet.members, sites)
    days = max(1, int(scenario.fleet.hours // 24) + (scenario.fleet.hours % 24 > 0))
    raw: list[tuple[int, int, str, Action, int, tuple[int, ...]]] = []
    for m, spec in enumerate(members):
        visits = sum(rng.choices((0, 1, 2), weights=(45, 45, 10))[0] for _ in range(days))
        coupon_left = bool(spec.coupon)
        for _ in range(visits):
            start = _start_ms(rng, scenario.fleet.hours)
            if start is None:
                continue
            site = spec.home if rng.random() < 0.85 else rng.choice(sites)
            t = start
            low = spec.cash < 3000
            if rng.random() < (0.5 if low else 0.08):
                coins = rng.choice(COIN_SETS)
                raw.append((t, m, rng.choice(by_role[site, Role.TOPUP]), Action.TOPUP, 0, coins))
                t += rng.randrange(60_000, 180_000)
            raw.append((t, m, rng.choice(by_role[site, Role.GATE]), Action.GATE, 0, ()))
            for _ in range(rng.choices((0, 1, 2, 3), weights=(30, 40, 20, 10))[0]):
                t += rng.randrange(5 * 60_000, 60 * 60_000)
                pos = rng.choice(by_role[site, Role.POS])
                if coupon_left and rng.random() < 0.3:
                    coupon_left = False
                    raw.append((t, m, pos, Action.COUPON, 0, ()))
                else:
                    raw.append((t, m, pos, Action.BUY, rng.choice(POS_PRICES), ()))
    raw.sort(key=lambda r: (r[0], r[1]))
    taps = tuple(
        Tap(at, n, m, kiosk, action, amount or sum(coins), coins)
        for n, (at, m, kiosk, action, amount, coins) in enumerate(raw)
        if at < scenario.fleet.hours * HOUR_MS
    )
    return Population(sites, kiosks, tuple(members), taps)
