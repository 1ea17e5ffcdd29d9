"""`kiosk cloud ...`: the reconciler service, the deployment CA, and operator commands, each a
thin layer over library calls."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import aiomqtt
import click

from cloud_sync import admin, ca, trust
from cloud_sync.errors import ActionRefused, SyncError
from cloud_sync.operator_input import ACCOUNT, AMOUNT, CARD, CODE, NAME
from cloud_sync.reconciler import Reconciler, ReconcilerService
from cloud_sync.settings import CloudConfig, load_config
from cloud_sync.store import ROLES, DeviceFlags, open_store
from cloud_sync.streams import StreamBook
from cloud_sync.upkeep import lapse_points
from edge.ledger import LedgerError, load_private_key
from edge.ledger.errors import sqlite_fault
from edge.ledger.keys import public_key_from_bytes
from edge.ledger.records import CARD_PREFIX
from edge.ledger.sitekey import (
    CardKeys,
    SiteSecrets,
    card_keys_of,
    create_site_key,
    finish_rotation,
    load_card_keys,
    load_site_secrets,
    rotate_card_keys,
    save_card_keys,
)
from provisioning.secret_input import secret_option

log = logging.getLogger(__name__)

ConfigPath = click.Path(exists=True, dir_okay=False, path_type=Path)
config_option = click.option(
    "--config", "config", required=True, type=ConfigPath, help="Cloud TOML config."
)
DirPath = click.Path(file_okay=False, path_type=Path)
PURSE_HELP = "cash, points or visits:<product>."


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
    except sqlite3.Error as exc:  # the SQLite store: damaged, not a database, disk full
        raise click.ClickException(str(sqlite_fault(s.store, exc))) from exc
    streams = StreamBook(s.streams_file, s.replica, key, groups=s.scopes)
    try:
        yield (
            cfg,
            Reconciler(
                store,
                key,
                escrow=s.escrow,
                trust=s.trust,
                chain_chunk=s.chain_chunk,
                max_skew_ms=s.max_skew_s * 1000,
                membership=cfg.membership,
                streams=streams,
            ),
        )
    except (LedgerError, SyncError) as exc:
        _audit(cfg, str(exc))
        raise click.ClickException(str(exc)) from exc
    except click.ClickException as exc:
        _audit(cfg, exc.message)
        raise
    else:
        _audit(cfg, "")
    finally:
        streams.close()
        store.close()


def _audit(cfg: CloudConfig, error: str) -> None:
    """Record this command in the back office's audit trail (actor `cli:<unix user>`) when the
    console's database exists; nothing when the `console` extra is not installed."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or ctx.info_name == "serve":
        return
    from backoffice.clilog import audit_cli

    command = " ".join(["kiosk", *ctx.command_path.split()[1:]])  # whatever argv[0] was
    audit_cli(cfg, command, ctx.params, error)


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
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics (or [reconciler] metrics_port).",
)
def serve(config: Path, metrics_port: int | None) -> None:
    """Run the reconciler: verify and store kiosk ops, ack, grant and recall rights; watch the
    fleet (offline timeouts, alerts) and serve its metrics."""
    from cloud_sync.alerts import FleetWatch
    from cloud_sync.fleet import FleetRecords

    with _reconciler(config) as (cfg, rec):
        s = cfg.reconciler
        rec.fleet = fleet = FleetRecords(s.store)
        watch = FleetWatch(rec, fleet, s.alerts)
        port = metrics_port or s.metrics_port
        if port is not None:
            from cloud_sync.metrics import CloudMetrics
            from cloud_sync.metrics import serve as serve_metrics

            rec.observer = metrics = CloudMetrics(watch)
            try:
                serve_metrics(metrics, port, s.metrics_host)
            except OSError as exc:
                raise click.ClickException(
                    f"metrics port {s.metrics_host}:{port}: {exc.strerror}; choose another port"
                ) from exc
            click.echo(f"metrics on http://{s.metrics_host}:{port}/metrics")
        enroller = None
        if s.enroll is not None:
            from cloud_sync.enroll import Enroller

            enroller = Enroller(
                rec.store,
                rec.key,
                s.enroll,
                site_key_file=s.site_key_file,
            )
        svc = ReconcilerService(rec, s, enroller)
        click.echo(
            f"reconciler on {s.broker.host}:{s.broker.port}"
            + (" (answers enrollment claims)" if enroller else "")
        )
        if rec.restoring:
            click.echo("restored from a backup: recovering the cloud chain from the kiosks")

        async def run() -> None:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(svc.run(), name="reconciler")
                tg.create_task(watch.run(), name="fleet-watch")

        try:
            asyncio.run(run())
        except KeyboardInterrupt:
            click.echo("stopped")
        finally:
            fleet.close()


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
    path = _config(config).reconciler.key_file if config is not None else out
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
        return card_keys_of(_site_key(_config(config)), None)
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
    with _reconciler(config) as (_cfg, rec):
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
    with _reconciler(config) as (_cfg, rec):
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
    with _reconciler(config) as (cfg, rec):
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
    with _reconciler(config) as (_cfg, rec):
        _known(rec, device)
        counts = trust.release(rec.store, device, rec.clock())
    click.echo(f"{device} released: {counts['applied']} held ops applied")


