"""The `kiosk` command, the composition root: every subcommand group is a thin layer over library
calls, and each is imported only when it is run, so `kiosk run` loads only what a kiosk needs."""

from __future__ import annotations

import importlib
import logging
import os

import click

from edge import __version__

# name -> "module:attribute" of the click command; imported on first use.
COMMANDS = {
    "ledger": "edge.ledger.cli:ledger",
    "demo": "kiosk.demo.command:demo",
    "selftest": "kiosk.selftest:selftest",
    "run": "kiosk.run:run",
    "provision": "provisioning.cli:provision",
    "cards": "provisioning.cards_cli:cards",
    "cloud": "kiosk.cloud_cli:cloud",
    "sim": "kiosk.sim.cli:sim",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported when named (click's documented lazy-loading
    pattern): `kiosk --help` imports them all, `kiosk run` imports only the daemon."""

    def __init__(self, *args: object, lazy: dict[str, str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module, attr = self.lazy[cmd_name].split(":")
            command = getattr(importlib.import_module(module), attr)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
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


def main() -> None:
    cli()
