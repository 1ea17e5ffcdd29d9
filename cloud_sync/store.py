"""The cloud store: one interface, two backends (SQLite embedded default here, PostgreSQL in
`cloud_sync.pgstore`). It holds every replica's chain (verified, stored exactly once), the cloud's
own chain (grants, top-ups, registers), the kiosk directory and the deny list of each site."""

from __future__ import annotations

import abc
import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlite_utils import Database, Migrations

from cloud_sync.errors import StoreError
from cloud_sync.fleet import prepare_sqlite, refuse_while_restoring
from cloud_sync.protocol import DenyDelta, DenyEntry
from edge.ledger import Intent, Kind, Ledger, PurseState, Refusal, Register, SpendRefused
from edge.ledger import op as opcodec
from edge.ledger.chain import ForkDebt, Role
from edge.ledger.op import Op

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Device:
    """A kiosk as the cloud knows it: where it is, what it last said, how far it is behind."""

    device: str
    site: str
    online: bool
    head: int  # newest seq the kiosk reported
    stored: int  # newest contiguous seq the cloud holds (what it acks)
    queue_depth: int
    recovering: int
    cloud_head: int  # newest seq of the cloud's chain the kiosk reported holding
    last_seen_ms: int
    role: str = "gate"  # gate | pos | topup: what the cloud lets it credit (chain.KioskAuthority)
    trust: str = "ok"  # ok | quarantined | revoked: the later ops of a device not ok are held
    trust_reason: str = ""
    credit_day: int = 0  # the cloud's day number (UTC) of `credit_today`
    credit_today: int = 0  # cash this kiosk credited that day

    @property
    def lag(self) -> int:
        return max(0, self.head - self.stored)


ROLES = ("gate", "pos", "topup")
TRUST_STATES = ("ok", "quarantined", "revoked")


@dataclass(frozen=True, slots=True)
class HeldOp:
    """A kiosk op held for an operator's review, never applied to balances until released."""

    device: str
    op: Op
    reason: str
    held_ms: int


@dataclass(frozen=True, slots=True)
class DeviceFlags:
    """What the cloud noticed about a sender: messages refused (malformed, forged, outside the
    limits) and ops stamped far from the cloud's clock, each with the last reason."""

    refused: int = 0
    last_refusal: str = ""
    skewed: int = 0
    last_skew: str = ""


FLAG_KINDS = ("refused", "skewed")


@dataclass(frozen=True, slots=True)
class ForkPart:
    """A part of a forked kiosk's set-aside branch, accounted: the branch (its kiosk and the seq
    where it forked), the branch's head it follows (`after`) and its new one, and each purse's
    debt so far."""

    device: str
    fork_seq: int
    after: int
    head: tuple[int, bytes]
    debts: Sequence[ForkDebt]
    now_ms: int

    @property
    def key(self) -> tuple[str, int]:
        return (self.device, self.fork_seq)

    def follows(self, row: Sequence[Any] | None) -> bool:
        """Whether the branch's stored head (its row, if any) is still the one this follows."""
        return (self.fork_seq - 1 if row is None else int(row[0])) == self.after

    @property
    def head_row(self) -> tuple[object, ...]:
        return (self.device, self.fork_seq, self.head[0], self.head[1], self.now_ms)

    @property
    def debt_rows(self) -> list[tuple[object, ...]]:
        return [
            (self.device, self.fork_seq, d.account, d.purse, d.spent, d.held, d.debt, self.now_ms)
            for d in self.debts
        ]


@dataclass(frozen=True, slots=True)
class RecordedForkDebt:
    """A purse's debt for a forked kiosk's set-aside branch (`edge.ledger.chain.fork_debts`),
    as the cloud recorded it: the branch is named by its kiosk and the seq where it forked."""

    device: str
    fork_seq: int
    debt: ForkDebt
    recorded_ms: int


@dataclass(frozen=True, slots=True)
class Claim:
    """A one-time enrollment claim: the operator hands its code to a field tech; the store holds
    only a hash of the code (`claim_id`) and a key derived from it (`key`), never the code."""

    claim_id: str
    key: bytes
    site: str
    device: str  # "" = any device name
    created_ms: int
    expires_ms: int
    used_ms: int | None = None
    used_by: str = ""  # device id that used it
    request: bytes = b""  # digest of the request that used it (a replay of it is answered again)
    certificate: bytes = b""  # PEM issued for that request
    reenroll: bool = False

    def __repr__(self) -> str:
        return f"Claim({self.claim_id}, site={self.site!r}, used_by={self.used_by!r})"