@device_group.command(name="review")
@config_option
@click.option("--device", "device", default=None, help="Only this device.")
def device_review(config: Path, device: str | None) -> None:
    """Devices not trusted, and the ops held for review, with the reason."""
    with _reconciler(config) as (_cfg, rec):
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
    with _reconciler(config) as (_cfg, rec):
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
        "on the kiosk: kiosk provision enroll --claim --broker mqtts://HOST:ENROLL_PORT"
        " --ca ca.crt (it asks for the code)"
    )


@cloud.group()
def member() -> None:
    """Member accounts."""


@member.command(name="register")
@config_option
@click.option("--account", required=True, type=ACCOUNT, help="Account id.")
@click.option("--name", required=True, type=NAME, help="Member's display name.")
def member_register(config: Path, account: str, name: str) -> None:
    """Create or rename a member account."""
    with _reconciler(config) as (_cfg, rec):
        admin.register_member(rec.store, account, name)
    click.echo(f"member {account} registered")


@member.command(name="set")
@config_option
@click.option("--account", required=True, type=ACCOUNT, help="Account id.")
@click.option("--tier", default=None, help="Tier name (one of [[membership.tiers]]).")
@secret_option(
    "--pin", what="PIN", default=None, help="New PIN, 4-12 digits (stored as a salted hash only)"
)
@click.option("--pass", "pass_product", default=None, help="Product of a time pass to grant.")
@click.option(
    "--days",
    default=30,
    show_default=True,
    type=click.IntRange(1, 3660),
    help="Time pass length from now.",
)
@click.option(
    "--credit-limit",
    type=click.IntRange(min=0),
    default=None,
    help="Overdraft on cash in minor units (透支); 0 removes it.",
)
@click.option(
    "--category", default=None, type=CODE, help="Member category (its prices and discount)."
)
@click.option(
    "--home",
    default=None,
    type=CODE,
    help="Site or scope group whose kiosks know the member (docs/knowledge-model.md).",
)
def member_set(
    config: Path,
    account: str,
    tier: str | None,
    pin: str | None,
    pass_product: str | None,
    days: int,
    credit_limit: int | None,
    category: str | None,
    home: str | None,
) -> None:
    """Set a member's tier, PIN, a time pass, credit limit, category or home scope (versioned
    registers the kiosks of the member's scope apply)."""
    window = None
    if pass_product is not None:
        now = time.time_ns() // 1_000_000
        window = (now, now + days * 86_400_000)
    with _reconciler(config) as (cfg, rec):
        admin.set_member(
            rec.store,
            account,
            tier=tier,
            pin=pin,
            pass_product=pass_product,
            pass_window_ms=window,
            credit_limit=credit_limit,
            category=category,
            membership=cfg.membership,
            home=home,
        )
    click.echo(f"member {account} updated")


@cloud.group()
def points() -> None:
    """Member points: transfers between members, points that lapse."""


