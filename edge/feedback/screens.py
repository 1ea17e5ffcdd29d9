"""What the kiosk's 128x64 display shows a member or a tech, in English or Chinese.

Each screen is a value; `render(status)` draws it into a PIL image for `Display.show`. Amounts come
in as text the app has already formatted (e.g. "¥5.00", "1 visit"): screens only lay them out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from PIL import Image, ImageDraw

from edge.drivers.display import HEIGHT, WIDTH, blank
from edge.drivers.display_text import (
    STATUS_BAR_HEIGHT,
    Fonts,
    default_fonts,
    draw_status_bar,
    fit_text,
)

__all__ = [
    "LABELS",
    "ApprovedScreen",
    "DeniedScreen",
    "IdleScreen",
    "OutOfServiceScreen",
    "PinScreen",
    "Screen",
    "ServiceScreen",
    "Status",
    "TopUpScreen",
]

Lang = Literal["en", "zh"]

LABELS: dict[str, dict[Lang, str]] = {
    "idle": {"en": "Tap card or scan code", "zh": "请刷卡或扫码"},
    "approved": {"en": "Approved", "zh": "通过"},
    "denied": {"en": "Denied", "zh": "拒绝"},
    "left": {"en": "Left", "zh": "余额"},
    "topup": {"en": "Top-up", "zh": "充值"},
    "topup_hint": {"en": "Tap card when done", "zh": "投币后请刷卡"},
    "pin": {"en": "Enter PIN", "zh": "请输入密码"},
    "service": {"en": "Service", "zh": "维护"},
    "out_of_service": {"en": "Out of service", "zh": "暂停服务"},
}

CONTENT_TOP = STATUS_BAR_HEIGHT + 2


@dataclass(frozen=True, slots=True)
class Status:
    """The status bar: link to the cloud and the local time (None hides the clock)."""

    online: bool = True
    now: datetime | None = None


class Screen(Protocol):
    def render(self, status: Status, fonts: Fonts | None = None) -> Image.Image: ...


def _frame(status: Status, fonts: Fonts) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = blank()
    draw = ImageDraw.Draw(image)
    draw_status_bar(draw, online=status.online, now=status.now, width=WIDTH, fonts=fonts)
    return image, draw


def _title(
    draw: ImageDraw.ImageDraw,
    text: str,
    fonts: Fonts,
    *,
    inverse: bool,
    icon: Literal["check", "cross"] | None = None,
) -> int:
    """A one-line title under the status bar, with an optional drawn icon; returns the y below."""
    top, bottom = CONTENT_TOP, CONTENT_TOP + 14
    ink = 0 if inverse else 1
    if inverse:
        draw.rectangle((0, top, WIDTH - 1, bottom - 1), fill=1)
    x = 2
    if icon == "check":
        draw.line((2, top + 7, 5, top + 10, 11, top + 3), fill=ink, width=2)
        x = 15
    elif icon == "cross":
        draw.line((3, top + 3, 10, top + 10), fill=ink, width=2)
        draw.line((3, top + 10, 10, top + 3), fill=ink, width=2)
        x = 15
    fit_text(draw, text, (x, top, WIDTH - 2, bottom), fonts=fonts, max_px=13, fill=ink)
    return bottom + 2


@dataclass(frozen=True, slots=True)
class IdleScreen:
    lang: Lang = "en"
    prompt: str | None = None  # a site's own words, else the default

    def render(self, status: Status, fonts: Fonts | None = None) -> Image.Image:
        fonts = fonts or default_fonts()
        image, draw = _frame(status, fonts)
        text = self.prompt or LABELS["idle"][self.lang]
        fit_text(draw, text, (0, CONTENT_TOP + 8, WIDTH, HEIGHT), fonts=fonts, align="center")
        return image


@dataclass(frozen=True, slots=True)
class ApprovedScreen:
    """Name, what was taken, what is left: the member reads it in under half a second."""

    name: str
    taken: str
    left: str
    lang: Lang = "en"
    note: str = ""  # one short line at the bottom: next tier, low balance

    def render(self, status: Status, fonts: Fonts | None = None) -> Image.Image:
        fonts = fonts or default_fonts()
        image, draw = _frame(status, fonts)
        # The check mark says approved; the title is the member's name, which they look for.
        y = _title(draw, self.name, fonts, inverse=True, icon="check")
        left = f"{LABELS['left'][self.lang]}: {self.left}"
        if not self.note:
            fit_text(draw, self.taken, (0, y, WIDTH, y + 16), fonts=fonts, max_px=16)
            fit_text(draw, left, (0, y + 17, WIDTH, HEIGHT), fonts=fonts, max_px=16)
            return image
        fit_text(draw, self.taken, (0, y, WIDTH, y + 13), fonts=fonts, max_px=13)
        fit_text(draw, left, (0, y + 13, WIDTH, y + 26), fonts=fonts, max_px=13)
        fit_text(draw, self.note, (0, HEIGHT - 10, WIDTH, HEIGHT), fonts=fonts, max_px=10)
        return image


@dataclass(frozen=True, slots=True)
class DeniedScreen:
    """A plain reason, in the member's language."""

    reason: str
    lang: Lang = "en"

    def render(self, status: Status, fonts: Fonts | None = None) -> Image.Image:
        fonts = fonts or default_fonts()
        image, draw = _frame(status, fonts)
        y = _title(draw, LABELS["denied"][self.lang], fonts, inverse=True, icon="cross")
        fit_text(draw, self.reason, (0, y, WIDTH, HEIGHT), fonts=fonts, align="center")
        return image


