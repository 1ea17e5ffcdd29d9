"""Operator actions on the cloud store (members, cards, top-ups, reports), as library calls the
`kiosk cloud` CLI wraps. Card numbers are never stored: only an HMAC with the site key."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import aiomqtt

from cloud_sync.errors import ActionRefused, ConfigError
from cloud_sync.membership import MembershipSettings
from cloud_sync.protocol import DenyEntry, secret_client_id
from cloud_sync.reconciler import Outgoing, Reconciler
from cloud_sync.refunds import (
    Refunded,
    RefundRefused,
    plan_refund,
    purchase_of,
    refund_register,
)
from cloud_sync.settings import BrokerSettings
from cloud_sync.store import CloudStore
from cloud_sync.streams import HOME
from cloud_sync.upkeep import (
    TierChange,
    int_register,
    points_lots,
    register_intents,
)
from cloud_sync.upkeep import review_tiers as review_all_tiers
from edge.ledger import Intent, Kind, Op, SpendRefused
from edge.ledger import records as rec
from edge.ledger.membership import (
    CardStatus,
    account_fault,
    card_move_fault,
    lapsed_points,
    pin_fault,
    purse_fault,
    tier_rank,
)
from edge.ledger.sitekey import SiteSecrets

CARD_STATES = tuple(s.value for s in CardStatus)
MEMBER_CATEGORY = rec.MEMBER_CATEGORY  # member category: its price policy ([rules.categories])
# How the operator names a card -> its reference family (edge.taps.tokens): "nfc" is an NTAG 424
# card known by its verified SUN UID; "uid" is a bare UID (clonable: only kiosks that accept
# UID-only cards take it, and it is never the same card as "nfc" with the same UID).
CARD_KINDS = {"number": "num", "nfc": "nfc", "uid": "uid"}
PROGRESS_OFFSET = rec.PROGRESS_OFFSET  # points earned that do not count toward tiers
ANONYMOUS = "anonymous"  # register of an anonymous (不记名) card's account: "1"


def number_checks(number: str) -> bool:
    """Whether a typed card number has a right check digit (see rec.check_digit_ok)."""
    return rec.check_digit_ok("".join(number.split()))


def card_token(
    secrets: SiteSecrets, card: str, kind: str = "number", *, check_digit: bool = True
) -> str:
    """What the ledger and the deny list hold instead of the card number or UID: the same
    reference a kiosk computes when the card is read (edge.taps.tokens.card_ref). A number
    must carry its check digit unless the site's card stock has none (`check_digit`)."""
    digits = "".join(card.split())
    if kind == "number" and check_digit and not number_checks(digits):
        raise ActionRefused("card number: check digit wrong (a typing error?); type it again")
    return rec.card_ref_of(secrets.card_ref_key, CARD_KINDS[kind], digits)


def _set(store: CloudStore, account: str, name: str, value: str, ref: str = "") -> list[Op]:
    current = store.register(account, name)
    version = (current.version if current else 0) + 1
    return store.append([Intent(Kind.SET, account, name, version, data=value)], ref)


def _refuse_if(fault: str | None) -> None:
    if fault:
        raise ActionRefused(fault)


def require_member(store: CloudStore, account: str) -> None:
    """Refuse an action on an account id that is malformed or was never registered."""
    _refuse_if(account_fault(account))
    if store.register(account, rec.MEMBER_NAME) is None:
        raise ActionRefused(f"no member {account}; register it first (kiosk cloud member register)")


def register_member(store: CloudStore, account: str, name: str) -> None:
    _refuse_if(account_fault(account))
    if not name.strip():
        raise ActionRefused("a member needs a name (an anonymous card: card link --anonymous)")
    _set(store, account, rec.MEMBER_NAME, name.strip())


def is_member(store: CloudStore, account: str) -> bool:
    return store.register(account, rec.MEMBER_NAME) is not None


