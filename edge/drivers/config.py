"""The drivers' part of the kiosk config (TOML sections [nfc], [wedge], [gpio], [display]).

Every section has `backend = "real" | "sim"`; a section left out means the part is not fitted.
The full kiosk config embeds `DriversConfig`; `load_drivers_config` reads a file on its own (for
`kiosk selftest`) and turns every problem into one `ConfigError` a field tech can act on.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge.drivers.base import DriverError
from edge.validation import settings_faults

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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NfcConfig(BaseModel):
    """NFC reader (PC/SC). Extra keys are kept for the NFC driver, which owns their meaning."""

    model_config = ConfigDict(extra="allow", frozen=True)

    backend: Backend = "real"
    reader: str = Field(default="", description="part of the PC/SC reader name; empty = first")


class WedgeConfig(_Section):
    """Keyboard-wedge reader (magstripe, barcode/QR scanner or PIN keypad) via evdev."""

    backend: Backend = "real"
    path: str | None = Field(default=None, description="e.g. /dev/input/by-id/usb-...-event-kbd")
    name: str | None = Field(default=None, description="part of the device name, if no path")
    grab: bool = True
    mode: Literal["codes", "pin"] = "codes"
    frame_gap_s: float = Field(default=0.1, gt=0, le=5)
    max_pin_length: int = Field(default=8, ge=4, le=12)
    retry_initial_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _needs_a_device(self) -> WedgeConfig:
        if self.backend == "real" and not (self.path or self.name):
            raise ValueError("a real wedge needs `path` or `name` to find its device")
        return self


class GpioConfig(_Section):
    """Gate relay, LEDs, buzzer, door sensor, coin acceptor and the balance lookup button on
    GPIO (BCM numbers)."""

    backend: Backend = "real"
    pin_factory: str | None = Field(
        default=None, description="gpiozero factory name (lgpio, rpigpio, ...); None = default"
    )
    relay_pin: int | None = 17
    relay_active_low: bool = False
    relay_pulse_s: float = Field(default=0.5, gt=0, le=30)
    green_led_pin: int | None = 27
    red_led_pin: int | None = 22
    buzzer_pin: int | None = 23
    door_pin: int | None = None
    door_pull_up: bool = True
    door_open_is_high: bool = True
    door_held_open_s: float = Field(default=10.0, gt=0)
    coin_pin: int | None = None
    coin_pull_up: bool = True
    coin_pulse_gap_s: float = Field(default=0.2, gt=0, le=5)
    coin_debounce_s: float = Field(default=0.015, ge=0, le=1)
    coin_pulses: dict[int, int] = Field(
        default_factory=dict, description="pulse count -> amount in minor units"
    )
    lookup_pin: int | None = None  # a push button: the next card shows its balance
    lookup_pull_up: bool = True

    @model_validator(mode="after")
    def _coin_table(self) -> GpioConfig:
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
        return self


class DisplayConfig(_Section):
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
    frames_dir: Path | None = Field(default=None, description="sim: save each frame as PNG here")


class DriversConfig(BaseModel):
    """The hardware a kiosk has; a missing section means the part is not fitted."""

    model_config = ConfigDict(extra="ignore", frozen=True)  # the full kiosk config has more

    nfc: NfcConfig | None = None
    wedge: WedgeConfig | None = None
    gpio: GpioConfig | None = None
    display: DisplayConfig | None = None


ModelT = TypeVar("ModelT", bound=BaseModel)


def load_model(model: type[ModelT], path: Path) -> ModelT:
    """Read a TOML file into a pydantic model; one ConfigError that says where a fault is."""
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
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: wrong settings: {settings_faults(exc)}") from None


def load_drivers_config(path: Path) -> DriversConfig:
    """Read the drivers' sections of a kiosk TOML config; ConfigError with the place of a fault."""
    return load_model(DriversConfig, path)
