"""Where membership facts live in the ledger: account keys and register names, shared by the
kiosk (which reads them) and the cloud (which writes them)."""

from __future__ import annotations

import hashlib
import hmac

from edge.ledger.op import Intent, Kind

# A card is an account of its own, keyed by an HMAC of its number: never the number in clear.
CARD_PREFIX = "card:"
CARD_MEMBER = "member"  # member id the card belongs to
CARD_STATUS = "status"  # active | lost | frozen | cancelled | replaced | expired
CARD_VALID_FROM = "valid_from"  # ms since the epoch, UTC; "0" = always
CARD_VALID_UNTIL = "valid_until"  # ms since the epoch, UTC; "0" = no end
CARD_DISCOUNT = "discount_pct"  # the card's own discount rate, 0-100

# Registers of a member account.
MEMBER_NAME = "name"
MEMBER_TIER = "tier"
MEMBER_PIN = "pin"  # pbkdf2 hash, never the PIN
MEMBER_ROLE = "role"  # "tech": the card opens the service screen instead of paying
PIN_FAILS = "pin_fails"
PIN_LOCKED_UNTIL = "pin_locked_until"
PROGRESS_OFFSET = "progress_offset"  # points earned that do not count toward tiers
SPEND_OFFSET = "spend_offset"  # cash spent that does not count toward tiers
MEMBER_CATEGORY = "category"  # member category: its own prices and discount
PASS_PREFIX = "pass:"  # noqa: S105 - pass:<product> = "<from_ms>-<until_ms>", a time pass
CREDIT_LIMIT_PREFIX = "limit:"  # limit:<purse> = overdraft in minor units, held by the cloud

# Single-use codes are purses of their own.
COUPON_PREFIX = "coupon:"  # account coupon:<id>, purse COUPON_PURSE, value 1
COUPON_PURSE = "use"
VOUCHER_PREFIX = "voucher:"  # account voucher:<id>, purse VOUCHER_PURSE, value = the amount
VOUCHER_PURSE = "cash"


def card_account(ref: str) -> str:
    return CARD_PREFIX + ref


def card_ref_of(card_ref_key: bytes, family: str, value: str) -> str:
    """The reference the ledger, logs and cloud hold instead of a card's identifier: an HMAC
    with the site's card-reference key. `family` groups identifiers of one physical card
    ("nfc" for a UID, "num" for a printed/striped number)."""
    mac = hmac.new(card_ref_key, f"{family}:{value.strip().upper()}".encode(), hashlib.sha256)
    return mac.hexdigest()[:32]


def register_writes(account: str, version: int, **values: str) -> list[Intent]:
    """Register writes for an account at one version (the cloud uses its wall clock in ms)."""
    return [Intent(Kind.SET, account, name, version, data=value) for name, value in values.items()]


def member_intents(
    member_id: str, name: str, version: int, *, tier: str = "", pin_hash: str = ""
) -> list[Intent]:
    values = {MEMBER_NAME: name}
    if tier:
        values[MEMBER_TIER] = tier
    if pin_hash:
        values[MEMBER_PIN] = pin_hash
    return register_writes(member_id, version, **values)


def card_intents(
    ref: str, member_id: str, version: int, *, status: str = "active", valid_until_ms: int = 0
) -> list[Intent]:
    values = {CARD_MEMBER: member_id, CARD_STATUS: status}
    if valid_until_ms:
        values[CARD_VALID_UNTIL] = str(valid_until_ms)
    return register_writes(card_account(ref), version, **values)


PIN_HASH_ITERATIONS = 20_000


def hash_pin(pin: str, salt: bytes, iterations: int = PIN_HASH_ITERATIONS) -> str:
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, iterations)
    return f"pbkdf2${iterations}${salt.hex()}${digest.hex()}"


def pin_matches(pin: str, stored: str) -> bool:
    try:
        scheme, iterations, salt, _ = stored.split("$")
        if scheme != "pbkdf2":
            return False
        expected = hash_pin(pin, bytes.fromhex(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(expected, stored)
