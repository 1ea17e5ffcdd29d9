"""A small text toolkit for 128x64 monochrome panels: fonts with CJK, text that fits, status bar.

Fonts: Debian `fonts-unifont` (16 px, all of the BMP) and `xfonts-wqy` (WenQuanYi bitmap song,
13 and 12 px) render English and Chinese crisply at this size; their licences (GPL with the font
exception) forbid nothing, but neither is on PyPI, so we use the system files and fall back to
Pillow's built-in font (Latin only) with one clear log line when neither is installed.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import Literal

from PIL import ImageDraw, ImageFont

__all__ = [
    "CJK_FONT_CANDIDATES",
    "STATUS_BAR_HEIGHT",
    "Fitted",
    "Fonts",
    "default_fonts",
    "draw_status_bar",
    "fit_text",
    "has_cjk",
    "needs_wide_font",
    "wrap",
]

log = logging.getLogger(__name__)

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

# (file, pixel size), best first. Bitmap PCF fonts load only at their own pixel size.
CJK_FONT_CANDIDATES: tuple[tuple[str, int], ...] = (
    ("/usr/share/fonts/opentype/unifont/unifont.otf", 16),
    ("/usr/share/fonts/X11/misc/wenquanyi_12pt.pcf", 16),
    ("/usr/share/fonts/X11/misc/wenquanyi_10pt.pcf", 13),
    ("/usr/share/fonts/X11/misc/wenquanyi_9pt.pcf", 12),
    ("/usr/share/fonts/opentype/unifont/unifont.otf", 12),  # scaled: legible, not pretty
)
# Pillow's built-in font (scalable since Pillow 10.1): small Latin text, and all text when no
# CJK font is installed.
_LATIN_SMALL_SIZES = (10, 8)
_FALLBACK_SIZES = (16, 13, 12, 10, 8)
STATUS_BAR_HEIGHT = 10


def has_cjk(text: str) -> bool:
    """True if `text` has wide (CJK) characters."""
    return any(unicodedata.east_asian_width(ch) in "WF" for ch in text)


def needs_wide_font(text: str) -> bool:
    """True if `text` has a character beyond ASCII (CJK, but also ¥ and €): Pillow's built-in
    Latin font has none of them and would draw an empty box."""
    return any(ord(ch) > 0x7E for ch in text)


class Fonts:
    """Ladders of fonts by pixel size, largest first, for text that must shrink to fit: CJK
    text shrinks only as far as a CJK font goes; Latin text goes smaller.

    Latin text uses Pillow's built-in scalable font. CJK fonts load on first use: the bitmap
    ones are held whole in memory (several MB each), which a kiosk showing English never needs.
    """

    def __init__(self, candidates: Sequence[tuple[str, int]] = CJK_FONT_CANDIDATES) -> None:
        self._cjk_files: dict[int, str] = {}
        for path, px in candidates:
            if px not in self._cjk_files and Path(path).is_file():
                self._cjk_files[px] = path
        self.has_cjk = bool(self._cjk_files)
        if not self.has_cjk:
            log.warning(
                "no CJK font found (install Debian fonts-unifont or xfonts-wqy): Chinese text "
                "will show as boxes; using Pillow's built-in Latin font"
            )
        self._cjk: dict[int, Font] = {}
        self._latin: dict[int, Font] = {
            px: ImageFont.load_default(size=px) for px in (*_FALLBACK_SIZES, *_LATIN_SMALL_SIZES)
        }
        self.small: Font = self._latin[10]  # status bar: digits and Latin

    def _cjk_sizes(self) -> list[int]:
        return sorted(self._cjk_files or _FALLBACK_SIZES, reverse=True)

    def _cjk_font(self, px: int) -> Font:
        font = self._cjk.get(px)
        if font is None:
            path = self._cjk_files.get(px)
            try:
                font = ImageFont.truetype(path, px) if path else self._latin[px]
            except OSError as exc:
                log.warning("font %s at %d px does not load: %s", path, px, exc)
                font = self._latin.get(px) or ImageFont.load_default(size=px)
            self._cjk[px] = font
        return font

    def sizes(self, text: str = "") -> list[int]:
        """The pixel sizes `text` can be drawn at, largest first."""
        return self._cjk_sizes() if needs_wide_font(text) else sorted(self._latin, reverse=True)

    def font(self, px: int, text: str = "") -> Font:
        """The largest font for `text` not taller than `px` (the smallest one if none is)."""
        sizes = self.sizes(text)
        size = next((s for s in sizes if s <= px), sizes[-1])
        return self._cjk_font(size) if needs_wide_font(text) else self._latin[size]


@cache
def default_fonts() -> Fonts:
    return Fonts()


@lru_cache(maxsize=1024)
def _width(font: Font, text: str) -> float:
    # Measure as drawn on a mode "1" panel: monochrome hinting makes glyphs wider than in "L".
    # Cached: wrapping measures every growing prefix of a line, and most lines recur (titles,
    # prompts, names); a font is the same object for the life of `default_fonts()`.
    return font.getlength(text, mode="1")


@lru_cache(maxsize=256)
def _ink_box(font: Font, line: str) -> tuple[float, float, float, float]:
    """Where a line's ink lies about its origin (cached like `_width`)."""
    return font.getbbox(line)


