"""The kiosk's sync agent: uploads the ledger's unacked ops, applies what the cloud signs (grants,
recalls, snapshots, deny-list deltas) exactly once, asks for rights online within a budget, and
recovers the kiosk's own chain when the cloud holds more of it than the kiosk does.

The ledger never waits on the network: the agent reads the ledger's chain as its outbox.

    async with SyncAgent(ledger, settings) as agent:
        task = asyncio.create_task(agent.run())
        ok = await agent.request_rights("m1", "cash", 350)
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Protocol

import aiomqtt
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cloud_sync.errors import BatchError, MessageRefused, SyncError
from cloud_sync.mqtt_ack import ack, manual_ack_client
from cloud_sync.protocol import (
    CLOUD_TO_KIOSK,
    Ack,
    Answer,
    ChainOps,
    ChainWanted,
    DenyDelta,
    DenySince,
    ForkOps,
    Health,
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
    device_client_id,
    encode_ops,
    open_envelope,
    seal,
)
from cloud_sync.settings import AgentSettings
from edge.aio import honour_cancel, run_until_cancelled
from edge.ledger import Intent, Kind, Ledger, SpendRefused, load_private_key
from edge.ledger.op import SPENDING
from edge.ledger.private_files import prepare_private

log = logging.getLogger(__name__)

DenyListener = Callable[[DenyDelta], None]
HealthSource = Callable[[], Mapping[str, object]]
# How long a clean stop waits for the broker to take the retained offline status.
OFFLINE_STATUS_TIMEOUT_S = 0.4


class Transport(Protocol):
    """What the agent publishes through: its own MQTT client, or another transport (a fleet
    simulation, a test) attached with `SyncAgent.attach`."""

    async def publish(
        self, topic: str, payload: bytes, qos: int = 0, retain: bool = False
    ) -> None: ...


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class DenyList:
    """The site's deny list as this kiosk holds it: token -> status, at a version. Survives a
    restart (a kiosk that boots offline still knows every card reported lost)."""

    def __init__(self, path: Path | None) -> None:
        if path is not None:
            prepare_private(path)
        self.conn = sqlite3.connect(str(path) if path else ":memory:", isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS deny (token TEXT PRIMARY KEY, status TEXT NOT NULL,"
            " version INTEGER NOT NULL)"
        )
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value INTEGER NOT NULL)"
        )

    @property
    def version(self) -> int:
        row = self.conn.execute("SELECT value FROM state WHERE key = 'deny_version'").fetchone()
        return 0 if row is None else int(row[0])

    def apply(self, delta: DenyDelta) -> bool:
        """Apply the next delta (version + 1) durably; False for an old or out-of-order one."""
        if delta.version != self.version + 1:
            return False
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            for e in delta.entries:
                if e.status == "active":
                    self.conn.execute("DELETE FROM deny WHERE token = ?", (e.token,))
                else:
                    self.conn.execute(
                        "INSERT INTO deny VALUES (?, ?, ?) ON CONFLICT (token) DO UPDATE"
                        " SET status = excluded.status, version = excluded.version",
                        (e.token, e.status, delta.version),
                    )
            self.conn.execute(
                "INSERT INTO state VALUES ('deny_version', ?) ON CONFLICT (key)"
                " DO UPDATE SET value = excluded.value",
                (delta.version,),
            )
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        return True

    def status(self, token: str) -> str | None:
        row = self.conn.execute("SELECT status FROM deny WHERE token = ?", (token,)).fetchone()
        return None if row is None else str(row[0])

    def __len__(self) -> int:
        (n,) = self.conn.execute("SELECT COUNT(*) FROM deny").fetchone()
        return int(n)

    def close(self) -> None:
        self.conn.close()


class SnapshotBook:
    """The newest signed snapshot of each account of the kiosk's scope, in the agent's state
    file beside the deny list (survives a restart: offline after a reboot, the screen still
    shows the best knowledge)."""

    def __init__(self, path: Path | None) -> None:
        self.conn = sqlite3.connect(str(path) if path else ":memory:", isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS snapshot (account TEXT PRIMARY KEY, body BLOB NOT NULL)"
        )

    def keep_all(self, snaps: Iterable[Snapshot]) -> int:
        """Keep each snapshot unless a newer one of its account is held, in one transaction;
        returns how many were kept."""
        kept = 0
        with self.conn:
            self.conn.execute("BEGIN")
            for snap in snaps:
                old = self.get(snap.account)
                if old is not None and (old.own_head, old.as_of_ms) > (
                    snap.own_head,
                    snap.as_of_ms,
                ):
                    continue
                self.conn.execute(
                    "INSERT INTO snapshot VALUES (?, ?) ON CONFLICT (account)"
                    " DO UPDATE SET body = excluded.body",
                    (snap.account, msgspec.msgpack.encode(snap)),
                )
                kept += 1
        return kept

    def get(self, account: str) -> Snapshot | None:
        row = self.conn.execute(
            "SELECT body FROM snapshot WHERE account = ?", (account,)
        ).fetchone()
        return None if row is None else msgspec.msgpack.decode(bytes(row[0]), type=Snapshot)

    def close(self) -> None:
        self.conn.close()


class SyncAgent:
    """The kiosk side of sync. Reusable across connections, not reentrant."""

    def __init__(
        self,
        ledger: Ledger,
        settings: AgentSettings,
        *,
        key: Ed25519PrivateKey | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        """`clock`: wall ms; by default the ledger's (a kiosk daemon sets it from the cloud's
        signed time when the system clock is off)."""
        if key is None:
            if settings.key_file is None:
                raise SyncError("the agent needs the device key (settings.key_file)")
            key = load_private_key(settings.key_file)
        cloud = ledger.cloud
        if cloud is None:
            raise SyncError(f"{ledger.path}: no cloud key pinned; enroll the kiosk first")
        cloud_key = ledger.public_key(cloud)
        assert cloud_key is not None
        if ledger.replica != settings.device:
            raise SyncError(f"ledger of {ledger.replica!r} cannot sync as {settings.device!r}")
        self.ledger = ledger
        self.settings = settings
        self.key = key
        self.clock = clock or ledger.clock.wall_ms
        self.cloud = cloud
        self._cloud_key: Ed25519PublicKey = cloud_key
        self.topics = Topics(settings.site, settings.device)
        self.denylist = DenyList(settings.state_file)
        self.snapshots = SnapshotBook(settings.state_file)
        self.acked = 0  # highest contiguous seq of our chain the cloud has stored
        self.refused = 0  # messages refused (forged, replayed on the wrong topic, malformed)
        self.forked = bool(ledger.fork_set_aside)  # a fork was set aside: the operator is told
        self.online = False
        # Wall ms of the last message the cloud signed for us: how stale our copy of card
        # status and deny list may be (time passes fail closed past a configured age).
        self.last_contact_ms = 0
        # (cloud wall ms, our monotonic ms) from the newest answer to one of our own requests:
        # a signed time beacon that a replay cannot move (each answer matches one request).
        self.cloud_time: tuple[int, int] | None = None
        self._sent = 0
        self._synced = asyncio.Event()  # the cloud's ack has arrived since this connect
        self._progress = asyncio.Event()
        # A ledger held at open (found behind its head record, edge.ledger.head_record):
        # recover from the cloud at the first connect.
        self._need_recover = bool(ledger.recovering)
        self._repair_backoff_s = 0.0  # grows while a repair leaves things unresolved
        self._client: Transport | None = None
        self._rpc: dict[str, asyncio.Future[Answer]] = {}
        self._deny_listeners: list[DenyListener] = []
        self._deny_queues: list[asyncio.Queue[DenyDelta]] = []
        self._deny_gap = False
        self._chain_wanted: int | None = None  # a restored cloud asks for its chain after this
        self._health: HealthSource | None = None

    async def __aenter__(self) -> SyncAgent:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.online = False
        self.denylist.close()
        self.snapshots.close()

    # -- what the daemon reads -------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        """Own ops not yet stored by the cloud."""
        return max(0, self.ledger.head()[0] - self.acked)

    @property
    def synced(self) -> bool:
        """Online and the cloud has answered since this connect (uploads are flowing)."""
        return self.online and self._synced.is_set()

    @property
    def recovering(self) -> int:
        return self.ledger.recovering

    def snapshot(self, account: str) -> Snapshot | None:
        """The newest snapshot the cloud signed for this kiosk of an account."""
        return self.snapshots.get(account)

    def known_values(self, account: str) -> tuple[dict[str, int], int] | None:
        """The account's purse values as this kiosk best knows them, and as of when (cloud ms):
        the cloud's last signed values plus what this kiosk wrote since (docs/knowledge-model.md).
        Online that is the true balance; None when the cloud has sent none."""
        snap = self.snapshot(account)
        if snap is None:
            return None
        values = dict(snap.values)
        for op in self.ledger.ops(self.settings.device, snap.own_head):
            if op.account != account:
                continue
            if op.kind is Kind.INC:
                values[op.purse] = values.get(op.purse, 0) + op.amount
            elif op.kind in SPENDING:
                values[op.purse] = values.get(op.purse, 0) - op.amount
        return values, snap.as_of_ms

    def denied(self, token: str) -> str | None:
        """The deny-list status of a card token (HMAC), or None when it is not listed."""
        return self.denylist.status(token)

    def on_deny(self, listener: DenyListener) -> None:
        """Call `listener(delta)` for every deny-list delta applied."""
        self._deny_listeners.append(listener)

    async def deny_changes(self) -> AsyncIterator[DenyDelta]:
        """Every deny-list delta applied from now on, as an async iterator."""
        q: asyncio.Queue[DenyDelta] = asyncio.Queue()
        self._deny_queues.append(q)
        try:
            while True:
                yield await q.get()
        finally:
            self._deny_queues.remove(q)

    def notify(self) -> None:
        """Tell the uploader the ledger has new ops (it also polls)."""
        self._progress.set()

    def report_health(self, source: HealthSource) -> None:
        """Send what `source()` returns (the fields of `protocol.Health`) in every status."""
        self._health = source

    # -- sealing and publishing ------------------------------------------------------------

    def _seal(self, topic: str, msg: Message) -> bytes:
        return seal(msg, topic=topic, sender=self.settings.device, key=self.key, ts_ms=self.clock())

    def seal(self, topic: str, msg: Message) -> bytes:
        """A message of this kiosk, signed for `topic` (for a transport other than MQTT)."""
        return self._seal(topic, msg)

    def attach(self, transport: Transport) -> None:
        """Go online over `transport` instead of the MQTT loop of `run`: uplinks (rights
        requests) are published through it; downlinks are fed to `handle`."""
        self._client = transport
        self.online = True
        self._synced.set()

    def detach(self) -> None:
        """The attached transport is gone: offline, open requests fail."""
        self._went_offline()

    async def _publish(self, topic: str, msg: Message, retain: bool = False) -> None:
        client = self._client
        if client is None:
            raise aiomqtt.MqttError("offline")
        await honour_cancel(client.publish(topic, self._seal(topic, msg), qos=1, retain=retain))

    def _status(self, online: bool) -> Status:
        head = self.ledger.head()[0]
        health = None
        if self._health is not None:
            try:
                health = msgspec.convert({**self._health(), "forked": self.forked}, type=Health)
            except Exception:  # a broken gauge must not stop the status itself
                log.exception("agent %s: health report failed", self.settings.device)
        return Status(
            online=online,
            head=head,
            acked=self.acked,
            queue_depth=max(0, head - self.acked),
            recovering=self.ledger.recovering,
            wall_ms=self.clock(),
            health=health,
        )

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        """A clean stop: the retained status says offline before we disconnect (the broker
        sends the last will only for a connection that dies, not for one that says goodbye)."""
        topic = self.topics.status
        try:
            async with asyncio.timeout(OFFLINE_STATUS_TIMEOUT_S):
                await client.publish(topic, self._seal(topic, self._status(False)), 1, True)
            log.info("agent %s: offline status sent", self.settings.device)
        except (TimeoutError, aiomqtt.MqttError) as exc:
            log.warning("agent %s: offline status not sent: %s", self.settings.device, exc)

    # -- the connection --------------------------------------------------------------------

    async def run(self) -> None:
        """Keep the link up forever: connect, sync, upload, receive; jittered backoff."""
        s = self.settings
        backoff = s.backoff_min_s
        while True:
            will = aiomqtt.Will(
                self.topics.status, self._seal(self.topics.status, self._status(False)), 1, True
            )
            client = manual_ack_client(
                # The device listener replaces it with our certificate CN: we can only be us.
                identifier=device_client_id(s.device),
                will=will,
                **s.broker.client_kwargs(),
            )
            try:
                async with client:
                    self._client = client
                    for t in (
                        self.topics.ack,
                        self.topics.grants,
                        self.topics.rpc_res,
                        self.topics.denylist,
                    ):
                        await client.subscribe(t, qos=1)
                    self.online = True
                    backoff = s.backoff_min_s
                    log.info("agent %s online", s.device)
                    try:
                        async with asyncio.TaskGroup() as tg:
                            await run_until_cancelled(
                                [
                                    tg.create_task(self._receive(client), name="agent-receive"),
                                    tg.create_task(self._sync(), name="agent-sync"),
                                    tg.create_task(self._upload(), name="agent-upload"),
                                ]
                            )
                    except asyncio.CancelledError:
                        await self._say_offline(client)
                        raise
            except* (aiomqtt.MqttError, OSError) as group:
                reason = str(group.exceptions[0]) or type(group.exceptions[0]).__name__
                if "timed out" in reason.lower() and s.broker.tls is not None:
                    reason += " (with mutual TLS a refused or missing device certificate looks"
                    reason += " like a timeout: check the certificate and the CA)"
                log.warning("agent %s offline: %s", s.device, reason)
            finally:
                self._went_offline()
            await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
            backoff = min(backoff * 2, s.backoff_max_s)

    def _went_offline(self) -> None:
        self.online = False
        self._client = None
        self._synced.clear()
        for fut in self._rpc.values():
            if not fut.done():
                fut.set_exception(aiomqtt.MqttError("offline"))
        self._rpc.clear()

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for m in client.messages:
            payload = m.payload
            if isinstance(payload, bytes | bytearray):
                self.handle(str(m.topic), bytes(payload))
            ack(client, m)  # only now, with its effects durable (or refused)

    async def _rpc_call(
        self, msg: Hello | RightsRequest | Lookup | RecoverRequest | DenySince | ForkOps
    ) -> Answer:
        fut: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._rpc[msg.id] = fut
        try:
            await self._publish(self.topics.rpc_req, msg)
            return await fut
        finally:
            self._rpc.pop(msg.id, None)

    async def _sync(self) -> None:
        """At connect and every sync interval: hello (ack, missed cloud chain, missed deny
        deltas), retained status; recovery of our own chain when the cloud holds more of it."""
        s = self.settings
        while True:
            hello = Hello(
                id=uuid.uuid4().hex,
                head=self.ledger.head()[0],
                cloud_head=self.ledger.head(self.cloud)[0],
                deny_version=self.denylist.version,
            )
            try:
                async with asyncio.timeout(s.ack_timeout_s):
                    answer = await self._rpc_call(hello)
                for delta in answer.deny:
                    self._on_deny(delta)
            except TimeoutError:
                log.warning("agent %s: no answer from the cloud to hello", s.device)
                continue  # ask again (the reconciler may be reconnecting)
            if self._need_recover or self._deny_gap:
                await self._repair()
            if self.ledger.fork_set_aside and not self.ledger.recovering:
                await self._report_fork()
            await self._publish(self.topics.status, self._status(True), retain=True)
            if self._need_recover or self._deny_gap:
                # Still unresolved: ask again, but never in a tight loop (a forked kiosk asked
                # ~58 times a second). Doubling from poll_interval_s up to sync_interval_s.
                self._repair_backoff_s = min(
                    max(2 * self._repair_backoff_s, s.poll_interval_s), s.sync_interval_s
                )
                log.info("agent %s: repair again in %.1f s", s.device, self._repair_backoff_s)
                await asyncio.sleep(self._repair_backoff_s * random.uniform(0.8, 1.2))
                continue
            self._repair_backoff_s = 0.0
            try:
                async with asyncio.timeout(s.sync_interval_s):
                    while not (self._need_recover or self._deny_gap):
                        await asyncio.sleep(s.poll_interval_s)
            except TimeoutError:
                pass

    async def _repair(self) -> None:
        s = self.settings
        try:
            async with asyncio.timeout(max(5 * s.ack_timeout_s, 5.0)):
                if self._deny_gap:
                    self._deny_gap = False
                    since = DenySince(id=uuid.uuid4().hex, since=self.denylist.version)
                    for delta in (await self._rpc_call(since)).deny:
                        self._on_deny(delta)
                if self._need_recover:
                    after = self.ledger.head()[0]
                    log.warning("agent %s: recovering own chain after seq %d", s.device, after)
                    req = RecoverRequest(id=uuid.uuid4().hex, after_seq=after)
                    answer = await self._rpc_call(req)
                    if self.ledger.recovering and answer.granted <= self.ledger.head()[0]:
                        # The cloud holds no more of our chain than we do now: what is missing
                        # never reached it. Waiting would freeze the kiosk for good.
                        self.ledger.accept_lost()
                    if not self.ledger.recovering:
                        self._need_recover = False
                        log.warning("agent %s: own chain recovered", s.device)
        except TimeoutError:
            log.warning("agent %s: repair timed out; retrying at the next sync", s.device)

    async def _report_fork(self) -> None:
        """Hand the cloud the ops of our set-aside branch (a fork), batch by batch, until it
        has accounted them all; what is left is tried again at the next sync."""
        s = self.settings
        fork_seq, ops = self.ledger.fork_branch(s.batch_size)
        try:
            while ops:
                req = ForkOps(id=uuid.uuid4().hex, fork_seq=fork_seq, batch=encode_ops(ops))
                async with asyncio.timeout(max(5 * s.ack_timeout_s, 5.0)):
                    answer = await self._rpc_call(req)
                if not answer.ok:
                    log.error(
                        "agent %s: the cloud refused our forked branch: %s", s.device, answer.reason
                    )
                    return
                self.ledger.fork_reported_through(answer.granted)
                log.warning(
                    "agent %s: forked branch from #%d accounted by the cloud to #%d",
                    s.device,
                    fork_seq,
                    answer.granted,
                )
                fork_seq, ops = self.ledger.fork_branch(s.batch_size)
        except TimeoutError:
            log.warning(
                "agent %s: forked branch not yet accounted; again at the next sync", s.device
            )

    async def _upload(self) -> None:
        """Send unacked ops in seq order, at most `window` ahead of the ack; resend from the
        ack when it stops moving."""
        s = self.settings
        await self._synced.wait()
        last_ack, last_move = self.acked, time.monotonic()
        while True:
            if self._chain_wanted is not None:
                await self._return_cloud_chain(self._chain_wanted)
                continue
            head = self.ledger.head()[0]
            if self.acked != last_ack:
                last_ack, last_move = self.acked, time.monotonic()
            self._sent = max(self._sent, self.acked)
            if (
                not self.ledger.recovering
                and head > self._sent
                and self._sent - self.acked < s.window
            ):
                if self._sent == self.acked:
                    # Nothing was outstanding: the ack timer starts now, not at the last ack
                    # (after an idle minute every new op was otherwise resent at once).
                    last_move = time.monotonic()
                ops = list(self.ledger.ops(s.device, self._sent, s.batch_size))
                await self._publish(self.topics.ops, OpsUpload(batch=encode_ops(ops)))
                self._sent = ops[-1].seq
                continue
            if head > self.acked and time.monotonic() - last_move > s.ack_timeout_s:
                log.info("agent %s: no ack past %d; resending", s.device, self.acked)
                self._sent = self.acked
                last_move = time.monotonic()
                continue
            self._progress.clear()
            try:
                async with asyncio.timeout(s.poll_interval_s):
                    await self._progress.wait()
            except TimeoutError:
                pass

    async def _return_cloud_chain(self, after: int) -> None:
        """Hand a restored cloud our stream (its signed ops) after `after`, in batches."""
        ops = list(self.ledger.ops(self.cloud, after, self.settings.batch_size))
        if ops:
            await self._publish(self.topics.ops, ChainOps(batch=encode_ops(ops)))
            log.warning(
                "agent %s: returned cloud ops #%d..%d to the restored cloud",
                self.settings.device,
                ops[0].seq,
                ops[-1].seq,
            )
        full = len(ops) == self.settings.batch_size
        self._chain_wanted = ops[-1].seq if full else None

    # -- inbound ---------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes) -> None:
        """One downlink message from any transport: applied durably, or refused and counted
        (never raised: a bad message must not take the link down)."""
        try:
            self._on_message(topic, payload)
        except (MessageRefused, BatchError) as exc:
            self.refused += 1
            log.warning("refused from the cloud link: %s", exc)
        except Exception:
            # A message that reaches a fault past the decoder must not stop the kiosk, nor be
            # redelivered forever (a retained one would stop it at every start).
            self.refused += 1
            log.exception("message on %s failed; dropped", topic)

    def _on_message(self, topic: str, payload: bytes) -> None:
        if topic == self.topics.denylist:
            leaf = "denylist"
        elif topic.startswith(self.topics.base + "/"):
            leaf = topic[len(self.topics.base) + 1 :]
        else:
            raise MessageRefused(topic, "not one of this kiosk's topics")
        allowed = CLOUD_TO_KIOSK.get(leaf)
        if allowed is None:
            raise MessageRefused(topic, "not a downlink topic")
        opened = open_envelope(
            payload,
            topic=topic,
            keys=lambda s: self._cloud_key if s == self.cloud else None,
            allowed=allowed,
            sender=self.cloud,
        )
        msg = opened.message
        # How fresh our copy of the cloud's state is goes by the time the cloud signed, never
        # by when a message arrived: a days-old retained deny list is days old. Not later
        # than our own clock, so a cloud clock running ahead cannot extend it either.
        fresh = min(opened.ts_ms, self.clock())
        self.last_contact_ms = max(self.last_contact_ms, fresh)
        if isinstance(msg, Ack):
            self._on_ack(msg)
        elif isinstance(msg, ChainOps):
            self._on_chain(msg, topic)
        elif isinstance(msg, Recall):
            self._on_recall(msg)
        elif isinstance(msg, ChainWanted):
            self._chain_wanted = msg.after_seq
            self._progress.set()
        elif isinstance(msg, Snapshots):
            self.snapshots.keep_all(msg.items)
        elif isinstance(msg, DenyDelta):
            if msg.site != self.settings.site:
                raise MessageRefused(topic, f"deny delta of site {msg.site!r}")
            self._on_deny(msg)
        elif isinstance(msg, Answer):
            fut = self._rpc.get(msg.id)
            if fut is None or fut.done():
                log.info("answer %s matches no open request (late or replayed)", msg.id)
                return
            if msg.chain:
                self._apply_cloud(decode_ops(msg.chain), topic)
            self.cloud_time = (opened.ts_ms, time.monotonic_ns() // 1_000_000)
            fut.set_result(msg)

    def _on_ack(self, ack: Ack) -> None:
        head = self.ledger.head()[0]
        if ack.seq > head:
            # DESIGN.md section 4, trap 2: the cloud stored ops of ours that we no longer hold.
            if not self._need_recover:
                log.error(
                    "agent %s: cloud holds our chain to seq %d, we hold %d: refusing to spend"
                    " until recovered",
                    self.settings.device,
                    ack.seq,
                    head,
                )
            self.ledger.hold_until(ack.seq)
            self._need_recover = True
        elif ack.seq > 0:
            ours = next(self.ledger.ops(self.settings.device, ack.seq - 1, 1))
            if ours.hash() != ack.hash:
                log.critical(
                    "agent %s: our op #%d differs from the one the cloud stored: the chain has"
                    " forked (restored image that kept writing)",
                    self.settings.device,
                    ack.seq,
                )
                self._set_aside_fork(ack.seq)
                self._synced.set()  # uploads resume once the cloud's copy is recovered
                return
        if ack.seq < self.acked:
            # The cloud holds less of our chain than it acked before: restored from a backup.
            # Send again from what it holds, or our lag would never come down.
            log.warning(
                "agent %s: the cloud now holds our chain to #%d, not #%d (restored): resending",
                self.settings.device,
                ack.seq,
                self.acked,
            )
            self.acked = self._sent = ack.seq
            self._progress.set()
        if ack.seq > self.acked or not self._synced.is_set():
            if ack.seq > self.acked:
                log.info("agent %s: cloud stored our ops to #%d", self.settings.device, ack.seq)
            self.acked = max(self.acked, min(ack.seq, head))
            self._synced.set()
            self._progress.set()

    def _apply_cloud(self, ops: list, topic: str) -> None:  # type: ignore[type-arg]
        if ops and ops[0].replica != self.cloud:
            raise MessageRefused(topic, f"chain of {ops[0].replica!r} sent as the cloud's")
        counts = self.ledger.apply_many(ops)
        if counts["refused"]:
            self.refused += counts["refused"]
        log.info("applied cloud ops #%d..%d: %s", ops[0].seq, ops[-1].seq, counts)

    def _on_chain(self, msg: ChainOps, topic: str) -> None:
        ops = decode_ops(msg.batch)
        if not msg.own:
            self._apply_cloud(ops, topic)
            return
        if ops[0].replica != self.settings.device:
            raise MessageRefused(topic, f"chain of {ops[0].replica!r} sent as our own")
        counts = self.ledger.apply_many(ops)
        log.warning(
            "agent %s: recovered own ops #%d..%d: %s",
            self.settings.device,
            ops[0].seq,
            ops[-1].seq,
            counts,
        )
        if counts["refused"]:
            log.critical(
                "agent %s: recovered ops conflict with ours: forked chain", self.settings.device
            )
            self._set_aside_fork(max(ops[-1].seq, self.ledger.recovering))
            return
        if not self.ledger.recovering:
            self._need_recover = False
        self._progress.set()

    def _set_aside_fork(self, cloud_seq: int) -> None:
        """Never frozen for good: our branch is kept aside (the file named in the log and in
        `Ledger.fork_set_aside`), the cloud's copy of our chain is recovered, and the kiosk
        goes on after it. `forked` stays set: the fleet view raises a `fork` alert."""
        self.forked = True
        self.ledger.set_aside_fork(cloud_seq)
        self.acked = self._sent = 0
        self._need_recover = True
        self._progress.set()

    def _on_recall(self, msg: Recall) -> None:
        """Hand idle rights back: an xfer to the cloud, idempotent by the recall id."""
        held = self.ledger.purse(msg.account, msg.purse).rights(self.settings.device)
        amount = min(held, msg.amount)
        if amount <= 0:
            return
        try:
            self.ledger.append(
                [Intent(Kind.XFER, msg.account, msg.purse, amount, counterpart=self.cloud)],
                ref=f"recall:{msg.id}",
            )
        except SpendRefused as exc:
            log.info("recall %s not answered: %s", msg.id, exc.reason.value)
            return
        self._progress.set()

    def _on_deny(self, delta: DenyDelta) -> None:
        version = self.denylist.version
        if delta.version <= version:
            return  # already applied: a duplicate or a replay
        if delta.version > version + 1:
            self._deny_gap = True  # ask for what we missed at the next sync step
            return
        if self.denylist.apply(delta):
            log.info("deny list of %s at version %d", delta.site, delta.version)
            for listener in self._deny_listeners:
                listener(delta)
            for q in self._deny_queues:
                q.put_nowait(delta)

    # -- online rights ---------------------------------------------------------------------

    async def lookup(self, account: str) -> bool:
        """Ask the cloud for an account this kiosk does not know (a card or code of another
        scope): True once its registers and values are here; False offline, unknown or slow."""
        if not self.online or self.ledger.recovering or self.forked:
            return False
        req = Lookup(
            id=uuid.uuid4().hex, account=account, cloud_head=self.ledger.head(self.cloud)[0]
        )
        try:
            async with asyncio.timeout(self.settings.rights_budget_ms / 1000):
                answer = await self._rpc_call(req)
        except (TimeoutError, aiomqtt.MqttError):
            log.info("lookup of %s timed out or failed", account)
            return False
        return answer.ok

    async def request_rights(self, account: str, purse: str, amount: int) -> bool:
        """Get `amount` more rights on the purse than this kiosk holds now (the shortfall of a
        debit the ledger refused, as `edge.taps.pipeline.RightsSource` asks): True once they are
        here; False within the budget when they cannot be had (offline, refused, slow): the
        caller's offline policy decides then."""
        me = self.settings.device
        if amount <= 0:
            return True
        # What a debit can use of what is held: debt (negative rights) is repaid first.
        target = max(self.ledger.purse(account, purse).rights(me), 0) + amount
        if not self.online or self.ledger.recovering:
            return False
        req = RightsRequest(
            id=uuid.uuid4().hex,
            account=account,
            purse=purse,
            amount=amount,
            cloud_head=self.ledger.head(self.cloud)[0],
        )
        try:
            async with asyncio.timeout(self.settings.rights_budget_ms / 1000):
                answer = await self._rpc_call(req)
        except (TimeoutError, aiomqtt.MqttError):
            log.info("rights request for %s/%s timed out or failed", purse, account)
            return False
        if not answer.ok:
            return False
        return self.ledger.purse(account, purse).rights(me) >= target