def set_member(
    store: CloudStore,
    account: str,
    *,
    tier: str | None = None,
    pin: str | None = None,
    pin_hash: str | None = None,
    pass_product: str | None = None,
    pass_window_ms: tuple[int, int] | None = None,
    credit_limit: int | None = None,
    category: str | None = None,
    membership: MembershipSettings | None = None,
    home: str | None = None,
) -> None:
    """Versioned register writes the kiosks apply: tier, PIN hash, a time pass, the cash credit
    limit (overdraft, 透支), the home scope (the site or site group whose kiosks know the member).
    A plain `pin` is checked (digits, minimum length) and hashed."""
    m = membership or MembershipSettings()
    require_member(store, account)
    if tier is not None and tier_rank(tier, m.steps()) < 0:
        known = ", ".join(t.name for t in m.tiers) or "none: set [[membership.tiers]]"
        raise ActionRefused(f"unknown tier {tier!r} (known: {known})")
    if pin is not None:
        _refuse_if(pin_fault(pin, m.pin_min_digits))
        pin_hash = rec.hash_pin(pin, secrets.token_bytes(rec.PIN_SALT_BYTES))
    if credit_limit is not None and credit_limit < 0:
        raise ActionRefused("a credit limit is 0 or more minor units")
    if category is not None and m.categories and category not in m.categories:
        known = ", ".join(m.categories)
        raise ActionRefused(f"unknown category {category!r} (known: {known})")
    if home is not None:
        _set(store, account, HOME, home)
    if tier is not None:
        _set(store, account, rec.MEMBER_TIER, tier)
    if category is not None:
        _set(store, account, MEMBER_CATEGORY, category)
    if pin_hash is not None:
        _set(store, account, rec.MEMBER_PIN, pin_hash)
    if pass_product is not None and pass_window_ms is not None:
        start, end = pass_window_ms
        _set(store, account, rec.PASS_PREFIX + pass_product, f"{start}-{end}")
    if credit_limit is not None:
        _set(store, account, rec.CREDIT_LIMIT_PREFIX + "cash", str(credit_limit))


def issue_single_use(store: CloudStore, kind: str, code: str, amount: int = 1) -> list[Op]:
    """A coupon (purse of 1) or a top-up voucher (purse of its amount): a purse of its own, so
    it can be used once, even offline at two kiosks. Idempotent by its code."""
    if kind == "coupon":
        account, purse, amount = rec.COUPON_PREFIX + code, rec.COUPON_PURSE, 1
    elif kind == "voucher":
        account, purse = rec.VOUCHER_PREFIX + code, rec.VOUCHER_PURSE
    else:
        raise ConfigError(f"unknown code kind {kind!r}")
    if amount <= 0:
        raise ConfigError("a voucher needs a positive amount")
    return store.append([Intent(Kind.INC, account, purse, amount)], ref=f"issue:{kind}:{code}")


def card_owner(store: CloudStore, token: str) -> str | None:
    reg = store.register(rec.card_account(token), rec.CARD_MEMBER)
    return reg.value if reg else None


def card_status(store: CloudStore, token: str) -> CardStatus | None:
    reg = store.register(rec.card_account(token), rec.CARD_STATUS)
    if reg is None:
        return None
    try:
        return CardStatus(reg.value)
    except ValueError:
        return CardStatus.FROZEN


def link_card(
    store: CloudStore, account: str, token: str, *, valid_until_ms: int | None = None
) -> None:
    """Issue a card to a registered account (status active); a card already given to another
    account, or lost, replaced or cancelled, is refused."""
    require_member(store, account)
    owner = card_owner(store, token)
    if owner is not None and owner != account:
        raise ActionRefused(f"that card is already linked to account {owner}")
    status = card_status(store, token)
    if status is not None and status is not CardStatus.ACTIVE:
        _refuse_if(card_move_fault(status, CardStatus.ACTIVE))
    _set(store, rec.card_account(token), rec.CARD_MEMBER, account)
    if status is not CardStatus.ACTIVE:
        _set(store, rec.card_account(token), rec.CARD_STATUS, CardStatus.ACTIVE)
    if valid_until_ms is not None:
        _set(store, rec.card_account(token), rec.CARD_VALID_UNTIL, str(valid_until_ms))


