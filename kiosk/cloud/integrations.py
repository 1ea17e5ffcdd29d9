"""`kiosk cloud report | integration | webhooks`: what other systems read from the cloud."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from cloud_sync.errors import SyncError
from cloud_sync.operator_input import CODE, NAME
from cloud_sync.settings import CloudConfig
from edge.ledger import LedgerError
from kiosk.cloud.common import cloud, cloud_config, config_option, reconciler_for


@cloud.command()
@config_option
@click.argument("name")
@click.option(
    "--from", "start", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First day."
)
@click.option(
    "--to", "end", required=True, type=click.DateTime(["%Y-%m-%d"]), help="Day after the last."
)
@click.option("--by", type=click.Choice(["day", "week", "month"]), default="day", show_default=True)
@click.option("--site", default=None, help="One venue (its kiosks, currency and time zone).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "xlsx", "pdf", "png"]),
    default="table",
    show_default=True,
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="File (else stdout).")
def report(
    config: Path,
    name: str,
    start: dt.datetime,
    end: dt.datetime,
    by: str,
    site: str | None,
    fmt: str,
    out: Path | None,
) -> None:
    """A report (sales, stored-value, points, passes, members, products, risk, shifts) per
    day, week or month in the venue's currency and time zone ([reports] in the config)."""
    from cloud_sync import report_export, reports

    with reconciler_for(config) as (cfg, rec):
        loc = cfg.reports.locale(site)
        window = reports.Window(start.date(), end.date(), by, loc.timezone, loc.currency, site)
        if name == "shifts":
            from backoffice.clilog import console_database_exists, setup_django

            if not console_database_exists(cfg):
                raise click.ClickException(
                    "the shift report reads the console's audit trail: run kiosk cloud console once"
                )
            setup_django(cfg)
            from backoffice.reports.shifts import shifts

            result = shifts(window)
        else:
            result = reports.run(rec.store, name, window)
        data = report_export.render(result, fmt)
    if out is not None:
        out.write_bytes(data)
        click.echo(f"wrote {out} ({len(data)} bytes)")
    elif fmt in ("table", "csv"):
        click.echo(data.decode(), nl=False)
    else:
        raise click.ClickException(f"--format {fmt} is a binary file: add --out FILE")


def _console(config: Path) -> CloudConfig:
    """The console's Django set up on this config, its database migrated."""
    cfg = cloud_config(config)
    try:
        from backoffice.serve import prepare
    except ImportError as exc:
        raise click.ClickException(
            f"this needs the `console` extra (pip install 'kiosk-edge[console]'): {exc}"
        ) from exc
    try:
        prepare(cfg)
    except (SyncError, LedgerError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    return cfg


@cloud.group()
def integration() -> None:
    """REST API integrations (a POS, a ticketing system): tokens with operator permissions."""


@integration.command(name="add")
@config_option
@click.argument("name", type=CODE)
@click.option(
    "--group", "groups", multiple=True, default=["cashier"], show_default=True,
    help="Operator group(s) whose permissions the integration gets.",
)  # fmt: skip
@click.option("--site", default="", help="Venue it may touch (default: every venue).")
@click.option("--note", default="", help="What it is.")
def integration_add(config: Path, name: str, groups: tuple[str, ...], site: str, note: str) -> None:
    """Make an integration (or a new token for it) and print the token once."""
    _console(config)
    from django.contrib.auth.models import Group

    from backoffice.api.tokens import issue

    known = set(Group.objects.values_list("name", flat=True))
    if unknown := [g for g in groups if g not in known]:
        raise click.UsageError(f"unknown group {unknown[0]!r} (known: {', '.join(sorted(known))})")
    token = issue(name, list(groups), site, note)
    click.echo(f"integration api:{name}, token (shown once): {token}")


@cloud.group()
def webhooks() -> None:
    """Webhook subscriptions and the delivery worker."""


@webhooks.command(name="add")
@config_option
@click.option("--name", required=True, type=NAME, help="Who receives them.")
@click.option("--url", required=True, help="http(s) URL that receives the POSTs.")
@click.option("--event", "events", multiple=True, required=True, help="Event name (repeat).")
@click.option("--site", default="", help="Only this venue's events.")
def webhooks_add(config: Path, name: str, url: str, events: tuple[str, ...], site: str) -> None:
    """Subscribe a URL to events; prints the signing secret once."""
    _console(config)
    from backoffice.webhooks.events import EVENTS
    from backoffice.webhooks.models import Subscription

    if unknown := [e for e in events if e not in EVENTS]:
        raise click.UsageError(f"unknown event {unknown[0]!r} (known: {', '.join(EVENTS)})")
    if not url.startswith(("http://", "https://")):
        raise click.UsageError(f"--url {url!r} is not an http(s) URL")
    sub = Subscription.objects.create(name=name, url=url, events=list(events), site=site)
    click.echo(f"subscription {sub.pk}, signing secret (shown once): {sub.secret}")


@webhooks.command(name="run")
@config_option
@click.option("--once", is_flag=True, help="One round (scan, deliver what is due), then exit.")
def webhooks_run(config: Path, once: bool) -> None:
    """The delivery worker on its own (the console runs one too unless [webhooks] worker=false)."""
    cfg = _console(config)
    from backoffice.cloud import cloud as cloud_handle
    from backoffice.webhooks.worker import Worker

    worker = Worker(cloud_handle(), cfg.webhooks)
    if once:
        events, sent = worker.step()
        click.echo(f"{events} event(s) queued, {sent} delivery attempt(s)")
        return
    click.echo("webhook worker running (Ctrl-C stops)")
    try:
        worker.run()
    except KeyboardInterrupt:
        click.echo("stopped")
