"""The ledger store: a replica's SQLite file holding every chain it knows, its purses and registers.

One writer: every write is one `BEGIN IMMEDIATE` transaction in which rights are checked and the op
written, committed with synchronous=FULL before the call returns.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.ledger import op as opcodec
from edge.ledger.errors import LedgerError, OpRefused, Refusal, SpendRefused
from edge.ledger.keys import public_bytes, public_key_from_bytes
from edge.ledger.op import GENESIS, SPENDING, Intent, Kind, Op
from edge.ledger.purse import STRICT, PurseState, RiskPolicy, Share, plan_spend, purse_unit
from edge.ledger.records import CREDIT_LIMIT_PREFIX
from edge.ledger.schema import open_read_only, prepare

log = logging.getLogger(__name__)

Role = Literal["cloud", "kiosk"]
ApplyResult = Literal["applied", "duplicate", "pending"]

_OP_COLUMNS = (
    "replica, seq, wall_ms, mono_ms, kind, account, purse, amount, counterpart, ref, data, prev,"
    " sig"
)


@dataclass(frozen=True, slots=True)
class Register:
    account: str
    name: str
    value: str
    version: int
    replica: str


@dataclass(frozen=True, slots=True)
class Clock:
    """Wall and monotonic time in ms; injectable so tests and simulations control time."""

    wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000
    mono_ms: Callable[[], int] = lambda: time.monotonic_ns() // 1_000_000


def op_from_row(row: Sequence[Any]) -> Op:
    """An op from a row selected with `_OP_COLUMNS` (extra trailing columns are ignored)."""
    return Op(
        replica=row[0],
        seq=row[1],
        wall_ms=row[2],
        mono_ms=row[3],
        kind=Kind(row[4]),
        account=row[5],
        purse=row[6],
        amount=row[7],
        counterpart=row[8],
        ref=row[9],
        data=row[10],
        prev=bytes(row[11]),
        sig=bytes(row[12]),
    )


class Ledger:
    """A replica's ledger. Not thread-safe for concurrent writers by design: one writer, guarded."""

    def __init__(
        self,
        path: Path | str,
        *,
        replica: str | None = None,
        key: Ed25519PrivateKey | None = None,
        role: Role = "kiosk",
        risk: RiskPolicy = STRICT,
        clock: Clock | None = None,
        read_only: bool = False,
    ) -> None:
        """`read_only=True` opens an existing ledger for reading only (`kiosk ledger verify`):
        the file is never changed, and a file that is not a ledger is refused."""
        self.path = str(path)
        self.role: Role = role
        self.risk = risk
        self.clock = clock or Clock()
        self._key = key
        self._lock = threading.Lock()
        if read_only:
            if key is not None:
                raise LedgerError("a read-only ledger cannot sign")
            self.conn = open_read_only(self.path)
            self.replica = self._own_replica(replica)
            self._keys: dict[str, Ed25519PublicKey] = {}
            self._roles: dict[str, Role] = {}
            self._load_keyring()
            return
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.conn = conn
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: the WAL is fsynced at every commit, so an acknowledged op survives a power cut.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA cache_size=-256")  # 256 KiB page cache: the hot pages of a tap fit
        try:
            prepare(conn, self.path)
        except BaseException:
            conn.close()
            raise
        self.replica = self._own_replica(replica)
        self._keys = {}
        self._roles = {}
        self._load_keyring()
        if key is not None:
            if not self.replica:
                conn.close()
                raise LedgerError(f"{self.path}: a ledger that signs needs a replica id")
            self.trust(self.replica, public_bytes(key), role)

    def _own_replica(self, replica: str | None) -> str:
        """The replica this file belongs to, recorded at first open and checked after."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'replica'").fetchone()
        if row is None:
            if replica is None:
                return ""
            with self._write() as c:
                c.execute("INSERT INTO meta VALUES ('replica', ?)", (replica,))
            return replica
        if replica is not None and replica != row[0]:
            self.conn.close()
            raise LedgerError(f"{self.path} is the ledger of {row[0]!r}, not of {replica!r}")
        return str(row[0])

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    # -- keyring ---------------------------------------------------------------------------

    def _load_keyring(self) -> None:
        for replica, raw, role in self.conn.execute(
            "SELECT replica, public_key, role FROM replicas"
        ):
            self._keys[replica] = public_key_from_bytes(raw)
            self._roles[replica] = role

    def trust(self, replica: str, public_key: bytes, role: Role) -> None:
        """Add a replica's public key. A different key for a known replica is refused."""
        known = self.conn.execute(
            "SELECT public_key, role FROM replicas WHERE replica = ?", (replica,)
        ).fetchone()
        if known is not None:
            if bytes(known[0]) != public_key or known[1] != role:
                raise LedgerError(f"replica {replica!r} is already known with another key or role")
            return
        key = public_key_from_bytes(public_key)
        with self._write() as c:
            c.execute("INSERT INTO replicas VALUES (?, ?, ?)", (replica, public_key, role))
        self._keys[replica] = key
        self._roles[replica] = role

    def public_key(self, replica: str) -> Ed25519PublicKey | None:
        return self._keys.get(replica)

    def role_of(self, replica: str) -> Role | None:
        return self._roles.get(replica)

    @property
    def cloud(self) -> str | None:
        for replica, role in self._roles.items():
            if role == "cloud":
                return replica
        return None

    # -- local writes ----------------------------------------------------------------------

    def append(self, intents: Sequence[Intent], ref: str = "") -> list[Op]:
        """Write the intents as signed ops of this replica, all or none, durably.

        With a `ref` (tap id), a retry returns the ops already written and writes nothing.
        Raises SpendRefused (nothing written) when a debit or transfer is not covered.
        """
        if self._key is None:
            raise LedgerError(f"replica {self.replica!r} has no signing key: read-only ledger")
        with self._write() as c:
            if ref:
                done = self._ops_with_ref(c, ref)
                if done:
                    return done
            seq, prev = self._head(c, self.replica)
            hold = self._hold(c)
            if seq < hold and intents:
                # Our chain is behind what the cloud stored for us (restored image): a new op
                # would fork it and could spend rights already spent. Nothing until recovered.
                first = intents[0]
                raise SpendRefused(
                    Refusal.CHAIN_BEHIND, first.account, first.purse, first.amount, 0
                )
            written: list[Op] = []
            wall, mono = self.clock.wall_ms(), self.clock.mono_ms()
            for intent in intents:
                kind = self._check(c, intent)
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
                prev = self._store(c, op)
                written.append(op)
            return written

    def _check(self, c: sqlite3.Connection, intent: Intent) -> Kind:
        kind = intent.kind
        if kind is Kind.SET:
            return kind
        if kind is Kind.DEBT:
            raise SpendRefused(Refusal.NOT_ALLOWED, intent.account, intent.purse, intent.amount, 0)
        if intent.amount <= 0:
            raise SpendRefused(Refusal.BAD_AMOUNT, intent.account, intent.purse, intent.amount, 0)
        if kind is Kind.INC:
            return kind
        if kind is Kind.XFER:
            self._check_xfer_route(intent)
        state = self._purse(c, intent.account, intent.purse)
        rights = state.rights(self.replica)
        open_debt = 0
        if kind is Kind.DEC and rights < intent.amount:
            open_debt = self._open_debt(c, purse_unit(intent.purse))
        return plan_spend(
            kind=kind,
            account=intent.account,
            purse=intent.purse,
            amount=intent.amount,
            rights=rights,
            open_debt=open_debt,
            policy=self.risk,
        )

    def _check_xfer_route(self, intent: Intent) -> None:
        if not self._xfer_route_ok(self.replica, intent.counterpart):
            raise SpendRefused(
                Refusal.XFER_NOT_VIA_CLOUD, intent.account, intent.purse, intent.amount, 0
            )

    def _xfer_route_ok(self, author: str, to: str) -> bool:
        """Transfers go only between the cloud and a kiosk. A kiosk need not know every other
        kiosk: a cloud's transfer to a replica that is not a cloud is to a kiosk."""
        if to == author:
            return False
        if self._roles.get(author) == "cloud":
            return self._roles.get(to) != "cloud"
        return self._roles.get(to) == "cloud"

    def _open_debt(self, c: sqlite3.Connection, unit: str) -> int:
        """This replica's outstanding debt over every purse of a unit: sum of negative rights."""
        (total,) = c.execute(
            "SELECT COALESCE(SUM(MAX(0, dec + xout - inc - xin)), 0) FROM shares"
            " WHERE replica = ? AND (purse = ? OR purse LIKE ? || ':%')",
            (self.replica, unit, unit),
        ).fetchone()
        return int(total)

    def _ops_with_ref(self, c: sqlite3.Connection, ref: str) -> list[Op]:
        rows = c.execute(
            # Without statistics the planner prefers the primary key and scans the whole chain.
            f"SELECT {_OP_COLUMNS} FROM ops INDEXED BY ops_ref"
            " WHERE replica = ? AND ref = ? ORDER BY seq",
            (self.replica, ref),
        ).fetchall()
        return [op_from_row(r) for r in rows]

    # -- remote ops ------------------------------------------------------------------------

    def apply(self, op: Op) -> ApplyResult:
        """Apply another replica's op: idempotent by (replica, seq); an op whose predecessor is
        missing waits in `pending` and is applied when the gap fills. Raises OpRefused."""
        self._verified(op)
        with self._write() as c:
            return self._apply_in(c, op)

    def _verified(self, op: Op) -> None:
        key = self._keys.get(op.replica)
        if key is None:
            raise OpRefused(op.replica, op.seq, "unknown replica (no trusted key)")
        if op.seq < 1:
            raise OpRefused(op.replica, op.seq, "seq must start at 1")
        if not op.signature_ok(key):
            raise OpRefused(op.replica, op.seq, "bad signature")
        self._check_shape(op)

    def _apply_in(self, c: sqlite3.Connection, op: Op) -> ApplyResult:
        """Store a verified op inside the caller's write transaction."""
        head_seq, head_hash = self._head(c, op.replica)
        if op.seq <= head_seq:
            (stored,) = c.execute(
                "SELECT hash FROM ops WHERE replica = ? AND seq = ?", (op.replica, op.seq)
            ).fetchone()
            if bytes(stored) != op.hash():
                raise OpRefused(op.replica, op.seq, "conflicts with the op already stored")
            return "duplicate"
        if op.seq > head_seq + 1:
            c.execute(
                "INSERT OR IGNORE INTO pending VALUES (?, ?, ?)",
                (op.replica, op.seq, opcodec.encode(op)),
            )
            return "pending"
        if op.prev != head_hash:
            raise OpRefused(op.replica, op.seq, "does not link to the previous op (prev hash)")
        head_hash = self._store(c, op)
        self._drain_pending(c, op.replica, op.seq, head_hash)
        return "applied"

    def _check_shape(self, op: Op) -> None:
        if op.kind is not Kind.SET and op.amount <= 0:
            raise OpRefused(op.replica, op.seq, "amount must be positive")
        if op.kind is Kind.XFER and not self._xfer_route_ok(op.replica, op.counterpart):
            raise OpRefused(op.replica, op.seq, "transfer not between the cloud and a kiosk")

    def _drain_pending(self, c: sqlite3.Connection, replica: str, seq: int, head: bytes) -> None:
        while True:
            row = c.execute(
                "SELECT op FROM pending WHERE replica = ? AND seq = ?", (replica, seq + 1)
            ).fetchone()
            if row is None:
                return
            c.execute("DELETE FROM pending WHERE replica = ? AND seq = ?", (replica, seq + 1))
            nxt = opcodec.decode(bytes(row[0]))
            if nxt.prev != head:
                # Signed by the replica but not on its chain: equivocation. Keep it out, loudly.
                log.error(
                    "pending op %s#%d does not link to its predecessor; dropped", replica, seq
                )
                return
            head = self._store(c, nxt)
            seq += 1

    def apply_many(self, ops: Sequence[Op]) -> dict[str, int]:
        """Apply a batch; count outcomes. Refused ops are logged and counted, never applied."""
        counts = {"applied": 0, "duplicate": 0, "pending": 0, "refused": 0}
        verified: list[Op] = []
        for op in ops:  # signatures are checked before the write lock is taken
            try:
                self._verified(op)
            except OpRefused as exc:
                log.warning("%s", exc)
                counts["refused"] += 1
            else:
                verified.append(op)
        if not verified:
            return counts
        # One durable commit for the batch; a savepoint per op so a refusal undoes only that op.
        with self._write() as c:
            for op in verified:
                c.execute("SAVEPOINT op")
                try:
                    counts[self._apply_in(c, op)] += 1
                except OpRefused as exc:
                    c.execute("ROLLBACK TO op")
                    log.warning("%s", exc)
                    counts["refused"] += 1
                c.execute("RELEASE op")
        return counts

    # -- recovery of our own chain (DESIGN.md section 4, trap 2) ----------------------------

    def _hold(self, c: sqlite3.Connection) -> int:
        row = c.execute("SELECT value FROM meta WHERE key = 'hold_until'").fetchone()
        return 0 if row is None else int(row[0])

    def hold_until(self, seq: int) -> None:
        """Refuse every local write until our own chain reaches `seq` (what the cloud has stored
        for us): set when the cloud acknowledges more than we hold. Durable; only ever raised."""
        with self._write() as c:
            if seq > self._hold(c):
                c.execute(
                    "INSERT INTO meta VALUES ('hold_until', ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(seq),),
                )
                log.warning(
                    "ledger %s: local writes held until own seq %d is recovered", self.replica, seq
                )

    @property
    def recovering(self) -> int:
        """The own seq still missing before local writes resume; 0 when not recovering."""
        hold = self._hold(self.conn)
        return hold if self.head()[0] < hold else 0

    # -- the one place an op is written -----------------------------------------------------

    def _store(self, c: sqlite3.Connection, op: Op) -> bytes:
        digest = op.hash()
        c.execute(
            "INSERT INTO ops VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                op.replica,
                op.seq,
                op.wall_ms,
                op.mono_ms,
                int(op.kind),
                op.account,
                op.purse,
                op.amount,
                op.counterpart,
                op.ref,
                op.data,
                op.prev,
                digest,
                op.sig,
            ),
        )
        c.execute(
            "INSERT INTO heads VALUES (?, ?, ?)"
            " ON CONFLICT (replica) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            (op.replica, op.seq, digest),
        )
        for replica, column, amount in _effects(op):
            c.execute(
                f"INSERT INTO shares (account, purse, replica, {column}) VALUES (?, ?, ?, ?)"
                f" ON CONFLICT DO UPDATE SET {column} = {column} + excluded.{column}",
                (op.account, op.purse, replica, amount),
            )
        if op.kind is Kind.SET:
            c.execute(
                # Versioned register: the highest (version, replica) wins, in any delivery order.
                "INSERT INTO registers VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET"
                " value = excluded.value, version = excluded.version, replica = excluded.replica"
                " WHERE (excluded.version, excluded.replica)"
                " > (registers.version, registers.replica)",
                (op.account, op.purse, op.data, op.amount, op.replica),
            )
        return digest

    # -- reads -----------------------------------------------------------------------------

    def _head(self, c: sqlite3.Connection, replica: str) -> tuple[int, bytes]:
        row = c.execute("SELECT seq, hash FROM heads WHERE replica = ?", (replica,)).fetchone()
        return (0, GENESIS) if row is None else (int(row[0]), bytes(row[1]))

    def head(self, replica: str | None = None) -> tuple[int, bytes]:
        """(seq, hash) of the newest op of a replica's chain held here; (0, GENESIS) if none."""
        return self._head(self.conn, replica or self.replica)

    def heads(self) -> dict[str, int]:
        return {r: int(s) for r, s in self.conn.execute("SELECT replica, seq FROM heads")}

    def _purse(self, c: sqlite3.Connection, account: str, purse: str) -> PurseState:
        rows = c.execute(
            "SELECT replica, inc, dec, debt, xin, xout FROM shares"
            " WHERE account = ? AND purse = ? ORDER BY replica",
            (account, purse),
        ).fetchall()
        limit = c.execute(
            "SELECT value FROM registers WHERE account = ? AND name = ?",
            (account, CREDIT_LIMIT_PREFIX + purse),
        ).fetchone()
        return PurseState(
            account=account,
            purse=purse,
            shares=tuple(Share(*r) for r in rows),
            credit_limit=int(limit[0]) if limit else 0,
            cloud=self.cloud,
        )

    def purse(self, account: str, purse: str) -> PurseState:
        return self._purse(self.conn, account, purse)

    def purses(self, account: str | None = None) -> list[PurseState]:
        sql = "SELECT DISTINCT account, purse FROM shares"
        args: tuple[str, ...] = ()
        if account is not None:
            sql += " WHERE account = ?"
            args = (account,)
        keys = self.conn.execute(sql + " ORDER BY account, purse", args).fetchall()
        return [self._purse(self.conn, a, p) for a, p in keys]

    def register(self, account: str, name: str) -> Register | None:
        row = self.conn.execute(
            "SELECT account, name, value, version, replica FROM registers"
            " WHERE account = ? AND name = ?",
            (account, name),
        ).fetchone()
        return None if row is None else Register(*row)

    def registers(self, account: str, prefix: str = "") -> list[Register]:
        """Registers of an account whose name starts with `prefix`."""
        rows = self.conn.execute(
            "SELECT account, name, value, version, replica FROM registers"
            " WHERE account = ? AND substr(name, 1, ?) = ? ORDER BY name",
            (account, len(prefix), prefix),
        )
        return [Register(*row) for row in rows]

    def ops(
        self, replica: str | None = None, after_seq: int = 0, limit: int | None = None
    ) -> Iterator[Op]:
        """Ops in (replica, seq) order; with a replica, only its chain after `after_seq`
        (at most `limit` of them)."""
        if replica is None:
            cur = self.conn.execute(f"SELECT {_OP_COLUMNS} FROM ops ORDER BY replica, seq")
        else:
            cur = self.conn.execute(
                f"SELECT {_OP_COLUMNS} FROM ops WHERE replica = ? AND seq > ? ORDER BY seq LIMIT ?",
                (replica, after_seq, -1 if limit is None else limit),
            )
        for row in cur:
            yield op_from_row(row)

    def pending_count(self) -> int:
        (n,) = self.conn.execute("SELECT COUNT(*) FROM pending").fetchone()
        return int(n)

    # -- audit of decisions that move nothing ----------------------------------------------

    def record_denial(
        self, *, ref: str, account: str, purse: str, amount: int, reason: str, detail: str = ""
    ) -> None:
        with self._write() as c:
            c.execute(
                "INSERT INTO audit (wall_ms, ref, account, purse, amount, reason, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (self.clock.wall_ms(), ref, account, purse, amount, reason, detail),
            )

    def denials(self) -> list[dict[str, object]]:
        cur = self.conn.execute(
            "SELECT wall_ms, ref, account, purse, amount, reason, detail FROM audit ORDER BY id"
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur]


def _effects(op: Op) -> list[tuple[str, str, int]]:
    """Which per-replica totals an op moves: (replica, column, amount)."""
    if op.kind is Kind.INC:
        return [(op.replica, "inc", op.amount)]
    if op.kind in SPENDING:
        moves = [(op.replica, "dec", op.amount)]
        if op.kind is Kind.DEBT:
            moves.append((op.replica, "debt", op.amount))
        return moves
    if op.kind is Kind.XFER:
        return [(op.replica, "xout", op.amount), (op.counterpart, "xin", op.amount)]
    return []