DEVICE_COLUMNS = (
    "device, site, online, head, queue_depth, recovering, cloud_head, last_seen_ms, role, trust,"
    " trust_reason, credit_day, credit_today"
)


def device_from_row(row: Sequence[object], stored: int) -> Device:
    device, site, online, head, qd, rec, ch, seen, role, trust, why, day, today = row
    return Device(
        device=str(device),
        site=str(site),
        online=bool(online),
        head=int(str(head)),
        stored=stored,
        queue_depth=int(str(qd)),
        recovering=int(str(rec)),
        cloud_head=int(str(ch)),
        last_seen_ms=int(str(seen)),
        role=str(role),
        trust=str(trust),
        trust_reason=str(why),
        credit_day=int(str(day)),
        credit_today=int(str(today)),
    )


_CLAIM_COLUMNS = (
    "claim_id, key, site, device, created_ms, expires_ms, used_ms, used_by, request,"
    " certificate, reenroll"
)


def _blob(value: object) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise StoreError(f"expected bytes in the store, got {type(value).__name__}")
    return bytes(value)


def claim_from_row(row: Sequence[object]) -> Claim:
    cid, key, site, device, created, expires, used, by, req, cert, re = row
    return Claim(
        claim_id=str(cid),
        key=_blob(key),
        site=str(site),
        device=str(device),
        created_ms=int(str(created)),
        expires_ms=int(str(expires)),
        used_ms=None if used is None else int(str(used)),
        used_by=str(by),
        request=_blob(req),
        certificate=_blob(cert),
        reenroll=bool(re),
    )


