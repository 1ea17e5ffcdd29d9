"""`kiosk cloud ca | broker-config | keys | site-key | card-keys`: the deployment CA, the broker
config and the cloud's keys."""

from __future__ import annotations

from pathlib import Path

import click

from cloud_sync import ca
from cloud_sync.errors import SyncError
from edge.ledger import LedgerError, load_private_key
from edge.ledger.sitekey import (
    CardKeys,
    card_keys_of,
    create_site_key,
    finish_rotation,
    load_card_keys,
    rotate_card_keys,
    save_card_keys,
)
from kiosk.cloud.common import ConfigPath, DirPath, cloud, cloud_config, config_option, site_secrets


@cloud.group(name="ca")
def ca_group() -> None:
    """The deployment CA for mutual TLS (device certificates, CN = device id)."""


@ca_group.command(name="init")
@click.option("--dir", "directory", required=True, type=DirPath, help="CA directory.")
def ca_init(directory: Path) -> None:
    """Create the CA key (0600) and certificate, and the reconciler's certificate."""
    try:
        cert = ca.init_ca(directory)
        ca.issue(directory, ca.RECONCILER)
    except SyncError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"CA certificate {cert}; reconciler certificate {directory / 'reconciler.crt'}")


@ca_group.command(name="issue")
@click.option("--device", required=True, help="Device id (becomes the certificate CN).")
@click.option("--site", required=True, help="Site id of the device.")
@click.option("--dir", "directory", required=True, type=DirPath, help="CA directory.")
def ca_issue(device: str, site: str, directory: Path) -> None:
    """Issue a device certificate and key signed by the CA."""
    try:
        out = ca.issue_device(directory, device, site=site)
    except (SyncError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{out.cert}\n{out.key}")


@cloud.command(name="broker-config")
@click.option("--dir", "directory", required=True, type=DirPath, help="CA directory.")
@click.option(
    "--port",
    default=8883,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Device listener port (client id = certificate CN).",
)
@click.option("--bind", default="127.0.0.1", show_default=True, help="Device listener address.")
@click.option(
    "--cloud-port",
    default=8885,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Cloud listener port: reconcilers and the operator CLI (reconciler certificate).",
)
@click.option(
    "--cloud-bind",
    default="127.0.0.1",
    show_default=True,
    help="Cloud listener address: keep it off the kiosks' network.",
)
@click.option(
    "--enroll-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Also an enrollment-only listener here (server TLS, anonymous, claim topics only).",
)
@click.option(
    "--name",
    "names",
    multiple=True,
    help="DNS name or address kiosks use for the broker (certificate SAN; repeatable).",
)
def broker_config(
    directory: Path,
    port: int,
    bind: str,
    cloud_port: int,
    cloud_bind: str,
    enroll_port: int | None,
    names: tuple[str, ...],
) -> None:
    """Write mosquitto.conf and the ACLs (a device writes only its own topics, and is always
    itself: its client id is its certificate CN)."""
    try:
        conf = ca.write_broker_config(
            directory,
            port=port,
            bind=bind,
            cloud_port=cloud_port,
            cloud_bind=cloud_bind,
            enroll_port=enroll_port,
            server_names=names,
        )
    except SyncError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{conf}\n{directory / 'mosquitto.acl'}\n{directory / 'cloud.acl'}")
    if enroll_port is not None:
        click.echo(directory / "enroll.acl")
    for path in ca.broker_unreadable(directory):
        click.echo(
            f"warning: user mosquitto cannot read {path}: run this command as root, or"
            f" `sudo chgrp mosquitto {path} && sudo chmod g+r{'x' if path.is_dir() else ''}"
            f" {path}`",
            err=True,
        )


@cloud.command(name="keys")
@click.option(
    "--config",
    "config",
    type=ConfigPath,
    help="Cloud TOML config: the key goes to its reconciler.key_file.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Or write the key to this file.",
)
@click.option("--force", is_flag=True, help="Replace an existing key (kiosks pinned the old one).")
def keys(config: Path | None, out: Path | None, force: bool) -> None:
    """Create the cloud's Ed25519 signing key (0600) and print its public key, which kiosks pin
    at enrollment; never overwrites a key without --force."""
    from edge.ledger import generate_key, public_bytes, save_private_key

    if (config is None) == (out is None):
        raise click.UsageError("give either --config or --out")
    path = cloud_config(config).reconciler.key_file if config is not None else out
    assert path is not None
    if path.exists() and not force:
        key = load_private_key(path)  # refuses a key others can read, or not a key
        click.echo(f"{path} exists (kept; --force replaces it)")
    else:
        key = generate_key()
        path.parent.mkdir(parents=True, exist_ok=True)
        save_private_key(path, key)
        click.echo(f"cloud signing key {path} created (0600)")
    click.echo(f"cloud public key: {public_bytes(key).hex()}")


@cloud.command(name="site-key")
@click.option("--file", "path", required=True, type=click.Path(path_type=Path), help="Key file.")
def site_key(path: Path) -> None:
    """Create the site secret that card numbers are HMACed with (0600, created once); the same
    file goes to the site's kiosks at enrollment."""
    try:
        create_site_key(path)
    except FileExistsError:
        raise click.ClickException(f"{path} exists; a site key is created once") from None
    click.echo(f"site key {path}")


@cloud.group(name="card-keys")
def card_keys() -> None:
    """A scope's NTAG 424 card master keys: versions and their rotation (docs/security.md)."""


keys_file_option = click.option(
    "--file",
    "path",
    required=True,
    type=click.Path(path_type=Path),
    help="The scope's card-keys file (0600); the same file goes to the scope's kiosks.",
)


def _card_keys(config: Path, path: Path) -> CardKeys:
    try:
        if path.exists():
            return load_card_keys(path)
        return card_keys_of(site_secrets(cloud_config(config)), None)
    except LedgerError as exc:
        raise click.ClickException(str(exc)) from exc


def _say_versions(path: Path, keys: CardKeys) -> None:
    versions = sorted(keys, reverse=True)
    previous = f", version {versions[1]} previous (still accepted)" if len(versions) > 1 else ""
    click.echo(f"{path}: version {versions[0]} current{previous}")


@card_keys.command(name="rotate")
@config_option
@keys_file_option
def card_keys_rotate(config: Path, path: Path) -> None:
    """Start a rotation: a new random card master key becomes current, the current one previous.
    The key is made here and written to the file only (never shown, never an option)."""
    keys = _card_keys(config, path)
    if len(keys) > 1:
        raise click.ClickException(
            f"{path}: a rotation is under way; finish it first (kiosk cloud card-keys finish)"
        )
    try:
        keys = rotate_card_keys(keys)
    except LedgerError as exc:
        raise click.ClickException(str(exc)) from exc
    save_card_keys(path, keys)
    _say_versions(path, keys)


@card_keys.command(name="finish")
@config_option
@keys_file_option
def card_keys_finish(config: Path, path: Path) -> None:
    """End a rotation: only the current version is left; cards of the old one are refused."""
    keys = finish_rotation(_card_keys(config, path))
    save_card_keys(path, keys)
    _say_versions(path, keys)


@card_keys.command(name="show")
@config_option
@keys_file_option
def card_keys_show(config: Path, path: Path) -> None:
    """The versions a card-keys file holds (never the keys)."""
    _say_versions(path, _card_keys(config, path))
