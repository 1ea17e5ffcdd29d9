"""The drivers' part of the kiosk config (TOML sections [nfc], [wedge], [gpio], [display]).

Every section has `backend = "real" | "sim"`; a section left out means the part is not fitted.
The full kiosk config embeds `DriversConfig`; `load_drivers_config` reads a file on its own (for
`kiosk selftest`) and turns every problem into one `ConfigError` a field tech can act on.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from msgspec import Meta, field

from edge.drivers.base import DriverError
from edge.validation import Settings, SettingsFault, load

__all__ = [
    "ConfigError",
    "DisplayConfig",
    "DriversConfig",
    "GpioConfig",
    "NfcConfig",
    "WedgeConfig",
    "load_drivers_config",
    "load_model",
]

Backend = Literal["real", "sim"]


class ConfigError(DriverError):
    """The config file is missing, is not TOML, or has a wrong value (the message says where)."""


class NfcConfig(Settings, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """NFC reader (PC/SC). Other keys are let through: they belong to reader models' drivers."""

    backend: Backend = "real"
    reader: str = ""  # part of the PC/SC reader name; empty = first


class WedgeConfig(Settings, frozen=True, kw_only=True):
    """Keyboard-wedge reader (magstripe, barcode/QR scanner or PIN keypad) via evdev."""

    backend: Backend = "real"
    path: str | None = None  # e.g. /dev/input/by-id/usb-...-event-kbd
    name: str | None = None  # part of the device name, if no path
    grab: bool = True
    mode: Literal["codes", "pin"] = "codes"
    frame_gap_s: Annotated[float, Meta(gt=0, le=5)] = 0.1
    max_pin_length: Annotated[int, Meta(ge=4, le=12)] = 8
    retry_initial_s: Annotated[float, Meta(gt=0)] = 0.5
    retry_max_s: Annotated[float, Meta(gt=0)] = 10.0

    def __post_init__(self) -> None:
        if self.backend == "real" and not (self.path or self.name):
            raise ValueError("a real wedge needs `path` or `name` to find its device")


class GpioConfig(Settings, frozen=True, kw_only=True):
    """Gate relay, LEDs, buzzer, door sensor, coin acceptor and the balance lookup button on
    GPIO (BCM numbers)."""

    backend: Backend = "real"
    pin_factory: str | None = None  # gpiozero factory name (lgpio, rpigpio, ...); None = default
    relay_pin: int | None = 17
    relay_active_low: bool = False
    relay_pulse_s: Annotated[float, Meta(gt=0, le=30)] = 0.5
    green_led_pin: int | None = 27
    red_led_pin: int | None = 22
    buzzer_pin: int | None = 23
    door_pin: int | None = None
    door_pull_up: bool = True
    door_open_is_high: bool = True
    door_held_open_s: Annotated[float, Meta(gt=0)] = 10.0
    coin_pin: int | None = None
    coin_pull_up: bool = True
    coin_pulse_gap_s: Annotated[float, Meta(gt=0, le=5)] = 0.2
    coin_debounce_s: Annotated[float, Meta(ge=0, le=1)] = 0.015
    coin_pulses: dict[int, int] = field(
        default_factory=dict
    )  # pulse count -> amount in minor units
    lookup_pin: int | None = None  # a push button: the next card shows its balance
    lookup_pull_up: bool = True

    def __post_init__(self) -> None:
        if self.coin_pin is not None and not self.coin_pulses:
            raise ValueError("coin_pin is set but coin_pulses (pulses -> minor units) is empty")
        if any(k <= 0 or v <= 0 for k, v in self.coin_pulses.items()):
            raise ValueError("coin_pulses: pulse counts and amounts must be positive integers")
        if self.coin_debounce_s >= self.coin_pulse_gap_s:
            raise ValueError("coin_debounce_s must be shorter than coin_pulse_gap_s")
        pins = [
            p
            for p in (
                self.relay_pin,
                self.green_led_pin,
                self.red_led_pin,
                self.buzzer_pin,
                self.door_pin,
                self.coin_pin,
                self.lookup_pin,
            )
            if p is not None
        ]
        if len(pins) != len(set(pins)):
            raise ValueError(f"two parts share a GPIO pin: {sorted(pins)}")


class DisplayConfig(Settings, frozen=True, kw_only=True):
    """128x64 monochrome OLED via luma.oled, or the simulated panel (PNG frames)."""

    backend: Backend = "real"
    controller: Literal["ssd1306", "sh1106"] = "ssd1306"
    bus: Literal["i2c", "spi"] = "i2c"
    i2c_port: int = 1
    i2c_address: int = 0x3C
    spi_port: int = 0
    spi_device: int = 0
    gpio_dc: int = 24
    gpio_rst: int | None = 25
    rotate: Literal[0, 1, 2, 3] = 0
    language: Literal["en", "zh"] = "en"
    frames_dir: Path | None = None  # sim: save each frame as PNG here


class DriversConfig(Settings, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """The hardware a kiosk has; a missing section means the part is not fitted (other keys: the
    full kiosk config has more)."""

    nfc: NfcConfig | None = None
    wedge: WedgeConfig | None = None
    gpio: GpioConfig | None = None
    display: DisplayConfig | None = None


SettingsT = TypeVar("SettingsT", bound=Settings)


def load_model(model: type[SettingsT], path: Path) -> SettingsT:
    """Read a TOML file as settings of type `model`; one ConfigError saying where a fault is."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return load(model, data)
    except SettingsFault as exc:
        raise ConfigError(f"{path}: wrong settings: {exc}") from None


def load_drivers_config(path: Path) -> DriversConfig:
    """Read the drivers' sections of a kiosk TOML config; ConfigError with the place of a fault."""
    return load_model(DriversConfig, path)