@dataclass(frozen=True, slots=True)
class TopUpScreen:
    inserted: str  # e.g. "¥15.00"
    lang: Lang = "en"

    def render(self, status: Status, fonts: Fonts | None = None) -> Image.Image:
        fonts = fonts or default_fonts()
        image, draw = _frame(status, fonts)
        y = _title(draw, LABELS["topup"][self.lang], fonts, inverse=False)
        fit_text(draw, self.inserted, (0, y, WIDTH, y + 17), fonts=fonts, align="center")
        hint = LABELS["topup_hint"][self.lang]
        fit_text(draw, hint, (0, y + 18, WIDTH, HEIGHT), fonts=fonts, max_px=12, align="center")
        return image


@dataclass(frozen=True, slots=True)
class PinScreen:
    """Masked PIN entry: one filled box per digit typed, hollow boxes up to `slots`."""

    digits: int
    slots: int = 4
    lang: Lang = "en"

    def render(self, status: Status, fonts: Fonts | None = None) -> Image.Image:
        fonts = fonts or default_fonts()
        image, draw = _frame(status, fonts)
        y = _title(draw, LABELS["pin"][self.lang], fonts, inverse=False)
        slots = max(self.slots, self.digits)
        box, gap = 10, 4
        total = slots * box + (slots - 1) * gap
        x = max(0, (WIDTH - total) // 2)
        top = y + 8
        for i in range(slots):
            left = x + i * (box + gap)
            if left + box > WIDTH:
                break
            draw.rectangle(
                (left, top, left + box - 1, top + box - 1), outline=1, fill=int(i < self.digits)
            )
        return image


@dataclass(frozen=True, slots=True)
class ServiceScreen:
    """For the tech: a few short lines (device id, IP, queue depth, self-test result)."""

    lines: Sequence[str] = field(default_factory=tuple)
    lang: Lang = "en"

    def render(self, status: Status, fonts: Fonts | None = None) -> Image.Image:
        fonts = fonts or default_fonts()
        image, draw = _frame(status, fonts)
        y = _title(draw, LABELS["service"][self.lang], fonts, inverse=True)
        fit_text(draw, "\n".join(self.lines), (0, y, WIDTH, HEIGHT), fonts=fonts, max_px=12)
        return image


@dataclass(frozen=True, slots=True)
class OutOfServiceScreen:
    reason: str = ""
    lang: Lang = "en"

    def render(self, status: Status, fonts: Fonts | None = None) -> Image.Image:
        fonts = fonts or default_fonts()
        image, draw = _frame(status, fonts)
        title = LABELS["out_of_service"][self.lang]
        fit_text(
            draw, title, (0, CONTENT_TOP + 2, WIDTH, CONTENT_TOP + 19), fonts=fonts, align="center"
        )
        if self.reason:
            fit_text(
                draw,
                self.reason,
                (0, CONTENT_TOP + 22, WIDTH, HEIGHT),
                fonts=fonts,
                max_px=12,
                align="center",
            )
        return image