def wrap(text: str, font: Font, width: int) -> list[str]:
    """Word-wrap to `width` pixels; CJK text (no spaces) and over-long words break anywhere."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for token in _tokens(paragraph):
            candidate = (line + token) if line else token.lstrip()
            if _width(font, candidate) <= width:
                line = candidate
                continue
            if line:
                lines.append(line.rstrip())
            token = token.lstrip()
            while token and _width(font, token) > width:  # break a word that cannot fit
                cut = max(1, _fit_prefix(font, token, width))
                lines.append(token[:cut])
                token = token[cut:]
            line = token
        lines.append(line.rstrip())
    return lines


def _tokens(paragraph: str) -> list[str]:
    """Words with their leading space; each CJK character is a token of its own."""
    tokens: list[str] = []
    current = ""
    for ch in paragraph:
        if has_cjk(ch):
            if current:
                tokens.append(current)
            tokens.append(ch)
            current = ""
        elif ch == " " and current.strip():
            tokens.append(current)
            current = ch
        else:
            current += ch
    if current:
        tokens.append(current)
    return tokens


def _fit_prefix(font: Font, text: str, width: int) -> int:
    n = 0
    while n < len(text) and _width(font, text[: n + 1]) <= width:
        n += 1
    return n


@dataclass(frozen=True, slots=True)
class Fitted:
    """How a text was laid out: the lines drawn, the font size, and whether all of it fitted."""

    lines: tuple[str, ...]
    px: int
    complete: bool


def fit_text(
    draw: ImageDraw.ImageDraw,
    text: str,
    box: tuple[int, int, int, int],
    *,
    fonts: Fonts | None = None,
    max_px: int = 16,
    align: Literal["left", "center"] = "left",
    fill: int = 1,
) -> Fitted:
    """Draw `text` inside `box` (x0, y0, x1, y1, exclusive ends): wrap it, shrink the font until
    it fits, and at the smallest size cut it with an ellipsis. Nothing is drawn outside the box."""
    fonts = fonts or default_fonts()
    x0, y0, x1, y1 = box
    width, height = x1 - x0, y1 - y0
    ladder = fonts.sizes(text)
    sizes = [px for px in ladder if px <= max_px] or [ladder[-1]]
    for i, px in enumerate(sizes):
        font = fonts.font(px, text)
        line_h = px  # the fonts carry their own leading
        lines = wrap(text, font, width)
        fits = len(lines) * line_h <= height
        if fits or i == len(sizes) - 1:
            complete = fits
            if not fits:
                keep = max(1, height // line_h)
                lines = lines[:keep]
                last = lines[-1]
                while last and _width(font, last + "…") > width:
                    last = last[:-1]
                lines[-1] = last + "…"
            for n, line in enumerate(lines):
                y = y0 + n * line_h
                if y + px > y1:
                    break
                x = x0
                if align == "center":
                    x = x0 + max(0, int((width - _width(font, line)) // 2))
                # A font's ink can start below its origin and end past `px` (descenders): move
                # the line up into its slot, never above the slot's top, so nothing is cut.
                _, top, _, bottom = _ink_box(font, line)
                dy = max(min(0, px - int(bottom)), -int(top))
                draw.text((x, y + dy), line, font=font, fill=fill)
            return Fitted(tuple(lines), px, complete)
    raise AssertionError("unreachable: the font ladder is never empty")


def draw_status_bar(
    draw: ImageDraw.ImageDraw,
    *,
    online: bool,
    now: datetime | None,
    width: int = 128,
    fonts: Fonts | None = None,
    label: str = "",
    link_words: tuple[str, str] = ("online", "OFFLINE"),
) -> None:
    """Top row: a link icon (filled = online, hollow and struck = offline), a label, the clock."""
    fonts = fonts or default_fonts()
    h = STATUS_BAR_HEIGHT
    if online:
        draw.ellipse((1, 1, 7, 7), outline=1, fill=1)
    else:
        draw.ellipse((1, 1, 7, 7), outline=1, fill=0)
        draw.line((1, 7, 7, 1), fill=1)
    text = link_words[0 if online else 1] + (f"  {label}" if label else "")
    font = fonts.font(10, text) if needs_wide_font(text) else fonts.small
    draw.text((11, -1), text, font=font, fill=1)
    if now is not None:
        clock = now.strftime("%H:%M")
        draw.text((width - 1 - _width(fonts.small, clock), -1), clock, font=fonts.small, fill=1)
    draw.line((0, h, width - 1, h), fill=1)
