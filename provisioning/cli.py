"""`kiosk provision ...`: the field tech's commands, thin over the provisioning library."""

from __future__ import annotations

from pathlib import Path

import click

from edge.errors import KioskError
from edge.ledger import LedgerError
from provisioning.errors import ProvisionError
from provisioning.secret_input import secret_option

__all__ = ["provision"]

ROOT_HELP = "Install into this directory instead of / (image builds, tests): no systemctl/udevadm."


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


@click.group()
def provision() -> None:
    """Set up a kiosk: install the service, device keys, enrollment (online or bundles)."""


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


@provision.command("keys")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Kiosk TOML config.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace existing keys (a new device identity; the old ledger key is lost).",
)
def keys_cmd(config_path: Path, force: bool) -> None:
    """Generate the device's Ed25519 ledger key and the site secret if missing (0600)."""
    from edge.config import ConfigError, load_config
    from provisioning.identity import ensure_device_key, ensure_site_secret, kiosk_owner

    try:
        cfg = load_config(config_path)
        owner = kiosk_owner()
        device = ensure_device_key(cfg.kiosk.key_file, owner, force=force)
        site = ensure_site_secret(cfg.kiosk.site_key_file, owner, force=force)
    except (ConfigError, KioskError, LedgerError, OSError) as exc:
        raise _fail(exc) from exc
    for what, res in (("device key", device), ("site secret", site)):
        state = "created" if res.created else "kept (exists; --force replaces it)"
        click.echo(f"{what}: {res.path} {state}")
    click.echo(f"device public key: {device.public_hex}")


@provision.command("enroll")
@secret_option(
    "--claim", what="claim code", required=True, help="The one-time claim code from the operator"
)
@click.option(
    "--broker", required=True, help="The broker's enrollment listener: mqtts://HOST:PORT."
)
@click.option(
    "--ca",
    "ca_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="CA certificate the broker's certificate must be signed by (default: system CAs).",
)
@click.option(
    "--config-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/etc/kiosk"),
    show_default=True,
    help="Where the kiosk's config lives.",
)
@click.option("--device", default=None, help="Device id (default: the host name).")
@click.option(
    "--cloud-public-key",
    "cloud_pub",
    default=None,
    help="The cloud's public key (hex) to insist on; else the claim code vouches for it.",
)
@click.option("--reenroll", is_flag=True, help="Replace an existing enrollment (recorded).")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for the cloud.")
def enroll_cmd(
    claim: str,
    broker: str,
    ca_file: Path | None,
    config_dir: Path,
    device: str | None,
    cloud_pub: str | None,
    reenroll: bool,
    timeout: float,
) -> None:
    """Enroll online with a claim code: keys, CSR, certificate, site config and secret."""
    from provisioning.enroll import enroll

    try:
        given = bytes.fromhex(cloud_pub) if cloud_pub else None
    except ValueError:
        raise click.BadParameter("not hex", param_hint="--cloud-public-key") from None
    try:
        res = enroll(
            claim=claim,
            broker=broker,
            config_dir=config_dir,
            device=device,
            ca_file=ca_file,
            cloud_public_key=given,
            reenroll=reenroll,
            timeout_s=timeout,
        )
    except (KioskError, LedgerError, OSError) as exc:
        raise _fail(exc) from exc
    click.echo(f"{'re-enrolled' if res.reenrolled else 'enrolled'}: {res.device} at {res.site}")
    click.echo(f"config: {res.config_file}")
    click.echo(f"device public key (registered with the cloud): {res.device_public_key}")


@provision.group("bundle")
def bundle() -> None:
    """Offline enrollment bundles: signed by the cloud key, applied on the kiosk."""


@bundle.command("create")
@click.option("--site", required=True, help="Site name, as in [kiosk] site.")
@click.option("--device", required=True, help="Device id, as in [kiosk] id.")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Bundle file to write (0600: it carries the site secret).",
)
@click.option(
    "--cloud-key",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The cloud's Ed25519 private key (PEM) that signs bundles.",
)
@click.option(
    "--config",
    "template",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Site config template (kiosk TOML; id and site are set).",
)
@click.option(
    "--site-key",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The site secret file (created, 0600, if missing: keep it for the site).",
)
@click.option("--expires", default="2h", show_default=True, help="Validity: 30m, 2h, 7d.")
def bundle_create(
    site: str, device: str, out: Path, cloud_key: Path, template: Path, site_key: Path, expires: str
) -> None:
    """Operator side: make a signed one-time enrollment bundle for one device."""
    import tomllib

    from edge.ledger import load_private_key
    from edge.ledger.sitekey import create_site_key
    from provisioning.bundle import create_bundle, parse_duration
    from provisioning.files import write_atomic

    try:
        ttl = parse_duration(expires)
        key = load_private_key(cloud_key)
        if not site_key.exists():
            create_site_key(site_key)
            click.echo(f"site secret: {site_key} created (keep it: every kiosk of {site} needs it)")
        secret = site_key.read_bytes()
        config = tomllib.loads(template.read_text())
        blob = create_bundle(
            site=site,
            device=device,
            cloud_key=key,
            site_secret=secret,
            config_template=config,
            expires_in=ttl,
        )
        write_atomic(out, blob, 0o600)
    except (KioskError, LedgerError, OSError, tomllib.TOMLDecodeError) as exc:
        raise _fail(exc) from exc
    click.echo(f"bundle: {out} for {device} at {site}, valid {expires}, single use")


@bundle.command("apply")
@click.argument("bundle_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--config-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/etc/kiosk"),
    show_default=True,
    help="Where the kiosk's config lives.",
)
@click.option(
    "--cloud-public-key",
    "cloud_pub",
    default=None,
    help="The cloud's public key (hex) to trust; else the one pinned at enrollment.",
)
@click.option("--reenroll", is_flag=True, help="Replace an existing enrollment (recorded).")
def bundle_apply(
    bundle_file: Path, config_dir: Path, cloud_pub: str | None, reenroll: bool
) -> None:
    """Device side: verify a bundle (signature, expiry, single use) and enroll this kiosk."""
    from provisioning.bundle import apply_bundle_file

    try:
        given = bytes.fromhex(cloud_pub) if cloud_pub else None
    except ValueError:
        raise click.BadParameter("not hex", param_hint="--cloud-public-key") from None
    try:
        res = apply_bundle_file(bundle_file, config_dir, cloud_public_key=given, reenroll=reenroll)
    except (KioskError, LedgerError, OSError) as exc:
        raise _fail(exc) from exc
    click.echo(f"{'re-enrolled' if res.reenrolled else 'enrolled'}: {res.device} at {res.site}")
    click.echo(f"config: {res.config_file}")
    click.echo(f"device public key (register it with the cloud): {res.device_public_key}")


@provision.command("service")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The running kiosk's config.",
)
@click.option(
    "--minutes",
    default=15,
    show_default=True,
    type=click.IntRange(1, 120),
    help="How long service mode stays open; it closes by itself.",
)
def service(config_path: Path, minutes: int) -> None:
    """Open service mode on the running kiosk for a bounded time (audited in the ledger)."""
    import getpass

    from edge.config import ConfigError, load_config
    from edge.daemon.service_mode import request_service

    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    state = cfg.kiosk.state_dir
    if not state.is_dir():
        raise click.ClickException(
            f"the kiosk's state folder {state} does not exist: this is not an installed kiosk, or"
            " the config is another kiosk's; install it (kiosk provision install) or give its"
            " config"
        )
    path = request_service(state, minutes, f"console:{getpass.getuser()}")
    click.echo(f"service mode asked for {minutes} min ({path}); the kiosk opens it within 1 s")
