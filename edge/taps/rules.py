"""The membership rules: a pure function of (local state, tap, time, config) -> Decision.

No I/O here. The app reads the state from the ledger, calls `decide`, writes the Decision's ops
durably, and only then opens the gate.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from edge.clock import UntrustedPolicy
from edge.config import Category, KioskConfig, Role, Tier
from edge.ledger.membership import (
    CardStatus,
    Lot,
    TierStep,
    lapsed_points,
    next_lapse,
    tier_rank,
    tier_reached,
)
from edge.ledger.records import pin_matches
from edge.taps.reasons import DenyReason

DAY_MS = 86_400_000


STATUS_REASON = {
    CardStatus.LOST: DenyReason.CARD_LOST,
    CardStatus.FROZEN: DenyReason.CARD_FROZEN,
    CardStatus.CANCELLED: DenyReason.CARD_CANCELLED,
    CardStatus.REPLACED: DenyReason.CARD_REPLACED,
    CardStatus.EXPIRED: DenyReason.CARD_EXPIRED,
}


@dataclass(frozen=True, slots=True)
class Card:
    ref: str  # HMAC of the card number: the number itself is never stored
    member: str
    status: CardStatus = CardStatus.ACTIVE
    valid_from_ms: int = 0
    valid_until_ms: int = 0  # 0 = no end
    discount_pct: int = 0  # the card's own discount rate (a staff card, a promotion)
    last_entry_ms: int = 0  # its last entry at any gate of the scope (register; 0 = none)


@dataclass(frozen=True, slots=True)
class Pass:
    """A time pass for one product."""

    product: str
    valid_from_ms: int
    valid_until_ms: int


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    name: str
    tier: str = ""
    pin_hash: str = ""  # pbkdf2$<iterations>$<salt hex>$<hash hex>; empty = no PIN set
    pin_fails: int = 0
    pin_locked_until_ms: int = 0
    passes: tuple[Pass, ...] = ()
    role: str = ""  # "tech" for a field technician's card
    progress_offset: int = 0  # points earned that do not count toward tiers (refunded, window)
    spend_offset: int = 0  # cash spent that does not count toward tiers (refunded, window)
    category: str = ""  # member category: its own prices and discount ([rules.categories])


@dataclass(frozen=True, slots=True)
class Balance:
    """A purse as this kiosk knows it: the member's value, and what the kiosk may spend."""

    value: int
    rights: int
    lower_bound: int = 0
    earned: int = 0  # lifetime credits (points earned, for tiers)
    spent: int = 0  # lifetime debits (cash spent, for tiers by spend)
    lots: tuple[Lot, ...] = ()  # points: the lots still held, oldest first (they lapse first)


@dataclass(frozen=True, slots=True)
class TapState:
    card: Card | None
    member: Member | None
    balances: Mapping[str, Balance]
    last_entry_ms: int = 0  # anti-passback: last approved entry of this card through this kiosk
    denylist_age_ms: int = 0  # how long since this kiosk heard from the cloud
    clock_trusted: bool = True  # edge.clock.assess_clock; [clock] untrusted_policy applies if not


@dataclass(frozen=True, slots=True)
class Tap:
    tap_id: str
    now_ms: int
    uid_only: bool = False  # an NFC card read by its UID alone (no SUN): clonable
    pin: str | None = None
    amount: int | None = None  # point of sale: entered on the keypad
    use_points: bool | None = None  # the member's choice; None = [rules] redeem_points_default


@dataclass(frozen=True, slots=True)
class Move:
    purse: str
    amount: int
    account: str = ""  # empty = the member's account


@dataclass(frozen=True, slots=True)
class RegisterWrite:
    account: str
    name: str
    value: str


class Notice(enum.Enum):
    LOW_BALANCE = ("Low balance", "余额不足，请充值")
    PASS_EXPIRING = ("Pass expires soon", "票券即将到期")
    CARD_EXPIRING = ("Card expires soon", "会员卡即将到期")
    NEAR_NEXT_TIER = ("Close to the next tier", "即将升级")


