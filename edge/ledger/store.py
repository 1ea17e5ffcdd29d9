"""The ledger store: a replica's SQLite file holding every chain it knows, its purses and registers.

One writer: every write is one `BEGIN IMMEDIATE` transaction in which rights are checked and the op
written, committed with synchronous=FULL before the call returns.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.ledger import chain
from edge.ledger.chain import Register, Role
from edge.ledger.errors import LedgerError, OpRefused
from edge.ledger.head_record import HeadFile, HeadRecord, read_head_record
from edge.ledger.keys import public_bytes, public_key_from_bytes
from edge.ledger.op import Intent, Op
from edge.ledger.private_files import prepare_private
from edge.ledger.purse import STRICT, PurseState, RiskPolicy, Share
from edge.ledger.schema import open_read_only, prepare
from edge.ledger.sqlite_chain import OP_COLUMNS, SqliteChainStore, op_from_row

log = logging.getLogger(__name__)

# Log pages after which a commit folds the log itself: 4,000 pages (16 MB at most on the card)
# where SQLite's default is 1,000, since the daemon folds it between taps anyway.
WAL_BACKSTOP_PAGES = 4000

__all__ = ["ApplyResult", "Clock", "Ledger", "Register", "Role", "StoredOp"]

ApplyResult = Literal["applied", "duplicate", "pending"]


@dataclass(frozen=True, slots=True)
class Clock:
    """Wall and monotonic time in ms; injectable so tests and simulations control time."""

    wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000
    mono_ms: Callable[[], int] = lambda: time.monotonic_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class StoredOp:
    """A row of the ops table as stored, for verification: the op (None when the row does not
    decode, with the reason in `error`) and the hash stored beside it."""

    replica: str
    seq: int
    op: Op | None
    hash: bytes
    error: str = ""


class Ledger:
    """A replica's ledger. Not thread-safe for concurrent writers by design: one writer, guarded.

    The rules live in `edge.ledger.chain`; this class holds the file, the write transaction and
    the keyring, and answers reads.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        replica: str | None = None,
        key: Ed25519PrivateKey | None = None,
        role: Role = "kiosk",
        risk: RiskPolicy = STRICT,
        clock: Clock | None = None,
        durable: bool = True,
        read_only: bool = False,
        head_record: Path | None = None,
    ) -> None:
        """`durable=False` skips the fsync of each commit: for building fixtures and
        simulations only, never for a kiosk's ledger (an acknowledged tap could be lost).
        `read_only=True` opens an existing ledger for reading only (`kiosk ledger verify`):
        the file is never changed, and a file that is not a ledger is refused.
        `head_record` (a kiosk's): the file where the own chain head is recorded after every
        commit; a ledger found behind it at open is held until recovered from the cloud."""
        self.path = str(path)
        self._head_path = head_record
        self._head_file: HeadFile | None = None
        self._opened = 0
        self.restored_behind: tuple[int, int] | None = None  # (recorded seq, found seq)
        self.diverged_at = 0  # an own seq whose hash differs from the recorded one
        self.role: Role = role
        self.risk = risk
        self.clock = clock or Clock()
        self._key = key
        self._lock = threading.Lock()
        if read_only:
            if key is not None:
                raise LedgerError("a read-only ledger cannot sign")
            self._conn = open_read_only(self.path)
            self.replica = self._own_replica(replica)
            self._keys: dict[str, Ed25519PublicKey] = {}
            self._roles: dict[str, Role] = {}
            self._chain = SqliteChainStore(self._conn, role, self._keys, self._roles)
            self._load_keyring()
            return
        self._durable = durable
        conn = self._connect()
        self.replica = self._own_replica(replica)
        self._keys = {}
        self._roles = {}
        self._chain = SqliteChainStore(conn, role, self._keys, self._roles)
        self._load_keyring()
        if key is not None:
            if not self.replica:
                conn.close()
                raise LedgerError(f"{self.path}: a ledger that signs needs a replica id")
            self.trust(self.replica, public_bytes(key), role)
        if head_record is not None:
            self._check_head_record(head_record)

    def _connect(self) -> sqlite3.Connection:
        prepare_private(self.path)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn = conn
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: the WAL is fsynced at every commit, so an acknowledged op survives a power cut.
        conn.execute(f"PRAGMA synchronous={'FULL' if self._durable else 'OFF'}")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA cache_size=-256")  # 256 KiB page cache: the hot pages of a tap fit
        # The log is folded into the file while the kiosk is idle (`fold_log`); the automatic
        # checkpoint inside a tap's commit is only the backstop that keeps the log bounded.
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_PAGES}")
        try:
            prepare(conn, self.path)
        except BaseException:
            conn.close()
            raise
        return conn

    def _own_replica(self, replica: str | None) -> str:
        """The replica this file belongs to, recorded at first open and checked after."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'replica'").fetchone()
        if row is None:
            if replica is None:
                return ""
            with self._write() as c:
                c.execute("INSERT INTO meta VALUES ('replica', ?)", (replica,))
            return replica
        if replica is not None and replica != row[0]:
            self._conn.close()
            raise LedgerError(f"{self.path} is the ledger of {row[0]!r}, not of {replica!r}")
        return str(row[0])

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()
        if self._head_file is not None:
            self._head_file.close()
            self._head_file = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the main file, so a copy of the file alone (an SD card
        image, a backup) holds every committed op."""
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @property
    def changes(self) -> int:
        """Rows written through this ledger since it was opened (to tell whether a fold is due)."""
        return self._conn.total_changes

    def fold_log(self) -> None:
        """Fold the write-ahead log into the file from a connection of its own, in PASSIVE
        mode: it neither waits for nor blocks a tap's write. The daemon runs it in a thread
        while no tap is being decided, so taps seldom pay for a checkpoint in their commit."""
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=0)
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.OperationalError as exc:  # busy, or a disk fault: the backstop remains
            log.info("log fold skipped: %s", exc)
        finally:
            conn.close()

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

    # -- the head record (a restored copy of the file is seen offline) --------------------

    def _check_head_record(self, path: Path) -> None:
        record = read_head_record(path)
        self._head_file = HeadFile(path)
        seq = self.head()[0]
        if record is None:  # a new kiosk, or one from before head records: all gates opened
            self._opened = seq
            self._record_head()
            return
        self._opened = record.opened
        if seq < record.seq:
            self.restored_behind = (record.seq, seq)
            log.critical(
                "ledger %s: own chain ends at #%d but the head record says #%d: the file was"
                " restored from an older copy; no spending until recovered from the cloud",
                self.replica,
                seq,
                record.seq,
            )
            self.hold_until(record.seq)
            return
        if record.seq and self._own_hash(record.seq) != record.hash:
            self.diverged_at = record.seq
            log.critical(
                "ledger %s: own op #%d is not the one the head record names: this file is another"
                " branch of the chain (a restored copy that kept writing)",
                self.replica,
                record.seq,
            )
        if seq != record.seq:
            self._record_head()

    def _own_hash(self, seq: int) -> bytes | None:
        row = self._conn.execute(
            "SELECT hash FROM ops WHERE replica = ? AND seq = ?", (self.replica, seq)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def _record_head(self, *, sync: bool = False) -> None:
        if self._head_file is None:
            return
        seq, digest = self.head()
        try:
            self._head_file.write(HeadRecord(seq, digest, self._opened), sync=sync)
        except OSError as exc:  # the op is committed: the tap goes on, detection lags
            log.error("head record %s not written: %s", self._head_path, exc)

    def gate_opened(self, seq: int) -> None:
        """The gate pulse for own op `seq` was given: it is no longer owed. Lost in a power
        cut before the next flush, it only makes an entry already given look owed once more."""
        if self._head_file is None or seq <= self._opened:
            return
        self._opened = seq
        head, digest = self.head()
        try:
            self._head_file.write(HeadRecord(head, digest, seq))
        except OSError as exc:
            log.error("head record %s not written: %s", self._head_path, exc)

    @property
    def opened(self) -> int:
        """The newest own seq whose gate pulse was recorded."""
        return self._opened

    # -- keyring ---------------------------------------------------------------------------

    def _load_keyring(self) -> None:
        for replica, raw, role in self._conn.execute(
            "SELECT replica, public_key, role FROM replicas"
        ):
            self._keys[replica] = public_key_from_bytes(raw)
            self._roles[replica] = role

    def trust(self, replica: str, public_key: bytes, role: Role) -> None:
        """Add a replica's public key. A different key for a known replica is refused."""
        known = self._conn.execute(
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
        return self._chain.cloud

    # -- local writes ----------------------------------------------------------------------

    def append(self, intents: Sequence[Intent], ref: str = "") -> list[Op]:
        """Write the intents as signed ops of this replica, all or none, durably.

        With a `ref` (tap id), a retry returns the ops already written and writes nothing.
        Raises SpendRefused (nothing written) when a debit or transfer is not covered.
        """
        if self._key is None:
            raise LedgerError(f"replica {self.replica!r} has no signing key: read-only ledger")
        before = self.head()[0] if self._head_path is not None else 0
        with self._write() as c:
            written = chain.write(
                self._chain,
                replica=self.replica,
                key=self._key,
                intents=intents,
                ref=ref,
                wall_ms=self.clock.wall_ms(),
                mono_ms=self.clock.mono_ms(),
                risk=self.risk,
                hold_until=self._hold(c),
            )
        if self._head_path is not None and written and written[-1].seq > before:
            self._record_head()  # before the caller acts on the op (opens the gate)
        return written

    def ops_with_ref(self, ref: str) -> list[Op]:
        """This replica's own ops written with a ref (a tap, a grant for a request)."""
        return self._chain.ops_with_ref(self.replica, ref)

    # -- remote ops ------------------------------------------------------------------------

    def apply(self, op: Op) -> ApplyResult:
        """Apply another replica's op: idempotent by (replica, seq); an op whose predecessor is
        missing waits in `pending` and is applied when the gap fills. Raises OpRefused."""
        chain.check_op(self._chain, op)
        with self._write():
            placed = chain.place(self._chain, [op])
        if placed.refusals:
            raise placed.refusals[0]
        counts = placed.counts
        if counts["applied"]:
            return "applied"
        return "duplicate" if counts["duplicate"] else "pending"

    def apply_many(self, ops: Sequence[Op]) -> dict[str, int]:
        """Apply a batch; counts as `edge.ledger.chain` defines them. Refused ops are logged and
        counted, never applied. One durable commit for the batch."""
        placed = chain.Placed()
        checked: list[Op] = []
        for op in ops:  # signatures are checked before the write lock is taken
            try:
                chain.check_op(self._chain, op)
            except OpRefused as exc:
                placed.refuse(exc)
            else:
                checked.append(op)
        if checked:
            with self._write():
                chain.place(self._chain, checked, placed)
            if self._head_path is not None and any(o.replica == self.replica for o in checked):
                self._record_head()  # own ops recovered from the cloud
        return placed.counts

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

    def accept_lost(self) -> tuple[int, int]:
        """The cloud holds no more of our chain than we do: the ops between our head and the
        hold never reached it and are gone with the overwritten file. Lift the hold (new ops
        take those seqs) and return the lost (first, last) seqs; (0, 0) when none were held."""
        head = self.head()[0]
        with self._write() as c:
            hold = self._hold(c)
            if hold <= head:
                return (0, 0)
            c.execute("UPDATE meta SET value = ? WHERE key = 'hold_until'", (str(head),))
        log.critical(
            "ledger %s: own ops #%d..#%d are lost (restored file, never reached the cloud):"
            " spending resumes from #%d",
            self.replica,
            head + 1,
            hold,
            head + 1,
        )
        self.restored_behind = None
        self._record_head(sync=True)
        return (head + 1, hold)

    def set_aside_fork(self, cloud_seq: int) -> Path:
        """Our chain forked from what the cloud stored (a restored copy that kept writing):
        move this file aside whole (every op of both our branch and the rest, for the
        accounting) and go on with a ledger holding everything but our own chain, held until
        the cloud's copy of it (to `cloud_seq`) is recovered. Returns the set-aside file."""
        if self._key is None:
            raise LedgerError(f"replica {self.replica!r} has no signing key: read-only ledger")
        head = self.head()[0]
        aside = Path(f"{self.path}.fork-{head}-{self.clock.wall_ms()}")
        fresh = Path(f"{self.path}.rebuild")
        for f in (fresh, Path(f"{fresh}-wal"), Path(f"{fresh}-shm")):
            f.unlink(missing_ok=True)
        with Ledger(fresh, replica=self.replica, clock=self.clock, risk=self.risk) as new:
            for replica, role in self._roles.items():
                new.trust(replica, public_bytes(self._keys[replica]), role)
            new.apply_many([op for op in self.ops() if op.replica != self.replica])
            with new._write() as c:
                c.execute("INSERT INTO meta VALUES ('fork_set_aside', ?)", (str(aside),))
            new.hold_until(cloud_seq)
            new.checkpoint()
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            os.replace(fresh, self.path)
            self._chain = SqliteChainStore(self._connect(), self.role, self._keys, self._roles)
        log.critical(
            "ledger %s: forked chain (own head #%d, the cloud stores #%d) set aside as %s;"
            " recovering the cloud's copy and going on after it",
            self.replica,
            head,
            cloud_seq,
            aside,
        )
        self._opened = cloud_seq  # the recovered ops are old entries, none owed
        self.diverged_at = 0
        self.restored_behind = None
        self._record_head(sync=True)
        return aside

    @property
    def fork_set_aside(self) -> str:
        """The file a forked chain was set aside in (for the accounting), if any."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'fork_set_aside'").fetchone()
        return "" if row is None else str(row[0])

    def fork_branch(self, limit: int) -> tuple[int, list[Op]]:
        """The set-aside branch still to report to the cloud: the seq where it forked from our
        chain (the first own seq whose op differs, our chain being the cloud's copy), and up
        to `limit` of its ops after what was reported (`fork_reported`); no ops when done."""
        path = self.fork_set_aside
        if not path or not Path(path).exists():
            return 0, []
        with Ledger(path, read_only=True) as aside:
            # Hash-linked: equal up to the fork, different from it on. Bisect for it.
            low, high = 1, min(aside.head(self.replica)[0], self.head()[0]) + 1
            while low < high:
                mid = (low + high) // 2
                if aside._own_hash(mid) == self._own_hash(mid):
                    low = mid + 1
                else:
                    high = mid
            fork_seq = low
            after = max(fork_seq - 1, self.fork_reported)
            return fork_seq, list(aside.ops(self.replica, after, limit))

    @property
    def fork_reported(self) -> int:
        """The newest seq of the set-aside branch the cloud has accounted."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'fork_reported'").fetchone()
        return 0 if row is None else int(row[0])

    def fork_reported_through(self, seq: int) -> None:
        with self._write() as c:
            c.execute(
                "INSERT INTO meta VALUES ('fork_reported', ?) ON CONFLICT (key) DO UPDATE"
                " SET value = excluded.value",
                (str(seq),),
            )

    @property
    def recovering(self) -> int:
        """The own seq still missing before local writes resume; 0 when not recovering."""
        hold = self._hold(self._conn)
        return hold if self.head()[0] < hold else 0

    # -- reads -----------------------------------------------------------------------------

    def head(self, replica: str | None = None) -> tuple[int, bytes]:
        """(seq, hash) of the newest op of a replica's chain held here; (0, GENESIS) if none."""
        return self._chain.head(replica or self.replica)

    def heads(self) -> dict[str, int]:
        return {r: int(s) for r, s in self._conn.execute("SELECT replica, seq FROM heads")}

    def purse(self, account: str, purse: str) -> PurseState:
        return chain.purse_state(self._chain, account, purse)

    def purses(self, account: str | None = None) -> list[PurseState]:
        """Every purse (of one account), in (account, purse) order, with its credit limit: one
        query however many purses there are (a tap reads every purse of its member)."""
        where, args = ("WHERE s.account = ?", (account,)) if account is not None else ("", ())
        rows = self._conn.execute(
            "SELECT s.account, s.purse, s.replica, s.inc, s.dec, s.debt, s.xin, s.xout, r.value"
            " FROM shares s LEFT JOIN registers r"
            " ON r.account = s.account AND r.name = ? || s.purse "
            + where
            + " ORDER BY s.account, s.purse, s.replica",
            (chain.credit_limit_name(""), *args),
        ).fetchall()
        cloud = self._chain.cloud
        states = []
        for (acc, purse), group in groupby(rows, key=itemgetter(0, 1)):
            run = list(group)
            shares = tuple(Share(*row[2:8]) for row in run)
            states.append(chain.purse_from(acc, purse, shares, run[0][8], cloud))
        return states

    def totals(self, replica: str | None = None) -> list[tuple[str, str, Share]]:
        """Every stored per-replica purse total (of one replica), as (account, purse, share)."""
        sql = "SELECT account, purse, replica, inc, dec, debt, xin, xout FROM shares"
        args: tuple[str, ...] = ()
        if replica is not None:
            sql += " WHERE replica = ?"
            args = (replica,)
        rows = self._conn.execute(sql, args).fetchall()
        return [(a, p, Share(*rest)) for a, p, *rest in rows]

    def register(self, account: str, name: str) -> Register | None:
        return self._chain.register(account, name)

    def registers(self, account: str, prefix: str = "") -> list[Register]:
        """Registers of an account whose name starts with `prefix`."""
        rows = self._conn.execute(
            "SELECT account, name, value, version, replica FROM registers"
            " WHERE account = ? AND substr(name, 1, ?) = ? ORDER BY name",
            (account, len(prefix), prefix),
        )
        return [Register(*row) for row in rows]

    def account_of(self, register_name: str) -> str | None:
        """The account holding a register of this name (e.g. `card:<token>`), if any."""
        row = self._conn.execute(
            "SELECT account FROM registers WHERE name = ? LIMIT 1", (register_name,)
        ).fetchone()
        return None if row is None else str(row[0])

    def registers_named(self, name: str) -> list[tuple[str, str]]:
        """(account, value) of every account holding a register of this name."""
        rows = self._conn.execute(
            "SELECT account, value FROM registers WHERE name = ? ORDER BY account", (name,)
        ).fetchall()
        return [(str(a), str(v)) for a, v in rows]

    def ops(
        self, replica: str | None = None, after_seq: int = 0, limit: int | None = None
    ) -> Iterator[Op]:
        """Ops in (replica, seq) order; with a replica, only its chain after `after_seq`
        (at most `limit` of them)."""
        if replica is None:
            cur = self._conn.execute(f"SELECT {OP_COLUMNS} FROM ops ORDER BY replica, seq")
        else:
            cur = self._conn.execute(
                f"SELECT {OP_COLUMNS} FROM ops WHERE replica = ? AND seq > ? ORDER BY seq LIMIT ?",
                (replica, after_seq, -1 if limit is None else limit),
            )
        for row in cur:
            yield op_from_row(row)

    def history(self, account: str, limit: int = 50, purse: str | None = None) -> list[Op]:
        """An account's last `limit` ops, newest first; with `purse`, only those of that purse
        among them (the others are never decoded)."""
        newest = (
            f"SELECT {OP_COLUMNS} FROM ops WHERE account = ? ORDER BY wall_ms DESC, replica, seq"
            " LIMIT ?"
        )
        if purse is None:
            rows = self._conn.execute(newest, (account, limit)).fetchall()
        else:
            rows = self._conn.execute(
                f"SELECT * FROM ({newest}) WHERE purse = ? ORDER BY wall_ms DESC, replica, seq",
                (account, limit, purse),
            ).fetchall()
        return [op_from_row(r) for r in rows]

    def stored_ops(self) -> Iterator[StoredOp]:
        """Every stored op row in (replica, seq) order with its stored hash, as found."""
        cur = self._conn.execute(f"SELECT {OP_COLUMNS}, hash FROM ops ORDER BY replica, seq")
        for row in cur:
            try:
                op: Op | None = op_from_row(row)
                error = ""
            except (ValueError, TypeError) as exc:
                op, error = None, f"unreadable row: {exc}"
            yield StoredOp(str(row[0]), int(row[1]), op, bytes(row[13]), error)

    def idle_rights(self, before_ms: int) -> list[tuple[str, str, str, int]]:
        """(account, purse, kiosk, rights) of kiosks holding rights on a purse that neither
        they nor this replica's transfers to them have touched since `before_ms`."""
        rows = self._conn.execute(
            "SELECT s.account, s.purse, s.replica, s.inc + s.xin - s.xout - s.dec AS rights"
            " FROM shares s JOIN replicas r ON r.replica = s.replica AND r.role = 'kiosk'"
            " WHERE s.inc + s.xin - s.xout - s.dec > 0"
            " AND COALESCE((SELECT MAX(o.wall_ms) FROM ops o WHERE o.account = s.account"
            "   AND o.purse = s.purse AND (o.replica = s.replica"
            "   OR (o.replica = ? AND o.counterpart = s.replica))), 0) < ?"
            " ORDER BY s.account, s.purse, s.replica",
            (self.replica, before_ms),
        ).fetchall()
        return [(str(a), str(p), str(r), int(n)) for a, p, r, n in rows]

    def pending_count(self) -> int:
        (n,) = self._conn.execute("SELECT COUNT(*) FROM pending").fetchone()
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
        cur = self._conn.execute(
            "SELECT wall_ms, ref, account, purse, amount, reason, detail FROM audit ORDER BY id"
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur]
