"""`kiosk run --config PATH`: the kiosk daemon under systemd (or in a terminal), wired to the
cloud when its config has an `[agent]` section."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from edge.config import ConfigError
from edge.errors import KioskError
from edge.ledger import LedgerError


@click.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Kiosk TOML config (see examples/).",
)
def run(config_path: Path) -> None:
    """Run the kiosk daemon until SIGTERM (systemd Type=notify, watchdog aware)."""
    from edge.daemon.daemon import run_cli
    from kiosk.link import link_factory, load_kiosk_config

    try:
        cfg = load_kiosk_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    # `[log] level` (INFO by default: a line per tap and per sync event); -v goes further.
    root = logging.getLogger()
    root.setLevel(min(root.level, logging.getLevelNamesMapping()[cfg.log.level]))
    try:
        run_cli(cfg, link_factory(cfg))
    except (KioskError, LedgerError) as exc:
        raise click.ClickException(str(exc)) from exc
