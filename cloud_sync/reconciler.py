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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import aiomqtt
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cloud_sync import escrow
from cloud_sync.ca import ENROLL_ROOT
from cloud_sync.errors import BatchError, MessageRefused
from cloud_sync.membership import MembershipSettings
from cloud_sync.mqtt_ack import ack, manual_ack_client
from cloud_sync.protocol import (
    KIOSK_TO_CLOUD,
    MAX_TEXT,
    Ack,
    Answer,
    ChainOps,
    ChainWanted,
    DenyDelta,
    DenyEntry,
    DenySince,
    ForkOps,
    Hello,
    Lookup,
    Message,
    OpsUpload,
    Recall,
    RecoverRequest,
    RightsRequest,
    Snapshot,
    Snapshots,
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
from cloud_sync.store import CloudStore, Device, ForkPart
from cloud_sync.streams import StreamBook
from cloud_sync.trust import DAY_MS, screen
from cloud_sync.upkeep import due_upkeep
from edge.aio import honour_cancel, run_until_cancelled
from edge.ledger import chain
from edge.ledger import records as rec
from edge.ledger.chain import Role
from edge.ledger.errors import OpRefused
from edge.ledger.op import GENESIS, SPENDING, Intent, Kind, Op
from edge.ledger.purse import PurseState, purse_unit

if TYPE_CHECKING:
    from cloud_sync.enroll import Enroller
    from cloud_sync.fleet import FleetRecords

log = logging.getLogger(__name__)

SNAPSHOT_CHUNK = 100  # accounts per snapshots message (well inside MAX_PAYLOAD)

# Kiosk-written registers that hold across the scope (docs/knowledge-model.md).
RELAYED_REGISTERS = frozenset(
    {rec.PIN_FAILS, rec.PIN_LOCKED_UNTIL, rec.LAST_ENTRY, rec.SUN_COUNTER}
)
MAX_KEPT = 100_000  # a forked kiosk's kept ops read to tell its branch's taps from them


def _spent_purses(ops: Sequence[Op]) -> list[tuple[str, str]]:
    """(account, purse) of every purse the ops spent from, in order."""
    return sorted({(op.account, op.purse) for op in ops if op.kind in SPENDING})


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
        streams: StreamBook | None = None,
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
        # Each kiosk's own stream (docs/knowledge-model.md), not the whole master chain.
        self.streams = streams or StreamBook(":memory:", self.replica, key)
        self._sent_cloud: dict[str, int] = {}  # device -> newest stream seq it has or was sent
        # Rights requests waiting for recalled rights: (account, purse) -> [(topics, req, until)]
        self._waiting: dict[tuple[str, str], list[tuple[Topics, RightsRequest, int]]] = {}
        # Purse unit -> kiosks seen taking payment in it (where standing floats go).
        self._payees: dict[str, set[str]] = {}

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
        if isinstance(msg, Lookup):
            return self._on_lookup(t, msg)
        if isinstance(msg, RecoverRequest):
            return self._on_recover(t, msg)
        if isinstance(msg, ForkOps):
            return [self.seal(t.rpc_res, self._on_fork(t, dev, msg))]
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
        if counts["applied"]:
            out.extend(self._answer_waiting(ops))
            self._floats(t, ops)
            self._standing_after(t, ops)
            out.extend(self._rebalance(t, ops))
            self._relay(t, ops)
            out.extend(self.publish_new(exclude=t.device))
            out.extend(self.push_chain(t))
            accounts = sorted({op.account for op in ops if op.kind is not Kind.SET})
            out.extend(self.snapshots(accounts, t.device))
        return out

    # -- after a restore from backup -------------------------------------------------------

    @property
    def restoring(self) -> bool:
        """Restored from a backup and not yet recovered from the kiosks: write nothing new."""
        return self.fleet is not None and self.fleet.restore_state() is not None

    def _restore_hello(self, t: Topics, msg: Hello) -> list[Outgoing]:
        """A kiosk reports the stream it holds: ask for what our copy lacks, note it heard."""
        assert self.fleet is not None
        state = self.fleet.restore_state()
        if state is None:
            return []
        if t.device in state.waiting:
            state.waiting.remove(t.device)
            self.fleet.set_restore_state(state)
        have = self.streams.head(t.device)[0]
        if msg.cloud_head <= have:
            return []
        log.warning("restore: asking %s for its stream after #%d", t.device, have)
        return [self.seal(t.grants, ChainWanted(after_seq=have))]

    def _on_chain_back(self, t: Topics, msg: ChainOps, topic: str) -> list[Outgoing]:
        """A kiosk's stream handed back after a restore (our own signatures): kept in our copy
        of its stream, and what its ops copy re-appended to the master chain if it lacks it."""
        try:
            ops = decode_ops(msg.batch)
        except BatchError as exc:
            return self._refuse(topic, str(exc), t.device)
        if ops[0].replica != self.replica or msg.own:
            reason = f"ops of {ops[0].replica!r} handed back as the cloud's"
            return self._refuse(topic, reason, t.device)
        if not self.restoring:
            return []  # a late hand-back: the streams are whole already
        kept = self.streams.put_back(t.device, ops)
        added = self._remaster(kept)
        log.warning(
            "restore: stream ops #%d..%d back from %s: %d kept, %d master ops recovered",
            ops[0].seq,
            ops[-1].seq,
            t.device,
            len(kept),
            added,
        )
        return self._restore_done()

    def _remaster(self, copies: Sequence[Op]) -> int:
        """Re-append to the master chain, as new master ops, what these stream ops copy and the
        master chain lacks (a stream op is a master op re-signed: `Op.content`)."""
        if not copies:
            return 0
        have = {o.content() for o in self.store.ops(self.replica, self.streams.routed)}
        added = 0
        for c in copies:
            if c.content() in have:
                continue
            seq, prev = self.store.head(self.replica)
            m = msgspec.structs.replace(c, seq=seq + 1, prev=prev, sig=b"").signed(self.key)
            counts = self.store.ingest([m])
            if counts["applied"]:
                have.add(c.content())
                added += 1
            else:
                log.error(
                    "restore: master op %s of %s not re-appended: %s", c.ref, c.account, counts
                )
        return added

    def _restore_done(self) -> list[Outgoing]:
        """Every kiosk heard from and every stream whole again: the restore ends, and the
        master ops the streams lack (recovered from another kiosk) are routed to them."""
        assert self.fleet is not None
        state = self.fleet.restore_state()
        if state is None or state.waiting:
            return []
        for d in self.store.devices():
            if d.device not in state.released and self.streams.head(d.device)[0] < d.cloud_head:
                return []
        self.fleet.set_restore_state(None)
        log.warning(
            "restore complete: the master chain is whole again at #%d",
            self.store.head(self.replica)[0],
        )
        return self.publish_new()

    def _floats(self, t: Topics, ops: Sequence[Op]) -> None:
        """The member is active at this kiosk: top its working float up on what was spent (the
        grants travel in the kiosk's stream)."""
        spent = _spent_purses(ops)
        states = self.store.purse_many(spent)
        for account, purse in spent:
            want = escrow.float_top_up(
                states[(account, purse)], t.device, self.replica, self.escrow
            )
            if want <= 0:
                continue
            ref = f"float:{t.device}:{ops[-1].seq}:{account}:{purse}"
            self.store.grant(account, purse, t.device, want, 1, ref)

    def _answer_waiting(self, ops: Sequence[Op]) -> list[Outgoing]:
        """Rights came back (a recall answered): grant the requests that waited for them."""
        out: list[Outgoing] = []
        back = {(o.account, o.purse) for o in ops if o.kind is Kind.XFER}
        for key in sorted(back & self._waiting.keys()):
            still = []
            for t, msg, until in self._waiting.pop(key):
                ref = f"rq:{t.device}:{msg.id}"
                granted = self.store.grant(
                    msg.account, msg.purse, t.device, msg.amount, msg.amount, ref
                )
                if granted:
                    out.extend(self._granted(t, msg, granted))
                else:
                    still.append((t, msg, until))
            if still:
                self._waiting[key] = still
        return out

    def expire_waiting(self) -> list[Outgoing]:
        """Requests whose recalled rights did not come back in time: refused, held elsewhere."""
        now = self.clock()
        out: list[Outgoing] = []
        for key in list(self._waiting):
            keep = []
            for t, msg, until in self._waiting[key]:
                if until > now:
                    keep.append((t, msg, until))
                    continue
                answer = Answer(id=msg.id, ok=False, reason="held by an offline kiosk")
                out.append(self.seal(t.rpc_res, answer))
            if keep:
                self._waiting[key] = keep
            else:
                del self._waiting[key]
        return out

    def _relay(self, t: Topics, ops: Sequence[Op]) -> None:
        """Registers a kiosk writes that every kiosk of the scope must honour (a PIN lockout,
        an entry for anti-passback, a SUN read counter): re-written on the master chain at the
        same version, so they travel in the scope's streams. A read counter is a max register:
        one below the highest the cloud knows tells the scope nothing and is not relayed."""
        relayed = [
            Intent(Kind.SET, op.account, op.purse, op.amount, data=op.data)
            for op in ops
            if op.kind is Kind.SET
            and op.purse in RELAYED_REGISTERS
            and self._stored(op)
            and (op.purse != rec.SUN_COUNTER or self._newest_counter(op))
        ]
        if relayed:
            self.store.append(relayed, ref=f"relay:{t.device}:{ops[-1].seq}")

    def _stored(self, op: Op) -> bool:
        """The op itself is on the kiosk's stored chain (not refused, not waiting for a gap)."""
        return self._stored_hash(op.replica, op.seq) == op.hash()

    def _newest_counter(self, op: Op) -> bool:
        known = self.store.register(op.account, op.purse)
        return known is None or known.version <= op.amount

    def _rebalance(self, t: Topics, ops: Sequence[Op]) -> list[Outgoing]:
        """The member spent here and the cloud's free rights fell short of the reserve: move
        rights back from the other online kiosks holding some (a standing float at home, a
        float left elsewhere), before one of them is cut off with them."""
        out: list[Outgoing] = []
        for (account, purse), state in self.store.purse_many(_spent_purses(ops)).items():
            if escrow.free(state, self.replica) >= self.escrow.reserve.get(purse_unit(purse), 0):
                continue
            holders = {}
            for share in state.shares:
                if share.replica in (self.replica, t.device) or state.rights(share.replica) <= 0:
                    continue
                dev = self.store.device(share.replica)
                if dev is not None and dev.online:
                    holders[share.replica] = dev.site
            recalls = escrow.shortfall_recalls(state, list(holders), self.replica, self.escrow)
            for device, amount in recalls.items():
                rid = f"short:{t.device}:{ops[-1].seq}:{device}:{account}:{purse}"
                out.append(self._recall(holders[device], device, rid, account, purse, amount))
        return out

    def _on_hello(self, t: Topics, msg: Hello) -> list[Outgoing]:
        self.store.seen(
            t.device,
            online=True,
            head=msg.head,
            cloud_head=msg.cloud_head,
            last_seen_ms=self.clock(),
        )
        restore: list[Outgoing] = []
        if self.restoring:
            restore = self._restore_hello(t, msg) + self._restore_done()
        self._sent_cloud[t.device] = msg.cloud_head
        out = [self.ack(t), *self.publish_new(exclude=t.device), *self.push_chain(t)]
        out.append(
            self.seal(t.rpc_res, Answer(id=msg.id, ok=True, deny=self._deny(t, msg.deny_version)))
        )
        return out + restore

    def _deny(self, t: Topics, since: int) -> list[DenyDelta]:
        return self.store.deny_since(t.site, since)

    def _on_rights(self, t: Topics, msg: RightsRequest) -> list[Outgoing]:
        started = time.perf_counter()
        ok, out = self._answer_rights(t, msg)
        if self.observer is not None and ok is not None:
            self.observer.rights(ok, time.perf_counter() - started)
        return out

    def _answer_rights(self, t: Topics, msg: RightsRequest) -> tuple[bool | None, list[Outgoing]]:
        """Granted (True), refused (False) or waiting for a recall (None), and what to send."""
        if self.restoring:
            answer = Answer(id=msg.id, ok=False, reason="the cloud is recovering from a restore")
            return False, [self.seal(t.rpc_res, answer)]
        self._sent_cloud[t.device] = msg.cloud_head
        ref = f"rq:{t.device}:{msg.id}"
        want = msg.amount
        if self.escrow.request_headroom:
            state = self.store.purse(msg.account, msg.purse)
            want += escrow.headroom(state, t.device, self.replica, self.escrow, msg.amount)
        ops = self.store.grant(msg.account, msg.purse, t.device, want, msg.amount, ref)
        if not ops:
            out = self._recall_for(t, msg)
            state = self.store.purse(msg.account, msg.purse)
            free = state.rights(self.replica) + max(0, state.rights(t.device))
            recallable = sum(max(0, state.rights(s.replica)) for s in state.shares) - free
            if out and free + recallable >= msg.amount:
                # The member has the money; kiosks hold it. Answer when their rights are back
                # (within the kiosk's budget), not with a refusal an always-online server
                # would never give.
                deadline = self.clock() + self.escrow.recall_wait_ms
                self._waiting.setdefault((msg.account, msg.purse), []).append((t, msg, deadline))
                return None, [self.snapshot(t, msg.account), *out]
            reason = "nothing left" if state.value <= 0 else "not enough balance"
            answer = Answer(id=msg.id, ok=False, reason=reason)
            # The snapshot first: the kiosk shows the true reason with the true balance.
            return False, [self.snapshot(t, msg.account), self.seal(t.rpc_res, answer), *out]
        return True, self._granted(t, msg, ops)

    def _granted(self, t: Topics, msg: RightsRequest, ops: Sequence[Op]) -> list[Outgoing]:
        out = self.publish_new(exclude=t.device)
        chain = self.streams.ops(t.device, msg.cloud_head, self.chain_chunk * 5)
        granted = sum(o.amount for o in ops)
        if chain:
            self._sent_cloud[t.device] = chain[-1].seq
        log.info("granted %d of %s/%s to %s", granted, msg.purse, msg.account, t.device)
        answer = Answer(
            id=msg.id, ok=True, granted=granted, chain=encode_ops(chain) if chain else b""
        )
        return [self.snapshot(t, msg.account), self.seal(t.rpc_res, answer), *out]

    def _on_lookup(self, t: Topics, msg: Lookup) -> list[Outgoing]:
        """A kiosk met an account of another scope: make it a guest there (the account's ops and
        snapshots reach it from now on) and send what the master chain holds of it."""
        if self.restoring:
            answer = Answer(id=msg.id, ok=False, reason="the cloud is recovering from a restore")
            return [self.seal(t.rpc_res, answer)]
        accounts = [msg.account]
        if msg.account.startswith(rec.CARD_PREFIX):
            member = self.store.register(msg.account, rec.CARD_MEMBER)
            if member is None:
                return [self.seal(t.rpc_res, Answer(id=msg.id, ok=False, reason="unknown"))]
            accounts.append(member.value)
        elif not self.store.purses(msg.account):
            return [self.seal(t.rpc_res, Answer(id=msg.id, ok=False, reason="unknown"))]
        out = self.publish_new(exclude=t.device)  # the stream is current before the guest's
        history = sorted(
            (
                op
                for a in accounts
                for op in self.store.history(a, limit=10_000)
                if op.replica == self.replica and op.kind in (Kind.SET, Kind.INC)
            ),
            key=lambda op: op.seq,
        )
        self.streams.add_guest(t.device, accounts, history)
        chain = self.streams.ops(t.device, msg.cloud_head, self.chain_chunk * 5)
        if chain:
            self._sent_cloud[t.device] = chain[-1].seq
        log.info("%s looked up %s (%d ops)", t.device, msg.account, len(history))
        snaps = self._snapshots_to(t, accounts[1:] or accounts)
        answer = Answer(id=msg.id, ok=True, chain=encode_ops(chain) if chain else b"")
        return [*snaps, self.seal(t.rpc_res, answer), *out]

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

    def _on_fork(self, t: Topics, dev: Device, msg: ForkOps) -> Answer:
        """A forked kiosk's set-aside branch (its ops the cloud never kept): checked as its
        own signed chain forking from ours at `fork_seq`, and each purse's overspend recorded
        as debt, bounded by the rights the kiosk held (`edge.ledger.chain.fork_debts`). Every
        part is accounted once, however often it is uploaded."""

        def refuse(reason: str) -> Answer:
            self._refuse(t.rpc_req, f"fork branch: {reason}", t.device)
            return Answer(id=msg.id, ok=False, reason=reason[:MAX_TEXT])

        try:
            ops = decode_ops(msg.batch)
            keys = _DeviceKeys(self.store, self.replica)
            for op in ops:
                chain.check_op(keys, op)
        except (BatchError, OpRefused) as exc:
            return refuse(str(exc))
        if ops[0].replica != t.device:
            return refuse(f"ops of {ops[0].replica!r}")
        accounted = self.store.fork_head(t.device, msg.fork_seq)
        seq, digest = accounted or (msg.fork_seq - 1, self._stored_hash(t.device, msg.fork_seq - 1))
        ops = [o for o in ops if o.seq > seq]
        if not ops:  # uploaded again: answered, recorded once
            return Answer(id=msg.id, ok=True, granted=seq)
        if ops[0].seq != seq + 1 or ops[0].prev != digest:
            return refuse(f"#{ops[0].seq} does not follow #{seq} of the branch")
        if accounted is None and self._stored_hash(t.device, msg.fork_seq) == ops[0].hash():
            return refuse(f"#{msg.fork_seq} is the op the cloud stored: not a fork")
        kept = self.store.ops(t.device, msg.fork_seq - 1, limit=MAX_KEPT)
        before = {
            (r.debt.account, r.debt.purse): r.debt
            for r in self.store.fork_debts(t.device)
            if r.fork_seq == msg.fork_seq
        }
        held = {}
        for account, purse in {(o.account, o.purse) for o in ops} - before.keys():
            now_rights = self.store.purse(account, purse).rights(t.device)
            mine = [o for o in kept if (o.account, o.purse) == (account, purse)]
            held[(account, purse)] = chain.rights_at_fork(now_rights, t.device, mine)
        allowance = self.trust.authority(dev.role).debt_per_op
        debts = chain.fork_debts(ops, kept=kept, held=held, allowance=allowance, before=before)
        head = (ops[-1].seq, ops[-1].hash())
        if self.store.record_fork(ForkPart(t.device, msg.fork_seq, seq, head, debts, self.clock())):
            log.critical(
                "device %s: forked branch from #%d accounted to #%d: %s",
                t.device,
                msg.fork_seq,
                head[0],
                ", ".join(f"{d.account}/{d.purse} debt {d.debt}" for d in debts) or "no debt",
            )
        return Answer(id=msg.id, ok=True, granted=head[0])

    def _stored_hash(self, device: str, seq: int) -> bytes | None:
        """The hash of a kiosk's op the cloud stored (GENESIS before its first)."""
        if seq == 0:
            return GENESIS
        found = self.store.ops(device, seq - 1, limit=1)
        return found[0].hash() if found and found[0].seq == seq else None

    # -- outbound --------------------------------------------------------------------------

    def _devices(self) -> dict[str, str]:
        return {d.device: d.site for d in self.store.devices()}

    def route(self) -> tuple[set[str], set[str]]:
        """Bring every kiosk's stream up to the master chain: the kiosks with new stream ops,
        and the accounts whose value the new master ops changed. Nothing while a restore is
        recovering (`_restore_done` routes then)."""
        if self.restoring:
            return set(), set()
        devices = self._devices()
        book = self.streams
        changed: set[str] = set()
        valued: set[str] = set()
        if book.restored:  # the first routing after a restore: not twice to any kiosk
            master = self.store.ops(self.replica, book.routed)
            changed.update(book.reroute(master, devices))
            valued.update(o.account for o in master if o.kind is Kind.INC)
        for device in book.unknown(devices):
            after = 0
            prefix: list[Op] = []
            while after < book.routed:
                chunk = self.store.ops(self.replica, after, limit=1000)
                if not chunk:
                    break
                prefix.extend(o for o in chunk if o.seq <= book.routed)
                after = chunk[-1].seq
            book.start(device, devices[device], prefix)
        while True:
            ops = self.store.ops(self.replica, book.routed, limit=1000)
            if not ops:
                return changed, valued
            changed.update(book.route(ops, devices))
            valued.update(o.account for o in ops if o.kind is Kind.INC)

    def publish_new(self, exclude: str = "") -> list[Outgoing]:
        """Route the master chain's new ops and push each kiosk's new stream ops (operator
        actions reach every online kiosk of the scope within a sweep tick)."""
        out: list[Outgoing] = self.expire_waiting()
        devices = self._devices()
        changed, valued = self.route()
        for device in sorted(changed):
            if device != exclude and device in self._sent_cloud:
                out.extend(self.push_chain(Topics(devices[device], device)))
        # A counter top-up: every online kiosk that knows the account sees it.
        per_device: dict[str, list[str]] = {}
        for account in sorted(valued):
            for device in self.streams.audience(account, devices):
                if device in self._sent_cloud:
                    per_device.setdefault(device, []).append(account)
        return out + self._snapshots_each(per_device, devices)

    def push_chain(self, t: Topics) -> list[Outgoing]:
        """The device's stream after what it holds (its grants need the prefix)."""
        known = self._sent_cloud.get(t.device)
        if known is None:
            dev = self.store.device(t.device)
            known = dev.cloud_head if dev else 0
        out = []
        for _ in range(10):
            ops = self.streams.ops(t.device, known, self.chain_chunk)
            if not ops:
                break
            out.append(self.seal(t.grants, ChainOps(batch=encode_ops(ops))))
            known = ops[-1].seq
        self._sent_cloud[t.device] = known
        return out

    def snapshot(self, t: Topics, account: str) -> Outgoing:
        """The account's values as the cloud holds them, for the kiosk of `t`."""
        return self._snapshots_to(t, [account])[0]

    def _snapshots_to(
        self,
        t: Topics,
        accounts: Sequence[str],
        purses: Mapping[str, Sequence[PurseState]] | None = None,
    ) -> list[Outgoing]:
        """The accounts' values as the cloud holds them (`purses`, read here if not given), with
        how much of this kiosk's own chain they include (the kiosk adds what it wrote since) and
        its rights: one signed message per `SNAPSHOT_CHUNK` accounts."""
        if purses is None:
            purses = self.store.purses_of(accounts)
        own_head = self.store.head(t.device)[0]
        now = self.clock()
        items = []
        for account in accounts:
            states = purses[account]
            items.append(
                Snapshot(
                    account=account,
                    values={s.purse: s.value for s in states},
                    rights={s.purse: s.rights(t.device) for s in states},
                    as_of_ms=now,
                    own_head=own_head,
                )
            )
        return [
            self.seal(t.grants, Snapshots(items=items[i : i + SNAPSHOT_CHUNK]))
            for i in range(0, len(items), SNAPSHOT_CHUNK)
        ]

    def snapshots(self, accounts: Sequence[str], origin: str) -> list[Outgoing]:
        """Every kiosk that knows these accounts gets their new values (an account without a
        home only at `origin`, or its snapshots would go to the whole fleet)."""
        devices = self._devices()
        per_device: dict[str, list[str]] = {}
        for account in accounts:
            if self.streams.home(account) is None:
                targets = [origin]
            else:
                targets = self.streams.audience(account, devices)
            for device in targets:
                per_device.setdefault(device, []).append(account)
        return self._snapshots_each(per_device, devices)

    def _snapshots_each(
        self, per_device: Mapping[str, Sequence[str]], devices: Mapping[str, str]
    ) -> list[Outgoing]:
        wanted = sorted({a for accounts in per_device.values() for a in accounts})
        purses = self.store.purses_of(wanted) if wanted else {}
        out = []
        for device, accounts in per_device.items():
            out.extend(self._snapshots_to(Topics(devices[device], device), accounts, purses))
        return out

    def sweep(self) -> list[Outgoing]:
        """Recall rights that kiosks have held without using for `idle_recall_s`; run the
        membership upkeep when due (tier review, points lapsing: cloud_sync.upkeep)."""
        if self.membership is not None:
            due_upkeep(self.store, self.membership, self.clock())
        cutoff = self.clock() - int(self.escrow.idle_recall_s * 1000)
        idle: dict[tuple[str, str], list[escrow.Idle]] = {}
        sites: dict[str, str] = {}
        for account, purse, device, held in self.store.idle_rights(cutoff):
            dev = self.store.device(device)
            if dev is None:
                continue
            sites[device] = dev.site
            home = self.streams.home(account)
            usual = home is not None and self.streams.in_scope(home, dev.site)
            idle.setdefault((account, purse), []).append(escrow.Idle(device, held, usual))
        out = []
        for (account, purse), holders in idle.items():
            state = self.store.purse(account, purse)
            for device, amount in escrow.idle_recalls(
                state, holders, self.replica, self.escrow
            ).items():
                # Unique per purse: the kiosk answers a recall once per id (its xfer's ref),
                # so one id for all of a kiosk's idle purses would recall only the first.
                heads = f"{self.store.head(self.replica)[0]}:{self.store.head(device)[0]}"
                rid = f"idle:{heads}:{account}:{purse}"
                out.append(self._recall(sites[device], device, rid, account, purse, amount))
        return out

    def _place_standing(self, site: str, accounts: Sequence[str], payees: Sequence[str]) -> None:
        """Useful offline: each member of a scope gets `standing` rights at the kiosks of the
        scope that take payment in that unit, while the cloud keeps the unit's `reserve` free
        for use anywhere else (docs/escrow-policy.md)."""
        devices = self._devices()
        kiosks = [d for d in payees if devices.get(d) == site]
        for account in accounts:
            for state in self.store.purses(account):
                unit = purse_unit(state.purse)
                if not self.escrow.standing.get(unit, 0):
                    continue
                free = escrow.free(state, self.replica)
                for device in kiosks:
                    if device not in self._payees.get(unit, ()):
                        continue
                    want = escrow.standing_grant(state, device, self.escrow, free)
                    if not want:
                        continue
                    ref = f"standing:{device}:{account}:{state.purse}:{state.value}"
                    if self.store.grant(account, state.purse, device, want, want, ref):
                        free -= want

    def _standing_after(self, t: Topics, ops: Sequence[Op]) -> None:
        """A kiosk that takes payment for the first time gets the standing floats of its
        scope's members; the members of a batch get theirs back at every payee."""
        if not self.escrow.standing:
            return
        new_payee = False
        for op in ops:
            if op.kind in SPENDING and not op.account.startswith(rec.COUPON_PREFIX):
                unit = purse_unit(op.purse)
                if t.device not in self._payees.setdefault(unit, set()):
                    self._payees[unit].add(t.device)
                    new_payee = True
        if new_payee:
            self._place_standing(t.site, self.streams.members_of(t.site), [t.device])
        accounts = sorted({op.account for op in ops if self.streams.home(op.account) == t.site})
        if accounts:
            everyone = sorted(set().union(*self._payees.values()))
            self._place_standing(t.site, accounts, everyone)

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


class _DeviceKeys:
    """The keyring `edge.ledger.chain.check_op` needs, over the cloud store: who signs what."""

    keeper_role: Role = "cloud"

    def __init__(self, store: CloudStore, cloud: str) -> None:
        self._store = store
        self.cloud = cloud

    def public_key(self, replica: str) -> Ed25519PublicKey | None:
        return self._store.public_key(replica)

    def role_of(self, replica: str) -> Role | None:
        if replica == self.cloud:
            return "cloud"
        return "kiosk" if self._store.device(replica) is not None else None


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
            await honour_cancel(client.publish(o.topic, o.payload, qos=1, retain=o.retain))

    async def run(self) -> None:
        backoff = 0.2
        # Secret: a client that knew a connected client's id would take its session.
        ident = self.settings.client_id or secret_client_id("reconciler")
        while True:
            # A persistent session: what kiosks publish while we reconnect is queued for us.
            client = manual_ack_client(
                identifier=ident,
                **self.settings.broker.client_kwargs(self.settings.session_expiry_s),
            )
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
                        await run_until_cancelled(
                            [
                                tg.create_task(self._sweeper(), name="reconciler-sweep"),
                                tg.create_task(self._streams(), name="reconciler-streams"),
                                tg.create_task(self._consume(client), name="reconciler-consume"),
                            ]
                        )
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
        async for message in client.messages:
            payload = message.payload
            if isinstance(payload, bytes | bytearray):
                outs = self._handle_safely(str(message.topic), bytes(payload), message.retain)
                await self.publish(outs)  # a cancel lost in a publish is raised there (edge.aio)
            self.handled += 1
            ack(client, message)

    async def _streams(self) -> None:
        """Operator actions (a card linked, lost or frozen, a counter top-up) are written to the
        store by another process: route them into the kiosks' streams within a tick."""
        await self._every(
            self.settings.stream_interval_s, self.reconciler.publish_new, "stream routing"
        )

    async def _sweeper(self) -> None:
        await self._every(self.settings.sweep_interval_s, self.reconciler.sweep, "recall sweep")

    async def _every(
        self, interval_s: float, step: Callable[[], list[Outgoing]], what: str
    ) -> None:
        """Run `step` every `interval_s` and publish what it returns, for ever."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                outs = step()
            except Exception:  # a store hiccup must not take the consumer down with it
                log.exception("%s failed", what)
                continue
            await self.publish(outs)