@dataclass(frozen=True, slots=True)
class Decision:
    approved: bool
    reason: DenyReason | None = None
    member_name: str = ""
    debits: tuple[Move, ...] = ()
    credits: tuple[Move, ...] = ()
    writes: tuple[RegisterWrite, ...] = ()
    remaining: Mapping[str, int] = field(default_factory=dict)  # purse -> value after the tap
    notices: tuple[Notice, ...] = ()
    needs_pin: bool = False
    tier: str = ""
    to_next_tier: tuple[str, int] | None = None  # (tier name, points still needed)
    repeated: bool = False  # a double tap: shown again, nothing debited
    # On INSUFFICIENT_BALANCE: the debit that was short. An online kiosk asks the cloud for the
    # rights (the cloud knows top-ups made at other kiosks); held rights prove the balance.
    wanted: Move | None = None
    upgraded_from: str = ""  # the tier the cloud set, when the tap applied a higher one
    points_lapsing: tuple[int, int] | None = None  # (points, when ms): reminder before they lapse

    @property
    def opens_gate(self) -> bool:
        return self.approved and not self.needs_pin


def deny(reason: DenyReason, name: str = "", writes: tuple[RegisterWrite, ...] = ()) -> Decision:
    return Decision(approved=False, reason=reason, member_name=name, writes=writes)


# -- the decision -----------------------------------------------------------------------------


def decide(state: TapState, tap: Tap, cfg: KioskConfig) -> Decision:
    """Decide a card tap at this kiosk."""
    if tap.uid_only and not cfg.rules.accept_uid_cards:
        return deny(DenyReason.CARD_NOT_SECURE)  # whatever card it is: say nothing of it
    card, member = state.card, state.member
    if card is None or member is None:
        return deny(DenyReason.UNKNOWN_CARD)
    name = member.name
    policy = cfg.clock.untrusted_policy
    if not state.clock_trusted and policy is UntrustedPolicy.DENY_ALL:
        return deny(DenyReason.CLOCK_UNTRUSTED, name)
    if card.status is not CardStatus.ACTIVE:
        return deny(STATUS_REASON[card.status], name)
    if card.valid_from_ms and tap.now_ms < card.valid_from_ms:
        return deny(DenyReason.CARD_NOT_YET_VALID, name)
    if card.valid_until_ms and tap.now_ms >= card.valid_until_ms:
        return deny(DenyReason.CARD_EXPIRED, name)
    if member.pin_locked_until_ms > tap.now_ms:
        return deny(DenyReason.PIN_LOCKED, name)
    # The tier is applied at the tap: the one the member's progress reaches, if above the one
    # the cloud last set (the cloud's review moves it down).
    registered = member.tier
    tier = effective_tier(member, tier_progress(state, member), cfg, tier_spend(state, member))
    member = replace(member, tier=tier)
    role = cfg.kiosk.role
    if role is Role.GATE:
        decision = _gate(state, member, tap, cfg)
    elif role is Role.POS:
        decision = _point_of_sale(state, member, tap, cfg)
    else:
        decision = Decision(approved=True, member_name=name)  # top-up: the tap opens a session
    if decision.approved and not decision.needs_pin:
        decision = _check_pin(decision, member, tap, cfg)
    decision = _with_notices(decision, state, member, tap, cfg)
    if decision.approved and tier != registered:
        decision = replace(decision, upgraded_from=registered or "-")
    return decision


def _gate(state: TapState, member: Member, tap: Tap, cfg: KioskConfig) -> Decision:
    rules, kiosk = cfg.rules, cfg.kiosk
    if kiosk.direction == "out":
        return Decision(approved=True, member_name=member.name)
    passback_ms = rules.passback_minutes * 60_000
    if passback_ms and state.last_entry_ms and tap.now_ms - state.last_entry_ms < passback_ms:
        return deny(DenyReason.PASSBACK, member.name)
    product_id = kiosk.product
    product = rules.products[product_id]
    fail_closed = cfg.clock.untrusted_policy is UntrustedPolicy.TIME_PASSES_FAIL_CLOSED
    holds_pass = any(p.product == product_id for p in member.passes)
    if not state.clock_trusted and fail_closed and holds_pass:
        # A pass holder is neither let in on a wrong clock nor charged instead of the pass.
        return deny(DenyReason.CLOCK_UNTRUSTED, member.name)
    for p in member.passes:
        if p.product == product_id and p.valid_from_ms <= tap.now_ms < p.valid_until_ms:
            if state.denylist_age_ms > cfg.offline.max_denylist_age_s * 1000:
                return deny(DenyReason.PASS_CHECK_STALE, member.name)
            return Decision(approved=True, member_name=member.name)
    visits = product.visits_purse or f"visits:{product_id}"
    if state.balances.get(visits, Balance(0, 0)).value > 0:
        return _pay(state, member, visits, 1, rules.tier(member.tier), cfg, accrue=False)
    out_of_dates = _pass_out_of_dates(member, product_id, tap.now_ms)
    category = rules.categories.get(member.category)
    listed = category.prices.get(product_id, product.price) if category else product.price
    if listed == 0:
        return deny(out_of_dates or DenyReason.NO_VALID_PASS, member.name)
    card_pct = state.card.discount_pct if state.card else 0
    price = member_price(listed, category, rules.tier(member.tier), card_pct)
    paid = _pay(state, member, "cash", price, rules.tier(member.tier), cfg, accrue=True)
    if not paid.approved and out_of_dates is not None:
        # A pass holder whose pass is out of its dates is told so, not "not enough balance".
        return replace(paid, reason=out_of_dates)
    return paid


