"""The kiosk's TOML config as msgspec Structs, checked on load, with faults a field tech can fix."""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from msgspec import Meta, field
from msgspec.structs import force_setattr

from edge.clock import ClockConfig
from edge.drivers.config import (
    ConfigError,
    DisplayConfig,
    GpioConfig,
    NfcConfig,
    WedgeConfig,
    load_model,
)
from edge.validation import Settings

_DECIMAL = re.compile(r"^(\d{1,9})(?:\.(\d{2}))?$")


def parse_money(value: object) -> int:
    """An amount in config: an integer of minor units (2500), or a decimal string with two
    places ("25.00" -> 2500), parsed exactly. Floats and anything else are refused: "25.0" or
    25.0 would be one typo from a price a hundred times off."""
    if isinstance(value, bool):
        raise ValueError('an amount is an integer of minor units or a string like "25.00"')
    if isinstance(value, int):
        if value < 0:
            raise ValueError("an amount is 0 or more")
        return value
    if isinstance(value, str):
        m = _DECIMAL.match(value.strip())
        if m and m.group(2) is not None:
            return int(m.group(1)) * 100 + int(m.group(2))
    raise ValueError(
        f"{value!r} is not an amount: write minor units as an integer (2500) or a decimal"
        ' string with two places ("25.00")'
    )


class _Amount(int):
    """An amount as written in config (`edge.validation.load` calls `from_setting`). msgspec checks
    that a custom type's decoder returns that type; `Strict` then keeps a plain int, which is what
    msgspec encodes into ops."""

    @classmethod
    def from_setting(cls, value: object) -> _Amount:
        return cls(parse_money(value))


if TYPE_CHECKING:
    Money = int
else:
    Money = _Amount  # minor units (cents, fen), or "25.00"
Percent = Annotated[int, Meta(ge=0, le=100)]


__all__ = ["ConfigError", "KioskConfig", "load_config"]


class Strict(Settings, frozen=True, kw_only=True):
    """A section of the kiosk config: amounts, checked as `_Amount`, are kept as plain ints."""

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, _Amount):
                force_setattr(self, name, int(value))
            elif isinstance(value, dict) and any(isinstance(v, _Amount) for v in value.values()):
                force_setattr(self, name, {k: int(v) for k, v in value.items()})


class Role(enum.StrEnum):
    GATE = "gate"
    POS = "pos"
    TOPUP = "topup"


class Product(Strict, frozen=True, kw_only=True):
    """Something a gate sells entry to: paid by time pass, then visits, then cash."""

    name: str
    price: Money
    visits_purse: str = ""  # default: visits:<product id>


class Tier(Strict, frozen=True, kw_only=True):
    name: str
    min_points: Annotated[int, Meta(ge=0)]  # points earned in the window to reach this tier
    min_spend: Money = 0  # or cash spent in the window; 0 = points only
    discount_pct: Percent = 0
    points_multiplier_pct: Annotated[int, Meta(ge=0, le=1000)] = 100


TopupChannel = Literal["coins", "voucher"]


def _coins_only() -> list[TopupChannel]:
    return ["coins"]


class BonusRule(Strict, frozen=True, kw_only=True):
    """Top up at least `min_amount` through one of `channels`, get `bonus` extra. Vouchers earn
    no bonus unless a rule names them (counter top-ups: the cloud's [membership] topup_bonus)."""

    min_amount: Money
    bonus: Money
    channels: Annotated[list[TopupChannel], Meta(min_length=1)] = field(default_factory=_coins_only)


class Category(Strict, frozen=True, kw_only=True):
    """A member category (会员类别) with its own price policy: a price per product (instead of
    the list price) and a discount."""

    name: str = ""
    discount_pct: Percent = 0
    prices: dict[str, Money] = field(default_factory=dict)


class OfflineMode(enum.StrEnum):
    STRICT = "strict"
    RISK = "risk"


class OfflinePolicy(Strict, frozen=True, kw_only=True):
    mode: OfflineMode = OfflineMode.STRICT
    risk_per_tap: Money = 0
    risk_total: Money = 0
    # Time passes are checked against card status the cloud pushes; past this age, fail closed.
    max_denylist_age_s: Annotated[int, Meta(gt=0)] = 24 * 3600
    rights_request_timeout_ms: Annotated[int, Meta(gt=0, le=5000)] = 300

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode is OfflineMode.RISK and (self.risk_per_tap <= 0 or self.risk_total <= 0):
            raise ValueError("mode = 'risk' needs risk_per_tap and risk_total above 0")


NonNegative = Annotated[int, Meta(ge=0)]