@points.command(name="transfer")
@config_option
@click.option("--from", "source", required=True, type=ACCOUNT, help="The member giving points.")
@click.option("--to", "target", required=True, type=ACCOUNT, help="The member receiving them.")
@click.option("--amount", required=True, type=AMOUNT, help="Points to give.")
@click.option("--ref", required=True, type=CODE, help="Your reference (a retry moves once).")
def points_transfer(config: Path, source: str, target: str, amount: int, ref: str) -> None:
    """Give points from one member to another (积分转赠), if [membership] point_transfers."""
    with _reconciler(config) as (cfg, rec):
        admin.transfer_points(
            rec.store,
            cfg.membership,
            source,
            target,
            amount,
            ref=ref,
            now_ms=time.time_ns() // 1_000_000,
        )
        left = rec.store.purse(source, "points").value
    click.echo(f"{amount} points from {source} to {target}; {source} has {left} left")


@points.command(name="lapse")
@config_option
def points_lapse(config: Path) -> None:
    """Write off points older than [membership] points_lifetime_days now (the reconciler does
    it once a day by itself)."""
    with _reconciler(config) as (cfg, rec):
        lapses = lapse_points(rec.store, cfg.membership, time.time_ns() // 1_000_000)
    for lapse in lapses:
        kept = lapse.lapsed - lapse.written_off
        held = f" ({kept} held by kiosks: next time)" if kept else ""
        click.echo(f"{lapse.member}: {lapse.written_off} points lapsed{held}")
    if not lapses:
        click.echo("no points lapsed")


@cloud.group()
def tiers() -> None:
    """Member tiers: kiosks upgrade at the tap; the review at the end of a window moves down."""


@tiers.command(name="review")
@config_option
@click.option("--account", default=None, help="One member; default: every member.")
def tiers_review(config: Path, account: str | None) -> None:
    """End the tier window: each tier becomes what the window's points reached (up or down,
    one down after [membership] inactive_days idle), and a new window starts."""
    with _reconciler(config) as (cfg, rec):
        changes = admin.review_tiers(
            rec.store, cfg.membership, time.time_ns() // 1_000_000, account
        )
    for c in changes:
        moved = f"{c.before or '-'} -> {c.after or '-'}" if c.before != c.after else c.after or "-"
        click.echo(f"{c.member}: {moved} ({c.progress} points in the window)")


@cloud.command(name="coupon")
@config_option
@click.option("--code", required=True, type=CODE, help="The code printed as QR `C:<code>`.")
def coupon(config: Path, code: str) -> None:
    """Issue a single-use coupon (free entry), scanned as the QR code `C:<code>`."""
    with _reconciler(config) as (_cfg, rec):
        admin.issue_single_use(rec.store, "coupon", code)
    click.echo(f"coupon C:{code} issued")


@cloud.command(name="voucher")
@config_option
@click.option("--code", required=True, type=CODE, help="The code printed as QR `V:<code>`.")
@click.option("--amount", required=True, type=AMOUNT, help="Value in minor units.")
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


def _date_ms(text: str, option: str) -> int:
    """A date (YYYY-MM-DD, end of that day UTC) or an ISO time with its offset -> ms."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a date (YYYY-MM-DD)", param_hint=option
        ) from None
    if len(text) == 10:
        when = when + dt.timedelta(days=1)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def _card_of(
    cfg: CloudConfig,
    number: str | None,
    nfc_uid: str | None,
    reader: str | None,
    uid_only: bool = False,
) -> str:
    """The card reference from a number, an NFC UID (hex) or a tap on the desk's PC/SC reader.
    An NFC card is an NTAG 424 known by its verified SUN UID; with `uid_only`, a card read by
    its bare UID, which is never the same card (docs/security.md, "Cards")."""
    given = [x for x in (number, nfc_uid, reader) if x]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --card, --nfc-uid, --reader")
    if reader:
        from cloud_sync.desk_reader import read_uid

        try:
            nfc_uid = read_uid(reader)
        except SyncError as exc:
            raise click.ClickException(str(exc)) from exc
    if nfc_uid:
        uid = nfc_uid.replace(":", "").replace(" ", "")
        try:
            raw = bytes.fromhex(uid)
        except ValueError:
            raise click.BadParameter("not hex bytes", param_hint="--nfc-uid") from None
        if len(raw) not in (4, 7, 10):
            raise click.BadParameter("an NFC UID is 4, 7 or 10 bytes", param_hint="--nfc-uid")
        return admin.card_token(_site_key(cfg), raw.hex().upper(), "uid" if uid_only else "nfc")
    if uid_only:
        raise click.UsageError("--uid-only goes with --nfc-uid or --reader")
    assert number is not None
    try:
        return admin.card_token(_site_key(cfg), number)
    except ActionRefused as exc:
        raise click.BadParameter(str(exc), param_hint="--card") from None


card_options = [
    secret_option("--card", "number", what="card number", default=None, help="Card number"),
    click.option("--nfc-uid", default=None, help="NFC card UID in hex, e.g. 04A1B2C3D4E5F6."),
    click.option("--reader", default=None, help="Read the NFC card on this PC/SC desk reader."),
    click.option(
        "--uid-only",
        is_flag=True,
        help="A UID-only NFC card (clonable; kiosks take it only with accept_uid_cards), never "
        "the same card as an NTAG 424 of that UID.",
    ),
]


def with_card(f: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(card_options):
        f = option(f)
    return f


@card.command(name="link")
@config_option
@click.option("--account", default=None, type=ACCOUNT, help="Account id (omit with --anonymous).")
@with_card
@click.option(
    "--anonymous", is_flag=True, help="An anonymous card (不记名): an account of its own."
)
@click.option("--valid-until", default=None, help="Last day the card is valid (YYYY-MM-DD).")
def card_link(
    config: Path,
    account: str | None,
    number: str | None,
    nfc_uid: str | None,
    reader: str | None,
    uid_only: bool,
    anonymous: bool,
    valid_until: str | None,
) -> None:
    """Issue a card to a registered account, or as an anonymous card (status active)."""
    until = _date_ms(valid_until, "--valid-until") if valid_until else None
    if anonymous == (account is not None):
        raise click.UsageError("give --account, or --anonymous")
    with _reconciler(config) as (cfg, rec):
        token = _card_of(cfg, number, nfc_uid, reader, uid_only)
        if account is None:
            account = admin.link_anonymous_card(rec.store, token, valid_until_ms=until)
        else:
            admin.link_card(rec.store, account, token, valid_until_ms=until)
    click.echo(f"card linked to {account}")


@card.command(name="discount")
@config_option
@with_card
@click.option("--pct", required=True, type=click.IntRange(0, 100), help="Discount rate, 0-100.")
def card_discount(
    config: Path,
    number: str | None,
    nfc_uid: str | None,
    reader: str | None,
    uid_only: bool,
    pct: int,
) -> None:
    """Set a card's own discount rate (applied after the category or tier discount)."""
    with _reconciler(config) as (cfg, rec):
        card = _card_of(cfg, number, nfc_uid, reader, uid_only)
        account = admin.set_card_discount(rec.store, card, pct)
    click.echo(f"card of {account}: {pct}% discount")


@card.command(name="expiry")
@config_option
@with_card
@click.option("--until", "until", required=True, help="Last day the card is valid (YYYY-MM-DD).")
def card_expiry(
    config: Path,
    number: str | None,
    nfc_uid: str | None,
    reader: str | None,
    uid_only: bool,
    until: str,
) -> None:
    """Set or renew a card's expiry date (an expired card renewed becomes active)."""
    until_ms = _date_ms(until, "--until")
    with _reconciler(config) as (cfg, rec):
        card = _card_of(cfg, number, nfc_uid, reader, uid_only)
        account = admin.set_card_expiry(rec.store, card, until_ms)
    click.echo(f"card of {account} valid until {until}")


def _status(
    config: Path,
    site: str,
    number: str | None,
    nfc_uid: str | None,
    reader: str | None,
    uid_only: bool,
    status: str,
) -> None:
    with _reconciler(config) as (cfg, rec):
        token = _card_of(cfg, number, nfc_uid, reader, uid_only)
        account, out = admin.set_card_status(rec, site, token, status)
        click.echo(f"card of {account} is now {status}")
        _publish(cfg, [out])


def _status_command(name: str, status: str, doc: str) -> None:
    @card.command(name=name, help=doc)
    @config_option
    @click.option("--site", required=True, help="Site whose kiosks must apply it.")
    @with_card
    def command(
        config: Path,
        site: str,
        number: str | None,
        nfc_uid: str | None,
        reader: str | None,
        uid_only: bool,
    ) -> None:
        _status(config, site, number, nfc_uid, reader, uid_only, status)


_status_command(
    "lost", "lost", "Report a card lost: status register + deny-list delta to every online kiosk."
)
_status_command("freeze", "frozen", "Freeze a card (deny-list delta); `card unfreeze` lifts it.")
_status_command(
    "unfreeze", "active", "Make a frozen card active again (never a lost or replaced one)."
)
_status_command("cancel", "cancelled", "Cancel a card for good (注销); it never comes back.")


@card.command(name="replace")
@config_option
@click.option("--site", required=True, help="Site.")
@secret_option("--old", "old", what="old card number", inner=CARD, required=True, help="Old card")
@secret_option("--new", "new", what="new card number", inner=CARD, required=True, help="New card")
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
@click.option("--account", required=True, type=ACCOUNT, help="Account id.")
@click.option("--amount", required=True, type=AMOUNT, help="Minor units (2500 for 25.00).")
@click.option(
    "--purse",
    default="cash",
    show_default=True,
    type=CODE,
    help="cash, points or visits:<product>.",
)
@click.option(
    "--ref", required=True, type=CODE, help="Receipt number (a retry does not credit twice)."
)
def topup(config: Path, account: str, amount: int, purse: str, ref: str) -> None:
    """Top up at the counter: credit a purse on the cloud's chain (a registered account only;
    a receipt used for another top-up is refused)."""
    with _reconciler(config) as (cfg, rec):
        admin.top_up(rec.store, account, purse, amount, ref, cfg.membership)
        value = rec.store.purse(account, purse).value
    click.echo(f"{purse} of {account}: {value}")


@cloud.command()
@config_option
@click.option("--ref", "tap", required=True, help="Tap id of the purchase (kiosk log, history).")
@click.option("--amount", type=AMOUNT, default=None, help="Cash to refund; default: all.")
@click.option("--reason", required=True, help="Why (kept in the signed ops).")
@click.option("--account", default=None, type=ACCOUNT, help="The member, to find the tap faster.")
def refund(config: Path, tap: str, amount: int | None, reason: str, account: str | None) -> None:
    """Refund a purchase, whole or part: cash back, its points taken back, and on a whole refund
    the points, visits or coupon it used given back. A retry refunds once."""
    with _reconciler(config) as (_cfg, rec):
        done = admin.refund(rec.store, tap, amount=amount, reason=reason, account=account)
    if done.repeated:
        click.echo(f"tap {tap}: refunded already (nothing more written)")
        return
    click.echo(f"refunded {done.cash} to {done.member}; {done.points_back} points taken back")
    if done.points_short:
        click.echo(
            f"{done.points_short} earned points are held by a kiosk or spent: not taken back"
        )


@cloud.command()
@config_option
@click.option("--account", required=True, type=ACCOUNT, help="Account id.")
@click.option(
    "--purse", default="cash", show_default=True, help="cash, points or visits:<product>."
)
@click.option("--amount", required=True, type=int, help="+N credits, -N debits (minor units).")
@click.option("--reason", required=True, help="Why (kept in the signed op).")
@click.option("--ref", required=True, help="Your reference for it (a retry writes once).")
def correct(config: Path, account: str, purse: str, amount: int, reason: str, ref: str) -> None:
    """Correct a purse by hand, with a reason: a signed op every replica applies."""
    with _reconciler(config) as (_cfg, rec):
        admin.correct(rec.store, account, purse, amount, reason=reason, ref=ref)
        value = rec.store.purse(account, purse).value
    click.echo(f"{purse} of {account}: {value}")


@cloud.command()
@config_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--create-admin",
    "create",
    default=None,
    help="Create this chain-admin operator with a random password, printed once.",
)
def console(config: Path, host: str, port: int, threads: int, create: str | None) -> None:
    """The operators' web console (back office): migrates its database, then serves."""
    try:
        from backoffice.serve import serve_console
    except ImportError as exc:
        raise click.ClickException(
            f"the console needs the `console` extra (pip install 'kiosk-edge[console]'): {exc}"
        ) from exc
    serve_console(_config(config), host=host, port=port, threads=threads, create=create)


