"""The `kiosk` command, the composition root: every subcommand group is a thin layer over library
calls, and each is imported only when it is run, so `kiosk run` loads only what a kiosk needs."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

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
    "cloud": "kiosk.cloud:cloud",
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


class KioskGroup(LazyGroup):
    """The root group: whatever goes wrong below it is answered here, in one place, with one
    line (`kiosk.faults`): exit 2 for a usage mistake, 1 for a fault; `-v` adds the traceback."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> NoReturn:
        argv = list(sys.argv[1:] if args is None else args)
        try:
            code = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except SystemExit:
            raise
        except BaseException as exc:  # the one place every fault is answered
            self.answer(exc, verbose=_verbose(argv))
        sys.exit(code if isinstance(code, int) else 0)

    @staticmethod
    def answer(exc: BaseException, *, verbose: bool) -> NoReturn:
        from kiosk.faults import USAGE, explain  # only on failure: `kiosk run` starts without it

        if isinstance(exc, BrokenPipeError):  # `kiosk ledger export | head`: the reader left
            sys.exit(1)
        line, code, _bug = explain(exc)
        if verbose and code != USAGE:
            traceback.print_exception(exc)
        with contextlib.suppress(OSError):  # stderr gone too: the exit code still tells
            click.echo(f"error: {line}", err=True)
        sys.exit(code)


def _verbose(argv: list[str]) -> bool:
    """Whether the root's -v/--verbose came before the subcommand (known before parsing, so a
    usage mistake can have its traceback too)."""
    for arg in argv:
        if not arg.startswith("-"):
            return False
        if arg == "--verbose" or (arg.startswith("-v") and set(arg[1:]) == {"v"}):
            return True
    return False


@click.group(
    cls=KioskGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="kiosk")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="More log output (-v info, -vv debug); with an error, its traceback for a bug report.",
)
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


if __name__ == "__main__":
    main()
