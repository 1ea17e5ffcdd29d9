"""The `kiosk` command: a thin layer of subcommand groups over library calls."""

from __future__ import annotations

import logging
import os

import click

from cloud_sync.cli import cloud
from edge import __version__
from edge.demo import demo
from edge.ledger.cli import ledger
from edge.run import run
from edge.selftest import selftest
from edge.sim.cli import sim
from provisioning.cards_cli import cards
from provisioning.cli import provision


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kiosk")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """kiosk-edge: membership card-reader kiosk firmware and its tools."""
    level = logging.WARNING - 10 * min(verbose, 2)
    # Under systemd (stderr is the journal) journald stamps each line itself.
    journal = bool(os.environ.get("JOURNAL_STREAM"))
    fmt = (
        "%(levelname)s %(name)s: %(message)s"
        if journal
        else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.basicConfig(level=level, format=fmt)


cli.add_command(ledger)
cli.add_command(demo)
cli.add_command(selftest)
cli.add_command(run)
cli.add_command(provision)
cli.add_command(cards)
cli.add_command(cloud)
cli.add_command(sim)


def main() -> None:
    cli()
