"""The kiosk's TOML config, validated by pydantic, with errors a field tech can act on."""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from edge.clock import ClockConfig
from edge.drivers.config import (
    ConfigError,
    DisplayConfig,
    GpioConfig,
    NfcConfig,
    WedgeConfig,
    load_model,
)

_DECIMAL = re.compile(r"^(\d{1,9})(?:\.(\d{2}))?$")


def parse_money(value: object) -> object:
    """An amount in config: an integer of minor units (2500), or a decimal string with two
    places ("25.00" -> 2500), parsed exactly. Floats and anything else are refused: "25.0" or
    25.0 would be one typo from a price a hundred times off."""
    if isinstance(value, bool):
        raise ValueError('an amount is an integer of minor units or a string like "25.00"')
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = _DECIMAL.match(value.strip())
        if m and m.group(2) is not None:
            return int(m.group(1)) * 100 + int(m.group(2))
    raise ValueError(
        f"{value!r} is not an amount: write minor units as an integer (2500) or a decimal"
        ' string with two places ("25.00")'
    )


Money = Annotated[
    int,
    BeforeValidator(parse_money),
    Field(ge=0, strict=True, description='minor units (cents, fen), or "25.00"'),
]
Percent = Annotated[int, Field(ge=0, le=100)]


__all__ = ["ConfigError", "KioskConfig", "load_config"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Role(enum.StrEnum):
    GATE = "gate"
    POS = "pos"
    TOPUP = "topup"


class Product(Strict):
    """Something a gate sells entry to: paid by time pass, then visits, then cash."""

    name: str
    price: Money
    visits_purse: str = ""  # default: visits:<product id>


class Tier(Strict):
    name: str
    min_points: int = Field(ge=0, description="points earned in the window to reach this tier")
    min_spend: Money = Field(default=0, description="or cash spent in the window; 0 = points only")
    discount_pct: Percent = 0
    points_multiplier_pct: int = Field(default=100, ge=0, le=1000)


TopupChannel = Literal["coins", "voucher"]


def _coins_only() -> list[TopupChannel]:
    return ["coins"]


class BonusRule(Strict):
    """Top up at least `min_amount` through one of `channels`, get `bonus` extra. Vouchers earn
    no bonus unless a rule names them (counter top-ups: the cloud's [membership] topup_bonus)."""

    min_amount: Money
    bonus: Money
    channels: list[TopupChannel] = Field(default_factory=_coins_only, min_length=1)


class Category(Strict):
    """A member category (会员类别) with its own price policy: a price per product (instead of
    the list price) and a discount."""

    name: str = ""
    discount_pct: Percent = 0
    prices: dict[str, Money] = Field(default_factory=dict)


class OfflineMode(enum.StrEnum):
    STRICT = "strict"
    RISK = "risk"


class OfflinePolicy(Strict):
    mode: OfflineMode = OfflineMode.STRICT
    risk_per_tap: Money = 0
    risk_total: Money = 0
    # Time passes are checked against card status the cloud pushes; past this age, fail closed.
    max_denylist_age_s: int = Field(default=24 * 3600, gt=0)
    rights_request_timeout_ms: int = Field(default=300, gt=0, le=5000)

    @model_validator(mode="after")
    def _risk_needs_limits(self) -> OfflinePolicy:
        if self.mode is OfflineMode.RISK and (self.risk_per_tap <= 0 or self.risk_total <= 0):
            raise ValueError("mode = 'risk' needs risk_per_tap and risk_total above 0")
        return self


class Rules(Strict):
    products: dict[str, Product] = Field(default_factory=dict)
    tiers: list[Tier] = Field(default_factory=list)
    topup_bonus: list[BonusRule] = Field(default_factory=list)
    points_per_unit: int = Field(default=1, ge=0, description="points per 100 minor units paid")
    pin_above: Money = Field(default=0, description="ask for the PIN above this amount; 0 = never")
    pin_max_tries: int = Field(default=5, ge=1)
    pin_lock_minutes: int = Field(default=15, ge=1)
    passback_minutes: int = Field(default=0, ge=0, description="0 = no anti-passback")
    debounce_seconds: float = Field(default=3.0, ge=0)
    low_balance: Money = 0
    pass_expiry_notice_days: int = Field(default=7, ge=0)
    card_expiry_notice_days: int = Field(default=14, ge=0)
    near_tier_points: int = Field(default=0, ge=0)
    # NFC cards read by their UID alone (no NTAG 424 SUN) are clonable: off unless a site opts in
    # (docs/security.md "Cards"). Barcodes and magstripes are not concerned.
    accept_uid_cards: bool = Field(default=False, description="accept clonable UID-only NFC cards")
    redeem_points: bool = False
    points_per_cash_unit: int = Field(default=100, gt=0, description="points worth 100 minor units")
    # A member may decline to pay with points: the default, and the code keyed before a tap
    # that turns it round for that tap.
    redeem_points_default: bool = True
    points_choice_code: str = Field(default="0", pattern=r"^[0-9]{1,4}$")
    points_lifetime_days: int = Field(default=0, ge=0, description="0 = points never lapse")
    points_expiry_notice_days: int = Field(default=30, ge=0)
    categories: dict[str, Category] = Field(default_factory=dict)
    lookup_seconds: float = Field(default=15.0, gt=0, description="lookup button: window to tap")

    def tier(self, name: str) -> Tier:
        for t in self.tiers:
            if t.name == name:
                return t
        return Tier(name=name or "-", min_points=0)


class KioskSection(Strict):
    id: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
    site: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
    role: Role
    product: str = ""  # gate: what entry sells
    direction: str = Field(default="in", pattern="^(in|out)$")  # gate: entry or exit
    pos_amount: Money = 0  # pos: fixed amount; 0 = entered on the keypad
    service_minutes: int = Field(default=15, ge=1, le=120)  # a tech card's service mode
    state_dir: Path = Path("/var/lib/kiosk")
    key_file: Path = Path("/etc/kiosk/device.key")  # Ed25519 ledger key, 0600
    site_key_file: Path = Path("/etc/kiosk/site.key")  # site secret: card refs and NFC keys
    # The scope's card master keys after a rotation (`kiosk cloud card-keys`), 0600; unset: the
    # version derived from the site secret.
    card_keys_file: Path | None = None
    cloud_public_key: str = Field(
        default="", pattern="^([0-9a-fA-F]{64})?$"
    )  # pinned at enrollment
    cloud_replica: str = "cloud"  # the cloud's replica id in the ledger
    currency: str = Field(default="", max_length=3)  # shown before amounts, e.g. "¥"
    timezone: str = "UTC"  # the site's clock on the screen, e.g. "Asia/Shanghai"

    @model_validator(mode="after")
    def _known_timezone(self) -> KioskSection:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            fault = f"timezone {self.timezone!r} is not a known zone (e.g. Asia/Shanghai)"
            raise ValueError(fault) from None
        return self


class LogConfig(Strict):
    """`[log]`: how much `kiosk run` writes to its journal. INFO has one line per tap and per
    sync event (never a card number or a PIN); WARNING only faults."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class MetricsConfig(Strict):
    """`[metrics]`: the kiosk's own figures for node_exporter's textfile collector, written
    atomically to `textfile` (e.g. /var/lib/node_exporter/textfile_collector/kiosk.prom)."""

    textfile: Path
    interval_s: float = Field(default=15.0, gt=0)


class KioskConfig(Strict):
    kiosk: KioskSection
    rules: Rules = Field(default_factory=Rules)
    offline: OfflinePolicy = Field(default_factory=OfflinePolicy)
    clock: ClockConfig = Field(default_factory=ClockConfig)
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
    log: LogConfig = Field(default_factory=LogConfig)
    metrics: MetricsConfig | None = None

    @model_validator(mode="after")
    def _gate_sells_a_known_product(self) -> KioskConfig:
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
        return self


def load_config(path: Path) -> KioskConfig:
    """The whole kiosk config; raises ConfigError naming the file, the setting and the fault."""
    return load_model(KioskConfig, path)
