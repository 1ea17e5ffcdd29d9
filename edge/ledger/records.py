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
# On a card account: the newest SUN read counter seen in the scope, a max register (version =
# the counter). Each kiosk writes the counters it read; the cloud relays the highest to the
# scope, so a URL read at one kiosk is refused at the others once they know it.
SUN_COUNTER = "sun_ctr"
SUN_CTR_MAX = 0xFFFFFF  # SDMReadCtr is 3 bytes
SERVICE_REGISTER = "service"  # on a kiosk's own account `kiosk:<id>`: service mode opened/closed
LAST_ENTRY = "last_entry"  # on a card account: ms of its last entry at a gate (anti-passback)

# The only registers a kiosk may write (the cloud refuses any other from a kiosk): its own
# locks, counters and gate entries. Card status, tiers, PINs, credit limits and passes are the
# cloud's.
KIOSK_REGISTERS = frozenset(
    {PIN_FAILS, PIN_LOCKED_UNTIL, SUN_COUNTER, SERVICE_REGISTER, LAST_ENTRY}
)


def kiosk_account(kiosk: str) -> str:
    """The account a kiosk keeps its own records on (service mode, unclaimed coins)."""
    return f"kiosk:{kiosk}"


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
    ("nfc" for a verified NTAG 424 SUN UID, "uid" for a bare UID, "num" for a printed/striped
    number)."""
    mac = hmac.new(card_ref_key, f"{family}:{value.strip().upper()}".encode(), hashlib.sha256)
    return mac.hexdigest()[:32]


# Luhn's doubled digit, by digit: 0->0, 1->2, ..., 5->1 (10 - 9), ..., 9->9.
_LUHN_DOUBLE = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def check_digit_ok(number: str) -> bool:
    """Whether a card number typed by an operator has a right check digit: Luhn (how numbers
    are issued, provisioning.cards) or EAN-13 (a retail barcode). The kiosk's reader applies
    the same rule (edge.drivers.cardformats): a mistyped or neighbouring number names no card,
    and is refused before anything is looked up."""
    if not (number.isascii() and number.isdigit() and 8 <= len(number) <= 19):
        return False
    digits = [int(c) for c in reversed(number)]
    luhn = sum(d if i % 2 == 0 else _LUHN_DOUBLE[d] for i, d in enumerate(digits))
    ean = len(number) == 13 and sum(d * (3 if i % 2 else 1) for i, d in enumerate(digits)) % 10
    return luhn % 10 == 0 or (len(number) == 13 and ean == 0)


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


# A PIN has 10^4 to 10^12 values: its hash is only as strong as the cost of one guess. scrypt
# (memory-hard: 16 MiB and ~40 ms here per guess, see docs/security.md) with a random salt per
# member, so a hash copied off a kiosk costs 10,000 such guesses for a 4-digit PIN and no table
# serves two members. Hashes of the old PBKDF2 form still verify until the PIN is set again.
PIN_SCRYPT_N = 2**14
PIN_SCRYPT_R = 8
PIN_SCRYPT_P = 1
PIN_SALT_BYTES = 16


def hash_pin(
    pin: str, salt: bytes, n: int = PIN_SCRYPT_N, r: int = PIN_SCRYPT_R, p: int = PIN_SCRYPT_P
) -> str:
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=n, r=r, p=p, maxmem=n * r * 256, dklen=32)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def _pbkdf2(pin: str, salt: bytes, iterations: int) -> str:
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, iterations)
    return f"pbkdf2${iterations}${salt.hex()}${digest.hex()}"


def pin_matches(pin: str, stored: str) -> bool:
    parts = stored.split("$")
    try:
        if parts[0] == "scrypt" and len(parts) == 6:
            n, r, p = (int(x) for x in parts[1:4])
            if not (2 <= n <= 2**20 and 1 <= r <= 32 and 1 <= p <= 4):
                return False  # refuse parameters that would stall a tap
            expected = hash_pin(pin, bytes.fromhex(parts[4]), n, r, p)
        elif parts[0] == "pbkdf2" and len(parts) == 4 and 0 < int(parts[1]) <= 10**6:
            expected = _pbkdf2(pin, bytes.fromhex(parts[2]), int(parts[1]))
        else:
            return False
    except ValueError:
        return False
    return hmac.compare_digest(expected, stored)