class Rules(Strict, frozen=True, kw_only=True):
    products: dict[str, Product] = field(default_factory=dict)
    tiers: list[Tier] = field(default_factory=list)
    topup_bonus: list[BonusRule] = field(default_factory=list)
    points_per_unit: NonNegative = 1  # points per 100 minor units paid
    pin_above: Money = 0  # ask for the PIN above this amount; 0 = never
    pin_max_tries: Annotated[int, Meta(ge=1)] = 5
    pin_lock_minutes: Annotated[int, Meta(ge=1)] = 15
    passback_minutes: NonNegative = 0  # 0 = no anti-passback
    debounce_seconds: Annotated[float, Meta(ge=0)] = 3.0
    low_balance: Money = 0
    pass_expiry_notice_days: NonNegative = 7
    card_expiry_notice_days: NonNegative = 14
    near_tier_points: NonNegative = 0
    # NFC cards read by their UID alone (no NTAG 424 SUN) are clonable: off unless a site opts in
    # (docs/security.md "Cards"). Barcodes and magstripes are not concerned.
    accept_uid_cards: bool = False  # accept clonable UID-only NFC cards
    # Swiped card numbers carry a Luhn check digit (ours do); false for a card stock printed by a
    # system before this one, without it (the cloud's `[membership] card_check_digit` too).
    card_check_digit: bool = True
    redeem_points: bool = False
    points_per_cash_unit: Annotated[int, Meta(gt=0)] = 100  # points worth 100 minor units
    # A member may decline to pay with points: the default, and the code keyed before a tap
    # that turns it round for that tap.
    redeem_points_default: bool = True
    points_choice_code: Annotated[str, Meta(pattern=r"^[0-9]{1,4}$")] = "0"
    points_lifetime_days: NonNegative = 0  # 0 = points never lapse
    points_expiry_notice_days: NonNegative = 30
    categories: dict[str, Category] = field(default_factory=dict)
    lookup_seconds: Annotated[float, Meta(gt=0)] = 15.0  # lookup button: window to tap

    def tier(self, name: str) -> Tier:
        for t in self.tiers:
            if t.name == name:
                return t
        return Tier(name=name or "-", min_points=0)


Name = Annotated[str, Meta(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")]


class KioskSection(Strict, frozen=True, kw_only=True):
    id: Name
    site: Name
    role: Role
    product: str = ""  # gate: what entry sells
    direction: Annotated[str, Meta(pattern="^(in|out)$")] = "in"  # gate: entry or exit
    pos_amount: Money = 0  # pos: fixed amount; 0 = entered on the keypad
    service_minutes: Annotated[int, Meta(ge=1, le=120)] = 15  # a tech card's service mode
    state_dir: Path = Path("/var/lib/kiosk")
    key_file: Path = Path("/etc/kiosk/device.key")  # Ed25519 ledger key, 0600
    site_key_file: Path = Path("/etc/kiosk/site.key")  # site secret: card refs and NFC keys
    # The scope's card master keys after a rotation (`kiosk cloud card-keys`), 0600; unset: the
    # version derived from the site secret.
    card_keys_file: Path | None = None
    cloud_public_key: Annotated[str, Meta(pattern="^([0-9a-fA-F]{64})?$")] = (
        ""  # pinned at enrollment
    )
    cloud_replica: str = "cloud"  # the cloud's replica id in the ledger
    currency: Annotated[str, Meta(max_length=3)] = ""  # shown before amounts, e.g. "¥"
    timezone: str = "UTC"  # the site's clock on the screen, e.g. "Asia/Shanghai"

    def __post_init__(self) -> None:
        super().__post_init__()
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            fault = f"timezone {self.timezone!r} is not a known zone (e.g. Asia/Shanghai)"
            raise ValueError(fault) from None


class LogConfig(Strict, frozen=True, kw_only=True):
    """`[log]`: how much `kiosk run` writes to its journal. INFO has one line per tap and per
    sync event (never a card number or a PIN); WARNING only faults."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class MetricsConfig(Strict, frozen=True, kw_only=True):
    """`[metrics]`: the kiosk's own figures for node_exporter's textfile collector, written
    atomically to `textfile` (e.g. /var/lib/node_exporter/textfile_collector/kiosk.prom)."""

    textfile: Path
    interval_s: Annotated[float, Meta(gt=0)] = 15.0


class KioskConfig(Strict, frozen=True, kw_only=True):
    kiosk: KioskSection
    rules: Rules = Rules()
    offline: OfflinePolicy = OfflinePolicy()
    clock: ClockConfig = ClockConfig()
    # The link to the cloud: cloud_sync's AgentSettings without site/device/key (taken from
    # [kiosk]): [agent.broker] host, port, tls. Checked by the `kiosk` command that wires the
    # agent (kiosk.link), since the daemon knows nothing of the cloud side. Left out: the kiosk
    # runs alone (offline rules).
    agent: dict[str, Any] | None = None
    # Hardware: a section left out means the part is not fitted.
    nfc: NfcConfig | None = None
    wedge: WedgeConfig | None = None  # barcode/QR scanner or magstripe reader
    keypad: WedgeConfig | None = None  # PIN keypad (a wedge in mode = "pin")
    gpio: GpioConfig | None = None
    display: DisplayConfig | None = None
    log: LogConfig = LogConfig()
    metrics: MetricsConfig | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        k = self.kiosk
        if k.role is Role.GATE and k.direction == "in" and k.product not in self.rules.products:
            known = ", ".join(self.rules.products) or "none defined"
            raise ValueError(
                f"kiosk.product {k.product!r} is not in [rules.products] (known: {known})"
            )
        for name, category in self.rules.categories.items():
            unknown = sorted(set(category.prices) - set(self.rules.products))
            if unknown:
                raise ValueError(
                    f"rules.categories.{name}.prices names products not in [rules.products]:"
                    f" {', '.join(unknown)}"
                )


def load_config(path: Path) -> KioskConfig:
    """The whole kiosk config; raises ConfigError naming the file, the setting and the fault."""
    return load_model(KioskConfig, path)