def link_anonymous_card(store: CloudStore, token: str, *, valid_until_ms: int | None = None) -> str:
    """An anonymous card (不记名): an account of its own, named by the card, no personal data.
    Returns the account id (the same for the same card)."""
    account = "anon-" + token[:16]
    if store.register(account, rec.MEMBER_NAME) is None:
        _set(store, account, rec.MEMBER_NAME, "")
        _set(store, account, ANONYMOUS, "1")
    link_card(store, account, token, valid_until_ms=valid_until_ms)
    return account


def set_card_expiry(store: CloudStore, token: str, valid_until_ms: int) -> str:
    """Set (or renew) a card's end of validity; returns the account. An expired card renewed to
    a date ahead becomes active again."""
    account = card_owner(store, token)
    if account is None:
        raise ActionRefused("no account has that card")
    _set(store, rec.card_account(token), rec.CARD_VALID_UNTIL, str(valid_until_ms))
    if card_status(store, token) is CardStatus.EXPIRED:
        _set(store, rec.card_account(token), rec.CARD_STATUS, CardStatus.ACTIVE)
    return account


def set_card_discount(store: CloudStore, token: str, pct: int) -> str:
    """The card's own discount rate (0-100 %), applied after the member's category or tier
    discount (docs/membership-rules.md); returns the account."""
    account = card_owner(store, token)
    if account is None:
        raise ActionRefused("no account has that card")
    if not 0 <= pct <= 100:
        raise ActionRefused("a card discount is 0 to 100 percent")
    _set(store, rec.card_account(token), rec.CARD_DISCOUNT, str(pct))
    return account


def set_card_status(
    reconciler: Reconciler, site: str, token: str, status: str
) -> tuple[str, Outgoing]:
    """Move the card along its lifecycle (edge.ledger.membership.CARD_MOVES): the status
    register and the deny-list delta; returns (account, message). A move the card may not make
    (unfreeze a lost card) is refused."""
    try:
        target = CardStatus(status)
    except ValueError:
        raise ActionRefused(f"unknown card status {status!r}") from None
    store = reconciler.store
    account = card_owner(store, token)
    if account is None:
        raise ActionRefused("no account has that card")
    current = card_status(store, token) or CardStatus.ACTIVE
    _refuse_if(card_move_fault(current, target))
    _set(store, rec.card_account(token), rec.CARD_STATUS, target)
    return account, reconciler.deny_delta(site, [DenyEntry(token=token, status=target)])


def replace_card(
    reconciler: Reconciler, site: str, old: str, new: str
) -> tuple[str, list[Outgoing]]:
    if card_owner(reconciler.store, new) is not None:
        raise ActionRefused("the new card is linked already; use a blank card")
    account, out = set_card_status(reconciler, site, old, "replaced")
    link_card(reconciler.store, account, new)
    return account, [out]


def _receipt_check(ops: Sequence[Op], account: str, purse: str, amount: int, ref: str) -> None:
    same = [(o.account, o.purse, o.amount) for o in ops if o.kind is Kind.INC]
    if same and same[0] != (account, purse, amount):
        other = same[0]
        raise ActionRefused(
            f"receipt {ref} was used already ({other[2]} to {other[1]} of {other[0]});"
            " give this top-up its own receipt number"
        )


def top_up(
    store: CloudStore,
    account: str,
    purse: str,
    amount: int,
    ref: str,
    membership: MembershipSettings | None = None,
) -> list[Op]:
    """Money taken at the counter: an inc on the cloud's chain, with the counter's top-up bonus
    on cash (`[membership] topup_bonus`) in the same step (idempotent by receipt ref: a retry
    credits once; the same receipt for another account, purse or amount is refused)."""
    require_member(store, account)
    _refuse_if(purse_fault(purse))
    if amount <= 0:
        raise ActionRefused("a top-up is a positive amount of minor units")
    if not ref.strip():
        raise ActionRefused("a top-up needs the receipt number (--ref)")
    done = store.by_ref(ref)
    if done:
        _receipt_check(done, account, purse, amount, ref)
        return done
    intents = [Intent(Kind.INC, account, purse, amount)]
    bonus = (membership or MembershipSettings()).counter_bonus(amount) if purse == "cash" else 0
    if bonus:
        intents.append(Intent(Kind.INC, account, purse, bonus, data="top-up bonus"))
    return store.append(intents, ref)


