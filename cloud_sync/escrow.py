"""How much of a member's rights the cloud may place at a kiosk, and how much it takes back
(docs/escrow-policy.md). Pure arithmetic over a purse as the cloud holds it; the reconciler
writes the transfers and sends the recalls.

The one rule: rights placed at a kiosk beyond what a tap asks for (a working float, request
headroom, a standing float) never leave the cloud with less than the unit's `reserve` free. A
kiosk that is cut off keeps what it holds (taking it back unseen could spend it twice), so what
stays at the cloud is what the member can still spend at every other kiosk meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cloud_sync.settings import EscrowPolicy
from edge.ledger.purse import PurseState, purse_unit


def free(state: PurseState, cloud: str) -> int:
    """The member's rights the cloud holds, its credit line left out."""
    return state.rights(cloud) - state.credit_limit


def spare(state: PurseState, cloud: str, policy: EscrowPolicy, asked: int = 0) -> int:
    """What the cloud may place at a kiosk beyond `asked` and still keep the reserve free."""
    reserve = policy.reserve.get(purse_unit(state.purse), 0)
    return max(0, free(state, cloud) - asked - reserve)


def float_target(state: PurseState, device: str, cloud: str, policy: EscrowPolicy) -> int:
    """The working float `device` should hold: a fraction of the member's rights the cloud and
    the kiosk hold (credit line left out), capped per unit."""
    pool = max(0, free(state, cloud)) + max(0, state.rights(device))
    target = int(pool * policy.float_fraction)
    cap = policy.float_max.get(purse_unit(state.purse))
    return min(target, cap) if cap is not None else target


def float_top_up(state: PurseState, device: str, cloud: str, policy: EscrowPolicy) -> int:
    """After a spend at `device`: what to transfer to bring its float up, within the spare."""
    want = float_target(state, device, cloud, policy) - state.rights(device)
    return min(want, spare(state, cloud, policy))


def headroom(state: PurseState, device: str, cloud: str, policy: EscrowPolicy, asked: int) -> int:
    """What an online request for `asked` gets on top, within the spare."""
    if not policy.request_headroom:
        return 0
    return min(
        max(0, float_target(state, device, cloud, policy)), spare(state, cloud, policy, asked)
    )


def standing_grant(state: PurseState, device: str, policy: EscrowPolicy, free_now: int) -> int:
    """What to transfer to a payee of the member's scope for its standing float: all that is
    missing of `standing`, or nothing (a part of an entry serves no one), and only while
    `free_now - grant` stays at or above the reserve."""
    unit = purse_unit(state.purse)
    want = policy.standing.get(unit, 0) - max(0, state.rights(device))
    if want <= 0 or free_now - want < policy.reserve.get(unit, 0):
        return 0
    return want


@dataclass(frozen=True, slots=True)
class Idle:
    """Rights a kiosk has held on a purse without using them."""

    device: str
    held: int
    home: bool  # the kiosk is of the member's scope (where a standing float may stay)


def idle_recalls(
    state: PurseState, idle: Sequence[Idle], cloud: str, policy: EscrowPolicy
) -> dict[str, int]:
    """How much to recall from each idle holder: everything beyond a standing float at home,
    and from the standing floats too while the cloud's free rights (after the other recalls)
    are short of the reserve."""
    unit = purse_unit(state.purse)
    standing = policy.standing.get(unit, 0)
    now_free = free(state, cloud)
    out: dict[str, int] = {}
    kept: list[tuple[str, int]] = []
    for h in idle:
        keep = min(h.held, standing) if h.home else 0
        if h.held - keep > 0:
            out[h.device] = h.held - keep
            now_free += h.held - keep
        if keep:
            kept.append((h.device, keep))
    short = policy.reserve.get(unit, 0) - now_free
    for device, keep in kept:
        if short <= 0:
            break
        back = min(keep, short)
        out[device] = out.get(device, 0) + back
        short -= back
    return out


def shortfall_recalls(
    state: PurseState, holders: Sequence[str], cloud: str, policy: EscrowPolicy
) -> dict[str, int]:
    """The member spent and the cloud's free rights fell short of the reserve: how much to
    recall from `holders` (online kiosks holding rights on the purse), largest first."""
    short = policy.reserve.get(purse_unit(state.purse), 0) - free(state, cloud)
    out: dict[str, int] = {}
    for device in sorted(holders, key=lambda d: (-state.rights(d), d)):
        if short <= 0:
            break
        back = min(max(0, state.rights(device)), short)
        if back:
            out[device] = back
            short -= back
    return out
