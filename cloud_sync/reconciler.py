"""The cloud reconciler: verifies and stores every kiosk op exactly once, acks durably, runs the
escrow policy (working floats, online grants, recalls of idle rights), sends signed snapshots and
deny-list deltas.

`Reconciler` is the protocol logic over a `CloudStore`, with no I/O of its own: a message in, the
messages to publish out. `ReconcilerService` puts it on MQTT (manual acks after the store commit,
shared subscriptions, reconnect forever).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import aiomqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_sync.ca import ENROLL_ROOT
from cloud_sync.errors import BatchError, MessageRefused
from cloud_sync.membership import MembershipSettings
from cloud_sync.protocol import (
    KIOSK_TO_CLOUD,
    Ack,
    Answer,
    ChainOps,
    ChainWanted,
    DenyDelta,
    DenyEntry,
    DenySince,
    Hello,
    Message,
    OpsUpload,
    Recall,
    RecoverRequest,
    RightsRequest,
    Snapshot,
    Status,
    Topics,
    decode_ops,
    denylist_topic,
    encode_ops,
    open_envelope,
    parse_device_topic,
    reconciler_filters,
    seal,
    secret_client_id,
)
from cloud_sync.settings import EscrowPolicy, ReconcilerSettings, TrustPolicy
from cloud_sync.store import CloudStore, Device
from cloud_sync.trust import DAY_MS, screen
from cloud_sync.upkeep import due_upkeep
from edge.ledger.op import SPENDING, Op
from edge.ledger.purse import PurseState, purse_unit

if TYPE_CHECKING:
    from cloud_sync.enroll import Enroller
    from cloud_sync.fleet import FleetRecords

log = logging.getLogger(__name__)


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Observer(Protocol):
    """Where the reconciler reports what it does (cloud_sync.metrics counts it)."""

    def ingested(self, counts: dict[str, int]) -> None: ...

    def rights(self, granted: bool, seconds: float) -> None: ...


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    payload: bytes
    retain: bool = False


class Reconciler:
    """Cloud-side protocol logic. Not thread-safe: one caller at a time (one per process)."""

    def __init__(
        self,
        store: CloudStore,
        key: Ed25519PrivateKey,
        *,
        escrow: EscrowPolicy | None = None,
        trust: TrustPolicy | None = None,
        chain_chunk: int = 200,
        clock: Callable[[], int] = wall_ms,
        membership: MembershipSettings | None = None,
        max_skew_ms: int = 600_000,
        fleet: FleetRecords | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.store = store
        self.membership = membership  # the tier review and points lapsing run in the sweep
        self.fleet = fleet  # health reports, alerts and the restore state (kiosk cloud serve)
        self.observer = observer
        self.key = key
        self.replica = store.replica
        self.escrow = escrow or EscrowPolicy()
        self.trust = trust or TrustPolicy()
        self.chain_chunk = chain_chunk
        self.clock = clock
        self.max_skew_ms = max_skew_ms
        self.refused = 0  # messages refused (forged, replayed onto the wrong topic, malformed)
        self._sent_cloud: dict[str, int] = {}  # device -> newest cloud seq it has or was sent

    # -- sealing ---------------------------------------------------------------------------

    def seal(self, topic: str, msg: Message, retain: bool = False) -> Outgoing:
        payload = seal(msg, topic=topic, sender=self.replica, key=self.key, ts_ms=self.clock())
        return Outgoing(topic, payload, retain)

    # -- inbound ---------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes) -> list[Outgoing]:
        """One inbound message -> what to publish. Anything not trustworthy or outside the
        protocol's limits changes nothing, is logged with its sender and reason and counted
        for that sender (`kiosk cloud kiosks`); it never raises for what a sender sent."""
        parsed = parse_device_topic(topic)
        if parsed is None or parsed[2] not in KIOSK_TO_CLOUD:
            return self._refuse(topic, "not a kiosk uplink topic")
        site, device, leaf = parsed
        dev = self.store.device(device)
        if dev is None:
            return self._refuse(topic, f"device {device!r} is not enrolled")
        if dev.site != site:
            return self._refuse(
                topic, f"device {device!r} is enrolled at site {dev.site!r}", device
            )
        try:
            opened = open_envelope(
                payload,
                topic=topic,
                keys=lambda s: self.store.public_key(s) if s == device else None,
                allowed=KIOSK_TO_CLOUD[leaf],
                sender=device,
            )
        except MessageRefused as exc:
            return self._refuse(topic, exc.reason, device)
        t = Topics(site, device)
        self._check_clock(device, "message", opened.ts_ms, both_ways=True)
        msg = opened.message
        if isinstance(msg, OpsUpload):
            return self._on_ops(t, dev, msg, topic)
        if isinstance(msg, ChainOps):
            return self._on_chain_back(t, msg, topic)
        if isinstance(msg, Hello):
            return self._on_hello(t, msg)
        if isinstance(msg, RightsRequest):
            if dev.trust != "ok":  # a quarantined or revoked kiosk gets no more rights
                answer = Answer(id=msg.id, ok=False, reason=f"device {dev.trust}")
                return [self.seal(t.rpc_res, answer)]
            return self._on_rights(t, msg)
        if isinstance(msg, RecoverRequest):
            return self._on_recover(t, msg)
        if isinstance(msg, DenySince):
            return [self.seal(t.rpc_res, Answer(id=msg.id, ok=True, deny=self._deny(t, msg.since)))]
        if isinstance(msg, Status):
            self.store.seen(
                device,
                online=msg.online,
                head=msg.head,
                queue_depth=msg.queue_depth,
                recovering=msg.recovering,
                last_seen_ms=self.clock(),
            )
            if self.fleet is not None and msg.health is not None:
                self.fleet.record_health(device, msg.health, self.clock())
            return []
        return self._refuse(topic, f"unexpected {msg.type!r}", device)  # pragma: no cover

    def _refuse(self, topic: str, reason: str, sender: str | None = None) -> list[Outgoing]:
        self.refused += 1
        who = sender or "unknown sender"
        log.warning("refused from %s: %s", who, MessageRefused(topic, reason))
        if sender is not None:
            self.store.flag(sender, "refused", reason)
        return []

    def _check_clock(self, device: str, what: str, stamp_ms: int, both_ways: bool) -> None:
        """Flag a time stamped far from our clock: ahead always (ops made up for later, or a
        kiosk clock that runs fast), behind only for live messages (ops uploaded after an
        offline spell are old by nature)."""
        skew = stamp_ms - self.clock()
        if skew > self.max_skew_ms or (both_ways and -skew > self.max_skew_ms):
            detail = f"{what} stamped {skew / 1000:+.0f} s from the cloud's clock"
            log.warning("device %s: %s", device, detail)
            self.store.flag(device, "skewed", detail)

    def ack(self, t: Topics) -> Outgoing:
        seq, digest = self.store.head(t.device)
        return self.seal(t.ack, Ack(seq=seq, hash=digest))

    def _on_ops(self, t: Topics, dev: Device, msg: OpsUpload, topic: str) -> list[Outgoing]:
        try:
            ops = decode_ops(msg.batch)
        except BatchError as exc:
            return self._refuse(topic, str(exc), t.device)
        if any(op.replica != t.device for op in ops):
            reason = f"ops of another replica on the topic of {t.device!r}"
            return self._refuse(topic, reason, t.device)
        if self.restoring:
            # Restored from a backup: a kiosk op may spend rights granted by cloud ops we are
            # still getting back from the kiosks. Judge it once the cloud chain is whole again
            # (the kiosk resends from our ack), never quarantine a kiosk for our own loss.
            return [self.ack(t)]
        newest = max(ops, key=lambda o: o.wall_ms)
        self._check_clock(t.device, f"op #{newest.seq}", newest.wall_ms, both_ways=False)
        now = self.clock()
        screened = screen(self.store, dev, ops, self.trust, now)
        if screened.held:
            self.store.hold(t.device, screened.held, screened.reason, now)
            if dev.trust == "ok":
                self.store.set_trust(t.device, "quarantined", screened.reason)
                log.error(
                    "device %s quarantined, its ops held for review (kiosk cloud device"
                    " review): %s",
                    t.device,
                    screened.reason,
                )
        ops = screened.accept
        if not ops:
            return [self.ack(t)]
        counts = self.store.ingest(ops)
        if screened.credited:
            self.store.add_credit(t.device, now // DAY_MS, screened.credited)
        if counts["refused"]:
            self.refused += counts["refused"]
            self.store.flag(t.device, "refused", f"{counts['refused']} ops refused by the ledger")
        if self.observer is not None:
            self.observer.ingested(counts)
        log.info("ingest %s#%d..%d: %s", t.device, ops[0].seq, ops[-1].seq, counts)
        out = [self.ack(t)]
        if counts["applied"] and not self.restoring:
            out.extend(self._floats(t, ops))
        return out

    # -- after a restore from backup -------------------------------------------------------

    @property
    def restoring(self) -> bool:
        """Restored from a backup and not yet recovered from the kiosks: write nothing new."""
        return self.fleet is not None and self.fleet.restore_state() is not None

    def _restore_hello(self, t: Topics, msg: Hello) -> list[Outgoing]:
        """A kiosk reports the cloud chain it holds: ask for what we lack, note it heard."""
        assert self.fleet is not None
        state = self.fleet.restore_state()
        if state is None:
            return []
        if t.device in state.waiting:
            state.waiting.remove(t.device)
        state.wanted = max(state.wanted, msg.cloud_head)
        self.fleet.set_restore_state(state)
        have = self.store.head(self.replica)[0]
        out = []
        if msg.cloud_head > have:
            log.warning("restore: asking %s for cloud ops after #%d", t.device, have)
            out.append(self.seal(t.grants, ChainWanted(after_seq=have)))
        self._restore_done()
        return out

    def _on_chain_back(self, t: Topics, msg: ChainOps, topic: str) -> list[Outgoing]:
        """Our own chain handed back by a kiosk after a restore: verified with our key."""
        try:
            ops = decode_ops(msg.batch)
        except BatchError as exc:
            return self._refuse(topic, str(exc))
        if ops[0].replica != self.replica or msg.own:
            return self._refuse(topic, f"ops of {ops[0].replica!r} handed back as the cloud's")
        counts = self.store.ingest(ops)
        self.refused += counts["refused"]
        log.warning(
            "restore: cloud ops #%d..%d back from %s: %s", ops[0].seq, ops[-1].seq, t.device, counts
        )
        self._restore_done()
        return []

    def _restore_done(self) -> None:
        assert self.fleet is not None
        state = self.fleet.restore_state()
        if state is None or state.waiting:
            return
        have = self.store.head(self.replica)[0]
        if have >= state.wanted:
            self.fleet.set_restore_state(None)
            log.warning("restore complete: the cloud chain is whole again at #%d", have)

    def _floats(self, t: Topics, ops: Sequence[Op]) -> list[Outgoing]:
        """The member is active at this kiosk: top its working float up on what was spent."""
        spent = sorted({(op.account, op.purse) for op in ops if op.kind in SPENDING})
        granted: list[str] = []
        states = self.store.purse_many(spent)
        for account, purse in spent:
            state = states[(account, purse)]
            want = self._float_target(state, t.device) - state.rights(t.device)
            if want <= 0:
                continue
            ref = f"float:{t.device}:{ops[-1].seq}:{account}:{purse}"
            if self.store.grant(account, purse, t.device, want, 1, ref):
                granted.append(account)
        if not granted:
            return []
        out = self.push_chain(t)
        out.extend(self.snapshot(t, a) for a in sorted(set(granted)))
        return out

    def _float_target(self, state: PurseState, device: str) -> int:
        pool = max(0, state.rights(self.replica) - state.credit_limit) + max(
            0, state.rights(device)
        )
        target = int(pool * self.escrow.float_fraction)
        cap = self.escrow.float_max.get(purse_unit(state.purse))
        return min(target, cap) if cap is not None else target

    def _on_hello(self, t: Topics, msg: Hello) -> list[Outgoing]:
        restore = self._restore_hello(t, msg) if self.restoring else []
        self.store.seen(
            t.device,
            online=True,
            head=msg.head,
            cloud_head=msg.cloud_head,
            last_seen_ms=self.clock(),
        )
        self._sent_cloud[t.device] = msg.cloud_head
        out = [self.ack(t), *self.push_chain(t)]
        out.append(
            self.seal(t.rpc_res, Answer(id=msg.id, ok=True, deny=self._deny(t, msg.deny_version)))
        )
        return out + restore

    def _deny(self, t: Topics, since: int) -> list[DenyDelta]:
        return self.store.deny_since(t.site, since)

    def _on_rights(self, t: Topics, msg: RightsRequest) -> list[Outgoing]:
        started = time.perf_counter()
        ok, out = self._answer_rights(t, msg)
        if self.observer is not None:
            self.observer.rights(ok, time.perf_counter() - started)
        return out

    def _answer_rights(self, t: Topics, msg: RightsRequest) -> tuple[bool, list[Outgoing]]:
        if self.restoring:
            answer = Answer(id=msg.id, ok=False, reason="the cloud is recovering from a restore")
            return False, [self.seal(t.rpc_res, answer)]
        self._sent_cloud[t.device] = msg.cloud_head
        ref = f"rq:{t.device}:{msg.id}"
        want = msg.amount
        if self.escrow.request_headroom:
            state = self.store.purse(msg.account, msg.purse)
            want += max(0, self._float_target(state, t.device))
        ops = self.store.grant(msg.account, msg.purse, t.device, want, msg.amount, ref)
        if not ops:
            out = self._recall_for(t, msg)
            answer = Answer(id=msg.id, ok=False, reason="not enough balance")
            return False, [self.seal(t.rpc_res, answer), *out]
        chain = self.store.ops(self.replica, msg.cloud_head, limit=self.chain_chunk * 5)
        granted = sum(o.amount for o in ops)
        if chain:
            self._sent_cloud[t.device] = chain[-1].seq
        log.info("granted %d of %s/%s to %s", granted, msg.purse, msg.account, t.device)
        answer = Answer(
            id=msg.id, ok=True, granted=granted, chain=encode_ops(chain) if chain else b""
        )
        return True, [self.seal(t.rpc_res, answer), self.snapshot(t, msg.account)]

    def _recall_for(self, t: Topics, msg: RightsRequest) -> list[Outgoing]:
        """Not enough free rights: ask the other kiosks holding some on this purse to send them
        back, so the next request can be granted."""
        state = self.store.purse(msg.account, msg.purse)
        out = []
        for share in state.shares:
            rights = state.rights(share.replica)
            if share.replica in (self.replica, t.device) or rights <= 0:
                continue
            dev = self.store.device(share.replica)
            if dev is None:
                continue
            rid = f"rq:{t.device}:{msg.id}:{share.replica}"
            out.append(self._recall(dev.site, share.replica, rid, msg.account, msg.purse, rights))
        return out

    def _recall(
        self, site: str, device: str, rid: str, account: str, purse: str, amount: int
    ) -> Outgoing:
        log.info("recall %d of %s/%s from %s (%s)", amount, purse, account, device, rid)
        recall = Recall(id=rid, account=account, purse=purse, amount=amount)
        return self.seal(Topics(site, device).grants, recall)

    def _on_recover(self, t: Topics, msg: RecoverRequest) -> list[Outgoing]:
        """A kiosk restored from an old image gets its own chain back from what we stored."""
        out: list[Outgoing] = []
        after = msg.after_seq
        while True:
            ops = self.store.ops(t.device, after, limit=self.chain_chunk)
            if not ops:
                break
            out.append(self.seal(t.grants, ChainOps(batch=encode_ops(ops), own=True)))
            after = ops[-1].seq
        log.warning("device %s recovers its chain: %d..%d", t.device, msg.after_seq + 1, after)
        out.append(self.seal(t.rpc_res, Answer(id=msg.id, ok=True, granted=after)))
        return out

    # -- outbound --------------------------------------------------------------------------

    def push_chain(self, t: Topics) -> list[Outgoing]:
        """The cloud's chain after what the device holds (its grants need the prefix)."""
        known = self._sent_cloud.get(t.device)
        if known is None:
            dev = self.store.device(t.device)
            known = dev.cloud_head if dev else 0
        out = []
        for _ in range(10):
            ops = self.store.ops(self.replica, known, limit=self.chain_chunk)
            if not ops:
                break
            out.append(self.seal(t.grants, ChainOps(batch=encode_ops(ops))))
            known = ops[-1].seq
        self._sent_cloud[t.device] = known
        return out

    def snapshot(self, t: Topics, account: str) -> Outgoing:
        states = self.store.purses(account)
        snap = Snapshot(
            account=account,
            values={s.purse: s.value for s in states},
            rights={s.purse: s.rights(t.device) for s in states},
            as_of_ms=self.clock(),
            heads=self.store.heads(),
        )
        return self.seal(t.grants, snap)

    def sweep(self) -> list[Outgoing]:
        """Recall rights that kiosks have held without using for `idle_recall_s`; run the
        membership upkeep when due (tier review, points lapsing: cloud_sync.upkeep)."""
        if self.membership is not None:
            due_upkeep(self.store, self.membership, self.clock())
        cutoff = self.clock() - int(self.escrow.idle_recall_s * 1000)
        out = []
        for account, purse, device, rights in self.store.idle_rights(cutoff):
            dev = self.store.device(device)
            if dev is None:
                continue
            # Unique per purse: the kiosk answers a recall once per id (its xfer's ref), so one
            # id for all of a kiosk's idle purses would recall only the first of them.
            heads = f"{self.store.head(self.replica)[0]}:{self.store.head(device)[0]}"
            rid = f"idle:{heads}:{account}:{purse}"
            out.append(self._recall(dev.site, device, rid, account, purse, rights))
        return out

    def deny_delta(self, site: str, entries: Sequence[DenyEntry]) -> Outgoing:
        """Store a deny-list delta and return it sealed for the site's retained head."""
        delta = self.store.deny(site, entries, self.clock())
        return self.seal(denylist_topic(site), delta, retain=True)

    def deny_heads(self) -> list[Outgoing]:
        """The newest delta of every site, for the retained head (after a restart)."""
        out = []
        for site in sorted({d.site for d in self.store.devices()}):
            deltas = self.store.deny_since(site, 0, limit=1_000_000)
            if deltas:
                out.append(self.seal(denylist_topic(site), deltas[-1], retain=True))
        return out


