"""True status over a real mosquitto: a kiosk that stops cleanly is offline at once, one whose
connection dies is offline by its last will, one not heard from by the fleet watch's timeout;
its health reaches the fleet view, the metrics endpoint and the alerts."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import time
import urllib.request
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from cloud_sync.alerts import FleetWatch
from cloud_sync.fleet import FleetRecords
from cloud_sync.metrics import CloudMetrics, serve
from cloud_sync.settings import AlertSettings
from edge.daemon.health import write_textfile
from edge.ledger import Intent, Kind, save_private_key
from kiosk.cli import cli
from tests.mqtt_broker import eventually, free_port, world

mqtt = pytest.mark.skipif(
    shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
    reason="no mosquitto",
)
DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana-dashboard.json"

HEALTHY = {
    "version": "0.1.0",
    "clock_trusted": True,
    "clock_source": "ntp",
    "reader_ok": True,
    "display_ok": True,
    "disk_free_bytes": 5_000_000_000,
    "taps": 12,
    "refusals": {"INSUFFICIENT_BALANCE": 2, "CARD_LOST": 1},
    "tap_p50_ms": 3.5,
    "tap_p95_ms": 7.25,
}


def cloud_toml(tmp: Path, key) -> Path:  # type: ignore[no-untyped-def]
    save_private_key(tmp / "cloud.key", key)
    path = tmp / "cloud.toml"
    path.write_text(
        f'[reconciler]\nkey_file = "{tmp / "cloud.key"}"\nstore = "sqlite:///{tmp / "cloud.db"}"\n'
    )
    return path


@mqtt
async def test_clean_stop_says_offline_within_2_s_and_a_dead_link_by_its_will(tmp_path):
    async with world(tmp_path, ["k1", "k2"]) as w:
        rec = w.cloud()
        rec.fleet = FleetRecords(str(tmp_path / "cloud.db"))
        for d in ("k1", "k2"):
            w.kiosk(d).report_health(lambda: HEALTHY)
        w.start_reconciler()
        w.start_agent("k1")
        w.start_agent("k2")
        await w.online("k1", "k2")
        store = w.store
        assert store is not None
        await eventually(lambda: "k1" in rec.fleet.healths(), what="health stored")  # type: ignore[union-attr]
        assert all(store.device(d).online for d in ("k1", "k2"))  # type: ignore[union-attr]
        # systemctl stop: SIGTERM; the daemon cancels the agent's task.
        stopped = time.monotonic()
        await w.stop_task("k1")
        await eventually(lambda: not store.device("k1").online, 2.0, "k1 offline")  # type: ignore[union-attr]
        clean_stop_s = time.monotonic() - stopped
        # A kiosk that dies: its TCP connection goes without a goodbye; the broker's last will.
        client = w.agents["k2"]._client
        assert client is not None
        died = time.monotonic()
        client._client.socket().shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
        await eventually(lambda: not store.device("k2").online, 5.0, "k2 offline by will")  # type: ignore[union-attr]
        will_s = time.monotonic() - died
        rec.fleet.close()  # type: ignore[union-attr]
    print(f"offline after a clean stop {clean_stop_s:.3f} s, by last will {will_s:.3f} s")
    assert clean_stop_s < 2.0


async def test_fleet_watch_times_out_silent_kiosks_and_raises_and_clears_alerts(tmp_path):
    from cloud_sync.reconciler import Reconciler
    from cloud_sync.store import SqliteCloudStore
    from edge.ledger import generate_key

    key = generate_key()
    store = SqliteCloudStore(tmp_path / "cloud.db", replica="cloud", key=key)
    for d in ("k1", "k2"):
        store.enroll(d, "s1")
    now = [1_000_000]
    rec = Reconciler(store, key, clock=lambda: now[0])
    fleet = FleetRecords(str(tmp_path / "cloud.db"))
    rec.fleet = fleet
    rules = AlertSettings(offline_after_s=90, offline_alert_s=300, disk_low_bytes=10**9)
    watch = FleetWatch(rec, fleet, rules, clock=lambda: now[0])
    delivered = []
    watch.on_event(delivered.append)
    from cloud_sync.protocol import Health

    store.seen("k1", online=True, last_seen_ms=now[0])
    store.seen("k2", online=True, last_seen_ms=now[0])
    fleet.record_health("k1", msgspec.convert(HEALTHY, type=Health), now[0])
    sick = {**HEALTHY, "clock_trusted": False, "reader_ok": False, "disk_free_bytes": 5_000_000}
    fleet.record_health("k2", msgspec.convert({**sick, "forked": True}, type=Health), now[0])
    raised = watch.check()
    assert sorted(e.type for e in raised) == ["clock_untrusted", "disk_low", "fork", "reader_down"]
    assert all(e.device == "k2" for e in raised) and delivered == raised
    assert watch.check() == []  # open alerts are not raised twice
    now[0] += 91_000  # k1 silent past offline_after_s: marked offline
    store.seen("k2", online=True, last_seen_ms=now[0])
    watch.check()
    assert not store.device("k1").online and store.device("k2").online  # type: ignore[union-attr]
    now[0] += 300_000
    store.seen("k2", online=True, last_seen_ms=now[0])
    fleet.record_health("k2", msgspec.convert(HEALTHY, type=Health), now[0])
    raised = watch.check()
    assert [(e.type, e.device) for e in raised] == [("kiosk_offline", "k1")]
    open_ = {(e.type, e.device) for e in fleet.events(open_only=True)}
    assert open_ == {("kiosk_offline", "k1")}  # k2's alerts cleared once it reported healthy
    rec.refused += 50
    assert [e.type for e in watch.check()] == ["refusals_high"]
    runner = CliRunner()
    out = runner.invoke(cli, ["cloud", "alerts", "--config", str(cloud_toml(tmp_path, key))])
    assert out.exit_code == 0, out.output
    assert re.search(r"kiosk_offline\s+k1\s+OPEN", out.output)
    assert re.search(r"fork\s+k2\s+cleared", out.output)
    out = runner.invoke(cli, ["cloud", "kiosks", "--config", str(tmp_path / "cloud.toml")])
    assert out.exit_code == 0, out.output
    row = next(line for line in out.output.splitlines() if " k2 " in f" {line} ")
    assert "online" in row and "0.1.0" in row and "7.2" in row
    assert "card_lost 1, insufficient_balance 2" in row
    fleet.close()
    store.close()


def exposed_names(text: str) -> set[str]:
    return {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and line[0] != "#"
    }


def dashboard_names() -> set[str]:
    dash = json.loads(DASHBOARD.read_text())
    names = set()
    for panel in dash["panels"]:
        for target in panel["targets"]:
            expr = re.sub(r"\b(sum|count|rate|by|time|histogram_quantile)\b", " ", target["expr"])
            expr = re.sub(r"\{[^}]*\}|\[[^]]*\]|\([^()a-z_]*\)", " ", expr)
            names.update(m for m in re.findall(r"[a-z_][a-z0-9_]*", expr) if "_" in m)
    names.discard("le")
    return names


async def test_metrics_endpoint_and_kiosk_textfile_expose_every_dashboard_metric(tmp_path):
    from cloud_sync.protocol import Health
    from cloud_sync.reconciler import Reconciler
    from cloud_sync.store import SqliteCloudStore
    from edge.ledger import generate_key

    key = generate_key()
    store = SqliteCloudStore(tmp_path / "cloud.db", replica="cloud", key=key)
    store.enroll("k1", "s1")
    fleet = FleetRecords(str(tmp_path / "cloud.db"))
    rec = Reconciler(store, key, fleet=fleet)
    watch = FleetWatch(rec, fleet, AlertSettings())
    metrics = CloudMetrics(watch)
    rec.observer = metrics
    store.seen("k1", online=True, last_seen_ms=int(time.time() * 1000))
    fleet.record_health("k1", msgspec.convert(HEALTHY, type=Health), 1)
    metrics.ingested({"applied": 5, "duplicate": 1, "pending": 0, "refused": 0})
    metrics.rights(True, 0.004)
    store.append([Intent(Kind.INC, "m1", "cash", 100)])
    watch.check()
    port = free_port()
    server, thread = serve(metrics, port)
    try:
        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        )
    finally:
        server.shutdown()
    text = body.decode()
    assert 'kiosk_tap_latency_p95_seconds{device="k1",site="s1"} 0.00725' in text
    assert 'kiosk_refusals_total{device="k1",reason="CARD_LOST",site="s1"} 1.0' in text
    assert 'reconciler_ops_total{result="applied"} 5.0' in text
    assert "reconciler_rights_request_seconds_count 1.0" in text
    cloud_names = exposed_names(text)
    wanted = dashboard_names()
    assert len(wanted) >= 15, wanted
    assert wanted <= cloud_names, wanted - cloud_names
    # The kiosk's own textfile: the kiosk_* names the dashboard uses, written atomically.
    prom = tmp_path / "textfile" / "kiosk.prom"
    write_textfile(prom, "k1", HEALTHY, {"online": 1, "queue": 3})
    kiosk_names = exposed_names(prom.read_text())
    per_kiosk = {n for n in wanted if n.startswith("kiosk_")} - {
        "kiosk_lag_ops",  # known only to the cloud: what it has stored
        "kiosk_last_contact_seconds",
    }
    assert per_kiosk <= kiosk_names, per_kiosk - kiosk_names
    assert 'kiosk_queue_depth{device="k1"} 3.0' in prom.read_text()
    assert list(prom.parent.iterdir()) == [prom]  # no temp file left behind
    fleet.close()
    store.close()
