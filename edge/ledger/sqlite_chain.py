"""The chain store on SQLite: persistence only (the rules are `edge.ledger.chain`), over the
connection of a `Ledger`, inside the write transaction the ledger holds."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.ledger import op as opcodec
from edge.ledger.chain import TOTALS, Register, Role
from edge.ledger.op import GENESIS, Kind, Op
from edge.ledger.purse import Share

OP_COLUMNS = (
    "replica, seq, wall_ms, mono_ms, kind, account, purse, amount, counterpart, ref, data, prev,"
    " sig"
)

_INSERT_OP = f"INSERT INTO ops ({OP_COLUMNS}, hash) VALUES ({', '.join('?' * 14)})"


def op_from_row(row: Sequence[Any]) -> Op:
    """An op from a row selected with `OP_COLUMNS` (extra trailing columns are ignored)."""
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


def op_row(op: Op, digest: bytes) -> tuple[object, ...]:
    """The values of `OP_COLUMNS, hash` for one op: the row both chain stores insert."""
    return (op.replica, op.seq, *op.content(), op.prev, op.sig, digest)


# One statement per total, prepared once by sqlite3's statement cache.
_ADD_TO_TOTAL = {
    total: f"INSERT INTO shares (account, purse, replica, {total}) VALUES (?, ?, ?, ?)"
    f" ON CONFLICT DO UPDATE SET {total} = {total} + excluded.{total}"
    for total in TOTALS
}


class SqliteChainStore:
    """`edge.ledger.chain.ChainStore` on a ledger's SQLite connection and its cached keyring."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        keeper_role: Role,
        keys: dict[str, Ed25519PublicKey],
        roles: dict[str, Role],
    ) -> None:
        self._conn = conn
        self._keeper_role: Role = keeper_role
        self._keys = keys
        self._roles = roles

    # -- keyring ---------------------------------------------------------------------------

    @property
    def keeper_role(self) -> Role:
        return self._keeper_role

    @property
    def cloud(self) -> str | None:
        for replica, role in self._roles.items():
            if role == "cloud":
                return replica
        return None

    def public_key(self, replica: str) -> Ed25519PublicKey | None:
        return self._keys.get(replica)

    def role_of(self, replica: str) -> Role | None:
        return self._roles.get(replica)

    # -- reads -----------------------------------------------------------------------------

    def head(self, replica: str) -> tuple[int, bytes]:
        row = self._conn.execute(
            "SELECT seq, hash FROM heads WHERE replica = ?", (replica,)
        ).fetchone()
        return (0, GENESIS) if row is None else (int(row[0]), bytes(row[1]))

    def stored_hash(self, replica: str, seq: int) -> bytes | None:
        row = self._conn.execute(
            "SELECT hash FROM ops WHERE replica = ? AND seq = ?", (replica, seq)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def ops_with_ref(self, replica: str, ref: str) -> list[Op]:
        rows = self._conn.execute(
            # Without statistics the planner prefers the primary key and scans the whole chain.
            f"SELECT {OP_COLUMNS} FROM ops INDEXED BY ops_ref"
            " WHERE replica = ? AND ref = ? ORDER BY seq",
            (replica, ref),
        ).fetchall()
        return [op_from_row(r) for r in rows]

    def shares(self, account: str, purse: str) -> tuple[Share, ...]:
        rows = self._conn.execute(
            "SELECT replica, inc, dec, debt, xin, xout FROM shares"
            " WHERE account = ? AND purse = ? ORDER BY replica",
            (account, purse),
        ).fetchall()
        return tuple(Share(*r) for r in rows)

    def register(self, account: str, name: str) -> Register | None:
        row = self._conn.execute(
            "SELECT account, name, value, version, replica FROM registers"
            " WHERE account = ? AND name = ?",
            (account, name),
        ).fetchone()
        return None if row is None else Register(*row)

    def open_debt(self, replica: str, unit: str) -> int:
        (total,) = self._conn.execute(
            "SELECT COALESCE(SUM(MAX(0, dec + xout - inc - xin)), 0) FROM shares"
            " WHERE replica = ? AND (purse = ? OR purse LIKE ? || ':%')",
            (replica, unit, unit),
        ).fetchone()
        return int(total)

    # -- writes ----------------------------------------------------------------------------

    def put_op(self, op: Op, digest: bytes) -> None:
        c = self._conn
        c.execute(
            _INSERT_OP,
            op_row(op, digest),
        )
        c.execute(
            "INSERT INTO heads VALUES (?, ?, ?)"
            " ON CONFLICT (replica) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            (op.replica, op.seq, digest),
        )

    def add_to_total(self, account: str, purse: str, replica: str, total: str, amount: int) -> None:
        self._conn.execute(_ADD_TO_TOTAL[total], (account, purse, replica, amount))

    def put_register(self, register: Register) -> None:
        self._conn.execute(
            "INSERT INTO registers VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET"
            " value = excluded.value, version = excluded.version, replica = excluded.replica",
            (register.account, register.name, register.value, register.version, register.replica),
        )

    def hold_pending(self, op: Op) -> None:
        self._conn.execute(
            "INSERT OR IGNORE INTO pending VALUES (?, ?, ?)",
            (op.replica, op.seq, opcodec.encode(op)),
        )

    def take_pending(self, replica: str, seq: int) -> Op | None:
        rows = self._conn.execute(
            "DELETE FROM pending WHERE replica = ? AND seq = ? RETURNING op", (replica, seq)
        ).fetchall()
        return opcodec.decode(bytes(rows[0][0])) if rows else None

    def discard_pending(self, replica: str, through_seq: int) -> None:
        self._conn.execute(
            "DELETE FROM pending WHERE replica = ? AND seq <= ?", (replica, through_seq)
        )

    def pending_of(self, replica: str) -> int:
        (n,) = self._conn.execute(
            "SELECT COUNT(*) FROM pending WHERE replica = ?", (replica,)
        ).fetchone()
        return int(n)
