"""`kiosk cloud console`: migrate the console's database, create the shipped groups, and serve
the Django application with waitress (a production WSGI server, pure Python)."""

from __future__ import annotations

import logging

import click

from backoffice.clilog import setup_django
from cloud_sync.settings import CloudConfig

log = logging.getLogger(__name__)


def prepare(cfg: CloudConfig) -> None:
    """Django set up on this config, migrations applied (the default groups come with them), and
    the cloud store opened once, so a bad key or store fails here, not at the first request."""
    setup_django(cfg)
    from django.core.management import call_command

    from backoffice.cloud import cloud
    from backoffice.members.directory import sync_directory

    call_command("migrate", interactive=False, verbosity=0)
    sync_directory(cloud())


def create_admin(username: str) -> str | None:
    """A chain admin with a random password, returned to print once; None if the user exists."""
    import secrets

    from django.contrib.auth.models import Group, User

    from backoffice.operators.groups import CHAIN_ADMIN

    if User.objects.filter(username=username).exists():
        return None
    password = secrets.token_urlsafe(12)
    user = User.objects.create_user(username, password=password, is_staff=True)
    user.groups.add(Group.objects.get(name=CHAIN_ADMIN))
    return password


def serve_console(
    cfg: CloudConfig, *, host: str, port: int, threads: int = 4, create: str | None = None
) -> None:
    from waitress import serve

    from cloud_sync.errors import SyncError
    from edge.ledger import LedgerError

    try:
        prepare(cfg)
    except (SyncError, LedgerError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    if create:
        password = create_admin(create)
        if password is None:
            click.echo(f"operator {create} exists; password unchanged")
        else:
            click.echo(f"chain admin {create}, password (shown once): {password}")
    from backoffice.wsgi import application

    if cfg.webhooks.worker:
        from backoffice.cloud import cloud
        from backoffice.webhooks.worker import Worker

        Worker(cloud(), cfg.webhooks).start()
    click.echo(f"console on http://{host}:{port}/ (database {cfg.console_database()})")
    serve(application, host=host, port=port, threads=threads, ident="kiosk-console")
