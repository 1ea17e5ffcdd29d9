"""The discrete-event core: a virtual clock, an event queue, the simulated network between kiosks
and the cloud (per-message delay, loss, duplication, outages), and what every run records."""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from edge.ledger.store import Clock
from kiosk.sim.population import KioskSpec
from kiosk.sim.scenario import Network, Outage
from kiosk.sim.world import EPOCH_MS

BUCKET_MS = 15 * 60_000  # resolution of the timelines (approval rate, float held)

Event = Callable[[], Awaitable[None] | None]


class EventLoop:
    """Virtual time in ms from the start of the run; events run in (time, order of scheduling)."""

    def __init__(self) -> None:
        self.now = 0
        self.mono_offset_ms = 0  # a member's steps inside one event (coins at a top-up kiosk)
        self._queue: list[tuple[int, int, Event]] = []
        self._n = 0

    def at(self, when: int, event: Event) -> None:
        self._n += 1
        heapq.heappush(self._queue, (max(when, self.now), self._n, event))

    def wall_ms(self) -> int:
        return EPOCH_MS + self.now

    def mono_ms(self) -> int:
        return self.now + self.mono_offset_ms

    def monotonic(self) -> float:
        return self.mono_ms() / 1000

    def clock(self) -> Clock:
        return Clock(wall_ms=self.wall_ms, mono_ms=self.mono_ms)

    def __len__(self) -> int:
        return len(self._queue)

    async def run(self, until: int | None = None) -> None:
        """Run events up to `until` (all of them when None)."""
        while self._queue and (until is None or self._queue[0][0] <= until):
            when, _, event = heapq.heappop(self._queue)
            self.now = when
            result = event()
            if result is not None:
                await result
        if until is not None:
            self.now = max(self.now, until)


class Links:
    """Which kiosk can reach the cloud when: the scenario's outages, and per-message delays."""

    def __init__(
        self, kiosks: tuple[KioskSpec, ...], outages: list[Outage], net: Network, seed: int
    ) -> None:
        self.net = net
        self.rng = random.Random(seed ^ 0x5EED)
        self.site = {k.id: k.site for k in kiosks}
        self.outages = outages
        self.forced_up = False  # final reconciliation: every link is back

    def affected(self, outage: Outage) -> list[str]:
        if outage.kind == "cloud":
            return list(self.site)
        if outage.kind == "site":
            return [k for k, s in self.site.items() if s == outage.target]
        return [outage.target] if outage.target in self.site else []

    def up(self, kiosk: str, t: int) -> bool:
        if self.forced_up:
            return True
        for o in self.outages:
            if o.start_ms <= t < o.end_ms and (
                o.kind == "cloud"
                or (o.kind == "site" and self.site[kiosk] == o.target)
                or (o.kind == "kiosk" and kiosk == o.target)
            ):
                return False
        return True

    def cloud_up(self, t: int) -> bool:
        if self.forced_up:
            return True
        return not any(o.kind == "cloud" and o.start_ms <= t < o.end_ms for o in self.outages)

    def delay(self) -> int:
        lo, hi = self.net.delay_ms
        return self.rng.randint(lo, hi)

    def copies(self) -> int:
        """How many times the next message arrives: 0 (lost), 1, or 2 (duplicated)."""
        if self.net.loss and self.rng.random() < self.net.loss:
            return 0
        if self.net.duplicate and self.rng.random() < self.net.duplicate:
            return 2
        return 1


@dataclass
class Record:
    """What one policy's run produced; `metrics.report` turns it into the report."""

    policy: str
    attempts: Counter[str] = field(default_factory=Counter)  # by action
    approved: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)  # final reason of refused attempts
    taps: int = 0  # physical taps, retries included
    retries: int = 0
    buckets: dict[int, list[int]] = field(default_factory=dict)  # bucket -> [attempts, approved]
    rpc_requests: int = 0
    rpc_granted: int = 0
    rpc_rtts: list[int] = field(default_factory=list)
    rpc_timeouts: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    messages: Counter[str] = field(default_factory=Counter)
    message_bytes: Counter[str] = field(default_factory=Counter)
    float_samples: dict[int, dict[str, int]] = field(default_factory=dict)
    convergence_s: dict[str, float | None] = field(default_factory=dict)
    offline_queued: int = 0  # common practice: decisions made offline, to post later
    offline_posted: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    outcomes: dict[int, str] = field(default_factory=dict)  # tap n -> "" approved, or reason
    offline_taps: set[int] = field(default_factory=set)  # tap n made while the kiosk was offline
    timeout_taps: set[int] = field(default_factory=set)  # tap n during which an RPC timed out
    # What members saw: (online?, shown cash balance - true global cash balance) per tap that
    # showed one; "online" excludes taps right after an op elsewhere still on its way up.
    balance_errors: list[tuple[bool, int]] = field(default_factory=list)
    kiosk_ledger_ops: list[int] = field(default_factory=list)  # ops held per kiosk at the end

    def attempt(self, n: int, at_ms: int, action: str, approved: bool, reason: str) -> None:
        self.outcomes[n] = "" if approved else reason or "REFUSED"
        self.attempts[action] += 1
        b = self.buckets.setdefault(at_ms // BUCKET_MS, [0, 0])
        b[0] += 1
        if approved:
            self.approved[action] += 1
            b[1] += 1
        else:
            self.refusals[reason] += 1
