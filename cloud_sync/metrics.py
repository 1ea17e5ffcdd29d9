"""The cloud's Prometheus endpoint (prometheus-client): every kiosk's figures as the fleet watch
last saw them, and the reconciler's own (ops ingested, pending, refusals, rights requests and
their latency, open alerts). Names are those `docs/grafana-dashboard.json` graphs; a kiosk's
textfile (edge.daemon.health) uses the same kiosk_* names."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cloud_sync.alerts import ALERT_TYPES, FleetWatch

RIGHTS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class CloudMetrics(Collector):
    """Register with `serve`; the reconciler reports to it as its `observer`."""

    def __init__(self, watch: FleetWatch) -> None:
        self.watch = watch
        self.registry = CollectorRegistry()
        self.ops = Counter(
            "reconciler_ops",
            "kiosk ops received, by what the store did with them",
            ["result"],
            registry=self.registry,
        )
        self.rights_requests = Counter(
            "reconciler_rights_requests",
            "online rights requests answered, by result",
            ["result"],
            registry=self.registry,
        )
        self.rights_latency = Histogram(
            "reconciler_rights_request_seconds",
            "time to answer a rights request",
            buckets=RIGHTS_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(self)

    # -- the reconciler's observer ---------------------------------------------------------

    def ingested(self, counts: dict[str, int]) -> None:
        for result, n in counts.items():
            if n:
                self.ops.labels(result=result).inc(n)

    def rights(self, granted: bool, seconds: float) -> None:
        self.rights_requests.labels(result="granted" if granted else "refused").inc()
        self.rights_latency.observe(seconds)

    # -- a scrape: figures the watch gathered on the event loop (never the store from here) --

    def collect(self) -> Iterator[Metric]:
        kiosks = self.watch.kiosks  # replaced whole by each check: a consistent look
        labels = ["device", "site"]

        def family(name: str, doc: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=labels)

        online = family("kiosk_online", "1 while the kiosk's cloud link is up")
        lag = family("kiosk_lag_ops", "ops the kiosk has written that the cloud has not stored")
        queue = family("kiosk_queue_depth", "own ops not yet stored, as the kiosk reports")
        contact = family("kiosk_last_contact_seconds", "unix time of the last status or hello")
        clock = family("kiosk_clock_trusted", "1 while the clock is vouched for")
        reader = family("kiosk_reader_ok", "1 while every configured reader is present")
        display = family("kiosk_display_ok", "1 while the display is present")
        disk = family("kiosk_disk_free_bytes", "free bytes of the kiosk's state dir")
        p50 = family("kiosk_tap_latency_p50_seconds", "median tap latency")
        p95 = family("kiosk_tap_latency_p95_seconds", "95th percentile tap latency")
        taps = CounterMetricFamily("kiosk_taps", "decisions since the kiosk started", labels=labels)
        refusals = CounterMetricFamily(
            "kiosk_refusals",
            "refusals since the kiosk started, by reason",
            labels=[*labels, "reason"],
        )
        info = GaugeMetricFamily("kiosk_info", "software version", labels=[*labels, "version"])
        for view in kiosks:
            d, h = view.device, view.health
            key = [d.device, d.site]
            online.add_metric(key, float(d.online))
            lag.add_metric(key, d.lag)
            queue.add_metric(key, d.queue_depth)
            contact.add_metric(key, d.last_seen_ms / 1000)
            if h is None:
                continue
            clock.add_metric(key, float(h.clock_trusted))
            reader.add_metric(key, float(h.reader_ok))
            display.add_metric(key, float(h.display_ok))
            disk.add_metric(key, h.disk_free_bytes)
            p50.add_metric(key, h.tap_p50_ms / 1000)
            p95.add_metric(key, h.tap_p95_ms / 1000)
            taps.add_metric(key, h.taps)
            for reason, n in sorted(h.refusals.items()):
                refusals.add_metric([*key, reason], n)
            info.add_metric([*key, h.version], 1)
        yield from (online, lag, queue, contact, clock, reader, display, disk, p50, p95)
        yield from (taps, refusals, info)
        rec = self.watch.reconciler
        refused = CounterMetricFamily("reconciler_refused_messages", "messages refused")
        refused.add_metric([], rec.refused)
        yield refused
        pending = GaugeMetricFamily("reconciler_pending_ops", "ops held for a missing predecessor")
        pending.add_metric([], self.watch.pending)
        yield pending
        alerts = GaugeMetricFamily("fleet_alerts_open", "alerts open", labels=["type"])
        for kind in ALERT_TYPES:  # every type, 0 when none is open: a graph with no gaps
            alerts.add_metric([kind], self.watch.open_alerts.get(kind, 0))
        yield alerts
        restoring = GaugeMetricFamily("reconciler_restoring", "1 while recovering from a restore")
        restoring.add_metric([], float(self.watch.restoring))
        yield restoring


def serve(
    metrics: CloudMetrics, port: int, host: str = "127.0.0.1"
) -> tuple[WSGIServer, threading.Thread]:
    """The endpoint at http://host:port/metrics, in a thread of its own."""
    return start_http_server(port, addr=host, registry=metrics.registry)
