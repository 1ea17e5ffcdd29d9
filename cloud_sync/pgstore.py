"""The cloud store on PostgreSQL (psycopg 3), for several reconciler processes sharing the load.

Persistence only: the rules (verify, place or hold pending, totals, rights) are
`edge.ledger.chain`'s, the same the SQLite stores run. Concurrency: every write to one chain
holds a transaction-scoped advisory lock on that chain, so two reconcilers given the same batch
(redelivery, shared subscription) place it once, and the cloud's own chain (grants) is written by
one process at a time, its rights checked inside the lock: no double grant.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cloud_sync.errors import StoreError
from cloud_sync.fleet import refuse_while_restoring
from cloud_sync.pgschema import prepare
from cloud_sync.protocol import DenyDelta, DenyEntry
from cloud_sync.store import (
    _CLAIM_COLUMNS,
    _DEVICE_FIELDS,
    DEVICE_COLUMNS,
    FLAGS_SQL,
    Claim,
    CloudStore,
    Device,
    DeviceFlags,
    ForkPart,
    HeldOp,
    RecordedForkDebt,
    _delta,
    claim_from_row,
    device_from_row,
    entries_json,
    flag_sql,
    flags_of,
    fork_debts_of,
    fork_sql,
)
from edge.ledger import Intent, OpRefused, PurseState, Register, Share, chain
from edge.ledger import op as opcodec
from edge.ledger.chain import TOTALS, Role
from edge.ledger.keys import public_bytes, public_key_from_bytes
from edge.ledger.op import GENESIS, Op
from edge.ledger.records import CREDIT_LIMIT_PREFIX as CREDIT_LIMIT
from edge.ledger.sqlite_chain import OP_COLUMNS, op_from_row, op_row

log = logging.getLogger(__name__)

_COPY_OPS = f"COPY ops ({OP_COLUMNS}, hash) FROM STDIN"
_ADD_TOTALS = (
    f"INSERT INTO shares (account, purse, replica, {', '.join(TOTALS)})"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (account, purse, replica) DO UPDATE SET "
    + ", ".join(f"{t} = shares.{t} + excluded.{t}" for t in TOTALS)
)


class PgKeyring:
    """The replicas table, cached; a replica enrolled by another process is loaded on first use."""

    def __init__(self, conn: psycopg.Connection, cloud: str) -> None:
        self._conn = conn
        self._cloud = cloud
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._roles: dict[str, Role] = {}

    @property
    def keeper_role(self) -> Role:
        return "cloud"

    @property
    def cloud(self) -> str | None:
        return self._cloud

    def _load(self, replica: str) -> None:
        row = self._conn.execute(
            "SELECT public_key, role FROM replicas WHERE replica = %s", (replica,)
        ).fetchone()
        if row is not None:
            self.remember(replica, bytes(row[0]), row[1])

    def remember(self, replica: str, public_key: bytes, role: Role) -> None:
        self._keys[replica] = public_key_from_bytes(public_key)
        self._roles[replica] = role

    def public_key(self, replica: str) -> Ed25519PublicKey | None:
        if replica not in self._keys:
            self._load(replica)
        return self._keys.get(replica)

    def role_of(self, replica: str) -> Role | None:
        if replica not in self._roles:
            self._load(replica)
        return self._roles.get(replica)


class PgChainStore:
    """`edge.ledger.chain.ChainStore` inside one PostgreSQL transaction.

    Writes are buffered and sent in a few pipelined statements before any read and at the end
    of the transaction (`flush`): a batch of ops costs a handful of round trips, not several
    per op. Share rows are written in key order, so two transactions never lock them in
    opposite orders (no deadlock between a kiosk's upload and a grant to it)."""

    def __init__(self, conn: psycopg.Connection, keyring: PgKeyring) -> None:
        self._conn = conn
        self._keyring = keyring
        self._ops: list[tuple[object, ...]] = []
        self._heads: dict[str, tuple[int, bytes]] = {}
        self._totals: dict[tuple[str, str, str], dict[str, int]] = {}
        self._registers: dict[tuple[str, str], Register] = {}
        self._pending: list[tuple[str, int, bytes]] = []
        # What this transaction has read of shares and registers, kept current by its own writes:
        # a batch reads each purse once, not once per op. Rows of other chains may change
        # meanwhile (another reconciler under its own chain lock); they only add rights to the
        # replica this transaction writes for, so a check on the read values stays safe.
        self._shares_read: dict[tuple[str, str], dict[str, list[int]]] = {}
        self._registers_read: dict[tuple[str, str], Register | None] = {}

    # -- keyring ---------------------------------------------------------------------------

    @property
    def keeper_role(self) -> Role:
        return self._keyring.keeper_role

    @property
    def cloud(self) -> str | None:
        return self._keyring.cloud

    def public_key(self, replica: str) -> Ed25519PublicKey | None:
        return self._keyring.public_key(replica)

    def role_of(self, replica: str) -> Role | None:
        return self._keyring.role_of(replica)

    # -- the write buffer --------------------------------------------------------------------

    def flush(self) -> None:
        if not (self._ops or self._heads or self._totals or self._registers or self._pending):
            return
        with self._conn.cursor() as cur:
            if self._ops:
                with cur.copy(_COPY_OPS) as copy:  # one stream, not a statement per op
                    for row in self._ops:
                        copy.write_row(row)
            if self._heads:
                cur.executemany(
                    "INSERT INTO heads VALUES (%s, %s, %s) ON CONFLICT (replica) DO UPDATE"
                    " SET seq = excluded.seq, hash = excluded.hash",
                    [(r, s, h) for r, (s, h) in sorted(self._heads.items())],
                )
            if self._totals:
                cur.executemany(
                    _ADD_TOTALS,
                    [(*k, *(v.get(t, 0) for t in TOTALS)) for k, v in sorted(self._totals.items())],
                )
            if self._registers:
                cur.executemany(
                    "INSERT INTO registers VALUES (%s, %s, %s, %s, %s) ON CONFLICT"
                    " (account, name) DO UPDATE SET value = excluded.value,"
                    " version = excluded.version, replica = excluded.replica",
                    [
                        (r.account, r.name, r.value, r.version, r.replica)
                        for _, r in sorted(self._registers.items())
                    ],
                )
            if self._pending:
                cur.executemany(
                    "INSERT INTO pending VALUES (%s, %s, %s) ON CONFLICT DO NOTHING", self._pending
                )
        self._ops, self._heads, self._totals, self._registers = [], {}, {}, {}
        self._pending = []

    # -- reads (each sees the buffered writes) --------------------------------------------

    def head(self, replica: str) -> tuple[int, bytes]:
        if replica in self._heads:
            return self._heads[replica]
        row = self._conn.execute(
            "SELECT seq, hash FROM heads WHERE replica = %s", (replica,)
        ).fetchone()
        return (0, GENESIS) if row is None else (int(row[0]), bytes(row[1]))

    def stored_hash(self, replica: str, seq: int) -> bytes | None:
        self.flush()
        row = self._conn.execute(
            "SELECT hash FROM ops WHERE replica = %s AND seq = %s", (replica, seq)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def ops_with_ref(self, replica: str, ref: str) -> list[Op]:
        self.flush()
        rows = self._conn.execute(
            f"SELECT {OP_COLUMNS} FROM ops WHERE replica = %s AND ref = %s ORDER BY seq",
            (replica, ref),
        ).fetchall()
        return [op_from_row(r) for r in rows]

    def shares(self, account: str, purse: str) -> tuple[Share, ...]:
        rows = self._shares_read.get((account, purse))
        if rows is None:
            self.flush()
            found = self._conn.execute(
                "SELECT replica, inc, dec, debt, xin, xout FROM shares"
                " WHERE account = %s AND purse = %s",
                (account, purse),
            ).fetchall()
            rows = self._shares_read[(account, purse)] = {
                r[0]: [int(x) for x in r[1:]] for r in found
            }
        return tuple(Share(replica, *rows[replica]) for replica in sorted(rows))

    def register(self, account: str, name: str) -> Register | None:
        if (account, name) in self._registers:
            return self._registers[(account, name)]
        if (account, name) not in self._registers_read:
            self._registers_read[(account, name)] = _register(self._conn, account, name)
        return self._registers_read[(account, name)]

    def open_debt(self, replica: str, unit: str) -> int:
        self.flush()
        row = self._conn.execute(
            "SELECT COALESCE(SUM(GREATEST(0, dec + xout - inc - xin)), 0) FROM shares"
            " WHERE replica = %s AND (purse = %s OR purse LIKE %s || ':%%')",
            (replica, unit, unit),
        ).fetchone()
        return int(row[0]) if row else 0

    # -- writes ----------------------------------------------------------------------------

    def put_op(self, op: Op, digest: bytes) -> None:
        self._ops.append(op_row(op, digest))
        self._heads[op.replica] = (op.seq, digest)

    def add_to_total(self, account: str, purse: str, replica: str, total: str, amount: int) -> None:
        row = self._totals.setdefault((account, purse, replica), {})
        row[total] = row.get(total, 0) + amount
        read = self._shares_read.get((account, purse))
        if read is not None:
            read.setdefault(replica, [0] * len(TOTALS))[TOTALS.index(total)] += amount

    def put_register(self, register: Register) -> None:
        self._registers[(register.account, register.name)] = register

    def hold_pending(self, op: Op) -> None:
        self._pending.append((op.replica, op.seq, opcodec.encode(op)))

    def take_pending(self, replica: str, seq: int) -> Op | None:
        self.flush()
        row = self._conn.execute(
            "DELETE FROM pending WHERE replica = %s AND seq = %s RETURNING op", (replica, seq)
        ).fetchone()
        return None if row is None else opcodec.decode(bytes(row[0]))

    def discard_pending(self, replica: str, through_seq: int) -> None:
        self.flush()
        self._conn.execute(
            "DELETE FROM pending WHERE replica = %s AND seq <= %s", (replica, through_seq)
        )

    def pending_of(self, replica: str) -> int:
        self.flush()
        row = self._conn.execute(
            "SELECT COUNT(*) FROM pending WHERE replica = %s", (replica,)
        ).fetchone()
        return int(row[0]) if row else 0


def _register(conn: psycopg.Connection, account: str, name: str) -> Register | None:
    row = conn.execute(
        "SELECT account, name, value, version, replica FROM registers"
        " WHERE account = %s AND name = %s",
        (account, name),
    ).fetchone()
    return None if row is None else Register(row[0], row[1], row[2], int(row[3]), row[4])


_FORK_SQL = fork_sql("%s")


class PgCloudStore(CloudStore):
    """One connection per process; every method one transaction."""

    def __init__(
        self, dsn: str, *, replica: str, key: Ed25519PrivateKey, clock: Any = None
    ) -> None:
        from edge.ledger.store import Clock

        try:
            self._conn = psycopg.connect(dsn, autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc
        self.replica = replica
        self._key = key
        self.clock = clock or Clock()
        self._keyring = PgKeyring(self._conn, replica)
        try:
            prepare(self._conn)
        except BaseException:
            self._conn.close()
            raise
        self.trust(replica, public_bytes(key), "cloud")

    @property
    def schema_version(self) -> int:
        from cloud_sync.pgschema import schema_version

        return schema_version(self._conn)

    @contextmanager
    def _chain_write(self, replica: str) -> Iterator[PgChainStore]:
        """One transaction holding the lock of a chain; buffered writes sent before commit."""
        with self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("chain:" + replica,))
            store = PgChainStore(self._conn, self._keyring)
            yield store
            store.flush()

    # -- keyring ---------------------------------------------------------------------------

    def trust(self, replica: str, public_key: bytes, role: Role) -> None:
        with self._conn.transaction():
            row = self._conn.execute(
                "INSERT INTO replicas VALUES (%s, %s, %s) ON CONFLICT (replica) DO NOTHING"
                " RETURNING replica",
                (replica, public_key, role),
            ).fetchone()
            if row is None:
                known = self._conn.execute(
                    "SELECT public_key, role FROM replicas WHERE replica = %s", (replica,)
                ).fetchone()
                assert known is not None
                if bytes(known[0]) != public_key or known[1] != role:
                    raise StoreError(f"replica {replica!r} is already known with another key")
        self._keyring.remember(replica, public_key, role)

    def public_key(self, replica: str) -> Ed25519PublicKey | None:
        return self._keyring.public_key(replica)

    # -- ingest and the cloud's own writes ---------------------------------------------------

    def ingest(self, ops: Sequence[Op]) -> dict[str, int]:
        placed = chain.Placed()
        runs: dict[str, list[Op]] = defaultdict(list)
        for op in ops:  # signatures checked before any lock is taken
            try:
                chain.check_op(self._keyring, op)
            except OpRefused as exc:
                placed.refuse(exc)
            else:
                runs[op.replica].append(op)
        for replica in sorted(runs):  # one chain per transaction: locks never wait in a cycle
            with self._chain_write(replica) as store:
                chain.place(store, runs[replica], placed)
        return placed.counts

    def append(self, intents: Sequence[Intent], ref: str = "") -> list[Op]:
        refuse_while_restoring(self._conn, "%s")
        with self._chain_write(self.replica) as store:
            return chain.write(
                store,
                replica=self.replica,
                key=self._key,
                intents=intents,
                ref=ref,
                wall_ms=self.clock.wall_ms(),
                mono_ms=self.clock.mono_ms(),
            )

    # -- reads -----------------------------------------------------------------------------

    def head(self, replica: str) -> tuple[int, bytes]:
        row = self._conn.execute(
            "SELECT seq, hash FROM heads WHERE replica = %s", (replica,)
        ).fetchone()
        return (0, GENESIS) if row is None else (int(row[0]), bytes(row[1]))

    def heads(self) -> dict[str, int]:
        return {r: int(s) for r, s in self._conn.execute("SELECT replica, seq FROM heads")}

    def pending_count(self) -> int:
        row = self._conn.execute("SELECT COUNT(*) FROM pending").fetchone()
        return int(row[0]) if row else 0

    def _ops(self, sql: str, args: Iterable[object]) -> list[Op]:
        rows = self._conn.execute(f"SELECT {OP_COLUMNS} FROM ops {sql}", tuple(args)).fetchall()
        return [op_from_row(r) for r in rows]

    def ops(self, replica: str, after_seq: int = 0, limit: int | None = None) -> list[Op]:
        return self._ops(
            "WHERE replica = %s AND seq > %s ORDER BY seq LIMIT %s", (replica, after_seq, limit)
        )

    def by_ref(self, ref: str) -> list[Op]:
        return self._ops("WHERE replica = %s AND ref = %s ORDER BY seq", (self.replica, ref))

    def history(self, account: str, limit: int = 50) -> list[Op]:
        return self._ops(
            "WHERE account = %s ORDER BY wall_ms DESC, replica, seq LIMIT %s", (account, limit)
        )

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        # read only; memory enough for a report's hash aggregates (a tap or member per group)
        # to stay off disk on a million ops
        with self._conn.transaction():
            self._conn.execute("SET TRANSACTION READ ONLY")
            self._conn.execute("SET LOCAL work_mem = '64MB'")
            return self._conn.execute(sql.replace("?", "%s").encode(), tuple(params)).fetchall()

    def purse(self, account: str, purse: str) -> PurseState:
        return chain.purse_state(PgChainStore(self._conn, self._keyring), account, purse)

    def purse_many(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], PurseState]:
        if not keys:
            return {}
        accounts, purses = [k[0] for k in keys], [k[1] for k in keys]
        shares: dict[tuple[str, str], list[Share]] = defaultdict(list)
        for a, p, r, *n in self._conn.execute(
            "SELECT s.account, s.purse, s.replica, s.inc, s.dec, s.debt, s.xin, s.xout"
            " FROM shares s JOIN unnest(%s::text[], %s::text[]) AS k(account, purse)"
            " ON s.account = k.account AND s.purse = k.purse ORDER BY s.replica",
            (accounts, purses),
        ):
            shares[(a, p)].append(Share(r, *(int(x) for x in n)))
        limits = {
            (a, name.removeprefix(CREDIT_LIMIT)): int(v)
            for a, name, v in self._conn.execute(
                "SELECT account, name, value FROM registers WHERE (account, name) IN"
                " (SELECT * FROM unnest(%s::text[], %s::text[]))",
                (accounts, [CREDIT_LIMIT + p for p in purses]),
            )
        }
        return {
            (a, p): PurseState(
                account=a,
                purse=p,
                shares=tuple(shares.get((a, p), ())),
                credit_limit=limits.get((a, p), 0),
                cloud=self.replica,
            )
            for a, p in keys
        }

    def purses_of(self, accounts: Sequence[str]) -> dict[str, list[PurseState]]:
        keys = self._conn.execute(
            "SELECT DISTINCT account, purse FROM shares WHERE account = ANY(%s)"
            " ORDER BY account, purse",
            (list(accounts),),
        ).fetchall()
        states = self.purse_many([(a, p) for a, p in keys])
        out: dict[str, list[PurseState]] = {a: [] for a in accounts}
        for a, p in keys:
            out[a].append(states[(a, p)])
        return out

    def purses(self, account: str | None = None) -> list[PurseState]:
        if account is not None:
            return self.purses_of([account])[account]
        keys = self._conn.execute(
            "SELECT DISTINCT account, purse FROM shares ORDER BY account, purse"
        ).fetchall()
        states = self.purse_many([(a, p) for a, p in keys])
        return [states[(a, p)] for a, p in keys]

    def register(self, account: str, name: str) -> Register | None:
        return _register(self._conn, account, name)

    def account_of(self, register_name: str) -> str | None:
        row = self._conn.execute(
            "SELECT account FROM registers WHERE name = %s LIMIT 1", (register_name,)
        ).fetchone()
        return None if row is None else str(row[0])

    def registers_named(self, name: str) -> list[tuple[str, str]]:
        rows = self._conn.execute(
            "SELECT account, value FROM registers WHERE name = %s ORDER BY account", (name,)
        ).fetchall()
        return [(str(a), str(v)) for a, v in rows]

    def idle_rights(self, before_ms: int) -> list[tuple[str, str, str, int]]:
        rows = self._conn.execute(
            "SELECT s.account, s.purse, s.replica, s.inc + s.xin - s.xout - s.dec"
            " FROM shares s JOIN replicas r ON r.replica = s.replica AND r.role = 'kiosk'"
            " WHERE s.inc + s.xin - s.xout - s.dec > 0"
            " AND COALESCE((SELECT MAX(o.wall_ms) FROM ops o WHERE o.account = s.account"
            "   AND o.purse = s.purse AND (o.replica = s.replica"
            "   OR (o.replica = %s AND o.counterpart = s.replica))), 0) < %s"
            " ORDER BY 1, 2, 3",
            (self.replica, before_ms),
        ).fetchall()
        return [(str(a), str(p), str(r), int(n)) for a, p, r, n in rows]

    # -- directory and deny list -----------------------------------------------------------

    def enroll(self, device: str, site: str, role: str = "gate") -> None:
        self._conn.execute(
            "INSERT INTO devices (device, site, role) VALUES (%s, %s, %s)"
            " ON CONFLICT (device) DO UPDATE SET site = excluded.site, role = excluded.role",
            (device, site, role),
        )

    def fork_head(self, device: str, fork_seq: int) -> tuple[int, bytes] | None:
        row = self._conn.execute(_FORK_SQL["head"], (device, fork_seq)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def record_fork(self, part: ForkPart) -> bool:
        with self._conn.transaction():
            # One writer per kiosk's branches across reconcilers (the row may not exist yet).
            lock = ("fork:" + part.device,)
            self._conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", lock)
            if not part.follows(self._conn.execute(_FORK_SQL["lock"], part.key).fetchone()):
                return False
            self._conn.execute(_FORK_SQL["put"], part.head_row)
            with self._conn.cursor() as cur:
                cur.executemany(_FORK_SQL["debt"], part.debt_rows)
        return True

    def fork_debts(self, device: str | None = None) -> list[RecordedForkDebt]:
        return fork_debts_of(self._conn.execute(_FORK_SQL["debts"], (device, device)).fetchall())

    def _device(self, row: Sequence[Any]) -> Device:
        return device_from_row(row, self.head(str(row[0]))[0])

    def device(self, device: str) -> Device | None:
        sql = f"SELECT {DEVICE_COLUMNS} FROM devices WHERE device = %s"
        row = self._conn.execute(sql, (device,)).fetchone()
        return None if row is None else self._device(row)

    def devices(self) -> list[Device]:
        sql = f"SELECT {DEVICE_COLUMNS} FROM devices ORDER BY site, device"
        return [self._device(r) for r in self._conn.execute(sql).fetchall()]

    def set_trust(self, device: str, trust: str, reason: str) -> None:
        self._conn.execute(
            "UPDATE devices SET trust = %s, trust_reason = %s WHERE device = %s",
            (trust, reason, device),
        )

    def set_role(self, device: str, role: str) -> None:
        self._conn.execute("UPDATE devices SET role = %s WHERE device = %s", (role, device))

    def add_credit(self, device: str, day: int, amount: int) -> None:
        self._conn.execute(
            "UPDATE devices SET credit_today = CASE WHEN credit_day = %s"
            " THEN credit_today + %s ELSE %s END, credit_day = %s WHERE device = %s",
            (day, amount, amount, day, device),
        )

    def hold(self, device: str, ops: Sequence[Op], reason: str, now_ms: int) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO held VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(device, o.seq, opcodec.encode(o), reason, now_ms) for o in ops],
            )

    def held(self, device: str | None = None) -> list[HeldOp]:
        rows = self._conn.execute(
            "SELECT device, op, reason, held_ms FROM held"
            " WHERE %s::text IS NULL OR device = %s ORDER BY device, seq",
            (device, device),
        ).fetchall()
        return [HeldOp(d, opcodec.decode(bytes(o)), r, int(t)) for d, o, r, t in rows]

    def take_held(self, device: str) -> list[Op]:
        rows = self._conn.execute(
            "DELETE FROM held WHERE device = %s RETURNING seq, op", (device,)
        ).fetchall()
        return [opcodec.decode(bytes(o)) for _, o in sorted(rows)]

    def seen(self, device: str, **fields: int | bool) -> None:
        keys = [k for k in fields if k in _DEVICE_FIELDS]
        if not keys:
            return
        sets = ", ".join(f"{k} = %s" for k in keys)
        self._conn.execute(
            f"UPDATE devices SET {sets} WHERE device = %s",
            (*(int(fields[k]) for k in keys), device),
        )

    def flag(self, sender: str, kind: str, reason: str) -> None:
        # The reason may quote what a sender sent: PostgreSQL text holds no NUL.
        clean = reason.replace("\x00", "\\0")[:500]
        self._conn.execute(flag_sql(kind, "%s"), (sender.replace("\x00", "")[:200], clean))

    def flags(self) -> dict[str, DeviceFlags]:
        return flags_of(self._conn.execute(FLAGS_SQL).fetchall())

    def deny(self, site: str, entries: Sequence[DenyEntry], wall_ms: int) -> DenyDelta:
        body = entries_json(entries)
        with self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("deny:" + site,))
            row = self._conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM denylist WHERE site = %s", (site,)
            ).fetchone()
            version = int(row[0]) + 1 if row else 1
            self._conn.execute(
                "INSERT INTO denylist VALUES (%s, %s, %s, %s)", (site, version, body, wall_ms)
            )
        return _delta(site, version, body)

    def deny_since(self, site: str, since: int, limit: int = 1000) -> list[DenyDelta]:
        rows = self._conn.execute(
            "SELECT version, entries FROM denylist WHERE site = %s AND version > %s"
            " ORDER BY version LIMIT %s",
            (site, since, limit),
        ).fetchall()
        return [_delta(site, int(v), str(e)) for v, e in rows]

    def add_claim(self, claim: Claim) -> None:
        self._conn.execute(
            f"INSERT INTO claims ({_CLAIM_COLUMNS})"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
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
                claim.reenroll,
            ),
        )

    def claim(self, claim_id: str) -> Claim | None:
        row = self._conn.execute(
            f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE claim_id = %s", (claim_id,)
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
        # The row lock of the conditional UPDATE: a racing reconciler waits, then sees used_ms
        # set and updates nothing.
        row = self._conn.execute(
            "UPDATE claims SET used_ms = %s, used_by = %s, request = %s, certificate = %s,"
            " reenroll = %s WHERE claim_id = %s AND used_ms IS NULL AND expires_ms > %s"
            " RETURNING claim_id",
            (now_ms, device, request, certificate, reenroll, claim_id, now_ms),
        ).fetchone()
        return row is not None

    def close(self) -> None:
        self._conn.close()