# -- refunds and corrections ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefundResult:
    member: str
    cash: int  # refunded now
    points_back: int  # earned points taken back
    points_short: int  # earned points the cloud could not take back (held by a kiosk, spent)
    ops: tuple[Op, ...]
    repeated: bool = False  # a retry: nothing new written


def _reason_ref(kind: str, key: str, reason: str) -> str:
    digest = hashlib.sha256(reason.encode()).hexdigest()[:8]
    return f"{kind}:{key}:{digest}"


def refund(
    store: CloudStore, tap: str, *, amount: int | None, reason: str, account: str | None = None
) -> RefundResult:
    """Reverse a purchase (all of it, or `amount` of its cash) by the original tap id: cash back
    on the cloud's chain, the points it earned taken back in proportion (and no longer counted
    toward tiers), and on a whole refund the points, visits or coupon it used given back. Signed
    ops of the cloud every replica applies, each carrying the reason. A retry of the same refund
    (tap, amount, reason) writes nothing; the total refunded never exceeds what was paid."""
    if not reason.strip():
        raise ActionRefused("a refund needs a reason (--reason)")
    key = f"{tap}:{amount if amount is not None else 'all'}"
    ref = _reason_ref("refund", key, reason)
    done = store.by_ref(ref)
    if done:
        member = next((o.account for o in done if o.purse in ("cash", "points")), "")
        return RefundResult(member, 0, 0, 0, tuple(done), repeated=True)
    found = store.ops_with_ref(tap, account)
    purchase = purchase_of(tap, [o for o in found if o.replica != store.replica])
    if purchase is None:
        raise ActionRefused(f"no purchase with tap id {tap}")
    reg = store.register(purchase.member, refund_register(tap))
    try:
        plan = plan_refund(purchase, Refunded.parse(reg.value if reg else None), amount)
    except RefundRefused as exc:
        raise ActionRefused(str(exc)) from None
    held = max(store.purse(purchase.member, "points").rights(store.replica), 0)
    take = min(plan.points_back, held)
    intents = [Intent(i.kind, i.account, i.purse, i.amount, data=reason) for i in plan.credits]
    if take:
        intents.append(Intent(Kind.DEC, purchase.member, "points", take, data=reason))
    intents += _register_intents(store, purchase.member, refund_register(tap), plan.after.text())
    offset = _int_register(store, purchase.member, PROGRESS_OFFSET) + plan.uncounted
    intents += _register_intents(store, purchase.member, PROGRESS_OFFSET, str(offset))
    cash = sum(i.amount for i in plan.credits if i.purse == "cash" and i.account == purchase.member)
    if cash:  # refunded spend no longer counts toward tiers by spend
        spend = _int_register(store, purchase.member, rec.SPEND_OFFSET) + cash
        intents += _register_intents(store, purchase.member, rec.SPEND_OFFSET, str(spend))
    ops = store.append(intents, ref)
    return RefundResult(purchase.member, cash, take, plan.points_back - take, tuple(ops))


def correct(
    store: CloudStore, account: str, purse: str, amount: int, *, reason: str, ref: str
) -> list[Op]:
    """A correction by the operator: +amount credits, -amount debits (only what the cloud
    holds), with its reason in the op; idempotent by `ref`."""
    require_member(store, account)
    _refuse_if(purse_fault(purse))
    if not reason.strip():
        raise ActionRefused("a correction needs a reason (--reason)")
    if amount == 0:
        raise ActionRefused("a correction of 0 changes nothing")
    if not ref.strip():
        raise ActionRefused("a correction needs its own reference (--ref)")
    full_ref = "correct:" + ref.strip()
    kind = Kind.INC if amount > 0 else Kind.DEC
    done = store.by_ref(full_ref)
    if done:
        first = done[0]
        if (first.account, first.purse, first.amount, first.kind) != (
            account,
            purse,
            abs(amount),
            kind,
        ):
            raise ActionRefused(f"reference {ref} was used for another correction")
        return done
    try:
        return store.append([Intent(kind, account, purse, abs(amount), data=reason)], full_ref)
    except SpendRefused as exc:
        raise ActionRefused(
            f"the cloud holds {exc.rights} of {purse} of {account}, not {abs(amount)};"
            " recall it from the kiosks first (or correct less)"
        ) from None