def _pass_out_of_dates(member: Member, product: str, now_ms: int) -> DenyReason | None:
    """Why the member's pass for this product does not cover now (None: they hold none)."""
    held = [p for p in member.passes if p.product == product]
    if not held:
        return None
    if all(now_ms < p.valid_from_ms for p in held):
        return DenyReason.PASS_NOT_YET_VALID
    return DenyReason.PASS_EXPIRED


def _point_of_sale(state: TapState, member: Member, tap: Tap, cfg: KioskConfig) -> Decision:
    rules = cfg.rules
    amount = tap.amount if tap.amount is not None else cfg.kiosk.pos_amount
    if amount <= 0:
        return deny(DenyReason.NO_AMOUNT, member.name)
    tier = rules.tier(member.tier)
    card_pct = state.card.discount_pct if state.card else 0
    price = member_price(amount, rules.categories.get(member.category), tier, card_pct)
    debits: list[Move] = []
    use_points = rules.redeem_points_default if tap.use_points is None else tap.use_points
    if rules.redeem_points and use_points:
        points = usable_points(state.balances.get("points", Balance(0, 0)), tap.now_ms, cfg)
        # Partial redemption: points pay what they can, cash pays the rest.
        covered = min(price, points * 100 // rules.points_per_cash_unit)
        used = -(-covered * rules.points_per_cash_unit // 100)  # ceil: never under-charge
        if covered > 0:
            debits.append(Move("points", used))
            price -= covered
    if price == 0:
        return Decision(approved=True, member_name=member.name, debits=tuple(debits))
    paid = _pay(state, member, "cash", price, tier, cfg, accrue=True)
    if not paid.approved:
        return paid
    return Decision(
        approved=True,
        member_name=member.name,
        debits=(*debits, *paid.debits),
        credits=paid.credits,
    )


def _pay(
    state: TapState,
    member: Member,
    purse: str,
    amount: int,
    tier: Tier,
    cfg: KioskConfig,
    *,
    accrue: bool,
) -> Decision:
    if amount <= 0:  # a discount took the price to nothing: nothing to debit (no 0 op)
        return Decision(approved=True, member_name=member.name)
    bal = state.balances.get(purse, Balance(0, 0))
    # Rights held here are part of the member's value wherever it was credited, so they prove
    # the balance even when this kiosk has not seen a top-up made elsewhere.
    if bal.value - amount < bal.lower_bound and bal.rights < amount:
        return replace(
            deny(DenyReason.INSUFFICIENT_BALANCE, member.name),
            wanted=Move(purse, amount),
            remaining={purse: max(bal.value, bal.rights)},  # the screen shows it beside the price
        )
    credits: tuple[Move, ...] = ()
    if accrue and cfg.rules.points_per_unit:
        points = amount // 100 * cfg.rules.points_per_unit * tier.points_multiplier_pct // 100
        if points > 0:
            credits = (Move("points", points),)
    # Rights are the ledger's business: it refuses (or records debt) when this kiosk holds too few.
    return Decision(
        approved=True, member_name=member.name, debits=(Move(purse, amount),), credits=credits
    )


def tier_progress(state: TapState, member: Member) -> int:
    """Points that count toward tiers: earned in the current window, less refunded ones."""
    earned = state.balances.get("points", Balance(0, 0)).earned
    return max(earned - member.progress_offset, 0)


def tier_spend(state: TapState, member: Member) -> int:
    """Cash that counts toward tiers: spent in the current window, less refunded."""
    spent = state.balances.get("cash", Balance(0, 0)).spent
    return max(spent - member.spend_offset, 0)


def usable_points(points: Balance, now_ms: int, cfg: KioskConfig) -> int:
    """Points a member may pay with: what is held, less lots past their lifetime (the cloud
    writes them off; until then no kiosk lets them be spent)."""
    lapsed = lapsed_points(points.lots, now_ms, cfg.rules.points_lifetime_days)
    return max(points.value - lapsed, 0)


def _steps(cfg: KioskConfig) -> list[TierStep]:
    return [TierStep(t.name, t.min_points, t.min_spend) for t in cfg.rules.tiers]


def effective_tier(member: Member, progress: int, cfg: KioskConfig, spend: int = 0) -> str:
    """The higher of the tier the cloud set and the tier `progress` (or `spend`) reaches."""
    steps = _steps(cfg)
    reached = tier_reached(progress, steps, spend)
    if reached and tier_rank(reached, steps) > tier_rank(member.tier, steps):
        return reached
    return member.tier


def _next_tier(tier: str, progress: int, cfg: KioskConfig) -> tuple[str, int] | None:
    """The next tier above the one the member pays at, and the points still needed for it: the
    note on the screen matches the price charged."""
    steps = _steps(cfg)
    rank = tier_rank(tier, steps)
    above = sorted((s for s in steps if s.min_points > rank), key=lambda s: s.min_points)
    if not above:
        return None
    return above[0].name, max(above[0].min_points - progress, 1)


def _discounted(price: int, pct: int) -> int:
    """`price` less `pct` percent, the fraction of a minor unit in the member's favour."""
    return price * (100 - pct) // 100


def member_price(price: int, category: Category | None, tier: Tier, card_pct: int) -> int:
    """What a member pays for `price` (the list price, or their category's own price for the
    product): the better of the category's and the tier's discount (never both), then the
    card's discount rate on what is left. See docs/membership-rules.md."""
    member_pct = max(category.discount_pct if category else 0, tier.discount_pct)
    return _discounted(_discounted(price, member_pct), card_pct)


def _check_pin(decision: Decision, member: Member, tap: Tap, cfg: KioskConfig) -> Decision:
    rules = cfg.rules
    cash = sum(m.amount for m in decision.debits if m.purse == "cash")
    if not rules.pin_above or cash <= rules.pin_above or not member.pin_hash:
        return decision
    if tap.pin is None:
        return Decision(approved=True, member_name=member.name, needs_pin=True)
    if tap.pin == "":
        return deny(DenyReason.PIN_CANCELLED, member.name)
    if pin_matches(tap.pin, member.pin_hash):
        if member.pin_fails:
            reset = RegisterWrite(member.id, "pin_fails", "0")
            return replace(decision, writes=(*decision.writes, reset))
        return decision
    fails = member.pin_fails + 1
    writes = [RegisterWrite(member.id, "pin_fails", str(fails))]
    if fails >= rules.pin_max_tries:
        until = tap.now_ms + rules.pin_lock_minutes * 60_000
        writes = [
            RegisterWrite(member.id, "pin_fails", "0"),
            RegisterWrite(member.id, "pin_locked_until", str(until)),
        ]
        return deny(DenyReason.PIN_LOCKED, member.name, tuple(writes))
    return deny(DenyReason.PIN_WRONG, member.name, tuple(writes))


def _with_notices(
    decision: Decision, state: TapState, member: Member, tap: Tap, cfg: KioskConfig
) -> Decision:
    if not decision.approved or decision.needs_pin:
        return decision
    rules = cfg.rules
    # What is known to be left: held rights prove at least that much wherever top-ups were made.
    remaining = {p: max(b.value, b.rights) for p, b in state.balances.items()}
    for m in decision.debits:
        if not m.account:
            remaining[m.purse] = remaining.get(m.purse, 0) - m.amount
    for m in decision.credits:
        if not m.account:
            remaining[m.purse] = remaining.get(m.purse, 0) + m.amount
    notices: list[Notice] = []
    if rules.low_balance and "cash" in remaining and remaining["cash"] < rules.low_balance:
        notices.append(Notice.LOW_BALANCE)
    horizon = tap.now_ms + rules.pass_expiry_notice_days * DAY_MS
    if any(tap.now_ms < p.valid_until_ms <= horizon for p in member.passes):
        notices.append(Notice.PASS_EXPIRING)
    card = state.card
    card_horizon = tap.now_ms + rules.card_expiry_notice_days * DAY_MS
    if card is not None and tap.now_ms < card.valid_until_ms <= card_horizon:
        notices.append(Notice.CARD_EXPIRING)
    progress = tier_progress(state, member)
    progress += sum(m.amount for m in decision.credits if m.purse == "points" and not m.account)
    to_next = _next_tier(member.tier, progress, cfg)
    if to_next and rules.near_tier_points and to_next[1] <= rules.near_tier_points:
        notices.append(Notice.NEAR_NEXT_TIER)
    points = state.balances.get("points", Balance(0, 0))
    lapsing = next_lapse(
        points.lots, tap.now_ms, rules.points_lifetime_days, rules.points_expiry_notice_days
    )
    return replace(
        decision,
        remaining=remaining,
        notices=tuple(notices),
        tier=member.tier,
        to_next_tier=to_next,
        points_lapsing=lapsing,
    )


# -- balance lookup -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Movement:
    """One money or points movement of a member, for the lookup screen."""

    purse: str
    amount: int  # + credited, - debited
    wall_ms: int


@dataclass(frozen=True, slots=True)
class Lookup:
    """What the balance lookup shows: balances, passes, points, the last few movements."""

    name: str
    cash: int
    points: int  # usable (lapsed lots left out)
    visits: tuple[tuple[str, int], ...] = ()  # (product, visits left)
    passes: tuple[Pass, ...] = ()  # current or future
    movements: tuple[Movement, ...] = ()  # newest first
    points_lapsing: tuple[int, int] | None = None


def balance_lookup(
    state: TapState, movements: Sequence[Movement], now_ms: int, cfg: KioskConfig
) -> Decision | Lookup:
    """A lookup spends nothing and shows what the member holds; a card that could not pay
    (unknown, lost, frozen, expired...) is refused as a tap would be, showing nothing."""
    card, member = state.card, state.member
    if card is None or member is None:
        return deny(DenyReason.UNKNOWN_CARD)
    if card.status is not CardStatus.ACTIVE:
        return deny(STATUS_REASON[card.status], member.name)
    if card.valid_until_ms and now_ms >= card.valid_until_ms:
        return deny(DenyReason.CARD_EXPIRED, member.name)
    bal = state.balances
    cash = bal.get("cash", Balance(0, 0))
    points = bal.get("points", Balance(0, 0))
    rules = cfg.rules
    visits = tuple(
        (purse.partition(":")[2], b.value)
        for purse, b in sorted(bal.items())
        if purse.startswith("visits:") and b.value > 0
    )
    return Lookup(
        name=member.name,
        cash=max(cash.value, cash.rights),
        points=usable_points(points, now_ms, cfg),
        visits=visits,
        passes=tuple(p for p in member.passes if now_ms < p.valid_until_ms),
        movements=tuple(movements),
        points_lapsing=next_lapse(
            points.lots, now_ms, rules.points_lifetime_days, rules.points_expiry_notice_days
        ),
    )


# -- top-up, coupons, vouchers ----------------------------------------------------------------


def topup_bonus(amount: int, channel: str, cfg: KioskConfig) -> int:
    """The bonus for one top-up through `channel` ("coins", "voucher"): the best rule for that
    channel whose minimum the amount reaches. No rule names vouchers by default: no bonus."""
    eligible = [
        r.bonus
        for r in cfg.rules.topup_bonus
        if channel in r.channels and amount >= r.min_amount and amount > 0
    ]
    return max(eligible, default=0)


def decide_single_use(
    kind: str, code_account: str, balance: Balance | None, member: Member | None, purse: str
) -> Decision:
    """A coupon or voucher is a purse of its own: using it moves it once, even offline at two
    kiosks, because only the kiosk holding its right can spend it."""
    used = DenyReason.COUPON_USED if kind == "coupon" else DenyReason.VOUCHER_USED
    if balance is None:
        return deny(DenyReason.UNKNOWN_CODE)
    if balance.value <= 0:
        return deny(used)
    name = member.name if member else ""
    debit = Move(purse, balance.value, account=code_account)
    credits: tuple[Move, ...] = ()
    if kind == "voucher" and member is not None:
        credits = (Move("cash", balance.value),)
    return Decision(approved=True, member_name=name, debits=(debit,), credits=credits)
