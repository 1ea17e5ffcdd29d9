"""Batch card issuing: random card numbers with a Luhn check digit from a range, never issued
twice (an SQLite registry beside the site key), a CSV of number -> card reference for the cloud, and
a printable PDF sheet of barcodes or QR codes. NTAG 424 cards are personalised on a writer.

The cloud registers card references (HMAC of the number with the site key), never numbers:
the CSV's `card_ref` column is what goes to the cloud; the numbers are for the printer.
"""

from __future__ import annotations

import csv
import io
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from edge.drivers.base import Token, TokenKind
from edge.drivers.cardformats import luhn_valid
from edge.taps.tokens import card_ref
from provisioning.errors import ProvisionError

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "CardKind",
    "IssuedCard",
    "NumberRange",
    "allocate",
    "csv_text",
    "luhn_digit",
    "parse_range",
    "pdf_sheet",
]

CardKind = Literal["barcode", "magstripe", "ntag424"]
MIN_DIGITS, MAX_DIGITS = 8, 19  # with the check digit; what the wedge decoder accepts


def luhn_digit(payload: str) -> str:
    """The ISO/IEC 7812 check digit that makes `payload + digit` Luhn-valid."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


@dataclass(frozen=True, slots=True)
class NumberRange:
    """Card numbers before the check digit, inclusive, all of one length."""

    start: int
    end: int
    digits: int

    def number(self, n: int) -> str:
        payload = f"{n:0{self.digits}d}"
        return payload + luhn_digit(payload)


def parse_range(text: str) -> NumberRange:
    """`START-END` of the numbers without check digit, e.g. 90000000-90009999."""
    start_s, sep, end_s = text.partition("-")
    if not sep or not start_s.isdigit() or not end_s.isdigit() or len(start_s) != len(end_s):
        raise ProvisionError(f"range {text!r}: give START-END, digits only, of the same length")
    if not MIN_DIGITS <= len(start_s) + 1 <= MAX_DIGITS:
        raise ProvisionError(f"range {text!r}: card numbers must be 8..19 digits with the check")
    if start_s[0] in "3456" or start_s[:2] == "22":
        # A Luhn number with a bank prefix could be taken for a payment card and refused.
        raise ProvisionError(f"range {text!r} starts like a bank card number: use 1, 7, 8 or 9")
    start, end = int(start_s), int(end_s)
    if start > end:
        raise ProvisionError(f"range {text!r}: START is after END")
    return NumberRange(start, end, len(start_s))


@dataclass(frozen=True, slots=True)
class IssuedCard:
    number: str
    card_ref: str
    kind: CardKind
    batch: str
    uid_ref: str = ""  # ntag424: the reference a kiosk computes from the card's UID

    def __repr__(self) -> str:
        return f"IssuedCard(kind={self.kind}, batch={self.batch}, number=<hidden>)"


SCHEMA = """
CREATE TABLE IF NOT EXISTS issued (
    number TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    batch TEXT NOT NULL,
    issued_at TEXT NOT NULL
)
"""


def allocate(registry: Path, rng: NumberRange, count: int, kind: CardKind, batch: str) -> list[str]:
    """`count` numbers of the range never issued before, drawn at random (a member's number
    plus or minus one is not another member's card: in a range much larger than the cards
    issued, a guess hits a card about issued/range of the time, and the check digit refuses
    nine in ten typing errors before any lookup), recorded in one transaction."""
    if count <= 0:
        raise ProvisionError("--count must be at least 1")
    with closing(sqlite3.connect(registry, isolation_level=None)) as db:
        db.execute("PRAGMA synchronous=FULL")
        db.execute(SCHEMA)
        db.execute("BEGIN IMMEDIATE")
        try:
            issued = {
                row[0]
                for row in db.execute(
                    "SELECT number FROM issued WHERE length(number) = ?", (rng.digits + 1,)
                )
            }
            numbers = _draw(rng, issued, count)
            now = datetime.now(UTC).isoformat()
            db.executemany(
                "INSERT INTO issued (number, kind, batch, issued_at) VALUES (?, ?, ?, ?)",
                [(num, kind, batch, now) for num in numbers],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    assert all(luhn_valid(x) for x in numbers)
    return numbers


ENUMERATE_BELOW = 1_000_000  # a smaller range is listed whole; a larger one is sampled


def _draw(rng: NumberRange, issued: set[str], count: int) -> list[str]:
    """`count` numbers of the range not in `issued`, uniformly at random (a CSPRNG)."""
    size = rng.end - rng.start + 1
    used = sum(1 for x in issued if rng.start <= int(x[:-1]) <= rng.end)
    if size - used < count:
        raise ProvisionError(
            f"range has only {size - used} numbers left, {count} asked: use a new range"
        )
    draw = secrets.SystemRandom()
    if size <= ENUMERATE_BELOW or used + count > size // 2:
        free = (rng.number(n) for n in range(rng.start, rng.end + 1))
        return draw.sample([x for x in free if x not in issued], count)
    chosen: set[str] = set()
    while len(chosen) < count:  # at least half the range is free: about 2 draws per number
        number = rng.number(rng.start + secrets.randbelow(size))
        if number not in issued:
            chosen.add(number)
    return draw.sample(sorted(chosen), count)


def release(registry: Path, numbers: list[str]) -> None:
    """Give back numbers that were allocated but never reached a card (a failed personalise)."""
    with closing(sqlite3.connect(registry)) as db, db:
        db.executemany("DELETE FROM issued WHERE number = ?", [(n,) for n in numbers])


def number_ref(site_key: bytes, number: str) -> str:
    # Barcode and magstripe are one family: the same number gives the same reference.
    return card_ref(site_key, Token(TokenKind.BARCODE, number, authenticated=False))


def uid_ref(site_key: bytes, uid_hex: str) -> str:
    return card_ref(site_key, Token(TokenKind.NTAG424_SUN, uid_hex, authenticated=True))


def track2(number: str) -> str:
    """What a magstripe encoder writes: track 2 with the number only (no expiry/service code,
    so that a kiosk never takes it for a bank card)."""
    return f";{number}?"


def csv_text(cards: list[IssuedCard]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["card_number", "card_ref", "kind", "batch", "track2", "uid_ref"])
    for c in cards:
        t2 = track2(c.number) if c.kind == "magstripe" else ""
        writer.writerow([c.number, c.card_ref, c.kind, c.batch, t2, c.uid_ref])
    return out.getvalue()


def _code_images(cards: list[IssuedCard], qr: bool) -> Iterator[tuple[str, Image.Image]]:
    from PIL import Image

    try:
        if qr:
            import segno
        else:
            from barcode import Code128
            from barcode.writer import ImageWriter
    except ImportError as exc:
        raise ProvisionError(
            "printing needs the cards extra: pip install 'kiosk-edge[cards]' (segno, "
            "python-barcode, pillow)"
        ) from exc
    for c in cards:
        if qr:
            buf = io.BytesIO()
            segno.make(c.number, error="m").save(buf, kind="png", scale=8, border=2)
            buf.seek(0)
            yield c.number, Image.open(buf)
        else:
            code = Code128(c.number, writer=ImageWriter())
            img = code.render({"module_height": 12.0, "font_size": 8, "quiet_zone": 4})
            assert isinstance(img, Image.Image)
            yield c.number, img


def pdf_sheet(cards: list[IssuedCard], out: Path, *, qr: bool, title: str) -> int:
    """A4 pages (300 dpi) of labelled codes, 3 x 8 per page; returns the number of pages."""
    try:
        from PIL import Image, ImageDraw
    except ImportError as exc:
        raise ProvisionError("printing needs Pillow: pip install 'kiosk-edge[cards]'") from exc
    width, height, cols, rows = 2480, 3508, 3, 8
    cell_w, cell_h = (width - 200) // cols, (height - 300) // rows
    pages: list[Image.Image] = []
    page: Image.Image | None = None
    draw: Callable[..., None] | None = None
    for i, (number, img_src) in enumerate(_code_images(cards, qr)):
        if i % (cols * rows) == 0:
            page = Image.new("RGB", (width, height), "white")
            pages.append(page)
            d = ImageDraw.Draw(page)
            d.text((100, 80), f"{title}  page {len(pages)}", fill="black")
            draw = d.text
        assert page is not None
        assert draw is not None
        img = img_src.convert("RGB")
        img.thumbnail((cell_w - 40, cell_h - 60))
        slot = i % (cols * rows)
        x = 100 + (slot % cols) * cell_w
        y = 200 + (slot // cols) * cell_h
        page.paste(img, (x, y))
        draw((x, y + img.height + 8), number, fill="black")
    if not pages:
        raise ProvisionError("no cards to print")
    pages[0].save(out, "PDF", resolution=300.0, save_all=True, append_images=pages[1:])
    return len(pages)
