"""`kiosk provision ...`: the field tech's commands, thin over the provisioning library."""

from __future__ import annotations

from pathlib import Path

import click

from edge.errors import KioskError
from edge.ledger import LedgerError
from provisioning.errors import ProvisionError

__all__ = ["provision"]

ROOT_HELP = "Install into this directory instead of / (image builds, tests): no systemctl/udevadm."


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


@click.group()
def provision() -> None:
    """Set up a kiosk: install the service, device keys, enrollment bundles."""


@provision.command("install")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/"),
    show_default=True,
    help=ROOT_HELP,
)
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Kiosk TOML to install as /etc/kiosk/kiosk.toml (kept as is when left out).",
)
@click.option("--no-enable", is_flag=True, help="Do not `systemctl enable` the service.")
def install_cmd(root: Path, config: Path | None, no_enable: bool) -> None:
    """Install or update the appliance: user kiosk, /etc/kiosk, /var/lib/kiosk, udev rules,
    systemd unit, device key. Idempotent; keys and the ledger are never replaced."""
    from provisioning.install import Layout, install

    try:
        report = install(Layout(root), config=config, enable=not no_enable)
    except (KioskError, LedgerError, OSError, ValueError) as exc:
        raise _fail(exc) from exc
    for line in report.done:
        click.echo(line)
    click.echo("install: done")


@provision.command("uninstall")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/"),
    show_default=True,
    help=ROOT_HELP,
)
@click.option(
    "--purge",
    is_flag=True,
    help="Also delete /etc/kiosk (keys, config) and /var/lib/kiosk (the ledger).",
)
def uninstall_cmd(root: Path, purge: bool) -> None:
    """Remove the service, rules and program; keep keys, config and ledger unless --purge."""
    from provisioning.install import Layout, uninstall

    try:
        report = uninstall(Layout(root), purge=purge)
    except (ProvisionError, OSError) as exc:
        raise _fail(exc) from exc
    for line in report.done:
        click.echo(line)
    click.echo("uninstall: done")


@provision.command("udev")
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=Path("/etc/kiosk/kiosk.toml"),
    show_default=True,
    help="Kiosk TOML.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("/etc/udev/rules.d/99-kiosk-edge.rules"),
    show_default=True,
    help="Rules file to write ('-' prints it).",
)
def udev_cmd(config: Path, out: Path) -> None:
    """Write the udev rules for the configured card readers (then: udevadm trigger)."""
    from provisioning.files import write_atomic
    from provisioning.install import readers_of
    from provisioning.udev import render_rules

    try:
        text = render_rules(readers_of(config))
    except (ProvisionError, ValueError) as exc:
        raise _fail(exc) from exc
    if str(out) == "-":
        click.echo(text, nl=False)
        return
    changed = write_atomic(out, text.encode(), 0o644)
    click.echo(
        f"{out}: {'written' if changed else 'unchanged'}; now run: udevadm control "
        "--reload && udevadm trigger --subsystem-match=input"
    )
