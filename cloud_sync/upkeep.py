"""The cloud's membership upkeep: the tier review at the end of a window and points that lapse.
Run by hand (`kiosk cloud tiers review`) and by the reconciler's sweep on a schedule."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from cloud_sync.membership import MembershipSettings
from cloud_sync.store import CloudStore
from edge.ledger import Intent, Kind
from edge.ledger import records as rec
from edge.ledger.membership import (
    DAY_MS,
    LAPSE_NOTE,
    Lot,
    lapsed_points,
    review_tier,
)
from edge.ledger.membership import points_lots as lots_of

log = logging.getLogger(__name__)

UPKEEP_ACCOUNT = "cloud:membership"  # registers of when the upkeep last ran
REVIEWED_AT = "tiers_reviewed_at"
LAPSED_AT = "points_lapsed_at"
LOT_HISTORY = 500


def int_register(store: CloudStore, account: str, name: str) -> int:
    reg = store.register(account, name)
    try:
        return int(reg.value) if reg else 0
    except ValueError:
        return 0


def register_intents(store: CloudStore, account: str, name: str, value: str) -> list[Intent]:
    current = store.register(account, name)
    version = (current.version if current else 0) + 1
    return [Intent(Kind.SET, account, name, version, data=value)]


def members(store: CloudStore) -> list[str]:
    return sorted({p.account for p in store.purses() if ":" not in p.account})


@dataclass(frozen=True, slots=True)
class TierChange:
    member: str
    before: str
    after: str
    progress: int
    spend: int = 0


def review_tiers(
    store: CloudStore,
    membership: MembershipSettings,
    now_ms: int,
    accounts: Sequence[str] | None = None,
) -> list[TierChange]:
    """End a tier window: each member's tier becomes what the window's points or spend reached
    (up or down; one down after `inactive_days` idle), and a new window starts (progress and
    spend 0)."""
    steps = membership.steps()
    changes = []
    for member in members(store) if accounts is None else accounts:
        current = store.register(member, rec.MEMBER_TIER)
        before = current.value if current else ""
        earned = sum(s.inc for s in store.purse(member, "points").shares)
        spent = sum(s.dec for s in store.purse(member, "cash").shares)
        progress = max(earned - int_register(store, member, rec.PROGRESS_OFFSET), 0)
        spend = max(spent - int_register(store, member, rec.SPEND_OFFSET), 0)
        last = store.history(member, 1)
        idle_days = (now_ms - last[0].wall_ms) // DAY_MS if last else 0
        after = review_tier(
            before,
            progress,
            steps,
            idle_days=idle_days,
            inactive_days=membership.inactive_days,
            spend=spend,
        )
        intents = register_intents(store, member, rec.PROGRESS_OFFSET, str(earned))
        intents += register_intents(store, member, rec.SPEND_OFFSET, str(spent))
        if after != before:
            intents += register_intents(store, member, rec.MEMBER_TIER, after)
        store.append(intents)
        changes.append(TierChange(member, before, after, progress, spend))
    return changes


@dataclass(frozen=True, slots=True)
class Lapse:
    member: str
    lapsed: int  # points past their lifetime
    written_off: int  # of those, what the cloud held and debited (kiosks hand the rest back)


def points_lots(store: CloudStore, member: str, lifetime_days: int) -> list[Lot]:
    value = store.purse(member, "points").value
    return lots_of(store.history(member, LOT_HISTORY), value, lifetime_days)


def lapse_points(store: CloudStore, membership: MembershipSettings, now_ms: int) -> list[Lapse]:
    """Write off points past `[membership] points_lifetime_days`, oldest lots first, as signed
    cloud debits every replica applies (one per member and day: a rerun writes nothing)."""
    days = membership.points_lifetime_days
    if days <= 0:
        return []
    out = []
    for member in members(store):
        lapsed = lapsed_points(points_lots(store, member, days), now_ms, days)
        if lapsed <= 0:
            continue
        held = max(store.purse(member, "points").rights(store.replica), 0)
        take = min(lapsed, held)
        if take:
            intent = Intent(Kind.DEC, member, "points", take, data=LAPSE_NOTE)
            store.append([intent], ref=f"lapse:{member}:{now_ms // DAY_MS}")
        out.append(Lapse(member, lapsed, take))
    return out


def due_upkeep(
    store: CloudStore, membership: MembershipSettings, now_ms: int
) -> tuple[list[TierChange], list[Lapse]]:
    """What the reconciler's sweep runs: the tier review every `review_every_days`, points
    lapsing once a day. The last run of each is a register of the cloud, so a restart or a
    second reconciler does not run it twice."""
    changes: list[TierChange] = []
    lapses: list[Lapse] = []
    every = membership.review_every_days
    if every and membership.tiers:
        last = int_register(store, UPKEEP_ACCOUNT, REVIEWED_AT)
        if not last:  # the first window starts when the schedule is first seen
            store.append(register_intents(store, UPKEEP_ACCOUNT, REVIEWED_AT, str(now_ms)))
        elif now_ms - last >= every * DAY_MS:
            changes = review_tiers(store, membership, now_ms)
            store.append(register_intents(store, UPKEEP_ACCOUNT, REVIEWED_AT, str(now_ms)))
            log.info("tier review: %d members, %d moved", len(changes), _moved(changes))
    if membership.points_lifetime_days:
        last = int_register(store, UPKEEP_ACCOUNT, LAPSED_AT)
        if now_ms // DAY_MS > last // DAY_MS:
            lapses = lapse_points(store, membership, now_ms)
            store.append(register_intents(store, UPKEEP_ACCOUNT, LAPSED_AT, str(now_ms)))
            log.info("points lapsed for %d members", len(lapses))
    return changes, lapses


def _moved(changes: Sequence[TierChange]) -> int:
    return sum(1 for c in changes if c.before != c.after)
