"""Shared by every `kiosk cloud` command: the config option, the reconciler for one command,
the audit record of a refused command, publishing to kiosks, and the `cloud` group itself."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiomqtt
import click

from cloud_sync import admin
from cloud_sync.errors import SyncError
from cloud_sync.reconciler import Reconciler
from cloud_sync.settings import CloudConfig, load_config
from cloud_sync.store import open_store
from cloud_sync.streams import StreamBook
from edge.ledger import LedgerError, load_private_key
from edge.ledger.errors import sqlite_fault
from edge.ledger.sitekey import (
    SiteSecrets,
    load_site_secrets,
)

log = logging.getLogger(__name__)

ConfigPath = click.Path(exists=True, dir_okay=False, path_type=Path)
config_option = click.option(
    "--config", "config", required=True, type=ConfigPath, help="Cloud TOML config."
)
DirPath = click.Path(file_okay=False, path_type=Path)
PURSE_HELP = "cash, points or visits:<product>."


def cloud_config(path: Path) -> CloudConfig:
    try:
        return load_config(path)
    except SyncError as exc:
        raise click.ClickException(str(exc)) from exc


@contextmanager
def reconciler_for(path: Path) -> Iterator[tuple[CloudConfig, Reconciler]]:
    cfg = cloud_config(path)
    s = cfg.reconciler
    try:
        key = load_private_key(s.key_file)
        store = open_store(s.store, replica=s.replica, key=key)
    except (LedgerError, SyncError) as exc:
        raise click.ClickException(str(exc)) from exc
    except sqlite3.Error as exc:  # the SQLite store: damaged, not a database, disk full
        raise click.ClickException(str(sqlite_fault(s.store, exc))) from exc
    streams = StreamBook(s.streams_file, s.replica, key, groups=s.scopes)
    try:
        yield (
            cfg,
            Reconciler(
                store,
                key,
                escrow=s.escrow,
                trust=s.trust,
                chain_chunk=s.chain_chunk,
                max_skew_ms=s.max_skew_s * 1000,
                membership=cfg.membership,
                streams=streams,
            ),
        )
    except (LedgerError, SyncError) as exc:
        audit_refusal(cfg, str(exc))
        raise click.ClickException(str(exc)) from exc
    except click.ClickException as exc:
        audit_refusal(cfg, exc.message)
        raise
    else:
        audit_refusal(cfg, "")
    finally:
        streams.close()
        store.close()


def audit_refusal(cfg: CloudConfig, error: str) -> None:
    """Record this command in the back office's audit trail (actor `cli:<unix user>`) when the
    console's database exists; nothing when the `console` extra is not installed."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or ctx.info_name == "serve":
        return
    from backoffice.clilog import audit_cli

    command = " ".join(["kiosk", *ctx.command_path.split()[1:]])  # whatever argv[0] was
    audit_cli(cfg, command, ctx.params, error)


def site_secrets(cfg: CloudConfig) -> SiteSecrets:
    path = cfg.reconciler.site_key_file
    if path is None:
        raise click.ClickException("set reconciler.site_key_file (kiosk cloud site-key --file)")
    try:
        return load_site_secrets(path)
    except LedgerError as exc:
        raise click.ClickException(str(exc)) from exc


def publish_to_kiosks(cfg: CloudConfig, outs: list[object]) -> None:
    from cloud_sync.reconciler import Outgoing

    msgs = [o for o in outs if isinstance(o, Outgoing)]
    try:
        asyncio.run(admin.publish_once(cfg.reconciler.broker, msgs))
        click.echo(f"published {len(msgs)} message(s) to kiosks")
    except (aiomqtt.MqttError, OSError) as exc:
        click.echo(f"stored, but not published ({exc}); the reconciler sends it on connect")


@click.group()
def cloud() -> None:
    """Cloud side: reconciler service, deployment CA, members, cards, top-ups, kiosks."""
