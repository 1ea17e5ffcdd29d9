"""`kiosk cloud ...`: the reconciler service, the deployment CA, and operator commands, each a
thin layer over library calls."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiomqtt
import click

from cloud_sync import admin, ca
from cloud_sync.errors import SyncError
from cloud_sync.reconciler import Reconciler, ReconcilerService
from cloud_sync.settings import CloudConfig, load_config
from cloud_sync.store import open_store
from cloud_sync.streams import StreamBook
from edge.ledger import LedgerError, load_private_key
from edge.ledger.keys import public_key_from_bytes
from edge.ledger.records import CARD_PREFIX
from edge.ledger.sitekey import SiteSecrets, create_site_key, load_site_secrets

log = logging.getLogger(__name__)

ConfigPath = click.Path(exists=True, dir_okay=False, path_type=Path)
config_option = click.option(
    "--config", "config", required=True, type=ConfigPath, help="Cloud TOML config."
)
DirPath = click.Path(file_okay=False, path_type=Path)


def _config(path: Path) -> CloudConfig:
    try:
        return load_config(path)
    except SyncError as exc:
        raise click.ClickException(str(exc)) from exc


@contextmanager
def _reconciler(path: Path) -> Iterator[tuple[CloudConfig, Reconciler]]:
    cfg = _config(path)
    s = cfg.reconciler
    try:
        key = load_private_key(s.key_file)
        store = open_store(s.store, replica=s.replica, key=key)
    except (LedgerError, SyncError) as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        streams = StreamBook(s.streams_file, s.replica, key, groups=s.scopes)
        yield (
            cfg,
            Reconciler(store, key, escrow=s.escrow, chain_chunk=s.chain_chunk, streams=streams),
        )
    except (LedgerError, SyncError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.close()


def _site_key(cfg: CloudConfig) -> SiteSecrets:
    path = cfg.reconciler.site_key_file
    if path is None:
        raise click.ClickException("set reconciler.site_key_file (kiosk cloud site-key --file)")
    try:
        return load_site_secrets(path)
    except LedgerError as exc:
        raise click.ClickException(str(exc)) from exc


def _publish(cfg: CloudConfig, outs: list[object]) -> None:
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


@cloud.command()
@config_option
def serve(config: Path) -> None:
    """Run the reconciler: verify and store kiosk ops, ack, grant and recall rights."""
    with _reconciler(config) as (cfg, rec):
        s = cfg.reconciler
        enroller = None
        if s.enroll is not None:
            from cloud_sync.enroll import Enroller

            enroller = Enroller(
                rec.store,
                rec.key,
                s.enroll,
                broker_port=s.broker.port,
                site_key_file=s.site_key_file,
            )
        svc = ReconcilerService(rec, s, enroller)
        click.echo(
            f"reconciler on {s.broker.host}:{s.broker.port}"
            + (" (answers enrollment claims)" if enroller else "")
        )
        try:
            asyncio.run(svc.run())
        except KeyboardInterrupt:
            click.echo("stopped")


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
        out = ca.issue(directory, device, site=site)
    except (SyncError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{out.cert}\n{out.key}")


@cloud.command(name="broker-config")
@click.option("--dir", "directory", required=True, type=DirPath, help="CA directory.")
@click.option("--port", default=8883, show_default=True, help="Listener port.")
@click.option("--bind", default="127.0.0.1", show_default=True, help="Listener address.")
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
    directory: Path, port: int, bind: str, enroll_port: int | None, names: tuple[str, ...]
) -> None:
    """Write mosquitto.conf and the ACL (a device writes only its own topics)."""
    try:
        conf = ca.write_broker_config(
            directory, port=port, bind=bind, enroll_port=enroll_port, server_names=names
        )
    except SyncError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{conf}\n{directory / 'mosquitto.acl'}")
    if enroll_port is not None:
        click.echo(directory / "enroll.acl")


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


@cloud.command()
@config_option
@click.option("--device", required=True, help="Device id.")
@click.option("--site", required=True, help="Site id.")
@click.option("--public-key", required=True, help="The device's Ed25519 public key, hex.")
def enroll(config: Path, device: str, site: str, public_key: str) -> None:
    """Trust a kiosk's ledger key and record its site."""
    with _reconciler(config) as (_cfg, rec):
        try:
            raw = bytes.fromhex(public_key)
            public_key_from_bytes(raw)
        except (ValueError, LedgerError) as exc:
            raise click.ClickException(f"not an Ed25519 public key: {exc}") from exc
        rec.store.trust(device, raw, "kiosk")
        rec.store.enroll(device, site)
    click.echo(f"enrolled {device} at {site}")


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

    with _reconciler(config) as (cfg, rec):
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
        f"on the kiosk: kiosk provision enroll --claim {code} --broker mqtts://HOST:ENROLL_PORT"
        " --ca ca.crt"
    )


