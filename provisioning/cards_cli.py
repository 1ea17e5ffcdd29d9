"""`kiosk cards issue`: batch card issuing for the operator (numbers, refs CSV, PDF, NTAG 424)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import click

from edge.drivers.nfc_tap import CardLink
from edge.errors import KioskError

__all__ = ["cards", "issue_cards"]


@click.group()
def cards() -> None:
    """Issue member cards: numbers, card references for the cloud, printable sheets."""


def issue_cards(
    *,
    count: int,
    kind: str,
    number_range: str,
    out: Path,
    site_key_file: Path,
    site: str,
    registry: Path | None = None,
    batch: str | None = None,
    qr: bool = False,
    pdf: bool = True,
    links: Iterable[CardLink] | None = None,
    url: str = "https://tap.invalid/c",
    card_keys_file: Path | None = None,
) -> tuple[Path, Path | None, int]:
    """Allocate, personalise (ntag424), and write `<batch>.csv` (+ `<batch>.pdf`) under `out`."""
    from edge.drivers.ntag424 import SiteKeys
    from edge.ledger.sitekey import card_keys_of, load_site_secrets
    from provisioning.cards import (
        IssuedCard,
        allocate,
        csv_text,
        number_ref,
        parse_range,
        pdf_sheet,
        release,
        uid_ref,
    )
    from provisioning.errors import ProvisionError
    from provisioning.files import write_atomic

    secrets = load_site_secrets(site_key_file)
    rng = parse_range(number_range)
    batch = batch or f"{kind}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    registry = registry or site_key_file.with_name(site_key_file.name + ".issued.sqlite")
    if pdf:  # fail before numbers are spent when the printing libraries are missing
        try:
            import barcode  # noqa: F401
            import PIL  # noqa: F401
            import segno  # noqa: F401
        except ImportError as exc:
            raise ProvisionError(
                "the PDF needs the cards extra: pip install 'kiosk-edge[cards]' (or --no-pdf)"
            ) from exc
    numbers = allocate(registry, rng, count, kind, batch)  # type: ignore[arg-type]
    issued: list[IssuedCard] = []
    if kind == "ntag424":
        from provisioning.ntag424_writer import personalise

        # New cards get the scope's current card master key version (docs/security.md).
        held = card_keys_of(secrets, card_keys_file)
        current = max(held)
        keys = SiteKeys(master=held[current], system_id=site.encode()[:23], version=current)
        done = 0
        try:
            for number, link in zip(numbers, links or [], strict=False):
                card = personalise(link, keys, url)
                ref = number_ref(secrets.card_ref_key, number)
                issued.append(
                    IssuedCard(
                        number, ref, "ntag424", batch, uid_ref(secrets.card_ref_key, card.uid_hex)
                    )
                )
                done += 1
        finally:
            release(registry, numbers[done:])  # numbers that reached no card
        if done < count:
            raise ProvisionError(f"only {done} of {count} cards personalised")
    else:
        for number in numbers:
            ref = number_ref(secrets.card_ref_key, number)
            issued.append(IssuedCard(number, ref, kind, batch))  # type: ignore[arg-type]
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / f"{batch}.csv"
    write_atomic(csv_path, csv_text(issued).encode(), 0o600)
    pdf_path = None
    if pdf:
        pdf_path = out / f"{batch}.pdf"
        pdf_sheet(issued, pdf_path, qr=qr or kind == "ntag424", title=f"{site} {batch}")
    return csv_path, pdf_path, len(issued)


@cards.command("issue")
@click.option("--count", type=click.IntRange(min=1), required=True, help="How many cards.")
@click.option("--kind", type=click.Choice(["barcode", "magstripe", "ntag424"]), required=True)
@click.option(
    "--range",
    "number_range",
    required=True,
    help="START-END of the numbers before the check digit, e.g. 90000000-90099999.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for <batch>.csv (numbers and card refs) and <batch>.pdf.",
)
@click.option("--site", required=True, help="Site name, as in [kiosk] site (NTAG 424 keys).")
@click.option(
    "--site-key",
    "site_key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    required=True,
    help="The site secret file.",
)
@click.option(
    "--registry",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Issued-numbers database (default: beside the site key).",
)
@click.option("--batch", default=None, help="Batch name (default: kind and UTC time).")
@click.option("--qr", is_flag=True, help="Print QR codes instead of Code 128 barcodes.")
@click.option("--no-pdf", is_flag=True, help="Only the CSV.")
@click.option("--reader", default=None, help="ntag424: part of the PC/SC writer's name.")
@click.option(
    "--url",
    default="https://tap.invalid/c",
    show_default=True,
    help="ntag424: the SUN URL base written to the card.",
)
@click.option(
    "--card-keys",
    "card_keys",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="ntag424: the scope's card-keys file after a rotation (kiosk cloud card-keys); the "
    "current version keys the cards.",
)
def issue_cmd(
    count: int,
    kind: str,
    number_range: str,
    out: Path,
    site: str,
    site_key: Path,
    registry: Path | None,
    batch: str | None,
    qr: bool,
    no_pdf: bool,
    reader: str | None,
    url: str,
    card_keys: Path | None,
) -> None:
    """Issue a batch: random Luhn card numbers from a range (never reused), a CSV of number -> card
    ref for the cloud, a PDF sheet; ntag424 also personalises each card on a PC/SC writer."""
    links = None
    if kind == "ntag424":
        from provisioning.pcsc_writer import writer_cards

        links = writer_cards(reader, count)
    try:
        csv_path, pdf_path, n = issue_cards(
            count=count,
            kind=kind,
            number_range=number_range,
            out=out,
            site_key_file=site_key,
            site=site,
            registry=registry,
            batch=batch,
            qr=qr,
            pdf=not no_pdf,
            links=links,
            url=url,
            card_keys_file=card_keys,
        )
    except (KioskError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{n} cards issued")
    click.echo(f"card refs for the cloud: {csv_path}")
    if pdf_path:
        click.echo(f"print sheet: {pdf_path}")
