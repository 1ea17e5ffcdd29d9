"""What a running kiosk measures of itself: one structured log line per tap, refusals by
reason, tap latency p50/p95, reader, display, clock and disk. The agent sends these figures in
the kiosk's status; `[metrics] textfile` writes them for node_exporter's textfile collector."""

from __future__ import annotations

import logging
import shutil
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path

from edge.taps.pipeline import Feedback, Outcome

log = logging.getLogger(__name__)

LATENCY_WINDOW = 1000  # the newest taps the percentiles are taken over


class TapStats:
    """Counts and latencies of the decisions since start."""

    def __init__(self) -> None:
        self.taps = 0
        self.refusals: Counter[str] = Counter()
        self._latency_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)

    def record(self, outcome: Outcome) -> None:
        self.taps += 1
        d = outcome.decision
        if not d.approved and not d.repeated:
            self.refusals[d.reason.name if d.reason else "UNKNOWN"] += 1
        if outcome.latency_ns:
            self._latency_ms.append(outcome.latency_ns / 1e6)

    def percentiles(self) -> tuple[float, float]:
        """(p50, p95) of tap latency in ms over the newest taps; (0, 0) before two taps."""
        if len(self._latency_ms) < 2:
            only = self._latency_ms[0] if self._latency_ms else 0.0
            return only, only
        import statistics  # on demand: it brings fractions and decimal, no tap needs them

        cuts = statistics.quantiles(self._latency_ms, n=20, method="inclusive")
        return cuts[9], cuts[18]


class TapRecorder:
    """The pipeline's feedback, passed through, with each final outcome counted and logged as
    one line: tap id, kind, decision, reason, latency. The card reference, number and PIN are
    never in it."""

    def __init__(self, inner: Feedback, stats: TapStats, kind: Callable[[], str]) -> None:
        self.inner = inner
        self.stats = stats
        self.kind = kind

    async def open_gate(self) -> None:
        await self.inner.open_gate()

    async def show(self, outcome: Outcome) -> None:
        await self.inner.show(outcome)
        d = outcome.decision
        if d.needs_pin:  # the PIN screen: the tap's line comes with its decision
            return
        self.stats.record(outcome)
        decision = "repeat" if d.repeated else "approved" if d.approved else "refused"
        log.info(
            "tap id=%s kind=%s decision=%s reason=%s latency_ms=%.2f",
            outcome.tap_id,
            self.kind(),
            decision,
            d.reason.name if d.reason and not d.approved else "-",
            outcome.latency_ns / 1e6,
        )

    async def service(self, lines: list[str]) -> None:
        await self.inner.service(lines)

    async def idle(self) -> None:
        await self.inner.idle()


def disk_free_bytes(where: Path) -> int:
    try:
        return shutil.disk_usage(where).free
    except OSError:
        return 0


def write_textfile(
    path: Path, device: str, health: dict[str, object], status: dict[str, int]
) -> None:
    """The kiosk's figures in Prometheus text format, written atomically (temp file + rename,
    as node_exporter's textfile collector needs), under the names the cloud's endpoint uses."""
    from prometheus_client import CollectorRegistry, write_to_textfile
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector

    def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
        g = GaugeMetricFamily(name, doc, labels=["device"])
        g.add_metric([device], value)
        return g

    def num(key: str) -> float:
        value = health[key]
        return float(value) if isinstance(value, int | float) else 0.0

    class Figures(Collector):
        def collect(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
            taps = CounterMetricFamily("kiosk_taps", "decisions since start", labels=["device"])
            taps.add_metric([device], num("taps"))
            refusals = CounterMetricFamily(
                "kiosk_refusals", "refusals since start, by reason", labels=["device", "reason"]
            )
            reasons = health["refusals"]
            assert isinstance(reasons, dict)
            for reason, n in sorted(reasons.items()):
                refusals.add_metric([device, str(reason)], float(n))
            info = GaugeMetricFamily("kiosk_info", "software version", labels=["device", "version"])
            info.add_metric([device, str(health["version"])], 1)
            gauges = (
                ("kiosk_online", "1 while the cloud link is up", status.get("online", 0)),
                ("kiosk_queue_depth", "own ops not yet stored by the cloud", status["queue"]),
                ("kiosk_clock_trusted", "1 while the clock is vouched for", num("clock_trusted")),
                ("kiosk_reader_ok", "1 while every configured reader is present", num("reader_ok")),
                ("kiosk_display_ok", "1 while the display is present", num("display_ok")),
                ("kiosk_disk_free_bytes", "free bytes of the state dir", num("disk_free_bytes")),
                ("kiosk_tap_latency_p50_seconds", "median tap latency", num("tap_p50_ms") / 1000),
                ("kiosk_tap_latency_p95_seconds", "p95 tap latency", num("tap_p95_ms") / 1000),
            )
            return [
                *(gauge(name, doc, value) for name, doc, value in gauges),
                taps,
                refusals,
                info,
            ]

    reg = CollectorRegistry()
    reg.register(Figures())
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), reg)
