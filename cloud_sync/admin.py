"""Operator actions on the cloud store (members, cards, top-ups, reports), as library calls the
`kiosk cloud` CLI wraps. Card numbers are never stored: only an HMAC with the site key."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import aiomqtt

from cloud_sync.errors import ConfigError
from cloud_sync.protocol import DenyEntry
from cloud_sync.reconciler import Outgoing, Reconciler
from cloud_sync.settings import BrokerSettings
from cloud_sync.store import CloudStore
from cloud_sync.streams import HOME
from edge.ledger import Intent, Kind, Op
from edge.ledger import records as rec
from edge.ledger.sitekey import SiteSecrets

CARD_STATES = ("active", "lost", "frozen", "cancelled", "replaced", "expired")
CARD_KINDS = {"number": "num", "nfc": "nfc"}  # how the operator names a card -> ref family


def card_token(secrets: SiteSecrets, card: str, kind: str = "number") -> str:
    """What the ledger and the deny list hold instead of the card number or UID: the same
    reference a kiosk computes when the card is read (edge.taps.tokens.card_ref)."""
    digits = "".join(card.split())
    return rec.card_ref_of(secrets.card_ref_key, CARD_KINDS[kind], digits)


def _set(store: CloudStore, account: str, name: str, value: str, ref: str = "") -> list[Op]:
    current = store.register(account, name)
    version = (current.version if current else 0) + 1
    return store.append([Intent(Kind.SET, account, name, version, data=value)], ref)


def register_member(store: CloudStore, account: str, name: str) -> None:
    _set(store, account, rec.MEMBER_NAME, name)


def set_member(
    store: CloudStore,
    account: str,
    *,
    tier: str | None = None,
    pin_hash: str | None = None,
    pass_product: str | None = None,
    pass_window_ms: tuple[int, int] | None = None,
    home: str | None = None,
) -> None:
    """Versioned register writes the kiosks apply: tier, PIN hash, a time pass, the home scope
    (the site or site group whose kiosks know the member)."""
    if store.register(account, rec.MEMBER_NAME) is None:
        raise ConfigError(f"no member {account}; register it first")
    if home is not None:
        _set(store, account, HOME, home)
    if tier is not None:
        _set(store, account, rec.MEMBER_TIER, tier)
    if pin_hash is not None:
        _set(store, account, rec.MEMBER_PIN, pin_hash)
    if pass_product is not None and pass_window_ms is not None:
        start, end = pass_window_ms
        _set(store, account, rec.PASS_PREFIX + pass_product, f"{start}-{end}")


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


def link_card(store: CloudStore, account: str, token: str) -> None:
    owner = card_owner(store, token)
    if owner is not None and owner != account:
        raise ConfigError(f"that card is already linked to account {owner}")
    _set(store, rec.card_account(token), rec.CARD_MEMBER, account)
    _set(store, rec.card_account(token), rec.CARD_STATUS, "active")


def set_card_status(
    reconciler: Reconciler, site: str, token: str, status: str
) -> tuple[str, Outgoing]:
    """Write the card's status register and the deny-list delta; returns (account, message)."""
    if status not in CARD_STATES:
        raise ConfigError(f"unknown card status {status!r}")
    store = reconciler.store
    account = card_owner(store, token)
    if account is None:
        raise ConfigError("no account has that card")
    _set(store, rec.card_account(token), rec.CARD_STATUS, status)
    return account, reconciler.deny_delta(site, [DenyEntry(token=token, status=status)])


def replace_card(
    reconciler: Reconciler, site: str, old: str, new: str
) -> tuple[str, list[Outgoing]]:
    account, out = set_card_status(reconciler, site, old, "replaced")
    link_card(reconciler.store, account, new)
    return account, [out]


def top_up(store: CloudStore, account: str, purse: str, amount: int, ref: str) -> list[Op]:
    """Money taken at the counter: an inc on the cloud's chain (idempotent by receipt ref)."""
    return store.append([Intent(Kind.INC, account, purse, amount)], ref)


async def publish_once(broker: BrokerSettings, outs: Sequence[Outgoing]) -> None:
    """Publish messages on a short-lived connection (the operator CLI)."""
    async with aiomqtt.Client(
        identifier=f"operator-{secrets.token_hex(4)}",
        **broker.client_kwargs(),
    ) as client:
        for o in outs:
            await client.publish(o.topic, o.payload, qos=1, retain=o.retain)