@cloud.group()
def member() -> None:
    """Member accounts."""


@member.command(name="register")
@config_option
@click.option("--account", required=True, help="Account id.")
@click.option("--name", required=True, help="Member's display name.")
def member_register(config: Path, account: str, name: str) -> None:
    """Create or rename a member account."""
    with _reconciler(config) as (_cfg, rec):
        admin.register_member(rec.store, account, name)
    click.echo(f"member {account} registered")


@member.command(name="set")
@config_option
@click.option("--account", required=True, help="Account id.")
@click.option("--tier", default=None, help="Tier name (as in the kiosks' [rules] tiers).")
@click.option("--pin", default=None, help="New PIN (stored as a salted PBKDF2 hash only).")
@click.option("--pass", "pass_product", default=None, help="Product of a time pass to grant.")
@click.option("--days", default=30, show_default=True, help="Time pass length from now.")
@click.option(
    "--home",
    default=None,
    help="Site or scope group whose kiosks know the member (docs/knowledge-model.md).",
)
def member_set(
    config: Path,
    account: str,
    tier: str | None,
    pin: str | None,
    pass_product: str | None,
    days: int,
    home: str | None,
) -> None:
    """Set a member's tier, PIN, a time pass or home scope (versioned registers the kiosks of
    the member's scope apply)."""
    import os
    import time

    from edge.ledger.records import hash_pin

    window = None
    if pass_product is not None:
        now = time.time_ns() // 1_000_000
        window = (now, now + days * 86_400_000)
    pin_hash = hash_pin(pin, os.urandom(16)) if pin else None
    with _reconciler(config) as (_cfg, rec):
        try:
            admin.set_member(
                rec.store,
                account,
                tier=tier,
                pin_hash=pin_hash,
                pass_product=pass_product,
                pass_window_ms=window,
                home=home,
            )
        except SyncError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"member {account} updated")


@cloud.command(name="coupon")
@config_option
@click.option("--code", required=True, help="The code printed as QR `C:<code>`.")
def coupon(config: Path, code: str) -> None:
    """Issue a single-use coupon (free entry), scanned as the QR code `C:<code>`."""
    with _reconciler(config) as (_cfg, rec):
        admin.issue_single_use(rec.store, "coupon", code)
    click.echo(f"coupon C:{code} issued")


@cloud.command(name="voucher")
@config_option
@click.option("--code", required=True, help="The code printed as QR `V:<code>`.")
@click.option("--amount", required=True, type=int, help="Value in minor units.")
def voucher(config: Path, code: str, amount: int) -> None:
    """Issue a single-use top-up voucher, redeemed at a top-up kiosk as the QR `V:<code>`."""
    with _reconciler(config) as (_cfg, rec):
        try:
            admin.issue_single_use(rec.store, "voucher", code, amount)
        except SyncError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"voucher V:{code} of {amount} issued")


@cloud.group()
def card() -> None:
    """Cards: link, report lost, freeze, replace (only an HMAC of the number is stored)."""


@card.command(name="link")
@config_option
@click.option("--account", required=True, help="Account id.")
@click.option("--card", "number", required=True, help="Card number (never stored).")
def card_link(config: Path, account: str, number: str) -> None:
    """Issue a card to an account (link its HMAC token, status active)."""
    with _reconciler(config) as (cfg, rec):
        admin.link_card(rec.store, account, admin.card_token(_site_key(cfg), number))
    click.echo(f"card linked to {account}")


def _status(config: Path, site: str, number: str, status: str) -> None:
    with _reconciler(config) as (cfg, rec):
        token = admin.card_token(_site_key(cfg), number)
        account, out = admin.set_card_status(rec, site, token, status)
        click.echo(f"card of {account} is now {status}")
        _publish(cfg, [out])


