"""`kiosk selftest`: the kiosk's own rows (config, keys, enrollment, certificate, broker, clock,
disk) and then every configured part's, as one table with the fix for each failure."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from edge.checks.selftest import format_table, run_selftest
from edge.checks.system import has_kiosk_section, system_checks
from edge.drivers.base import Check
from edge.drivers.config import ConfigError, load_drivers_config
from kiosk.faults import one_line
from kiosk.link import broker_address, load_kiosk_config


@click.command("selftest")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Kiosk TOML config with [nfc], [wedge], [gpio], [display] sections.",
)
@click.option(
    "--wait-card",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to wait for a card swipe/scan on the wedge reader (0: only find the reader).",
)
def selftest(config_path: Path, wait_card: float) -> None:
    """Self-test: config, keys, enrollment, certificate, broker, clock, disk (for a whole kiosk
    config), then find and exercise every configured part; print what to fix."""
    try:
        cfg = load_drivers_config(config_path)
    except ConfigError as exc:
        click.echo(f"error: {one_line(str(exc))}", err=True)
        raise SystemExit(2) from None
    checks: list[Check] = []
    if has_kiosk_section(config_path):
        checks += system_checks(config_path, load=load_kiosk_config, broker_of=broker_address)
    if cfg.nfc or cfg.wedge or cfg.gpio or cfg.display or not checks:
        checks += asyncio.run(run_selftest(cfg, wait_card_s=wait_card))
    click.echo(format_table(checks))
    if not all(c.ok for c in checks):
        raise SystemExit(1)