@cloud.command()
@config_option
@click.option("--account", required=True, type=ACCOUNT, help="Account id.")
@click.option(
    "--history",
    "n",
    default=20,
    show_default=True,
    type=click.IntRange(0, 10_000),
    help="How many recent ops.",
)
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


def _when(ms: int) -> str:
    if not ms:
        return "never"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%F %T")


@cloud.command()
@config_option
def kiosks(config: Path) -> None:
    """Kiosks: online, lag (ops not yet stored), queue, last contact, version, clock, reader,
    display, disk free, tap latency p50/p95 and refusals by reason, as each last reported; and
    the debt a forked kiosk's set-aside branch left, per purse."""
    from cloud_sync.fleet import FleetRecords

    with _reconciler(config) as (cfg, rec):
        flags = rec.store.flags()
        fleet = FleetRecords(cfg.reconciler.store)
        try:
            healths = fleet.healths()
            restore = fleet.restore_state()
        finally:
            fleet.close()
        click.echo(
            f"{'site':<10}{'device':<14}{'status':<12}{'lag':>5}{'queue':>6}  {'last contact':<20}"
            f"{'version':<9}{'clock':<7}{'reader':<7}{'display':<8}{'disk MB':>8}"
            f"{'p50 ms':>8}{'p95 ms':>8}  refusals"
        )
        for d in rec.store.devices():
            status = "online" if d.online else "offline"
            if d.recovering:
                status = "recover"
            if d.trust != "ok":  # quarantined or revoked: its ops are held for review
                status = d.trust
            h = healths.get(d.device)
            f = flags.get(d.device, DeviceFlags())
            line = f"{d.site:<10}{d.device:<14}{status:<12}{d.lag:>5}{d.queue_depth:>6}  "
            line += f"{_when(d.last_seen_ms):<20}"
            if f.refused or f.skewed:
                line += f"[refused {f.refused}, skewed {f.skewed}] "
            if h is None:
                click.echo(line + "(no health report yet)")
                continue
            refusals = ", ".join(f"{k.lower()} {n}" for k, n in sorted(h.refusals.items()))
            click.echo(
                line
                + f"{h.version:<9}{'ok' if h.clock_trusted else 'NOT ok':<7}"
                + f"{'ok' if h.reader_ok else 'DOWN':<7}{'ok' if h.display_ok else 'DOWN':<8}"
                + f"{h.disk_free_bytes // 1_000_000:>8}{h.tap_p50_ms:>8.1f}{h.tap_p95_ms:>8.1f}"
                + f"  {refusals or '-'}"
            )
        for device, f in sorted(flags.items()):
            if f.last_refusal:
                click.echo(f"{device}: last refused: {f.last_refusal}")
            if f.last_skew:
                click.echo(f"{device}: last skew: {f.last_skew}")
        for r in rec.store.fork_debts():  # a forked kiosk's set-aside branch, accounted
            owed = r.debt
            click.echo(
                f"{r.device}: forked branch from #{r.fork_seq}: {owed.account}/{owed.purse} spent"
                f" {owed.spent} there, held {owed.held}, debt {owed.debt}"
                + (f", {owed.beyond} beyond the rights held (review)" if owed.beyond else "")
            )
        if restore is not None:
            click.echo(
                f"restored from a backup: recovering; waiting for {', '.join(restore.waiting)}"
                if restore.waiting
                else "restored from a backup: recovering the kiosks' streams"
            )