@card.command(name="lost")
@config_option
@click.option("--site", required=True, help="Site whose kiosks must refuse the card.")
@click.option("--card", "number", required=True, help="Card number.")
def card_lost(config: Path, site: str, number: str) -> None:
    """Report a card lost: status register + deny-list delta pushed to every online kiosk."""
    _status(config, site, number, "lost")


@card.command(name="freeze")
@config_option
@click.option("--site", required=True, help="Site.")
@click.option("--card", "number", required=True, help="Card number.")
def card_freeze(config: Path, site: str, number: str) -> None:
    """Freeze a card (deny-list delta); `card unfreeze` lifts it."""
    _status(config, site, number, "frozen")


@card.command(name="unfreeze")
@config_option
@click.option("--site", required=True, help="Site.")
@click.option("--card", "number", required=True, help="Card number.")
def card_unfreeze(config: Path, site: str, number: str) -> None:
    """Make a frozen card active again (deny-list delta lifting it)."""
    _status(config, site, number, "active")


@card.command(name="replace")
@config_option
@click.option("--site", required=True, help="Site.")
@click.option("--old", "old", required=True, help="Old card number.")
@click.option("--new", "new", required=True, help="New card number.")
def card_replace(config: Path, site: str, old: str, new: str) -> None:
    """Replace a card: the old one is denied, the new one linked to the same account."""
    with _reconciler(config) as (cfg, rec):
        key = _site_key(cfg)
        account, outs = admin.replace_card(
            rec, site, admin.card_token(key, old), admin.card_token(key, new)
        )
        click.echo(f"card of {account} replaced")
        _publish(cfg, list(outs))


@cloud.command()
@config_option
@click.option("--account", required=True, help="Account id.")
@click.option("--amount", required=True, type=click.IntRange(min=1), help="Minor units.")
@click.option("--purse", default="cash", show_default=True, help="Purse.")
@click.option("--ref", required=True, help="Receipt number (a retry does not credit twice).")
def topup(config: Path, account: str, amount: int, purse: str, ref: str) -> None:
    """Top up at the counter: credit a purse on the cloud's chain."""
    with _reconciler(config) as (_cfg, rec):
        admin.top_up(rec.store, account, purse, amount, ref)
        value = rec.store.purse(account, purse).value
    click.echo(f"{purse} of {account}: {value}")


@cloud.command()
@config_option
@click.option("--account", required=True, help="Account id.")
@click.option("--history", "n", default=20, show_default=True, help="How many recent ops.")
def show(config: Path, account: str, n: int) -> None:
    """A member's balances, rights per replica, card states and recent history."""
    with _reconciler(config) as (_cfg, rec):
        store = rec.store
        name = store.register(account, "name")
        click.echo(f"account {account}" + (f" ({name.value})" if name else ""))
        for st in store.purses(account):
            rights = ", ".join(f"{s.replica}={st.rights(s.replica)}" for s in st.shares)
            click.echo(f"  {st.purse:<16}{st.value:>10}  debt {st.debt}  rights {rights}")
        for op in store.history(account, n):
            when = dt.datetime.fromtimestamp(op.wall_ms / 1000, dt.UTC).strftime("%F %T")
            what = "card" if op.account.startswith(CARD_PREFIX) else op.purse
            click.echo(
                f"  {when} {op.replica}#{op.seq} {op.kind.name.lower()} {what} {op.amount}"
                + (f" -> {op.counterpart}" if op.counterpart else "")
            )


@cloud.command()
@config_option
def kiosks(config: Path) -> None:
    """Kiosks with online status, ops not yet stored (lag) and last contact."""
    with _reconciler(config) as (_cfg, rec):
        click.echo(f"{'site':<10}{'device':<16}{'status':<9}{'stored':>8}{'lag':>6}  last seen")
        for d in rec.store.devices():
            seen = (
                dt.datetime.fromtimestamp(d.last_seen_ms / 1000, dt.UTC).strftime("%F %T")
                if d.last_seen_ms
                else "never"
            )
            status = "online" if d.online else "offline"
            if d.recovering:
                status = "recover"
            click.echo(f"{d.site:<10}{d.device:<16}{status:<9}{d.stored:>8}{d.lag:>6}  {seen}")
