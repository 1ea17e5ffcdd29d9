"""The cloud store on PostgreSQL (psycopg 3), for several reconciler processes sharing the load.

Same rules as the SQLite ledger: ops verified before any lock, stored exactly once by
(replica, seq), linked by prev hash, gaps held in `pending`. Concurrency: every write to one chain
holds a transaction-scoped advisory lock on that chain, so two reconcilers given the same batch
(redelivery, shared subscription) apply it once, and the cloud's own chain (grants) is written by
one process at a time, its rights checked inside the lock: no double grant.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cloud_sync.errors import StoreError
from cloud_sync.protocol import DenyDelta, DenyEntry
from cloud_sync.store import (
    _CLAIM_COLUMNS,
    _DEVICE_FIELDS,
    Claim,
    CloudStore,
    Device,
    _delta,
    claim_from_row,
    entries_json,
)
from edge.ledger import Intent, Kind, OpRefused, PurseState, Refusal, Register, Share, SpendRefused
from edge.ledger import op as opcodec
from edge.ledger.keys import public_bytes, public_key_from_bytes
from edge.ledger.op import GENESIS, Op
from edge.ledger.purse import STRICT, plan_spend
from edge.ledger.records import CREDIT_LIMIT_PREFIX as CREDIT_LIMIT
from edge.ledger.store import _OP_COLUMNS, Role, _effects, op_from_row

log = logging.getLogger(__name__)

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS replicas (
        replica TEXT PRIMARY KEY, public_key BYTEA NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('cloud', 'kiosk')))""",
    """CREATE TABLE IF NOT EXISTS ops (
        replica TEXT NOT NULL, seq BIGINT NOT NULL, wall_ms BIGINT NOT NULL,
        mono_ms BIGINT NOT NULL, kind SMALLINT NOT NULL, account TEXT NOT NULL,
        purse TEXT NOT NULL, amount BIGINT NOT NULL, counterpart TEXT NOT NULL, ref TEXT NOT NULL,
        data TEXT NOT NULL, prev BYTEA NOT NULL, sig BYTEA NOT NULL, hash BYTEA NOT NULL,
        PRIMARY KEY (replica, seq))""",
    "CREATE INDEX IF NOT EXISTS ops_ref ON ops (replica, ref)",
    "CREATE INDEX IF NOT EXISTS ops_account ON ops (account, purse)",
    "CREATE TABLE IF NOT EXISTS heads (replica TEXT PRIMARY KEY, seq BIGINT NOT NULL,"
    " hash BYTEA NOT NULL)",
    "CREATE TABLE IF NOT EXISTS pending (replica TEXT NOT NULL, seq BIGINT NOT NULL,"
    " op BYTEA NOT NULL, PRIMARY KEY (replica, seq))",
    """CREATE TABLE IF NOT EXISTS shares (
        account TEXT NOT NULL, purse TEXT NOT NULL, replica TEXT NOT NULL,
        inc BIGINT NOT NULL DEFAULT 0, dec BIGINT NOT NULL DEFAULT 0,
        debt BIGINT NOT NULL DEFAULT 0, xin BIGINT NOT NULL DEFAULT 0,
        xout BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (account, purse, replica))""",
    """CREATE TABLE IF NOT EXISTS registers (
        account TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
        version BIGINT NOT NULL, replica TEXT NOT NULL, PRIMARY KEY (account, name))""",
    "CREATE INDEX IF NOT EXISTS registers_name ON registers (name)",
    """CREATE TABLE IF NOT EXISTS devices (
        device TEXT PRIMARY KEY, site TEXT NOT NULL, online BIGINT NOT NULL DEFAULT 0,
        head BIGINT NOT NULL DEFAULT 0, queue_depth BIGINT NOT NULL DEFAULT 0,
        recovering BIGINT NOT NULL DEFAULT 0, cloud_head BIGINT NOT NULL DEFAULT 0,
        last_seen_ms BIGINT NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS denylist (
        site TEXT NOT NULL, version BIGINT NOT NULL, entries TEXT NOT NULL,
        wall_ms BIGINT NOT NULL, PRIMARY KEY (site, version))""",
    """CREATE TABLE IF NOT EXISTS claims (
        claim_id TEXT PRIMARY KEY, key BYTEA NOT NULL, site TEXT NOT NULL,
        device TEXT NOT NULL DEFAULT '', created_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL,
        used_ms BIGINT, used_by TEXT NOT NULL DEFAULT '', request BYTEA NOT NULL DEFAULT '',
        certificate BYTEA NOT NULL DEFAULT '', reenroll BOOLEAN NOT NULL DEFAULT FALSE)""",
]

