"""The four policies compared on the same members and timeline.

- `online`: one always-online central server; every tap asks it, no answer (outage) = refused.
- `common`: common offline practice; online as `online`, offline the kiosk trusts the last known
  balance up to a per-tap cap and posts its decisions when back (overspend possible).
- `strict`: this product in strict mode: real kiosk ledgers (bounded counters), the real kiosk
  pipeline and the agent's message handling, the real reconciler and escrow policy.
- `risk`: the same with the offline risk allowance (per tap and per kiosk).

What is real: `edge.taps.pipeline.TapPipeline` (and so `edge.taps.rules.decide`,
`edge.taps.members`), `Ledger` files,
`SyncAgent` (rights requests, acks, grants, recalls, snapshots via `handle`),
`Reconciler.handle`/`sweep` on a `SqliteCloudStore`, and every message sealed and opened by
`cloud_sync.protocol`. What is simulated: time, the network, the members, and the agent's
connection loop (hello at connect, upload of unacked ops), which `SyncAgent.run` does over MQTT.
"""

from __future__ import annotations

import abc
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from cloud_sync.agent import SyncAgent
from cloud_sync.protocol import (
    Answer,
    Hello,
    OpsUpload,
    RightsRequest,
    Topics,
    encode_ops,
    parse_device_topic,
    seal,
)
from cloud_sync.reconciler import Outgoing, Reconciler
from cloud_sync.settings import AgentSettings, TrustPolicy
from cloud_sync.store import SqliteCloudStore
from edge.config import KioskConfig
from edge.ledger import Intent, Kind, Ledger, Op, RiskLimit, RiskPolicy, SpendRefused
from edge.ledger import records as rec
from edge.taps.members import intents_for, read_card, read_member
from edge.taps.pipeline import Outcome, TapPipeline
from edge.taps.rules import Balance, Decision, Move, TapState, decide, topup_bonus
from edge.taps.rules import Tap as RulesTap
from edge.taps.tokens import card_ref
from kiosk.sim.engine import BUCKET_MS, Event, EventLoop, Links, Record
from kiosk.sim.population import Action, KioskSpec, MemberSpec, Population, Role, Tap
from kiosk.sim.scenario import Scenario
from kiosk.sim.world import CLOUD, SITE_KEY, Seed, key_for, token

log = logging.getLogger(__name__)

POLICIES = ("online", "common", "strict", "risk")
RETRY_MS = 8_000  # a member told "held elsewhere" taps again
UPLOAD_DELAY_MS = 200  # the agent's poll interval: ops written meanwhile go in one batch
SWEEP_MS = 5 * 60_000
CENTRAL_TIMEOUT_MS = 2_000  # an always-online terminal waits this long for its server
NO_SERVER = "NO_SERVER"  # online policy: the server could not be reached
OFFLINE_CAP = "OFFLINE_CAP"  # common practice: above the offline per-tap cap


def _own_value(ledger: Ledger, replica: str, account: str) -> int:
    """A replica's own net cash on an account (its credits less its debits)."""
    shares = ledger.purse(account, "cash").shares
    return sum(s.inc - s.dec for s in shares if s.replica == replica)


