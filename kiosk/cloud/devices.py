"""`kiosk cloud enroll | device | claim`: which kiosks the cloud trusts, and as what."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from cloud_sync import ca, trust
from cloud_sync.errors import SyncError
from cloud_sync.reconciler import Reconciler
from cloud_sync.store import ROLES
from edge.ledger import LedgerError
from edge.ledger.keys import public_key_from_bytes
from kiosk.cloud.common import DirPath, cloud, config_option, reconciler_for


@cloud.command()
@config_option
@click.option("--device", required=True, help="Device id.")
@click.option("--site", required=True, help="Site id.")
@click.option("--public-key", required=True, help="The device's Ed25519 public key, hex.")
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default="gate",
    show_default=True,
    help="What the cloud lets it credit: a gate or pos never credits cash; topup within bounds.",
)
def enroll(config: Path, device: str, site: str, public_key: str, role: str) -> None:
    """Trust a kiosk's ledger key and record its site and role."""
    with reconciler_for(config) as (_cfg, rec):
        try:
            raw = bytes.fromhex(public_key)
            public_key_from_bytes(raw)
        except (ValueError, LedgerError) as exc:
            raise click.ClickException(f"not an Ed25519 public key: {exc}") from exc
        rec.store.trust(device, raw, "kiosk")
        rec.store.enroll(device, site, role)
    click.echo(f"enrolled {device} at {site} as {role}")


@cloud.group(name="device")
def device_group() -> None:
    """Trust per device: quarantine, revoke, release, review held ops, set the role."""


device_option = click.option("--device", "device", required=True, help="Device id.")
reason_option = click.option("--reason", default="operator", help="Why (kept with the device).")


def _known(rec: Reconciler, device: str) -> None:
    if rec.store.device(device) is None:
        raise click.ClickException(f"device {device!r} is not enrolled; see `kiosk cloud kiosks`")


@device_group.command(name="quarantine")
@config_option
@device_option
@reason_option
def device_quarantine(config: Path, device: str, reason: str) -> None:
    """Hold the device's later ops for review (never applied to balances until released)
    and refuse it further rights."""
    with reconciler_for(config) as (_cfg, rec):
        _known(rec, device)
        trust.quarantine(rec.store, device, reason)
    click.echo(f"{device} quarantined: its later ops are held (kiosk cloud device review)")


@device_group.command(name="revoke")
@config_option
@device_option
@reason_option
@click.option(
    "--ca-dir",
    type=DirPath,
    help="The deployment CA (default: [reconciler.enroll] ca_dir): its CRL gains the device.",
)
def device_revoke(config: Path, device: str, reason: str, ca_dir: Path | None) -> None:
    """Revoke a device (a stolen kiosk): its certificates go on the broker's CRL, its later
    ops are held for good. Reload the broker after (`systemctl reload mosquitto`)."""
    with reconciler_for(config) as (cfg, rec):
        _known(rec, device)
        trust.revoke(rec.store, device, reason)
        enroll = cfg.reconciler.enroll
        directory = ca_dir or (enroll.ca_dir if enroll else None)
        if directory is None:
            raise click.ClickException(
                f"{device} revoked at the cloud, but no CA folder to revoke its certificate in;"
                " give --ca-dir"
            )
        try:
            n = ca.revoke(directory, device)
        except SyncError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(
        f"{device} revoked: {n} certificate(s) added to {directory / ca.CRL};"
        " reload the broker (systemctl reload mosquitto) to refuse it"
    )


@device_group.command(name="release")
@config_option
@device_option
def device_release(config: Path, device: str) -> None:
    """After review: apply the device's held ops, and lift its quarantine (a revoked device
    stays revoked)."""
    with reconciler_for(config) as (_cfg, rec):
        _known(rec, device)
        counts = trust.release(rec.store, device, rec.clock())
    click.echo(f"{device} released: {counts['applied']} held ops applied")


@device_group.command(name="review")
@config_option
@click.option("--device", "device", default=None, help="Only this device.")
def device_review(config: Path, device: str | None) -> None:
    """Devices not trusted, and the ops held for review, with the reason."""
    with reconciler_for(config) as (_cfg, rec):
        for dev in rec.store.devices():
            if dev.trust != "ok" and device in (None, dev.device):
                click.echo(f"{dev.device}\t{dev.role}\t{dev.trust}\t{dev.trust_reason}")
        for h in rec.store.held(device):
            o = h.op
            click.echo(
                f"  {h.device}#{o.seq}\t{o.kind.name.lower()}\t{o.account}\t{o.purse}"
                f"\t{o.amount}\t{h.reason}"
            )


@device_group.command(name="role")
@config_option
@device_option
@click.option("--role", type=click.Choice(ROLES), required=True, help="gate, pos or topup.")
def device_role(config: Path, device: str, role: str) -> None:
    """Set what the cloud lets a device credit."""
    with reconciler_for(config) as (_cfg, rec):
        _known(rec, device)
        rec.store.set_role(device, role)
    click.echo(f"{device} is a {role}")


@cloud.group()
def claim() -> None:
    """One-time claim codes for online enrollment (`kiosk provision enroll --claim CODE`)."""


@claim.command(name="create")
@config_option
@click.option("--site", required=True, help="Site the kiosk will belong to.")
@click.option("--device", default="", help="Only this device id may use the code.")
@click.option("--expires", default="2h", show_default=True, help="Validity: 30m, 2h, 7d.")
def claim_create(config: Path, site: str, device: str, expires: str) -> None:
    """Create a one-time claim code for a site and print it (shown once, never stored)."""
    from cloud_sync.enroll import create_claim
    from cloud_sync.enroll_wire import fingerprint
    from edge.ledger import public_bytes
    from provisioning.bundle import parse_duration
    from provisioning.errors import ProvisionError

    with reconciler_for(config) as (cfg, rec):
        s = cfg.reconciler
        if s.enroll is None:
            raise click.ClickException("set [reconciler.enroll] (ca_dir, sites_dir) first")
        try:
            ttl = parse_duration(expires)
        except ProvisionError as exc:
            raise click.BadParameter(str(exc), param_hint="--expires") from None
        template = s.enroll.sites_dir / f"{site}.toml"
        if not template.exists():
            raise click.ClickException(f"no site config template {template}")
        code, made = create_claim(rec.store, site=site, device=device, ttl=ttl)
        cloud = public_bytes(rec.key).hex()
    until = dt.datetime.fromtimestamp(made.expires_ms / 1000, dt.UTC).strftime("%F %T UTC")
    click.echo(f"claim code: {code}")
    click.echo(f"site {site}" + (f", device {device}" if device else "") + f", valid until {until}")
    click.echo(f"cloud public key: {cloud} (fingerprint {fingerprint(bytes.fromhex(cloud))})")
    click.echo(
        "on the kiosk: kiosk provision enroll --claim --broker mqtts://HOST:ENROLL_PORT"
        " --ca ca.crt (it asks for the code)"
    )