_int_register = int_register
_register_intents = register_intents


# -- points ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PointsTransfer:
    source: str
    target: str
    amount: int
    ops: tuple[Op, ...]


def transfer_points(
    store: CloudStore,
    membership: MembershipSettings,
    source: str,
    target: str,
    amount: int,
    *,
    ref: str,
    now_ms: int,
) -> PointsTransfer:
    """Give points from one member to another (积分转赠), where `[membership] point_transfers`
    allows it: one signed cloud step (the sender's debit, the receiver's credit), idempotent by
    `ref`. The received points do not count toward the receiver's tier; lapsed points and
    points a kiosk holds cannot be given."""
    if not membership.point_transfers:
        raise ActionRefused(
            "this site does not allow point transfers ([membership] point_transfers = true)"
        )
    require_member(store, source)
    require_member(store, target)
    if source == target:
        raise ActionRefused("a transfer needs two different members")
    if amount <= 0:
        raise ActionRefused("a transfer is a positive number of points")
    if not ref.strip():
        raise ActionRefused("a transfer needs its own reference (--ref)")
    full_ref = "points-transfer:" + ref.strip()
    done = store.by_ref(full_ref)
    if done:
        moved = [(o.account, o.amount) for o in done if o.kind in (Kind.DEC, Kind.INC)]
        if moved != [(source, amount), (target, amount)]:
            raise ActionRefused(f"reference {ref} was used for another transfer")
        return PointsTransfer(source, target, amount, tuple(done))
    days = membership.points_lifetime_days
    lapsed = lapsed_points(points_lots(store, source, days), now_ms, days)
    usable = store.purse(source, "points").value - lapsed
    if amount > usable:
        raise ActionRefused(f"{source} has {max(usable, 0)} points to give, not {amount}")
    held = store.purse(source, "points").rights(store.replica)
    if amount > held:
        raise ActionRefused(
            f"the cloud holds {max(held, 0)} of the points of {source}, not {amount};"
            " a kiosk holds the rest until it hands them back (idle recall), try again later"
        )
    offset = int_register(store, target, PROGRESS_OFFSET) + amount
    intents = [
        Intent(Kind.DEC, source, "points", amount, data=f"transfer to {target}"),
        Intent(Kind.INC, target, "points", amount, data=f"transfer from {source}"),
        *register_intents(store, target, PROGRESS_OFFSET, str(offset)),
    ]
    try:
        ops = store.append(intents, full_ref)
    except SpendRefused as exc:
        raise ActionRefused(f"the cloud holds {exc.rights} points of {source}") from None
    return PointsTransfer(source, target, amount, tuple(ops))


async def publish_once(broker: BrokerSettings, outs: Sequence[Outgoing]) -> None:
    """Publish messages on a short-lived connection (the operator CLI)."""
    async with aiomqtt.Client(
        identifier=secret_client_id("operator"),
        **broker.client_kwargs(),
    ) as client:
        for o in outs:
            await client.publish(o.topic, o.payload, qos=1, retain=o.retain)


# -- tiers -----------------------------------------------------------------------------------


def review_tiers(
    store: CloudStore, membership: MembershipSettings, now_ms: int, account: str | None = None
) -> list[TierChange]:
    """End a tier window (for one member, or all): see `cloud_sync.upkeep.review_tiers`.
    Kiosks apply upgrades at the tap by themselves; this is also where downgrades happen."""
    if not membership.steps():
        raise ActionRefused("no tiers configured: set [[membership.tiers]]")
    if account is not None:
        require_member(store, account)
    return review_all_tiers(store, membership, now_ms, None if account is None else [account])
