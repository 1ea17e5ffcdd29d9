"""The kiosk's 128x64 monochrome OLED: SSD1306 or SH1106 via luma.oled over I2C/SPI, or a
simulated panel (luma.core's dummy device) that saves every frame as a PNG.

    async with open_display(cfg) as display:
        await display.show(image)        # a PIL image, mode "1", 128x64 (see edge.feedback.screens)
        async for event in display.events():   # DisplayLost, DisplayBack
            ...

A panel that stops answering (loose cable, bus error) is logged and reported once; later frames
retry with backoff, and the panel is set up again when it answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

from PIL import Image, ImageDraw

from edge.drivers.base import Check, DriverError, UnknownBackend
from edge.drivers.config import DisplayConfig

__all__ = [
    "BACKENDS",
    "HEIGHT",
    "WIDTH",
    "Display",
    "DisplayBack",
    "DisplayEvent",
    "DisplayLost",
    "LumaPanel",
    "Panel",
    "SimulatedPanel",
    "blank",
    "calibration_frame",
    "make_panel",
    "open_display",
    "self_test",
]

log = logging.getLogger(__name__)

BACKENDS = ("real", "sim")
WIDTH, HEIGHT = 128, 64


@dataclass(frozen=True, slots=True)
class DisplayLost:
    """The panel stopped answering; frames are dropped until it is back."""

    detail: str


@dataclass(frozen=True, slots=True)
class DisplayBack:
    """The panel answers again (it was set up anew and shows the current frame)."""


DisplayEvent = DisplayLost | DisplayBack


def blank() -> Image.Image:
    return Image.new("1", (WIDTH, HEIGHT), 0)


def calibration_frame() -> Image.Image:
    """Border, diagonals and a checker block: every row, column and corner lights somewhere."""
    image = blank()
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, WIDTH - 1, HEIGHT - 1), outline=1)
    draw.line((0, 0, WIDTH - 1, HEIGHT - 1), fill=1)
    draw.line((0, HEIGHT - 1, WIDTH - 1, 0), fill=1)
    for y in range(4, 20):
        for x in range(4, 36):
            if (x // 4 + y // 4) % 2 == 0:
                image.putpixel((x, y), 1)
    draw.text((44, 44), "SELF TEST", fill=1)
    return image


class Panel(Protocol):
    """A backend: a 128x64 panel that can be set up, shown a frame, and closed."""

    blocking: bool  # True when show() waits on a bus (run it in a thread)

    def open(self) -> str:
        """Set the panel up; return a description. DriverError with a fix if it is not there."""
        ...

    def show(self, image: Image.Image) -> None: ...

    def close(self) -> None: ...


class LumaPanel:
    """A real SSD1306/SH1106 through luma.oled. `serial_interface` replaces the I2C/SPI bus
    (anything with command(*bytes), data(bytes), cleanup()), e.g. to record what is sent."""

    blocking = True

    def __init__(self, cfg: DisplayConfig, *, serial_interface: Any = None) -> None:
        self.cfg = cfg
        self._serial = serial_interface
        self._device: Any = None

    def _bus(self) -> Any:
        if self._serial is not None:
            return self._serial
        from luma.core.interface.serial import i2c, spi

        cfg = self.cfg
        if cfg.bus == "i2c":
            return i2c(port=cfg.i2c_port, address=cfg.i2c_address)
        return spi(
            port=cfg.spi_port, device=cfg.spi_device, gpio_DC=cfg.gpio_dc, gpio_RST=cfg.gpio_rst
        )

    def describe(self) -> str:
        cfg = self.cfg
        where = (
            f"I2C bus {cfg.i2c_port} address 0x{cfg.i2c_address:02X}"
            if cfg.bus == "i2c"
            else f"SPI {cfg.spi_port}.{cfg.spi_device}"
        )
        return f"{cfg.controller.upper()} on {where}"

    def open(self) -> str:
        from luma.core.error import DeviceNotFoundError, DevicePermissionError, Error
        from luma.oled.device import sh1106, ssd1306

        controller = ssd1306 if self.cfg.controller == "ssd1306" else sh1106
        try:
            self._device = controller(
                self._bus(), width=WIDTH, height=HEIGHT, rotate=self.cfg.rotate
            )
        except DevicePermissionError as exc:
            raise DriverError(
                f"display: no permission for {self.describe()}: add the kiosk user to group "
                f"'i2c'/'spi' ({exc})"
            ) from None
        except DeviceNotFoundError as exc:
            bus = "I2C (raspi-config nonint do_i2c 0)" if self.cfg.bus == "i2c" else "SPI"
            raise DriverError(
                f"display: {self.describe()} not found ({exc}): enable {bus}, check wiring"
                + (", and `i2cdetect -y 1` for the address" if self.cfg.bus == "i2c" else "")
            ) from None
        except (Error, OSError) as exc:
            raise DriverError(f"display: {self.describe()} does not answer: {exc}") from None
        self._device.persist = False
        return self.describe()

    def show(self, image: Image.Image) -> None:
        if self._device is None:
            raise OSError("display not set up")
        self._device.display(image)

    def close(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            try:
                device.cleanup()
            except Exception:  # a panel that is gone cannot be cleaned up; nothing to keep
                log.debug("display cleanup failed", exc_info=True)


class SimulatedPanel:
    """luma.core's dummy device: keeps the last frame; with `frames_dir`, saves each frame as
    frame-0001.png, ... (for the demo, training, and test artefacts)."""

    blocking = False

    def __init__(self, *, frames_dir: Path | None = None) -> None:
        from luma.core.device import dummy

        self._device = dummy(width=WIDTH, height=HEIGHT, mode="1")
        self.frames_dir = frames_dir
        self.saved: list[Path] = []
        self.present = True  # set False to play a pulled cable
        self._count = 0

    @property
    def image(self) -> Image.Image:
        """The frame on the panel now."""
        image: Image.Image = self._device.image
        return image

    def open(self) -> str:
        if not self.present:
            raise DriverError("display: simulated panel unplugged")
        if self.frames_dir is not None:
            self.frames_dir.mkdir(parents=True, exist_ok=True)
        return "simulated 128x64 panel" + (f" -> {self.frames_dir}" if self.frames_dir else "")

    def show(self, image: Image.Image) -> None:
        if not self.present:
            raise OSError(121, "Remote I/O error")  # what an I2C panel that is gone gives
        self._device.display(image)
        self._count += 1
        if self.frames_dir is not None:
            path = self.frames_dir / f"frame-{self._count:04d}.png"
            self._device.image.save(path)
            self.saved.append(path)

    def close(self) -> None:
        pass


def _fit(image: Image.Image) -> Image.Image:
    """Any image -> mode "1", 128x64 exactly (cropped, never scaled)."""
    if image.mode == "1" and image.size == (WIDTH, HEIGHT):
        return image
    frame = blank()
    frame.paste(image.convert("1").crop((0, 0, WIDTH, HEIGHT)), (0, 0))
    return frame


class Display:
    """The display driver. Reusable, not reentrant. `clock` times the retry backoff."""

    def __init__(
        self,
        panel: Panel,
        *,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.panel = panel
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._clock = clock
        self._queue: asyncio.Queue[DisplayEvent] = asyncio.Queue()
        self._up = False
        self._lost = False
        self._delay = retry_initial_s
        self._next_try = 0.0
        self._entered = False
        self.last_frame: Image.Image | None = None
        self.last_error = ""

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("Display is not reentrant")
        self._entered = True
        self._try_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.panel.close()
        self._up = False
        self._entered = False

    @property
    def available(self) -> bool:
        return self._up

    def _try_open(self) -> bool:
        try:
            what = self.panel.open()
        except DriverError as exc:
            self._mark_lost(str(exc))
            return False
        self._up = True
        self._delay = self._retry_initial_s
        if self._lost:
            self._lost = False
            log.warning("display back: %s", what)
            self._queue.put_nowait(DisplayBack())
        else:
            log.info("display open: %s", what)
        return True

    def _mark_lost(self, detail: str) -> None:
        self._up = False
        self.last_error = detail
        self._next_try = self._clock() + self._delay
        self._delay = min(self._delay * 2, self._retry_max_s)
        if not self._lost:
            self._lost = True
            log.warning("display lost: %s (retrying)", detail)
            self._queue.put_nowait(DisplayLost(detail))
        else:
            log.debug("display still not answering: %s", detail)

    async def show(self, image: Image.Image) -> bool:
        """Put a frame on the panel. False if the panel is away (the frame is kept and shown
        when it is back)."""
        frame = _fit(image)
        self.last_frame = frame
        if not self._up:
            if self._clock() < self._next_try:
                return False
            self.panel.close()
            if not self._try_open():
                return False
        try:
            if self.panel.blocking:
                await asyncio.to_thread(self.panel.show, frame)
            else:
                self.panel.show(frame)
        except Exception as exc:  # luma raises OSError and its own errors for a bus fault
            self._mark_lost(f"{type(exc).__name__}: {exc}")
            return False
        return True

    async def events(self) -> AsyncIterator[DisplayEvent]:
        while True:
            yield await self._queue.get()


def make_panel(backend: str, cfg: DisplayConfig | None = None) -> Panel:
    """The backend named in the config."""
    cfg = cfg or DisplayConfig(backend="sim")
    if backend == "real":
        return LumaPanel(cfg)
    if backend == "sim":
        return SimulatedPanel(frames_dir=cfg.frames_dir)
    raise UnknownBackend("display", backend, list(BACKENDS))


def open_display(cfg: DisplayConfig, **kwargs: Any) -> Display:
    """A Display on the configured backend (use as `async with`)."""
    return Display(make_panel(cfg.backend, cfg), **kwargs)


async def self_test(cfg: DisplayConfig, *, panel: Panel | None = None) -> list[Check]:
    """Set the panel up and show the calibration frame."""
    display = Display(panel or make_panel(cfg.backend, cfg))
    async with display:
        if not display.available:
            detail = display.last_error or "panel does not answer"
            return [
                Check(
                    "display",
                    False,
                    detail,
                    "check the 4 wires (VCC GND SDA SCL), enable I2C/SPI, and [display] "
                    "controller/i2c_address",
                )
            ]
        shown = await display.show(calibration_frame())
        where = (
            display.panel.saved[-1]
            if isinstance(display.panel, SimulatedPanel) and (display.panel.saved)
            else None
        )
        detail = "test pattern shown: border and diagonals must be complete"
        if where is not None:
            detail += f" (frame {where})"
        return [
            Check(
                "display",
                shown,
                detail if shown else "the panel stopped answering during the test",
                "" if shown else "check the wiring and the panel's power",
            )
        ]