class NoFeedback:
    """The kiosk's gate, screen and buzzer: nothing to drive in a simulation."""

    async def open_gate(self) -> None:
        return None

    async def show(self, outcome: Outcome) -> None:
        return None

    async def service(self, lines: list[str]) -> None:
        return None

    async def idle(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Result:
    """What `metrics` needs from a finished run, besides its Record."""

    record: Record
    store: Ledger  # every chain the cloud (or the central server) holds
    kiosks: dict[str, Ledger]  # empty for the central policies
    lost: int
    risk_total: int  # per kiosk cash allowance (0: strict)
    streams: dict[str, list[Op]] = field(default_factory=dict)  # kiosk -> its stream, cloud-side


class Run(abc.ABC):
    """One policy over the population's timeline."""

    policy: str

    def __init__(self, scenario: Scenario, pop: Population, seed: Seed, folder: Path) -> None:
        self.scenario = scenario
        self.pop = pop
        self.seed = seed
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.loop = EventLoop()
        self.links = Links(pop.kiosks, scenario.outage, scenario.network, scenario.fleet.seed)
        self.record = Record(self.policy)
        self.specs = {k.id: k for k in pop.kiosks}
        self.configs = {k.id: k.config() for k in pop.kiosks}
        self.horizon = int(scenario.fleet.hours * 3_600_000)
        self.last_outcome = Outcome(Decision(approved=False), "")
        self.current_tap = -1  # the tap being decided (RPC timeouts are counted against it)
        self.record.extra["hours"] = scenario.fleet.hours
        self.record.extra["lossy"] = scenario.network.loss > 0

    # -- members at kiosks -----------------------------------------------------------------

    async def drive(self, kiosk: TapPipeline, member: MemberSpec, tap: Tap) -> tuple[bool, str]:
        """A member's attempt through the real pipeline: (approved, reason name)."""
        tok = token(member.uid)
        if tap.action is Action.COUPON:
            out = await kiosk.code(f"C:{member.coupon}")
        elif tap.action is Action.BUY:
            await kiosk.keyed(str(tap.amount))
            out = await kiosk.card(tok)
        elif tap.action is Action.TOPUP:
            out = await kiosk.card(tok)
            if out.decision.approved and out.topup_open:
                for i, coin in enumerate(tap.coins):
                    self.loop.mono_offset_ms = 4_000 * (i + 1)
                    await kiosk.coin(coin)
                self.loop.mono_offset_ms = 4_000 * (len(tap.coins) + 2)
                out = await kiosk.card(tok)  # closes the session (bonus): the balance shown
                self.loop.mono_offset_ms = 0
        else:
            out = await kiosk.card(tok)
        self.last_outcome = out
        d = out.decision
        return d.approved, (d.reason.name if d.reason else "")

    def schedule_taps(self) -> None:
        for tap in self.pop.taps:
            self.loop.at(tap.at_ms, self._tap_event(tap, retry=False))

    def _tap_event(self, tap: Tap, retry: bool) -> Event:
        def event() -> Awaitable[None]:
            return self.on_tap(tap, retry)

        return event

    async def on_tap(self, tap: Tap, retry: bool) -> None:
        self.current_tap = tap.n
        member = self.pop.members[tap.member]
        self.record.taps += 1
        approved, reason = await self.attempt(tap, member)
        if not approved and reason == "HELD_ELSEWHERE" and not retry:
            self.record.retries += 1
            self.loop.at(self.loop.now + RETRY_MS, self._tap_event(tap, retry=True))
            return
        self.record.attempt(tap.n, tap.at_ms, tap.action.value, approved, reason)
        self.after_tap(tap.kiosk)

    def after_tap(self, kiosk: str) -> None:
        return None

    @abc.abstractmethod
    async def attempt(self, tap: Tap, member: MemberSpec) -> tuple[bool, str]: ...

    @abc.abstractmethod
    async def execute(self) -> Result: ...

    # -- outages ---------------------------------------------------------------------------

    def schedule_outages(self, down: Callable[[str], None], up: Callable[[str, int], None]) -> None:
        for i, o in enumerate(self.scenario.outage):
            label = f"{i}: {o.label}"
            kiosks = self.links.affected(o)
            self.record.convergence_s[label] = None

            def start(kiosks: list[str] = kiosks) -> None:
                for k in kiosks:
                    down(k)

            def end(kiosks: list[str] = kiosks, label: str = label) -> None:
                for k in kiosks:
                    if self.links.up(k, self.loop.now):
                        up(k, self.loop.now)
                self.converging(label, kiosks)

            self.loop.at(o.start_ms, start)
            self.loop.at(o.end_ms, end)

    @abc.abstractmethod
    def converging(self, label: str, kiosks: list[str]) -> None: ...

    def schedule_samples(self, sample: Callable[[], None]) -> None:
        for t in range(0, self.horizon + 1, BUCKET_MS):
            self.loop.at(t, sample)


# -- the product: strict and risk --------------------------------------------------------------


class SimTransport:
    """A kiosk agent's uplink for rights requests: the request reaches the reconciler after one
    delay, its answer comes back after another, within the tap (answers later than the agent's
    budget arrive as stray messages, as over MQTT)."""

    def __init__(self, run: EscrowRun, device: str) -> None:
        self.run = run
        self.device = device

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        run = self.run
        rec_ = run.record
        if not run.links.up(self.device, run.loop.now):
            raise TimeoutError("offline (simulated)")
        rec_.bytes_up += len(payload)
        rec_.messages["rights"] += 1
        rec_.rpc_requests += 1
        if run.links.copies() == 0:
            rec_.rpc_timeouts += 1
            rec_.timeout_taps.add(run.current_tap)
            raise TimeoutError("request lost (simulated)")
        d1, d2 = run.links.delay(), run.links.delay()
        now = run.loop.now
        run.loop.now = now + d1
        try:
            outs = run.reconciler.handle(topic, payload)
        finally:
            run.loop.now = now
        answer_topic = run.topics[self.device].rpc_res
        if not any(o.topic == answer_topic for o in outs):
            # The cloud is recalling the rights from the kiosks holding them: those that are
            # online answer at once (one more round trip), and the answer follows.
            d1, outs = self._recalled(now, d1, outs)
        rtt = d1 + d2
        budget = run.agents[self.device].settings.rights_budget_ms
        in_time = rtt <= budget
        mine = run.topics[self.device].base + "/"
        for o in outs:
            # The answer, and what the cloud sent this kiosk with it (its snapshot, its stream),
            # arrive together within the round trip.
            if o.topic.startswith(mine) and in_time:
                rec_.bytes_down += len(o.payload)
                rec_.messages["answer" if o.topic == answer_topic else "grants"] += 1
                run.agents[self.device].handle(o.topic, o.payload)
            else:
                run.send_down(o, now + d1)
        rec_.rpc_rtts.append(rtt)
        if not in_time:
            rec_.rpc_timeouts += 1
            rec_.timeout_taps.add(run.current_tap)
            raise TimeoutError("answer too late (simulated)")

    def _recalled(self, now: int, d1: int, outs: list[Outgoing]) -> tuple[int, list[Outgoing]]:
        """Deliver the recalls among `outs` to online kiosks, upload their transfers back, and
        return the time that took (from the request) and what the cloud sent meanwhile."""
        run = self.run
        later: list[Outgoing] = []
        spent = d1
        for o in outs:
            parsed = parse_device_topic(o.topic)
            holder = parsed[1] if parsed else ""
            if not o.topic.endswith("/grants") or holder == self.device or holder not in run.agents:
                later.append(o)
                continue
            if not run.links.up(holder, now + spent):
                later.append(o)
                continue
            there, back = run.links.delay(), run.links.delay()
            run.record.bytes_down += len(o.payload)
            run.agents[holder].handle(o.topic, o.payload)
            led, t = run.ledgers[holder], run.topics[holder]
            if led.head()[0] <= run.sent[holder]:
                continue  # a snapshot, or nothing to give back
            ops = list(led.ops(holder, run.sent[holder]))
            payload = run.agents[holder].seal(t.ops, OpsUpload(batch=encode_ops(ops)))
            run.record.bytes_up += len(payload)
            run.sent[holder] = ops[-1].seq
            spent += there + back
            run.loop.now = now + spent
            try:
                later.extend(run.reconciler.handle(t.ops, payload))
            finally:
                run.loop.now = now
        return spent, later


class EscrowRun(Run):
    """Kiosk ledgers, agents and pipelines; the reconciler on the cloud store."""

    def __init__(
        self, scenario: Scenario, pop: Population, seed: Seed, folder: Path, *, risk: bool
    ) -> None:
        self.policy = "risk" if risk else "strict"
        super().__init__(scenario, pop, seed, folder)
        p = scenario.policies
        self.risk_total = p.risk_total if risk else 0
        policy = RiskPolicy({"cash": RiskLimit(p.risk_per_tap, p.risk_total)}) if risk else None
        clock = self.loop.clock()
        self.store: SqliteCloudStore = seed.open_store(folder / "cloud.db", clock)
        # The cloud accepts what the kiosks are configured to do: their offline risk allowance,
        # and a day of the whole population's top-ups at one kiosk.
        trust = TrustPolicy(credit_per_day=0, debt_per_op=p.risk_per_tap if risk else 0)
        self.reconciler = Reconciler(
            self.store,
            key_for(seed.seed, CLOUD),
            escrow=scenario.escrow,
            trust=trust,
            clock=self.loop.wall_ms,
        )
        self.ledgers: dict[str, Ledger] = {}
        self.agents: dict[str, SyncAgent] = {}
        self.kiosks: dict[str, TapPipeline] = {}
        self.topics: dict[str, Topics] = {}
        self.sent: dict[str, int] = {}
        self.upload_due: set[str] = set()
        self.own_cash: dict[str, dict[str, int]] = {}  # member -> kiosk -> its own net cash
        self.pending: dict[str, tuple[list[str], dict[str, int], int]] = {}  # convergence
        for k in pop.kiosks:
            led = seed.open_kiosk(folder / f"{k.id}.db", k.id, clock, policy or RiskPolicy())
            agent = SyncAgent(
                led,
                AgentSettings(site=k.site, device=k.id),
                key=key_for(seed.seed, k.id),
                clock=self.loop.wall_ms,
            )
            self.ledgers[k.id] = led
            self.agents[k.id] = agent
            self.topics[k.id] = Topics(k.site, k.id)
            self.sent[k.id] = 0
            self.kiosks[k.id] = TapPipeline(
                self.configs[k.id],
                led,
                SITE_KEY,
                NoFeedback(),
                rights=agent,
                clock_ms=self.loop.wall_ms,
                monotonic=self.loop.monotonic,
            )

    # -- the network -----------------------------------------------------------------------

    def send_up(self, device: str, topic: str, payload: bytes, kind: str) -> None:
        if not self.links.up(device, self.loop.now):
            return
        self.record.bytes_up += len(payload)
        self.record.messages[kind] += 1
        self.record.message_bytes[kind] += len(payload)
        for _ in range(self.links.copies()):
            self.loop.at(
                self.loop.now + self.links.delay(), self._arrive_up(device, topic, payload)
            )

    def _arrive_up(self, device: str, topic: str, payload: bytes) -> Callable[[], None]:
        def event() -> None:
            if not (self.links.up(device, self.loop.now) and self.links.cloud_up(self.loop.now)):
                return
            self.route(self.reconciler.handle(topic, payload))
            self.check_convergence()

        return event

    def route(self, outs: list[Outgoing]) -> None:
        for o in outs:
            self.send_down(o, self.loop.now)

    def send_down(self, o: Outgoing, sent_at: int) -> None:
        parsed = parse_device_topic(o.topic)
        if parsed is None or parsed[1] not in self.agents:
            return
        device = parsed[1]
        for _ in range(self.links.copies()):
            self.loop.at(sent_at + self.links.delay(), self._arrive_down(device, o))

    def _arrive_down(self, device: str, o: Outgoing) -> Callable[[], None]:
        def event() -> None:
            if not self.links.up(device, self.loop.now):
                return
            self.record.bytes_down += len(o.payload)
            self.record.messages[o.topic.rsplit("/", 1)[-1]] += 1
            self.agents[device].handle(o.topic, o.payload)
            self.want_upload(device)

        return event

    # -- the agent's connection loop (SyncAgent.run does this over MQTT) ------------------

    def connect(self, device: str, now: int) -> None:
        agent = self.agents[device]
        agent.attach(SimTransport(self, device))
        self.sent[device] = agent.acked  # resend whatever was not acknowledged
        led = self.ledgers[device]
        hello = Hello(
            id=f"hello-{device}-{now}",
            head=led.head()[0],
            cloud_head=led.head(CLOUD)[0],
            deny_version=agent.denylist.version,
        )
        t = self.topics[device]
        self.send_up(device, t.rpc_req, agent.seal(t.rpc_req, hello), "hello")
        self.want_upload(device)

    def disconnect(self, device: str) -> None:
        self.agents[device].detach()

    def want_upload(self, device: str) -> None:
        if device in self.upload_due:
            return
        if self.ledgers[device].head()[0] <= self.sent[device]:
            return
        self.upload_due.add(device)
        self.loop.at(self.loop.now + UPLOAD_DELAY_MS, self._upload(device))

    def _upload(self, device: str) -> Callable[[], None]:
        def event() -> None:
            self.upload_due.discard(device)
            if not self.links.up(device, self.loop.now):
                return
            agent, led = self.agents[device], self.ledgers[device]
            batch = agent.settings.batch_size
            t = self.topics[device]
            while led.head()[0] > self.sent[device]:
                ops = list(led.ops(device, self.sent[device], batch))
                payload = agent.seal(t.ops, OpsUpload(batch=encode_ops(ops)))
                self.send_up(device, t.ops, payload, "ops")
                self.record.extra["ops_sent"] = self.record.extra.get("ops_sent", 0) + len(ops)
                self.sent[device] = ops[-1].seq

        return event

    def resend_check(self) -> None:
        """With message loss: resend from the ack when it has not moved (the agent's timer)."""
        for device, agent in self.agents.items():
            if agent.online and self.sent[device] > agent.acked:
                self.sent[device] = agent.acked
                self.want_upload(device)
        if self.loop.now < self.horizon:
            self.loop.at(self.loop.now + 30_000, self.resend_check)

    def sweep(self) -> None:
        if self.links.cloud_up(self.loop.now):
            self.route(self.reconciler.sweep())
        if self.loop.now + SWEEP_MS <= self.horizon:
            self.loop.at(self.loop.now + SWEEP_MS, self.sweep)

    # -- taps ------------------------------------------------------------------------------

    async def attempt(self, tap: Tap, member: MemberSpec) -> tuple[bool, str]:
        online = self.agents[tap.kiosk].online
        if not online:
            self.record.offline_taps.add(tap.n)
        result = await self.drive(self.kiosks[tap.kiosk], member, tap)
        self._compare_balance(tap.kiosk, member.id, online)
        return result

    def _compare_balance(self, kiosk: str, member: str, online: bool) -> None:
        """The cash balance the member was shown against the true one at that instant: every
        replica's own credits less its own debits (the cloud's and every kiosk's chain)."""
        shown = self.last_outcome.decision.remaining.get("cash")
        self.own_cash.setdefault(member, {})[kiosk] = _own_value(self.ledgers[kiosk], kiosk, member)
        d = self.last_outcome.decision
        if shown is None or d.repeated or not d.approved:  # a refusal shows only its reason
            return
        true = _own_value(self.store.ledger, CLOUD, member)
        true += sum(self.own_cash[member].values())
        # An op of the member's at another kiosk that the cloud has not stored yet (written a
        # moment ago, still in the upload): no kiosk could show it; counted apart.
        in_flight = any(
            v != _own_value(self.store.ledger, k, member)
            for k, v in self.own_cash[member].items()
            if k != kiosk
        )
        self.record.balance_errors.append((online and not in_flight, shown - true))
        if online and in_flight:
            self.record.extra["balance_in_flight"] = (
                self.record.extra.get("balance_in_flight", 0) + 1
            )

    def after_tap(self, kiosk: str) -> None:
        self.want_upload(kiosk)

    # -- measurements ----------------------------------------------------------------------

    def sample_floats(self) -> None:
        held = {}
        for device, led in self.ledgers.items():
            held[device] = sum(
                max(0, s.own_rights) for _, purse, s in led.totals(device) if purse == "cash"
            )
        self.record.float_samples[self.loop.now] = held

    def converging(self, label: str, kiosks: list[str]) -> None:
        targets = {k: self.ledgers[k].head()[0] for k in kiosks}
        self.pending[label] = (kiosks, targets, self.loop.now)
        self.check_convergence()

    def check_convergence(self) -> None:
        for label, (_kiosks, targets, since) in list(self.pending.items()):
            if all(self.store.head(k)[0] >= seq for k, seq in targets.items()):
                self.record.convergence_s[label] = (self.loop.now - since) / 1000
                del self.pending[label]

    # -- the run ---------------------------------------------------------------------------

    async def execute(self) -> Result:
        for device in self.agents:
            if self.links.up(device, 0):
                self.loop.at(0, lambda d=device: self.connect(d, 0))  # type: ignore[misc]
        self.schedule_outages(self.disconnect, self.connect)
        self.schedule_taps()
        self.schedule_samples(self.sample_floats)
        self.loop.at(SWEEP_MS, self.sweep)
        if self.scenario.network.loss:
            self.loop.at(30_000, self.resend_check)
        await self.loop.run(self.horizon)
        await self.reconcile()
        for led in self.ledgers.values():
            self.record.kiosk_ledger_ops.append(sum(led.heads().values()))
        streams = {d: self.reconciler.streams.ops(d, 0, 10**9) for d in self.ledgers}
        return Result(
            self.record, self.store.ledger, self.ledgers, self.lost(), self.risk_total, streams
        )

    async def reconcile(self) -> None:
        """The end of the day: every link back, sync until every chain is at the cloud and
        every kiosk holds the cloud's chain."""
        self.links.forced_up = True
        for device in self.agents:
            if not self.agents[device].online:
                self.connect(device, self.loop.now)
        for _ in range(200):
            await self.loop.run()
            if self.settled():
                break
            for device in self.agents:  # a lost or late message: sync again, as at connect
                self.connect(device, self.loop.now)
        self.record.extra["final_sync_s"] = (self.loop.now - self.horizon) / 1000

    def settled(self) -> bool:
        streams = self.reconciler.streams
        return all(
            self.store.head(d)[0] == led.head()[0]
            and self.agents[d].acked == led.head()[0]
            and led.head(CLOUD)[0] == streams.head(d)[0]
            for d, led in self.ledgers.items()
        )

    def lost(self) -> int:
        return sum(max(0, led.head()[0] - self.store.head(d)[0]) for d, led in self.ledgers.items())


# -- the baselines: one central server -----------------------------------------------------------


class CentralRun(Run):
    """Every kiosk runs the real pipeline against the central server's ledger while it can reach
    it. Offline: `online` refuses; `common` decides on its last known balances (real rules) and
    posts the ops when back."""

    def __init__(
        self, scenario: Scenario, pop: Population, seed: Seed, folder: Path, *, common: bool
    ) -> None:
        self.policy = "common" if common else "online"
        super().__init__(scenario, pop, seed, folder)
        self.common = common
        # Posting offline decisions must never be refused: what was overspent becomes debt.
        unbounded = RiskPolicy({u: RiskLimit(10**12, 10**15) for u in ("cash", "visits", "coupon")})
        self.central = seed.open_central(
            folder / "central.db", self.loop.clock(), unbounded if common else RiskPolicy()
        )
        self.kiosks = {
            k.id: TapPipeline(
                self.configs[k.id],
                self.central,
                SITE_KEY,
                NoFeedback(),
                clock_ms=self.loop.wall_ms,
                monotonic=self.loop.monotonic,
            )
            for k in pop.kiosks
        }
        self.cache: dict[str, dict[tuple[str, str], int]] = {}
        self.queue: dict[str, list[tuple[str, list[Intent]]]] = {k.id: [] for k in pop.kiosks}
        self.n_offline = 0
        self.pending: dict[str, int] = {}
        self._sizes = self._message_sizes()

    def _message_sizes(self) -> tuple[int, int]:
        """Bytes of one request and its answer, sealed as this product's protocol would."""
        t = Topics("s0", "k0")
        key = key_for(self.seed.seed, CLOUD)
        req = RightsRequest(id="0" * 32, account="m000000", purse="cash", amount=1500, cloud_head=0)
        ans = Answer(id="0" * 32, ok=True, granted=1500)
        up = seal(req, topic=t.rpc_req, sender="k0", key=key, ts_ms=0)
        down = seal(ans, topic=t.rpc_res, sender=CLOUD, key=key, ts_ms=0)
        return len(up), len(down)

    def down(self, kiosk: str) -> None:
        if not self.common:
            return
        values: dict[tuple[str, str], int] = defaultdict(int)
        for account, purse, share in self.central.totals():
            values[(account, purse)] += share.inc - share.dec
        self.cache[kiosk] = dict(values)

    def up(self, kiosk: str, now: int) -> None:
        queued, self.queue[kiosk] = self.queue[kiosk], []
        if not queued:
            return
        delay = self.links.delay()
        saved = self.loop.now
        self.loop.now = now + delay
        try:
            for tap_id, intents in queued:
                try:
                    self.central.append(intents, ref=tap_id)
                    self.record.offline_posted += 1
                except SpendRefused as exc:  # pragma: no cover - the policy above is unbounded
                    log.warning("offline decision %s not posted: %s", tap_id, exc)
                self.record.bytes_up += 120  # one op as a compact batch row (bench: ~102 B)
        finally:
            self.loop.now = saved
        self.pending[kiosk] = delay

    def converging(self, label: str, kiosks: list[str]) -> None:
        waits = [self.pending.pop(k, 0) for k in kiosks]
        self.record.convergence_s[label] = max(waits, default=0) / 1000

    async def attempt(self, tap: Tap, member: MemberSpec) -> tuple[bool, str]:
        if self.links.up(tap.kiosk, self.loop.now) and self.links.cloud_up(self.loop.now):
            up, down = self._sizes
            self.record.rpc_requests += 1
            self.record.rpc_granted += 1
            self.record.bytes_up += up
            self.record.bytes_down += down
            self.record.rpc_rtts.append(self.links.delay() + self.links.delay())
            return await self.drive(self.kiosks[tap.kiosk], member, tap)
        if not self.common:
            return False, NO_SERVER
        return self.offline(tap, member)

    def offline(self, tap: Tap, member: MemberSpec) -> tuple[bool, str]:
        """Common practice: the real rules on the balances this kiosk last heard."""
        spec: KioskSpec = self.specs[tap.kiosk]
        cfg: KioskConfig = self.configs[tap.kiosk]
        cache = self.cache.setdefault(tap.kiosk, {})
        self.n_offline += 1
        tap_id = f"off-{tap.kiosk}-{self.n_offline}"
        now = self.loop.wall_ms()
        if tap.action is Action.COUPON:
            account = rec.COUPON_PREFIX + member.coupon
            value = cache.get((account, rec.COUPON_PURSE), 0)
            if value <= 0:
                return False, "COUPON_USED"
            intents = [Intent(Kind.DEC, account, rec.COUPON_PURSE, 1)]
            cache[(account, rec.COUPON_PURSE)] = value - 1
            self._queue(tap.kiosk, tap_id, intents)
            return True, ""
        ref = card_ref(SITE_KEY, token(member.uid))
        card = read_card(self.central, ref)
        person = read_member(self.central, card.member) if card else None
        balances = {p: Balance(value=v, rights=v) for (a, p), v in cache.items() if a == member.id}
        state = TapState(card=card, member=person, balances=balances)
        if spec.role is Role.TOPUP:
            if person is None:
                return False, "UNKNOWN_CARD"
            total = sum(tap.coins)
            credit = total + topup_bonus(total, "coins", cfg)
            decision = Decision(approved=True, credits=(Move("cash", credit),))
        else:
            amount = tap.amount if tap.action is Action.BUY else None
            decision = decide(state, RulesTap(tap_id, now, amount=amount), cfg)
            if not decision.approved:
                return False, decision.reason.name if decision.reason else "REFUSED"
            cash = sum(m.amount for m in decision.debits if m.purse == "cash")
            if cash > self.scenario.policies.common_cap:
                return False, OFFLINE_CAP
        for m in decision.debits:
            key = (m.account or member.id, m.purse)
            cache[key] = cache.get(key, 0) - m.amount
        for m in decision.credits:
            key = (m.account or member.id, m.purse)
            cache[key] = cache.get(key, 0) + m.amount
        self._queue(tap.kiosk, tap_id, intents_for(decision, member.id, now))
        return True, ""

    def _queue(self, kiosk: str, tap_id: str, intents: list[Intent]) -> None:
        if intents:
            self.queue[kiosk].append((tap_id, intents))
            self.record.offline_queued += 1

    async def execute(self) -> Result:
        self.schedule_outages(self.down, self.up)
        self.schedule_taps()
        await self.loop.run(self.horizon)
        self.links.forced_up = True
        for kiosk in self.queue:
            self.up(kiosk, self.loop.now)
        lost = sum(len(q) for q in self.queue.values())
        return Result(self.record, self.central, {}, lost, 0)