@cloud.command()
@config_option
@click.argument("name")
@click.option(
    "--from", "start", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First day."
)
@click.option(
    "--to", "end", required=True, type=click.DateTime(["%Y-%m-%d"]), help="Day after the last."
)
@click.option("--by", type=click.Choice(["day", "week", "month"]), default="day", show_default=True)
@click.option("--site", default=None, help="One venue (its kiosks, currency and time zone).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "xlsx", "pdf", "png"]),
    default="table",
    show_default=True,
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="File (else stdout).")
def report(
    config: Path,
    name: str,
    start: dt.datetime,
    end: dt.datetime,
    by: str,
    site: str | None,
    fmt: str,
    out: Path | None,
) -> None:
    """A report (sales, stored-value, points, passes, members, products, risk, shifts) per
    day, week or month in the venue's currency and time zone ([reports] in the config)."""
    from cloud_sync import report_export, reports

    with _reconciler(config) as (cfg, rec):
        loc = cfg.reports.locale(site)
        window = reports.Window(start.date(), end.date(), by, loc.timezone, loc.currency, site)
        if name == "shifts":
            from backoffice.clilog import console_database_exists, setup_django

            if not console_database_exists(cfg):
                raise click.ClickException(
                    "the shift report reads the console's audit trail: run kiosk cloud console once"
                )
            setup_django(cfg)
            from backoffice.reports.shifts import shifts

            result = shifts(window)
        else:
            result = reports.run(rec.store, name, window)
        data = report_export.render(result, fmt)
    if out is not None:
        out.write_bytes(data)
        click.echo(f"wrote {out} ({len(data)} bytes)")
    elif fmt in ("table", "csv"):
        click.echo(data.decode(), nl=False)
    else:
        raise click.ClickException(f"--format {fmt} is a binary file: add --out FILE")