class CloudStore(abc.ABC):
    """What the reconciler needs from storage. Every method is one transaction."""

    replica: str

    # -- chains ----------------------------------------------------------------------------

    @abc.abstractmethod
    def trust(self, replica: str, public_key: bytes, role: Role) -> None: ...

    @abc.abstractmethod
    def public_key(self, replica: str) -> Ed25519PublicKey | None: ...

    @abc.abstractmethod
    def ingest(self, ops: Sequence[Op]) -> dict[str, int]:
        """Verify and store ops exactly once; counts of applied/duplicate/pending/refused as
        `edge.ledger.chain` defines them (`applied` includes pending ops let through)."""

    @abc.abstractmethod
    def head(self, replica: str) -> tuple[int, bytes]: ...

    @abc.abstractmethod
    def pending_count(self) -> int:
        """Ops held for a missing predecessor (0 once every gap has filled)."""

    @abc.abstractmethod
    def heads(self) -> dict[str, int]: ...

    @abc.abstractmethod
    def ops(self, replica: str, after_seq: int = 0, limit: int | None = None) -> list[Op]: ...

    @abc.abstractmethod
    def append(self, intents: Sequence[Intent], ref: str = "") -> list[Op]:
        """The cloud's own writes, rights checked and serialized across reconcilers."""

    @abc.abstractmethod
    def by_ref(self, ref: str) -> list[Op]:
        """The cloud's own ops written with this ref (a grant already made for a request)."""

    @abc.abstractmethod
    def purse(self, account: str, purse: str) -> PurseState: ...

    @abc.abstractmethod
    def purses(self, account: str | None = None) -> list[PurseState]: ...

    def purse_many(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], PurseState]:
        """Several purses at once (a backend may answer in one round trip)."""
        return {(a, p): self.purse(a, p) for a, p in keys}

    def purses_of(self, accounts: Sequence[str]) -> dict[str, list[PurseState]]:
        """Every purse of each account (a backend may answer in one round trip)."""
        return {a: self.purses(a) for a in accounts}

    @abc.abstractmethod
    def register(self, account: str, name: str) -> Register | None: ...

    @abc.abstractmethod
    def account_of(self, register_name: str) -> str | None:
        """The account holding a register (e.g. `card:<token>`), if any."""

    @abc.abstractmethod
    def registers_named(self, name: str) -> list[tuple[str, str]]:
        """(account, value) of every account holding this register (e.g. every member name)."""

    @abc.abstractmethod
    def history(self, account: str, limit: int = 50) -> list[Op]: ...

    def ops_with_ref(self, ref: str, account: str | None = None) -> list[Op]:
        """Every replica's ops written with `ref` (a tap id), for refunds. With the account,
        only its recent history is read; without, every chain (slow on a big store)."""
        if account is not None:
            return [o for o in self.history(account, 100_000) if o.ref == ref]
        return [o for r in self.heads() for o in self.ops(r) if o.ref == ref]

    @abc.abstractmethod
    def idle_rights(self, before_ms: int) -> list[tuple[str, str, str, int]]:
        """(account, purse, kiosk, rights) of kiosks holding rights on a purse they have not
        touched since `before_ms` (candidates for a recall)."""

    def grant(self, account: str, purse: str, to: str, want: int, need: int, ref: str) -> list[Op]:
        """Transfer min(want, cloud rights) to `to`, if at least `need`; idempotent by ref.
        The store's append re-checks rights in its own transaction, so a stale read can only
        make this retry, never over-grant."""
        done = self.by_ref(ref)
        if done:
            return done
        for _ in range(5):
            rights = self.purse(account, purse).rights(self.replica)
            amount = min(want, rights)
            if amount < max(need, 1):
                return []
            try:
                return self.append([Intent(Kind.XFER, account, purse, amount, counterpart=to)], ref)
            except SpendRefused as exc:
                if exc.reason is not Refusal.INSUFFICIENT_RIGHTS:  # a retry cannot help
                    log.warning("grant to %s refused: %s", to, exc)
                    return []
        return []

    # -- directory and deny list -----------------------------------------------------------

    @abc.abstractmethod
    def enroll(self, device: str, site: str, role: str = "gate") -> None: ...

    @abc.abstractmethod
    def set_trust(self, device: str, trust: str, reason: str) -> None:
        """Quarantine, revoke or release a device (`TRUST_STATES`)."""

    @abc.abstractmethod
    def set_role(self, device: str, role: str) -> None: ...

    @abc.abstractmethod
    def add_credit(self, device: str, day: int, amount: int) -> None:
        """Count cash a kiosk credited on a cloud day (a new day starts from 0)."""

    @abc.abstractmethod
    def hold(self, device: str, ops: Sequence[Op], reason: str, now_ms: int) -> None:
        """Keep a device's ops for review (a second copy of a held seq is ignored)."""

    @abc.abstractmethod
    def held(self, device: str | None = None) -> list[HeldOp]:
        """Ops held for review, by device and seq."""

    @abc.abstractmethod
    def take_held(self, device: str) -> list[Op]:
        """Remove and return a device's held ops (released by an operator)."""

    # -- forked kiosks' set-aside branches ---------------------------------------------

    @abc.abstractmethod
    def fork_head(self, device: str, fork_seq: int) -> tuple[int, bytes] | None:
        """(seq, hash) of the newest op of a set-aside branch already accounted; None if none."""

    @abc.abstractmethod
    def record_fork(self, part: ForkPart) -> bool:
        """Account a part of a branch: its new head and each purse's debt so far (replacing the
        branch's earlier rows), only if the branch's accounted head is still `part.after`.
        False, writing nothing, when another upload got there first: a branch uploaded twice
        is recorded once."""

    @abc.abstractmethod
    def fork_debts(self, device: str | None = None) -> list[RecordedForkDebt]:
        """Recorded fork debts, by device, branch and purse."""

    @abc.abstractmethod
    def device(self, device: str) -> Device | None: ...

    @abc.abstractmethod
    def devices(self) -> list[Device]: ...

    @abc.abstractmethod
    def seen(self, device: str, **fields: int | bool) -> None:
        """Record what a device said (status, hello) and when."""

    @abc.abstractmethod
    def flag(self, sender: str, kind: str, reason: str) -> None:
        """Count a refused message (`kind` "refused") or a skewed op ("skewed") of a sender,
        keeping the reason; `sender` may be a device or a claim id."""

    @abc.abstractmethod
    def flags(self) -> dict[str, DeviceFlags]:
        """Every sender's counters, for the fleet view."""

    @abc.abstractmethod
    def deny(self, site: str, entries: Sequence[DenyEntry], wall_ms: int) -> DenyDelta:
        """Append a deny-list delta with the site's next version."""

    @abc.abstractmethod
    def deny_since(self, site: str, since: int, limit: int = 1000) -> list[DenyDelta]: ...

    # -- enrollment claims (not abstract: a store without them refuses online enrollment) ---

    def add_claim(self, claim: Claim) -> None:
        raise StoreError(f"{type(self).__name__} holds no enrollment claims")

    def claim(self, claim_id: str) -> Claim | None:
        raise StoreError(f"{type(self).__name__} holds no enrollment claims")

    def use_claim(
        self,
        claim_id: str,
        *,
        device: str,
        request: bytes,
        certificate: bytes,
        reenroll: bool,
        now_ms: int,
    ) -> bool:
        """Mark an unused, unexpired claim used by this request, atomically: True for exactly
        one caller, even with several reconcilers racing on the same claim."""
        raise StoreError(f"{type(self).__name__} holds no enrollment claims")

    # -- reports (read-only SQL over the tables both backends share) ----------------------

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query with `?` placeholders over `ops`, `shares`, `registers` and
        `devices`, which both backends hold with the same columns (`cloud_sync.reports`)."""
        raise StoreError(f"{type(self).__name__} answers no report queries")

    @abc.abstractmethod
    def close(self) -> None: ...


def _delta(site: str, version: int, entries: str) -> DenyDelta:
    return DenyDelta(
        site=site,
        version=version,
        entries=[DenyEntry(token=t, status=s) for t, s in json.loads(entries)],
    )


def entries_json(entries: Sequence[DenyEntry]) -> str:
    return json.dumps([[e.token, e.status] for e in entries], separators=(",", ":"))


_cloud_migrations = Migrations("kiosk-edge-cloud")


@_cloud_migrations(name="0001_directory_denylist")
def _m0001(db: Database) -> None:
    db.execute(
        """CREATE TABLE devices (
            device TEXT PRIMARY KEY,
            site TEXT NOT NULL,
            online INTEGER NOT NULL DEFAULT 0,
            head INTEGER NOT NULL DEFAULT 0,
            queue_depth INTEGER NOT NULL DEFAULT 0,
            recovering INTEGER NOT NULL DEFAULT 0,
            cloud_head INTEGER NOT NULL DEFAULT 0,
            last_seen_ms INTEGER NOT NULL DEFAULT 0
        )"""
    )
    db.execute(
        """CREATE TABLE denylist (
            site TEXT NOT NULL,
            version INTEGER NOT NULL,
            entries TEXT NOT NULL,
            wall_ms INTEGER NOT NULL,
            PRIMARY KEY (site, version)
        )"""
    )
    db.execute("CREATE INDEX registers_name ON registers (name)")


@_cloud_migrations(name="0002_claims")
def _m0002(db: Database) -> None:
    db.execute(
        """CREATE TABLE claims (
            claim_id TEXT PRIMARY KEY,
            key BLOB NOT NULL,
            site TEXT NOT NULL,
            device TEXT NOT NULL DEFAULT '',
            created_ms INTEGER NOT NULL,
            expires_ms INTEGER NOT NULL,
            used_ms INTEGER,
            used_by TEXT NOT NULL DEFAULT '',
            request BLOB NOT NULL DEFAULT x'',
            certificate BLOB NOT NULL DEFAULT x'',
            reenroll INTEGER NOT NULL DEFAULT 0
        )"""
    )


@_cloud_migrations(name="0003_device_flags")
def _m0003(db: Database) -> None:
    db.execute(
        """CREATE TABLE device_flags (
            sender TEXT PRIMARY KEY,
            refused INTEGER NOT NULL DEFAULT 0,
            last_refusal TEXT NOT NULL DEFAULT '',
            skewed INTEGER NOT NULL DEFAULT 0,
            last_skew TEXT NOT NULL DEFAULT ''
        )"""
    )


@_cloud_migrations(name="0004_device_trust")
def _m0004(db: Database) -> None:
    for column in (
        "role TEXT NOT NULL DEFAULT 'gate'",
        "trust TEXT NOT NULL DEFAULT 'ok'",
        "trust_reason TEXT NOT NULL DEFAULT ''",
        "credit_day INTEGER NOT NULL DEFAULT 0",
        "credit_today INTEGER NOT NULL DEFAULT 0",
    ):
        db.execute(f"ALTER TABLE devices ADD COLUMN {column}")
    db.execute(
        """CREATE TABLE held (
            device TEXT NOT NULL,
            seq INTEGER NOT NULL,
            op BLOB NOT NULL,
            reason TEXT NOT NULL,
            held_ms INTEGER NOT NULL,
            PRIMARY KEY (device, seq)
        )"""
    )


@_cloud_migrations(name="0005_forks")
def _m0005(db: Database) -> None:
    for statement in FORK_TABLES:
        db.execute(statement.replace("BYTEA", "BLOB"))


# Both stores (PostgreSQL: migration "forks" of cloud_sync.pgschema).
FORK_TABLES = (
    """CREATE TABLE forks (
        device TEXT NOT NULL, fork_seq BIGINT NOT NULL, head_seq BIGINT NOT NULL,
        head_hash BYTEA NOT NULL, recorded_ms BIGINT NOT NULL, PRIMARY KEY (device, fork_seq))""",
    """CREATE TABLE fork_debts (
        device TEXT NOT NULL, fork_seq BIGINT NOT NULL, account TEXT NOT NULL,
        purse TEXT NOT NULL, spent BIGINT NOT NULL, held BIGINT NOT NULL, debt BIGINT NOT NULL,
        recorded_ms BIGINT NOT NULL, PRIMARY KEY (device, fork_seq, account, purse))""",
)


def fork_sql(mark: str) -> dict[str, str]:
    """The statements of the fork records (the same SQL on both stores, `mark` their
    placeholder)."""
    m = mark
    return {
        "head": f"SELECT head_seq, head_hash FROM forks WHERE device = {m} AND fork_seq = {m}",
        "lock": f"SELECT head_seq FROM forks WHERE device = {m} AND fork_seq = {m}",
        "put": f"INSERT INTO forks VALUES ({m}, {m}, {m}, {m}, {m}) ON CONFLICT (device, fork_seq)"
        " DO UPDATE SET head_seq = excluded.head_seq, head_hash = excluded.head_hash,"
        " recorded_ms = excluded.recorded_ms",
        "debt": f"INSERT INTO fork_debts VALUES ({m}, {m}, {m}, {m}, {m}, {m}, {m}, {m})"
        " ON CONFLICT (device, fork_seq, account, purse) DO UPDATE SET spent = excluded.spent,"
        " held = excluded.held, debt = excluded.debt, recorded_ms = excluded.recorded_ms",
        "debts": "SELECT device, fork_seq, account, purse, spent, held, debt, recorded_ms"
        f" FROM fork_debts WHERE CAST({m} AS TEXT) IS NULL OR device = {m}"
        " ORDER BY device, fork_seq, account, purse",
    }


def fork_debts_of(rows: Sequence[Sequence[Any]]) -> list[RecordedForkDebt]:
    return [
        RecordedForkDebt(
            str(r[0]),
            int(r[1]),
            ForkDebt(str(r[2]), str(r[3]), int(r[4]), int(r[5]), int(r[6])),
            int(r[7]),
        )
        for r in rows
    ]


def flag_sql(kind: str, mark: str) -> str:
    """The upsert of one counter (the same SQL on both stores, `mark` their placeholder)."""
    if kind not in FLAG_KINDS:
        raise StoreError(f"unknown flag {kind!r}")
    last = "last_refusal" if kind == "refused" else "last_skew"
    return (
        f"INSERT INTO device_flags (sender, {kind}, {last}) VALUES ({mark}, 1, {mark})"
        f" ON CONFLICT (sender) DO UPDATE SET {kind} = device_flags.{kind} + 1,"
        f" {last} = excluded.{last}"
    )


FLAGS_SQL = "SELECT sender, refused, last_refusal, skewed, last_skew FROM device_flags"


def flags_of(rows: Sequence[Sequence[object]]) -> dict[str, DeviceFlags]:
    return {
        str(r[0]): DeviceFlags(int(str(r[1])), str(r[2]), int(str(r[3])), str(r[4])) for r in rows
    }


_FORK_SQL = fork_sql("?")
_DEVICE_FIELDS = ("online", "head", "queue_depth", "recovering", "cloud_head", "last_seen_ms")


class SqliteCloudStore(CloudStore):
    """The embedded default: the cloud replica's own Ledger file plus the directory, deny list
    and claims tables, which this store reaches on a connection of its own. One process."""

    def __init__(
        self, path: Path | str, *, replica: str, key: Ed25519PrivateKey, durable: bool = True
    ) -> None:
        """`durable=False`: no fsync per commit, for fixtures and simulations only."""
        self.ledger = Ledger(path, replica=replica, key=key, role="cloud", durable=durable)
        self.replica = replica
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
        self._conn.execute("PRAGMA busy_timeout=5000")
        _cloud_migrations.apply(Database(self._conn))
        prepare_sqlite(self._conn)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def trust(self, replica: str, public_key: bytes, role: Role) -> None:
        self.ledger.trust(replica, public_key, role)

    def public_key(self, replica: str) -> Ed25519PublicKey | None:
        return self.ledger.public_key(replica)

    def ingest(self, ops: Sequence[Op]) -> dict[str, int]:
        return self.ledger.apply_many(ops)

    def head(self, replica: str) -> tuple[int, bytes]:
        return self.ledger.head(replica)

    def heads(self) -> dict[str, int]:
        return self.ledger.heads()

    def pending_count(self) -> int:
        return self.ledger.pending_count()

    def ops(self, replica: str, after_seq: int = 0, limit: int | None = None) -> list[Op]:
        return list(self.ledger.ops(replica, after_seq, limit))

    def append(self, intents: Sequence[Intent], ref: str = "") -> list[Op]:
        refuse_while_restoring(self._conn)
        return self.ledger.append(intents, ref)

    def by_ref(self, ref: str) -> list[Op]:
        return self.ledger.ops_with_ref(ref)

    def purse(self, account: str, purse: str) -> PurseState:
        return self.ledger.purse(account, purse)

    def purses(self, account: str | None = None) -> list[PurseState]:
        return self.ledger.purses(account)

    def register(self, account: str, name: str) -> Register | None:
        return self.ledger.register(account, name)

    def account_of(self, register_name: str) -> str | None:
        return self.ledger.account_of(register_name)

    def registers_named(self, name: str) -> list[tuple[str, str]]:
        return self.ledger.registers_named(name)

    def history(self, account: str, limit: int = 50) -> list[Op]:
        return self.ledger.history(account, limit)

    def idle_rights(self, before_ms: int) -> list[tuple[str, str, str, int]]:
        return self.ledger.idle_rights(before_ms)

    def enroll(self, device: str, site: str, role: str = "gate") -> None:
        with self._write() as c:
            c.execute(
                "INSERT INTO devices (device, site, role) VALUES (?, ?, ?)"
                " ON CONFLICT (device) DO UPDATE SET site = excluded.site, role = excluded.role",
                (device, site, role),
            )

    def fork_head(self, device: str, fork_seq: int) -> tuple[int, bytes] | None:
        row = self._conn.execute(_FORK_SQL["head"], (device, fork_seq)).fetchone()
        return None if row is None else (int(row[0]), _blob(row[1]))

    def record_fork(self, part: ForkPart) -> bool:
        with self._write() as c:
            row = c.execute(_FORK_SQL["lock"], part.key).fetchone()
            if not part.follows(row):
                return False
            c.execute(_FORK_SQL["put"], part.head_row)
            c.executemany(_FORK_SQL["debt"], part.debt_rows)
        return True

    def fork_debts(self, device: str | None = None) -> list[RecordedForkDebt]:
        return fork_debts_of(self._conn.execute(_FORK_SQL["debts"], (device, device)).fetchall())

    def _device(self, row: Sequence[object]) -> Device:
        return device_from_row(row, self.head(str(row[0]))[0])

    def device(self, device: str) -> Device | None:
        row = self._conn.execute(
            f"SELECT {DEVICE_COLUMNS} FROM devices WHERE device = ?", (device,)
        ).fetchone()
        return None if row is None else self._device(row)

    def devices(self) -> list[Device]:
        rows = self._conn.execute(
            f"SELECT {DEVICE_COLUMNS} FROM devices ORDER BY site, device"
        ).fetchall()
        return [self._device(r) for r in rows]

    def set_trust(self, device: str, trust: str, reason: str) -> None:
        with self._write() as c:
            c.execute(
                "UPDATE devices SET trust = ?, trust_reason = ? WHERE device = ?",
                (trust, reason, device),
            )

    def set_role(self, device: str, role: str) -> None:
        with self._write() as c:
            c.execute("UPDATE devices SET role = ? WHERE device = ?", (role, device))

    def add_credit(self, device: str, day: int, amount: int) -> None:
        with self._write() as c:
            c.execute(
                "UPDATE devices SET credit_today = CASE WHEN credit_day = ?"
                " THEN credit_today + ? ELSE ? END, credit_day = ? WHERE device = ?",
                (day, amount, amount, day, device),
            )

    def hold(self, device: str, ops: Sequence[Op], reason: str, now_ms: int) -> None:
        with self._write() as c:
            c.executemany(
                "INSERT OR IGNORE INTO held VALUES (?, ?, ?, ?, ?)",
                [(device, o.seq, opcodec.encode(o), reason, now_ms) for o in ops],
            )

    def held(self, device: str | None = None) -> list[HeldOp]:
        rows = self._conn.execute(
            "SELECT device, op, reason, held_ms FROM held WHERE ? IS NULL OR device = ?"
            " ORDER BY device, seq",
            (device, device),
        ).fetchall()
        return [HeldOp(str(d), opcodec.decode(_blob(o)), str(r), int(t)) for d, o, r, t in rows]

    def take_held(self, device: str) -> list[Op]:
        with self._write() as c:
            rows = c.execute(
                "DELETE FROM held WHERE device = ? RETURNING seq, op", (device,)
            ).fetchall()
        return [opcodec.decode(_blob(o)) for _, o in sorted(rows)]

    def seen(self, device: str, **fields: int | bool) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields if k in _DEVICE_FIELDS)
        args = [int(v) for k, v in fields.items() if k in _DEVICE_FIELDS]
        if not sets:
            return
        with self._write() as c:
            c.execute(f"UPDATE devices SET {sets} WHERE device = ?", (*args, device))

    def flag(self, sender: str, kind: str, reason: str) -> None:
        with self._write() as c:
            c.execute(flag_sql(kind, "?"), (sender[:200], reason[:500]))

    def flags(self) -> dict[str, DeviceFlags]:
        return flags_of(self._conn.execute(FLAGS_SQL).fetchall())

    def deny(self, site: str, entries: Sequence[DenyEntry], wall_ms: int) -> DenyDelta:
        body = entries_json(entries)
        with self._write() as c:
            (last,) = c.execute(
                "SELECT COALESCE(MAX(version), 0) FROM denylist WHERE site = ?", (site,)
            ).fetchone()
            c.execute(
                "INSERT INTO denylist VALUES (?, ?, ?, ?)", (site, int(last) + 1, body, wall_ms)
            )
        return _delta(site, int(last) + 1, body)

    def deny_since(self, site: str, since: int, limit: int = 1000) -> list[DenyDelta]:
        rows = self._conn.execute(
            "SELECT version, entries FROM denylist WHERE site = ? AND version > ?"
            " ORDER BY version LIMIT ?",
            (site, since, limit),
        ).fetchall()
        return [_delta(site, int(v), str(e)) for v, e in rows]

    def add_claim(self, claim: Claim) -> None:
        with self._write() as c:
            c.execute(
                f"INSERT INTO claims ({_CLAIM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    claim.claim_id,
                    claim.key,
                    claim.site,
                    claim.device,
                    claim.created_ms,
                    claim.expires_ms,
                    claim.used_ms,
                    claim.used_by,
                    claim.request,
                    claim.certificate,
                    int(claim.reenroll),
                ),
            )

    def claim(self, claim_id: str) -> Claim | None:
        row = self._conn.execute(
            f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE claim_id = ?", (claim_id,)
        ).fetchone()
        return None if row is None else claim_from_row(row)

    def use_claim(
        self,
        claim_id: str,
        *,
        device: str,
        request: bytes,
        certificate: bytes,
        reenroll: bool,
        now_ms: int,
    ) -> bool:
        # One conditional UPDATE: SQLite takes the write lock for it, so of two processes on
        # the same file exactly one sees the row still unused.
        with self._write() as c:
            cur = c.execute(
                "UPDATE claims SET used_ms = ?, used_by = ?, request = ?, certificate = ?,"
                " reenroll = ? WHERE claim_id = ? AND used_ms IS NULL AND expires_ms > ?",
                (now_ms, device, request, certificate, int(reenroll), claim_id, now_ms),
            )
        return cur.rowcount == 1

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    def close(self) -> None:
        self._conn.close()
        self.ledger.close()


def open_store(url: str, *, replica: str, key: Ed25519PrivateKey) -> CloudStore:
    """`sqlite:///path/cloud.db` (or a plain path) or `postgresql://...`."""
    if url.startswith(("postgresql://", "postgres://")):
        from cloud_sync.pgstore import PgCloudStore

        return PgCloudStore(url, replica=replica, key=key)
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
    return SqliteCloudStore(path, replica=replica, key=key)
