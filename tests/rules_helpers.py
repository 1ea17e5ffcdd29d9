"""Builders for rule tests: a config, a member with a card, balances."""

from __future__ import annotations

from edge.config import KioskConfig
from edge.taps.rules import Balance, Card, Member, Tap, TapState
from edge.validation import load

NOW = 1_790_000_000_000  # a fixed instant (2026-09-21 UTC), ms


def config(**overrides) -> KioskConfig:
    raw = {
        "kiosk": {"id": "gate-1", "site": "pool", "role": "gate", "product": "swim"},
        "rules": {
            "products": {"swim": {"name": "Swim", "price": 2000}},
            "tiers": [
                {"name": "silver", "min_points": 0, "discount_pct": 0},
                {
                    "name": "gold",
                    "min_points": 500,
                    "discount_pct": 10,
                    "points_multiplier_pct": 200,
                },
                {"name": "platinum", "min_points": 2000, "discount_pct": 20},
            ],
            "pin_above": 5000,
            "passback_minutes": 30,
            "low_balance": 1000,
            "near_tier_points": 100,
        },
    }
    for path, value in overrides.items():
        section, _, key = path.partition("__")
        if key:
            raw.setdefault(section, {})[key] = value
        elif section == "rules":
            raw["rules"] = {**raw["rules"], **value}
        else:
            raw[section] = value
    return load(KioskConfig, raw)


def state(member: Member | None = None, card: Card | None = None, **balances: Balance) -> TapState:
    member = member or Member(id="m1", name="Alice", tier="silver")
    card = card or Card(ref="ref1", member=member.id)
    return TapState(
        card=card, member=member, balances={k.replace("__", ":"): v for k, v in balances.items()}
    )


def tap(**kw) -> Tap:
    kw.setdefault("tap_id", "t1")
    kw.setdefault("now_ms", NOW)
    return Tap(**kw)