def _console(config: Path) -> CloudConfig:
    """The console's Django set up on this config, its database migrated."""
    cfg = _config(config)
    try:
        from backoffice.serve import prepare
    except ImportError as exc:
        raise click.ClickException(
            f"this needs the `console` extra (pip install 'kiosk-edge[console]'): {exc}"
        ) from exc
    try:
        prepare(cfg)
    except (SyncError, LedgerError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    return cfg


@cloud.group()
def integration() -> None:
    """REST API integrations (a POS, a ticketing system): tokens with operator permissions."""


@integration.command(name="add")
@config_option
@click.argument("name", type=CODE)
@click.option(
    "--group", "groups", multiple=True, default=["cashier"], show_default=True,
    help="Operator group(s) whose permissions the integration gets.",
)  # fmt: skip
@click.option("--site", default="", help="Venue it may touch (default: every venue).")
@click.option("--note", default="", help="What it is.")
def integration_add(config: Path, name: str, groups: tuple[str, ...], site: str, note: str) -> None:
    """Make an integration (or a new token for it) and print the token once."""
    _console(config)
    from django.contrib.auth.models import Group

    from backoffice.api.tokens import issue

    known = set(Group.objects.values_list("name", flat=True))
    if unknown := [g for g in groups if g not in known]:
        raise click.UsageError(f"unknown group {unknown[0]!r} (known: {', '.join(sorted(known))})")
    token = issue(name, list(groups), site, note)
    click.echo(f"integration api:{name}, token (shown once): {token}")


@cloud.group()
def webhooks() -> None:
    """Webhook subscriptions and the delivery worker."""


@webhooks.command(name="add")
@config_option
@click.option("--name", required=True, type=NAME, help="Who receives them.")
@click.option("--url", required=True, help="http(s) URL that receives the POSTs.")
@click.option("--event", "events", multiple=True, required=True, help="Event name (repeat).")
@click.option("--site", default="", help="Only this venue's events.")
def webhooks_add(config: Path, name: str, url: str, events: tuple[str, ...], site: str) -> None:
    """Subscribe a URL to events; prints the signing secret once."""
    _console(config)
    from backoffice.webhooks.events import EVENTS
    from backoffice.webhooks.models import Subscription

    if unknown := [e for e in events if e not in EVENTS]:
        raise click.UsageError(f"unknown event {unknown[0]!r} (known: {', '.join(EVENTS)})")
    if not url.startswith(("http://", "https://")):
        raise click.UsageError(f"--url {url!r} is not an http(s) URL")
    sub = Subscription.objects.create(name=name, url=url, events=list(events), site=site)
    click.echo(f"subscription {sub.pk}, signing secret (shown once): {sub.secret}")


@webhooks.command(name="run")
@config_option
@click.option("--once", is_flag=True, help="One round (scan, deliver what is due), then exit.")
def webhooks_run(config: Path, once: bool) -> None:
    """The delivery worker on its own (the console runs one too unless [webhooks] worker=false)."""
    cfg = _console(config)
    from backoffice.cloud import cloud as cloud_handle
    from backoffice.webhooks.worker import Worker

    worker = Worker(cloud_handle(), cfg.webhooks)
    if once:
        events, sent = worker.step()
        click.echo(f"{events} event(s) queued, {sent} delivery attempt(s)")
        return
    click.echo("webhook worker running (Ctrl-C stops)")
    try:
        worker.run()
    except KeyboardInterrupt:
        click.echo("stopped")


@cloud.command()
@config_option
@click.option("--open", "open_only", is_flag=True, help="Only alerts still open.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
def alerts(config: Path, open_only: bool, limit: int) -> None:
    """Fleet alerts (kiosk offline, fork, fork debt, quarantine, clock, reader, disk, refusal
    rate), newest first, with when they were raised and cleared."""
    from cloud_sync.fleet import FleetRecords

    fleet = FleetRecords(_config(config).reconciler.store)
    try:
        events = fleet.events(open_only=open_only, limit=limit)
    finally:
        fleet.close()
    if not events:
        click.echo("no alerts")
    for e in events:
        state = "OPEN" if e.open else f"cleared {_when(e.cleared_ms or 0)}"
        click.echo(
            f"{_when(e.at_ms)}  {e.type:<16}{e.device or '(reconciler)':<14}{state:<28}{e.detail}"
        )


@cloud.command(name="backup")
@config_option
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Backup file."
)
def backup_cmd(config: Path, out: Path) -> None:
    """A consistent copy of the SQLite cloud store, taken while the reconciler runs."""
    from cloud_sync import backup

    cfg = _config(config)
    try:
        pages = backup.backup(cfg.reconciler.store, out, cfg.reconciler.streams_file)
    except SyncError as exc:
        raise click.ClickException(str(exc)) from exc
    except sqlite3.Error as exc:
        raise click.ClickException(str(sqlite_fault(str(out), exc))) from exc
    click.echo(f"backed up {pages} pages to {out}")


@cloud.command(name="restore")
@config_option
@click.option(
    "--from",
    "source",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Backup file from `kiosk cloud backup` (stop the reconciler first).",
)
@click.option(
    "--release",
    "device",
    default=None,
    help="Stop waiting for a kiosk that will not come back (the ops only it held are lost).",
)
def restore_cmd(config: Path, source: Path | None, device: str | None) -> None:
    """Restore the SQLite cloud store from a backup without forking the fleet: it writes
    nothing new until the kiosks have handed back the ops the backup lacks."""
    from cloud_sync import backup
    from cloud_sync.fleet import FleetRecords

    if (source is None) == (device is None):
        raise click.UsageError("give --from FILE to restore, or --release DEVICE")
    cfg = _config(config)
    url = cfg.reconciler.store
    try:
        if source is not None:
            state = backup.restore(url, source, cfg.reconciler.streams_file)
            click.echo(
                f"restored {url} from {source}; start `kiosk cloud serve`: it recovers from"
                f" {len(state.waiting)} kiosk(s) ({', '.join(state.waiting)}) before it writes"
            )
            return
        assert device is not None
        with _reconciler(config) as (_cfg, rec):
            fleet = FleetRecords(url)
            try:
                left = backup.release(fleet, device, rec.store.head(rec.replica)[0])
            finally:
                fleet.close()
        click.echo(
            "restore complete" if left is None else f"still waiting for {', '.join(left.waiting)}"
        )
    except SyncError as exc:
        raise click.ClickException(str(exc)) from exc
    except sqlite3.Error as exc:
        raise click.ClickException(str(sqlite_fault(url, exc))) from exc
