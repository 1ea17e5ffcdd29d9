"""Running the cloud and watching the fleet: `kiosk cloud serve | console | kiosks | alerts |
backup | restore`."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from pathlib import Path

import click

from cloud_sync.errors import SyncError
from cloud_sync.reconciler import ReconcilerService
from cloud_sync.store import DeviceFlags
from edge.ledger.errors import sqlite_fault
from kiosk.cloud.common import cloud, cloud_config, config_option, reconciler_for


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

    with reconciler_for(config) as (cfg, rec):
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
    serve_console(cloud_config(config), host=host, port=port, threads=threads, create=create)


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

    with reconciler_for(config) as (cfg, rec):
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
@click.option("--open", "open_only", is_flag=True, help="Only alerts still open.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
def alerts(config: Path, open_only: bool, limit: int) -> None:
    """Fleet alerts (kiosk offline, fork, fork debt, quarantine, clock, reader, disk, refusal
    rate), newest first, with when they were raised and cleared."""
    from cloud_sync.fleet import FleetRecords

    fleet = FleetRecords(cloud_config(config).reconciler.store)
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

    cfg = cloud_config(config)
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
    cfg = cloud_config(config)
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
        with reconciler_for(config) as (_cfg, rec):
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