class ReconcilerService:
    """The reconciler on MQTT: subscribe, handle, publish, then ack the inbound message (manual
    acks: a message is acknowledged to the broker only after its effects are stored and its
    answers published). Reconnects with jittered backoff forever. With an `enroller`, it also
    answers online enrollment requests (`kiosk/v1/enroll/+/req`)."""

    def __init__(
        self,
        reconciler: Reconciler,
        settings: ReconcilerSettings,
        enroller: Enroller | None = None,
    ) -> None:
        self.reconciler = reconciler
        self.settings = settings
        self.enroller = enroller
        self.connected = asyncio.Event()
        self.handled = 0
        self._client: aiomqtt.Client | None = None

    async def publish(self, outs: Sequence[Outgoing]) -> None:
        client = self._client
        if client is None:
            raise aiomqtt.MqttError("reconciler is not connected")
        for o in outs:
            await client.publish(o.topic, o.payload, qos=1, retain=o.retain)

    async def run(self) -> None:
        backoff = 0.2
        # Secret: a client that knew a connected client's id would take its session.
        ident = self.settings.client_id or secret_client_id("reconciler")
        while True:
            # A persistent session: what kiosks publish while we reconnect is queued for us.
            client = aiomqtt.Client(
                identifier=ident,
                **self.settings.broker.client_kwargs(self.settings.session_expiry_s),
            )
            client._client.manual_ack_set(True)
            try:
                async with client:
                    self._client = client
                    backoff = 0.2
                    for f in self._filters():
                        await client.subscribe(f, qos=1)
                    await self.publish(self.reconciler.deny_heads())
                    self.connected.set()
                    log.info("reconciler connected")
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._sweeper(), name="reconciler-sweep")
                        tg.create_task(self._consume(client), name="reconciler-consume")
            except* aiomqtt.MqttError as group:
                log.warning("reconciler link lost: %s", group.exceptions[0])
            finally:
                self._client = None
                self.connected.clear()
            await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
            backoff = min(backoff * 2, 30.0)

    def _filters(self) -> list[str]:
        filters = reconciler_filters(self.settings.shared)
        if self.enroller is not None:
            from cloud_sync.enroll_wire import enroll_filters

            filters += enroll_filters(self.settings.shared)
        return filters

    def _handle(self, topic: str, payload: bytes, retained: bool = False) -> list[Outgoing]:
        if self.enroller is not None and topic.startswith(ENROLL_ROOT + "/"):
            if not payload:
                return []  # our own clearing (below) coming back
            outs = self.enroller.handle(topic, payload)
            # The enrollment listener is anonymous: nobody may park a retained message there.
            # A live message does not show its retain flag, so every request topic is cleared.
            if retained:
                log.warning("retained enrollment request on %s cleared", topic)
            outs.append(Outgoing(topic, b"", retain=True))
            return outs
        return self.reconciler.handle(topic, payload)

    def _handle_safely(self, topic: str, payload: bytes, retained: bool) -> list[Outgoing]:
        """`_handle`, where a fault on one message (a bug that hostile input reaches, a store
        that refuses a value) is logged and counted, and the message is acked: the sender
        resends what matters (a kiosk's ops stay in its outbox until acked), while a poison
        message redelivered forever would stop every reconciler at each start."""
        try:
            return self._handle(topic, payload, retained)
        except Exception as exc:
            parsed = parse_device_topic(topic)
            sender = parsed[1] if parsed else topic
            log.exception("message on %s from %s failed; dropped", topic, sender)
            self.reconciler.refused += 1
            try:
                self.reconciler.store.flag(sender, "refused", f"failed: {exc!r}"[:300])
            except Exception:
                log.exception("could not count the failure of %s", sender)
            return []

    async def _consume(self, client: aiomqtt.Client) -> None:
        me = asyncio.current_task()
        async for message in client.messages:
            payload = message.payload
            if isinstance(payload, bytes | bytearray):
                outs = self._handle_safely(str(message.topic), bytes(payload), message.retain)
                await self.publish(outs)
            self.handled += 1
            client._client.ack(message.mid, message.qos)
            # Python 3.11's asyncio.wait_for (inside aiomqtt's publish) swallows a cancel that
            # lands as the PUBACK arrives (CPython gh-86296): honour it here, or stop hangs.
            if me is not None and me.cancelling():
                raise asyncio.CancelledError

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval_s)
            try:
                outs = self.reconciler.sweep()
            except Exception:  # a store hiccup must not take the consumer down with it
                log.exception("recall sweep failed")
                continue
            await self.publish(outs)
