"""The fleet watch: every few seconds it marks a kiosk not heard from offline, raises and clears
alerts (kiosk offline too long, fork or quarantine, clock untrusted, reader down, disk low, a
forked branch's debt, reconciler refusals above a rate) as events in the cloud store, and hands
each new event to its listeners (the back office's webhooks subscribe with `on_event`)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cloud_sync.fleet import FleetEvent, FleetRecords
from cloud_sync.protocol import Health
from cloud_sync.reconciler import Reconciler, wall_ms
from cloud_sync.settings import AlertSettings
from cloud_sync.store import Device, RecordedForkDebt

log = logging.getLogger(__name__)

ALERT_TYPES = (
    "kiosk_offline",
    "fork",
    "quarantine",
    "clock_untrusted",
    "reader_down",
    "disk_low",
    "fork_debt",
    "refusals_high",
)
EventListener = Callable[[FleetEvent], None]


@dataclass(frozen=True, slots=True)
class KioskView:
    """One kiosk as the fleet view, the metrics and the alerts see it."""

    device: Device
    health: Health | None
    fork_debts: tuple[RecordedForkDebt, ...] = ()  # its forked branches' debts, as recorded


def kiosk_alerts(view: KioskView, now_ms: int, rules: AlertSettings) -> dict[str, str | None]:
    """Alert type -> its detail when the condition holds, None when it does not (a pure
    function of what the kiosk last said)."""
    d, h = view.device, view.health
    offline_for = (now_ms - d.last_seen_ms) / 1000 if d.last_seen_ms else None
    out: dict[str, str | None] = dict.fromkeys(ALERT_TYPES[:-1])
    if not d.online and offline_for is not None and offline_for >= rules.offline_alert_s:
        out["kiosk_offline"] = f"offline for {offline_for:.0f} s"
    if d.recovering:
        out["quarantine"] = f"spending held until its own op #{d.recovering} is recovered"
    if view.fork_debts:
        out["fork_debt"] = fork_debt_detail(view.fork_debts)
    if h is None:
        return out
    if h.forked:
        out["fork"] = "its chain forked from what the cloud stored: its branch set aside"
    if not h.clock_trusted:
        out["clock_untrusted"] = f"clock not vouched for ({h.clock_source or 'no source'})"
    if not h.reader_ok:
        out["reader_down"] = "a configured card reader is missing"
    if h.disk_free_bytes and h.disk_free_bytes < rules.disk_low_bytes:
        out["disk_low"] = f"{h.disk_free_bytes // 1_000_000} MB free"
    if h.refusals.get("DISK_FULL"):  # a tap could not be written: out of service
        out["disk_low"] = f"disk full: {h.refusals['DISK_FULL']} taps refused"
    return out


def fork_debt_detail(debts: Sequence[RecordedForkDebt]) -> str:
    """One line for the operator: what a forked kiosk's set-aside branch left owed."""
    owed = sum(r.debt.debt for r in debts)
    beyond = sum(r.debt.beyond for r in debts)
    forks = ", ".join(f"#{s}" for s in sorted({r.fork_seq for r in debts}))
    line = f"forked branch from {forks}: {owed} owed on {len(debts)} purses as debt"
    if beyond:
        line += f"; {beyond} spent beyond the rights it held (review the kiosk)"
    return line


class FleetWatch:
    """Runs beside the reconciler (`kiosk cloud serve`) on the same store."""

    def __init__(
        self,
        reconciler: Reconciler,
        fleet: FleetRecords,
        rules: AlertSettings,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self.reconciler = reconciler
        self.fleet = fleet
        self.rules = rules
        self.clock = clock
        # The newest look, for the metrics endpoint (read from its thread, replaced whole).
        self.kiosks: list[KioskView] = []
        self.pending = 0
        self.open_alerts: dict[str, int] = {}
        self.restoring = False
        self._listeners: list[EventListener] = []
        self._refused: deque[tuple[int, int]] = deque()  # (ms, reconciler.refused) samples

    def on_event(self, listener: EventListener) -> None:
        """Call `listener(event)` for every alert raised (the webhook hook)."""
        self._listeners.append(listener)

    def check(self) -> list[FleetEvent]:
        """One look at the fleet: offline timeouts, alerts raised and cleared; the new events."""
        now = self.clock()
        store = self.reconciler.store
        stale_before = now - int(self.rules.offline_after_s * 1000)
        for d in store.devices():
            if d.online and d.last_seen_ms < stale_before:
                log.warning("kiosk %s not heard from since %d: offline", d.device, d.last_seen_ms)
                store.seen(d.device, online=False)
        healths = self.fleet.healths()
        debts: dict[str, list[RecordedForkDebt]] = {}
        for r in store.fork_debts():
            debts.setdefault(r.device, []).append(r)
        self.kiosks = [
            KioskView(d, healths.get(d.device), tuple(debts.get(d.device, ())))
            for d in store.devices()
        ]
        raised: list[FleetEvent] = []
        for view in self.kiosks:
            for kind, detail in kiosk_alerts(view, now, self.rules).items():
                raised += self._set(kind, view.device.device, detail, now)
        raised += self._set("refusals_high", "", self._refusal_rate(now), now)
        self.pending = store.pending_count()
        self.open_alerts = dict(Counter(e.type for e in self.fleet.events(open_only=True)))
        self.restoring = self.fleet.restore_state() is not None
        for event in raised:
            for listener in self._listeners:
                try:
                    listener(event)
                except Exception:  # one broken listener must not stop the watch
                    log.exception("event listener failed")
        return raised

    def _set(self, kind: str, device: str, detail: str | None, now: int) -> list[FleetEvent]:
        if detail is None:
            self.fleet.clear_alert(kind, device, now)
            return []
        event = self.fleet.raise_alert(kind, device, detail, now)
        return [event] if event else []

    def _refusal_rate(self, now: int) -> str | None:
        """Messages the reconciler refused in the last minute, when above the set rate."""
        self._refused.append((now, self.reconciler.refused))
        while self._refused and self._refused[0][0] < now - 60_000:
            self._refused.popleft()
        count = self.reconciler.refused - self._refused[0][1]
        if count > self.rules.refusals_per_min:
            return f"{count} messages refused in the last minute"
        return None

    async def run(self) -> None:
        while True:
            try:
                self.check()
            except Exception:  # a store hiccup: look again next time
                log.exception("fleet watch failed")
            await asyncio.sleep(self.rules.check_interval_s)