_SCHEMA_LOCK = 0x6B696F736B  # advisory lock ids: schema, then hashtext() of a chain / a site


class PgCloudStore(CloudStore):
    """One connection per process; every method one transaction."""

    def __init__(
        self, dsn: str, *, replica: str, key: Ed25519PrivateKey, clock: Any = None
    ) -> None:
        from edge.ledger.store import Clock

        try:
            self.conn = psycopg.connect(dsn, autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc
        self.replica = replica
        self._key = key
        self.clock = clock or Clock()
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._roles: dict[str, Role] = {}
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for stmt in SCHEMA:
                self.conn.execute(stmt)
        self.trust(replica, public_bytes(key), "cloud")

    # -- keyring ---------------------------------------------------------------------------

    def trust(self, replica: str, public_key: bytes, role: Role) -> None:
        with self.conn.transaction():
            row = self.conn.execute(
                "INSERT INTO replicas VALUES (%s, %s, %s) ON CONFLICT (replica) DO NOTHING"
                " RETURNING replica",
                (replica, public_key, role),
            ).fetchone()
            if row is None:
                known = self.conn.execute(
                    "SELECT public_key, role FROM replicas WHERE replica = %s", (replica,)
                ).fetchone()
                assert known is not None
                if bytes(known[0]) != public_key or known[1] != role:
                    raise StoreError(f"replica {replica!r} is already known with another key")
        self._keys[replica] = public_key_from_bytes(public_key)
        self._roles[replica] = role

    def _load(self, replica: str) -> None:
        row = self.conn.execute(
            "SELECT public_key, role FROM replicas WHERE replica = %s", (replica,)
        ).fetchone()
        if row is not None:
            self._keys[replica] = public_key_from_bytes(bytes(row[0]))
            self._roles[replica] = row[1]

    def public_key(self, replica: str) -> Ed25519PublicKey | None:
        if replica not in self._keys:
            self._load(replica)  # enrolled by another process
        return self._keys.get(replica)

    def _role(self, replica: str) -> Role | None:
        if replica not in self._roles:
            self._load(replica)
        return self._roles.get(replica)

    # -- ingest ----------------------------------------------------------------------------

    def _verified(self, op: Op) -> None:
        key = self.public_key(op.replica)
        if key is None:
            raise OpRefused(op.replica, op.seq, "unknown replica (no trusted key)")
        if op.seq < 1:
            raise OpRefused(op.replica, op.seq, "seq must start at 1")
        if not op.signature_ok(key):
            raise OpRefused(op.replica, op.seq, "bad signature")
        if op.kind is not Kind.SET and op.amount <= 0:
            raise OpRefused(op.replica, op.seq, "amount must be positive")
        if op.kind is Kind.XFER:
            author, other = self._role(op.replica), self._role(op.counterpart)
            if op.counterpart == op.replica or {author, other} != {"cloud", "kiosk"}:
                raise OpRefused(op.replica, op.seq, "transfer not between the cloud and a kiosk")

    def ingest(self, ops: Sequence[Op]) -> dict[str, int]:
        counts = {"applied": 0, "duplicate": 0, "pending": 0, "refused": 0}
        by_replica: dict[str, list[Op]] = defaultdict(list)
        for op in ops:  # signatures checked before any lock is taken
            try:
                self._verified(op)
            except OpRefused as exc:
                log.warning("%s", exc)
                counts["refused"] += 1
            else:
                by_replica[op.replica].append(op)
        for replica, run in by_replica.items():
            with self.conn.transaction():
                self._lock_chain(replica)
                for k, v in self._apply_run(replica, run).items():
                    counts[k] += v
        return counts

    def _lock_chain(self, replica: str) -> None:
        self.conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("chain:" + replica,))

    def _head_in(self, replica: str) -> tuple[int, bytes]:
        row = self.conn.execute(
            "SELECT seq, hash FROM heads WHERE replica = %s", (replica,)
        ).fetchone()
        return (0, GENESIS) if row is None else (int(row[0]), bytes(row[1]))

    def _apply_run(self, replica: str, run: list[Op]) -> dict[str, int]:
        counts = {"applied": 0, "duplicate": 0, "pending": 0, "refused": 0}
        head_seq, head_hash = self._head_in(replica)
        run = sorted(run, key=lambda o: o.seq)
        old = [o.seq for o in run if o.seq <= head_seq]
        stored: dict[int, bytes] = {}
        if old:
            stored = {
                int(s): bytes(h)
                for s, h in self.conn.execute(
                    "SELECT seq, hash FROM ops WHERE replica = %s AND seq = ANY(%s)",
                    (replica, old),
                )
            }
        to_store: list[Op] = []
        pending: list[Op] = []
        for op in run:
            if op.seq <= head_seq:
                prior = stored.get(op.seq)
                if prior is None:  # stored earlier in this same batch
                    prior = next((o.hash() for o in to_store if o.seq == op.seq), None)
                if prior == op.hash():
                    counts["duplicate"] += 1
                else:  # same seq, different content: equivocation
                    log.warning("%s", OpRefused(op.replica, op.seq, "conflicts with the op stored"))
                    counts["refused"] += 1
                continue
            if op.seq > head_seq + 1:
                pending.append(op)
                continue
            if op.prev != head_hash:
                log.warning("%s", OpRefused(op.replica, op.seq, "does not link (prev hash)"))
                counts["refused"] += 1
                continue
            to_store.append(op)
            head_seq, head_hash = op.seq, op.hash()
        # Ops of this batch ahead of the gap may now link; then those parked earlier.
        for op in pending:
            if op.seq == head_seq + 1 and op.prev == head_hash:
                to_store.append(op)
                head_seq, head_hash = op.seq, op.hash()
            elif op.seq > head_seq + 1:
                self.conn.execute(
                    "INSERT INTO pending VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                    (op.replica, op.seq, opcodec.encode(op)),
                )
                counts["pending"] += 1
        counts["applied"] += len(to_store)
        drained = self._drain(replica, head_seq, head_hash)
        self._store(to_store + drained)
        return counts

    def _drain(self, replica: str, seq: int, head: bytes) -> list[Op]:
        rows = self.conn.execute(
            "SELECT seq, op FROM pending WHERE replica = %s AND seq > %s ORDER BY seq",
            (replica, seq),
        ).fetchall()
        out: list[Op] = []
        for s, raw in rows:
            if int(s) != seq + 1:
                break
            op = opcodec.decode(bytes(raw))
            if op.prev != head:
                log.error("pending op %s#%d does not link to its predecessor; dropped", replica, s)
                self.conn.execute(
                    "DELETE FROM pending WHERE replica = %s AND seq = %s", (replica, s)
                )
                break
            out.append(op)
            seq, head = op.seq, op.hash()
        if out:
            self.conn.execute(
                "DELETE FROM pending WHERE replica = %s AND seq <= %s", (replica, out[-1].seq)
            )
        return out

    def _store(self, ops: list[Op]) -> None:
        """Write a linked run in the caller's transaction: rows, head, totals, registers."""
        if not ops:
            return
        with self.conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO ops ({_OP_COLUMNS}, hash) VALUES"
                " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        o.replica,
                        o.seq,
                        o.wall_ms,
                        o.mono_ms,
                        int(o.kind),
                        o.account,
                        o.purse,
                        o.amount,
                        o.counterpart,
                        o.ref,
                        o.data,
                        o.prev,
                        o.sig,
                        o.hash(),
                    )
                    for o in ops
                ],
            )
            last = ops[-1]
            cur.execute(
                "INSERT INTO heads VALUES (%s, %s, %s) ON CONFLICT (replica) DO UPDATE"
                " SET seq = excluded.seq, hash = excluded.hash",
                (last.replica, last.seq, last.hash()),
            )
            totals: dict[tuple[str, str, str, str], int] = defaultdict(int)
            for o in ops:
                for replica, column, amount in _effects(o):
                    totals[(o.account, o.purse, replica, column)] += amount
            for column in ("inc", "dec", "debt", "xin", "xout"):
                rows = [(a, p, r, n) for (a, p, r, c), n in totals.items() if c == column]
                if rows:
                    cur.executemany(
                        f"INSERT INTO shares (account, purse, replica, {column})"
                        " VALUES (%s, %s, %s, %s) ON CONFLICT (account, purse, replica)"
                        f" DO UPDATE SET {column} = shares.{column} + excluded.{column}",
                        rows,
                    )
            sets = [o for o in ops if o.kind is Kind.SET]
            if sets:
                cur.executemany(
                    "INSERT INTO registers VALUES (%s, %s, %s, %s, %s) ON CONFLICT"
                    " (account, name) DO UPDATE SET value = excluded.value,"
                    " version = excluded.version, replica = excluded.replica"
                    " WHERE (excluded.version, excluded.replica)"
                    " > (registers.version, registers.replica)",
                    [(o.account, o.purse, o.data, o.amount, o.replica) for o in sets],
                )

    # -- the cloud's own writes -------------------------------------------------------------

    def append(self, intents: Sequence[Intent], ref: str = "") -> list[Op]:
        with self.conn.transaction():
            self._lock_chain(self.replica)
            if ref:
                done = self.by_ref(ref)
                if done:
                    return done
            seq, prev = self._head_in(self.replica)
            wall, mono = self.clock.wall_ms(), self.clock.mono_ms()
            written: list[Op] = []
            for intent in intents:
                kind = self._check(intent)
                seq += 1
                op = Op(
                    replica=self.replica,
                    seq=seq,
                    wall_ms=wall,
                    mono_ms=mono,
                    kind=kind,
                    account=intent.account,
                    purse=intent.purse,
                    amount=intent.amount,
                    counterpart=intent.counterpart,
                    ref=ref,
                    data=intent.data,
                    prev=prev,
                ).signed(self._key)
                self._store([op])  # totals visible to the next intent's check
                prev = op.hash()
                written.append(op)
            return written

    def _check(self, intent: Intent) -> Kind:
        kind = intent.kind
        if kind is Kind.SET:
            return kind
        if kind is Kind.DEBT or intent.amount <= 0:
            why = Refusal.NOT_ALLOWED if kind is Kind.DEBT else Refusal.BAD_AMOUNT
            raise SpendRefused(why, intent.account, intent.purse, intent.amount, 0)
        if kind is Kind.INC:
            return kind
        if kind is Kind.XFER and (
            intent.counterpart == self.replica or self._role(intent.counterpart) != "kiosk"
        ):
            raise SpendRefused(
                Refusal.XFER_NOT_VIA_CLOUD, intent.account, intent.purse, intent.amount, 0
            )
        rights = self.purse(intent.account, intent.purse).rights(self.replica)
        return plan_spend(
            kind=kind,
            account=intent.account,
            purse=intent.purse,
            amount=intent.amount,
            rights=rights,
            open_debt=0,
            policy=STRICT,
        )

    # -- reads -----------------------------------------------------------------------------

    def head(self, replica: str) -> tuple[int, bytes]:
        return self._head_in(replica)

    def heads(self) -> dict[str, int]:
        return {r: int(s) for r, s in self.conn.execute("SELECT replica, seq FROM heads")}

    def _ops(self, sql: str, args: Iterable[object]) -> list[Op]:
        rows = self.conn.execute(f"SELECT {_OP_COLUMNS} FROM ops {sql}", tuple(args)).fetchall()
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

    def purse(self, account: str, purse: str) -> PurseState:
        rows = self.conn.execute(
            "SELECT replica, inc, dec, debt, xin, xout FROM shares"
            " WHERE account = %s AND purse = %s ORDER BY replica",
            (account, purse),
        ).fetchall()
        limit = self.conn.execute(
            "SELECT value FROM registers WHERE account = %s AND name = %s",
            (account, CREDIT_LIMIT + purse),
        ).fetchone()
        return PurseState(
            account=account,
            purse=purse,
            shares=tuple(Share(r[0], *(int(x) for x in r[1:])) for r in rows),
            credit_limit=int(limit[0]) if limit else 0,
            cloud=self.replica,
        )

    def purse_many(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], PurseState]:
        if not keys:
            return {}
        accounts, purses = [k[0] for k in keys], [k[1] for k in keys]
        shares: dict[tuple[str, str], list[Share]] = defaultdict(list)
        for a, p, r, *n in self.conn.execute(
            "SELECT s.account, s.purse, s.replica, s.inc, s.dec, s.debt, s.xin, s.xout"
            " FROM shares s JOIN unnest(%s::text[], %s::text[]) AS k(account, purse)"
            " ON s.account = k.account AND s.purse = k.purse ORDER BY s.replica",
            (accounts, purses),
        ):
            shares[(a, p)].append(Share(r, *(int(x) for x in n)))
        limits = {
            (a, name.removeprefix(CREDIT_LIMIT)): int(v)
            for a, name, v in self.conn.execute(
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

    def purses(self, account: str | None = None) -> list[PurseState]:
        if account is None:
            keys = self.conn.execute(
                "SELECT DISTINCT account, purse FROM shares ORDER BY account, purse"
            ).fetchall()
        else:
            keys = self.conn.execute(
                "SELECT DISTINCT account, purse FROM shares WHERE account = %s ORDER BY purse",
                (account,),
            ).fetchall()
        return [self.purse(a, p) for a, p in keys]

    def register(self, account: str, name: str) -> Register | None:
        row = self.conn.execute(
            "SELECT account, name, value, version, replica FROM registers"
            " WHERE account = %s AND name = %s",
            (account, name),
        ).fetchone()
        return None if row is None else Register(row[0], row[1], row[2], int(row[3]), row[4])

    def account_of(self, register_name: str) -> str | None:
        row = self.conn.execute(
            "SELECT account FROM registers WHERE name = %s LIMIT 1", (register_name,)
        ).fetchone()
        return None if row is None else str(row[0])

    def registers_named(self, name: str) -> list[tuple[str, str]]:
        rows = self.conn.execute(
            "SELECT account, value FROM registers WHERE name = %s ORDER BY account", (name,)
        ).fetchall()
        return [(str(a), str(v)) for a, v in rows]

    def idle_rights(self, before_ms: int) -> list[tuple[str, str, str, int]]:
        rows = self.conn.execute(
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

    def enroll(self, device: str, site: str) -> None:
        self.conn.execute(
            "INSERT INTO devices (device, site) VALUES (%s, %s)"
            " ON CONFLICT (device) DO UPDATE SET site = excluded.site",
            (device, site),
        )

    def _device(self, row: Sequence[Any]) -> Device:
        device, site, online, head, qd, rec, ch, seen = row
        return Device(
            device=device,
            site=site,
            online=bool(online),
            head=int(head),
            stored=self.head(device)[0],
            queue_depth=int(qd),
            recovering=int(rec),
            cloud_head=int(ch),
            last_seen_ms=int(seen),
        )

    _DEV = "SELECT device, site, online, head, queue_depth, recovering, cloud_head, last_seen_ms"

    def device(self, device: str) -> Device | None:
        row = self.conn.execute(f"{self._DEV} FROM devices WHERE device = %s", (device,)).fetchone()
        return None if row is None else self._device(row)

    def devices(self) -> list[Device]:
        rows = self.conn.execute(f"{self._DEV} FROM devices ORDER BY site, device").fetchall()
        return [self._device(r) for r in rows]

    def seen(self, device: str, **fields: int | bool) -> None:
        keys = [k for k in fields if k in _DEVICE_FIELDS]
        if not keys:
            return
        sets = ", ".join(f"{k} = %s" for k in keys)
        self.conn.execute(
            f"UPDATE devices SET {sets} WHERE device = %s",
            (*(int(fields[k]) for k in keys), device),
        )

    def deny(self, site: str, entries: Sequence[DenyEntry], wall_ms: int) -> DenyDelta:
        body = entries_json(entries)
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("deny:" + site,))
            row = self.conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM denylist WHERE site = %s", (site,)
            ).fetchone()
            version = int(row[0]) + 1 if row else 1
            self.conn.execute(
                "INSERT INTO denylist VALUES (%s, %s, %s, %s)", (site, version, body, wall_ms)
            )
        return _delta(site, version, body)

    def deny_since(self, site: str, since: int, limit: int = 1000) -> list[DenyDelta]:
        rows = self.conn.execute(
            "SELECT version, entries FROM denylist WHERE site = %s AND version > %s"
            " ORDER BY version LIMIT %s",
            (site, since, limit),
        ).fetchall()
        return [_delta(site, int(v), str(e)) for v, e in rows]

    def add_claim(self, claim: Claim) -> None:
        self.conn.execute(
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
        row = self.conn.execute(
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
        row = self.conn.execute(
            "UPDATE claims SET used_ms = %s, used_by = %s, request = %s, certificate = %s,"
            " reenroll = %s WHERE claim_id = %s AND used_ms IS NULL AND expires_ms > %s"
            " RETURNING claim_id",
            (now_ms, device, request, certificate, reenroll, claim_id, now_ms),
        ).fetchone()
        return row is not None

    def close(self) -> None:
        self.conn.close()
