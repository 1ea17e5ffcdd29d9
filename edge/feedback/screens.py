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
from edge.feedback.catalog import Lang, tr

__all__ = [
    "AlarmScreen",
    "ApprovedScreen",
    "BalanceScreen",
    "DeniedScreen",
    "IdleScreen",
    "OutOfServiceScreen",
    "PinScreen",
    "Screen",
    "ServiceScreen",
    "Status",
    "TopUpScreen",
]

CONTENT_TOP = STATUS_BAR_HEIGHT + 2


@dataclass(frozen=True, slots=True)
class Status:
    """The status bar: link to the cloud and the local time (None hides the clock)."""

    online: bool = True
    now: datetime | None = None
    lang: Lang = "en"


class Screen(Protocol):
    def render(self, status: Status, fonts: Fonts | None = None) -> Image.Image: ...


def _frame(status: Status, fonts: Fonts) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = blank()
    draw = ImageDraw.Draw(image)
    words = (tr("online", status.lang), tr("OFFLINE", status.lang))
    draw_status_bar(
        draw, online=status.online, now=status.now, width=WIDTH, fonts=fonts, link_words=words
    )
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
        text = self.prompt or tr("Tap card or scan code", self.lang)
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
        left = f"{tr('Left', self.lang)}: {self.left}"
        if not self.note:
            fit_text(draw, self.taken, (0, y, WIDTH, y + 16), fonts=fonts, max_px=16)
            fit_text(draw, left, (0, y + 17, WIDTH, HEIGHT), fonts=fonts, max_px=16)
            return image
        # Three lines of 12 px: the smallest CJK font still crisp at this size.
        fit_text(draw, self.taken, (0, y, WIDTH, y + 12), fonts=fonts, max_px=12)
        fit_text(draw, left, (0, y + 12, WIDTH, y + 24), fonts=fonts, max_px=12)
        fit_text(draw, self.note, (0, HEIGHT - 12, WIDTH, HEIGHT), fonts=fonts, max_px=12)
        return image


@dataclass(frozen=True, slots=True)
class BalanceScreen:
    """A balance lookup: the member's name, then three short lines the app has formatted
    (balances, passes or visits, the last movements). Nothing was spent."""

    name: str
    lines: tuple[str, str, str]
    lang: Lang = "en"

    def render(self, status: Status, fonts: Fonts | None = None) -> Image.Image:
        fonts = fonts or default_fonts()
        image, draw = _frame(status, fonts)
        title = f"{tr('Balance', self.lang)} {self.name}"
        y = _title(draw, title, fonts, inverse=True)
        for i, line in enumerate(self.lines):
            top = y + 12 * i if i < 2 else HEIGHT - 12
            fit_text(draw, line, (0, top, WIDTH, top + 12), fonts=fonts, max_px=12)
        return image


@dataclass(frozen=True, slots=True)
class DeniedScreen:
    """A plain reason, in the member's language."""

    reason: str
    lang: Lang = "en"
    detail: str = ""  # one more line: balance and price on "not enough balance"

    def render(self, status: Status, fonts: Fonts | None = None) -> Image.Image:
        fonts = fonts or default_fonts()
        image, draw = _frame(status, fonts)
        y = _title(draw, tr("Denied", self.lang), fonts, inverse=True, icon="cross")
        if not self.detail:
            fit_text(draw, self.reason, (0, y, WIDTH, HEIGHT), fonts=fonts, align="center")
            return image
        fit_text(draw, self.reason, (0, y, WIDTH, y + 12), fonts=fonts, max_px=12, align="center")
        box = (0, y + 12, WIDTH, HEIGHT)
        fit_text(draw, self.detail, box, fonts=fonts, max_px=12, align="center")
        return image


@dataclass(frozen=True, slots=True)
class TopUpScreen:
    """While coins go in: the total so far and what to do next; once the card closed the
    session: done, what was added and the balance now."""

    inserted: str  # e.g. "¥15.00"
    lang: Lang = "en"
    done: bool = False
    balance: str = ""  # after a finished top-up

    def render(self, status: Status, fonts: Fonts | None = None) -> Image.Image:
        fonts = fonts or default_fonts()
        image, draw = _frame(status, fonts)
        if self.done:
            y = _title(draw, tr("Top-up done", self.lang), fonts, inverse=True, icon="check")
            added = tr("Added {amount}", self.lang, amount=self.inserted)
            fit_text(draw, added, (0, y, WIDTH, y + 17), fonts=fonts, align="center")
            left = f"{tr('Left', self.lang)}: {self.balance}"
            fit_text(draw, left, (0, y + 18, WIDTH, HEIGHT), fonts=fonts, max_px=13, align="center")
            return image
        y = _title(draw, tr("Top-up", self.lang), fonts, inverse=False)
        fit_text(draw, self.inserted, (0, y, WIDTH, y + 17), fonts=fonts, align="center")
        hint = tr("Insert coins, then tap card", self.lang)
        fit_text(draw, hint, (0, y + 18, WIDTH, HEIGHT), fonts=fonts, max_px=12, align="center")
        return image


@dataclass(frozen=True, slots=True)
class AlarmScreen:
    """The door has been held open past its limit."""

    lang: Lang = "en"

    def render(self, status: Status, fonts: Fonts | None = None) -> Image.Image:
        fonts = fonts or default_fonts()
        image, draw = _frame(status, fonts)
        y = _title(draw, tr("Door open too long", self.lang), fonts, inverse=True, icon="cross")
        fit_text(
            draw,
            tr("Close the door", self.lang),
            (0, y, WIDTH, HEIGHT),
            fonts=fonts,
            align="center",
        )
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
        y = _title(draw, tr("Enter PIN", self.lang), fonts, inverse=False)
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
        y = _title(draw, tr("Service", self.lang), fonts, inverse=True)
        fit_text(draw, "\n".join(self.lines), (0, y, WIDTH, HEIGHT), fonts=fonts, max_px=12)
        return image


@dataclass(frozen=True, slots=True)
class OutOfServiceScreen:
    reason: str = ""
    lang: Lang = "en"

    def render(self, status: Status, fonts: Fonts | None = None) -> Image.Image:
        fonts = fonts or default_fonts()
        image, draw = _frame(status, fonts)
        title = tr("Out of service", self.lang)
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
