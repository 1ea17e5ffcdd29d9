"""Per-kiosk streams (docs/knowledge-model.md): what the cloud tells one kiosk, as a chain of its
own, signed by the cloud and contiguous, so the kiosk's ledger verifies it alone (signatures, seq,
prev hash) without any other kiosk's ops.

The cloud's master chain is read once, in order; each op goes to the streams of the kiosks it
concerns: a transfer to the streams of its receiver, a register write or credit of an account to
the kiosks of the account's scope (its `home` register: a site, or a group of sites; a card
follows its member; an account without a home goes to every kiosk). A stream op is the master op
re-signed at the stream's next seq; it moves the same amounts, so the kiosk's rights are exact.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.ledger import op as opcodec
from edge.ledger import records as rec
from edge.ledger.op import GENESIS, Kind, Op

HOME = "home"  # register of an account: the site or site group whose kiosks know it

Devices = Callable[[], Mapping[str, str]]  # device -> site


def backup_streams(path: Path, out: Path) -> None:
    """A consistent copy of a streams file (SQLite's backup API), safe while it is in use."""
    src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    dst = sqlite3.connect(out)
    try:
        src.execute("PRAGMA busy_timeout=5000")
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        dst.close()
        src.close()


class StreamBook:
    """The per-kiosk streams and the router's place in the master chain, in one SQLite file
    (":memory:" for none). One writer: the reconciler."""

    def __init__(
        self,
        path: Path | str,
        replica: str,
        key: Ed25519PrivateKey,
        *,
        groups: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.replica = replica
        self.key = key
        self.groups = {g: frozenset(s) for g, s in (groups or {}).items()}
        self.conn = sqlite3.connect(str(path), isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.executescript(
            "CREATE TABLE IF NOT EXISTS stream (device TEXT, seq INTEGER, op BLOB NOT NULL,"
            " PRIMARY KEY (device, seq)) WITHOUT ROWID;"
            "CREATE TABLE IF NOT EXISTS head (device TEXT PRIMARY KEY, seq INTEGER NOT NULL,"
            " hash BLOB NOT NULL);"
            "CREATE TABLE IF NOT EXISTS scope (account TEXT PRIMARY KEY, home TEXT NOT NULL);"
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
            "CREATE TABLE IF NOT EXISTS known (device TEXT PRIMARY KEY);"
            # Accounts of another scope a kiosk looked up online (a member visiting its venue).
            "CREATE TABLE IF NOT EXISTS guest (account TEXT, device TEXT,"
            " PRIMARY KEY (account, device)) WITHOUT ROWID;"
        )

    def close(self) -> None:
        self.conn.close()

    # -- reads -----------------------------------------------------------------------------

    @property
    def routed(self) -> int:
        """The master seq up to which every op has been routed."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'routed'").fetchone()
        return 0 if row is None else int(row[0])

    def head(self, device: str) -> tuple[int, bytes]:
        row = self.conn.execute("SELECT seq, hash FROM head WHERE device = ?", (device,)).fetchone()
        return (0, GENESIS) if row is None else (int(row[0]), bytes(row[1]))

    def ops(self, device: str, after_seq: int, limit: int) -> list[Op]:
        rows = self.conn.execute(
            "SELECT op FROM stream WHERE device = ? AND seq > ? ORDER BY seq LIMIT ?",
            (device, after_seq, limit),
        )
        return [opcodec.decode(bytes(r[0])) for r in rows]

    def home(self, account: str) -> str | None:
        row = self.conn.execute("SELECT home FROM scope WHERE account = ?", (account,)).fetchone()
        return None if row is None else str(row[0])

    def in_scope(self, home: str | None, site: str) -> bool:
        """Whether a kiosk of `site` knows an account whose home is `home`."""
        return home is None or home == site or site in self.groups.get(home, ())

    def audience(self, account: str, devices: Mapping[str, str]) -> list[str]:
        """The kiosks that know this account: those of its scope, and its guests."""
        home = self.home(account)
        rows = self.conn.execute("SELECT device FROM guest WHERE account = ?", (account,))
        guests = {r[0] for r in rows}
        return [d for d, site in devices.items() if d in guests or self.in_scope(home, site)]

    def members_of(self, site: str) -> list[str]:
        """Accounts whose home is this site or a group containing it (not its cards)."""
        homes = [site, *(g for g, sites in self.groups.items() if site in sites)]
        marks = ",".join("?" * len(homes))
        rows = self.conn.execute(
            f"SELECT account FROM scope WHERE home IN ({marks})"
            f" AND substr(account, 1, {len(rec.CARD_PREFIX)}) != ? ORDER BY account",
            (*homes, rec.CARD_PREFIX),
        )
        return [r[0] for r in rows]

    def knows(self, device: str, site: str, account: str) -> bool:
        if self.in_scope(self.home(account), site):
            return True
        row = self.conn.execute(
            "SELECT 1 FROM guest WHERE account = ? AND device = ?", (account, device)
        ).fetchone()
        return row is not None

    def add_guest(self, device: str, accounts: Sequence[str], history: Sequence[Op]) -> int:
        """A kiosk looked these accounts up: from now on it receives their ops, and now what
        the master chain holds of them (`history`, in seq order). The number of ops added."""
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            for account in accounts:
                c.execute("INSERT OR IGNORE INTO guest VALUES (?, ?)", (account, device))
            seq, prev = self.head(device)
            for m in history:
                seq, prev = self._put(device, seq, prev, m)
            if history:
                self._set_head(device, seq, prev)
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")
        return len(history)

    def _put(self, device: str, seq: int, prev: bytes, m: Op) -> tuple[int, bytes]:
        """Append master op `m` re-signed as the device's stream op after (seq, prev)."""
        s = Op(
            replica=self.replica,
            seq=seq + 1,
            wall_ms=m.wall_ms,
            mono_ms=m.mono_ms,
            kind=m.kind,
            account=m.account,
            purse=m.purse,
            amount=m.amount,
            counterpart=m.counterpart,
            ref=m.ref,
            data=m.data,
            prev=prev,
        ).signed(self.key)
        self.conn.execute("INSERT INTO stream VALUES (?, ?, ?)", (device, s.seq, opcodec.encode(s)))
        return s.seq, s.hash()

    def _set_head(self, device: str, seq: int, digest: bytes) -> None:
        self.conn.execute(
            "INSERT INTO head VALUES (?, ?, ?) ON CONFLICT (device) DO UPDATE"
            " SET seq = excluded.seq, hash = excluded.hash",
            (device, seq, digest),
        )

    # -- after a restore from backup (docs/knowledge-model.md, README Operations) ------------

    def put_back(self, device: str, ops: Sequence[Op]) -> list[Op]:
        """Stream ops a kiosk handed back to a cloud restored from a backup: those that extend
        our copy of its stream (our signature, next seq, linked by hash) are kept verbatim; the
        ones newly kept are returned."""
        pub = self.key.public_key()
        seq, prev = self.head(device)
        kept: list[Op] = []
        for s in ops:
            if s.seq <= seq:
                continue
            if s.replica != self.replica or s.seq != seq + 1 or s.prev != prev:
                break
            if not s.signature_ok(pub):
                break
            self.conn.execute(
                "INSERT INTO stream VALUES (?, ?, ?)", (device, s.seq, opcodec.encode(s))
            )
            seq, prev = s.seq, s.hash()
            kept.append(s)
        if kept:
            self._set_head(device, seq, prev)
        return kept

    def recent(self, device: str, since_wall_ms: int) -> set[tuple[object, ...]]:
        """What the newest stream ops of a device copy (`content`), back to `since_wall_ms`."""
        out: set[tuple[object, ...]] = set()
        top = self.head(device)[0]
        while top > 0:
            rows = self.conn.execute(
                "SELECT op FROM stream WHERE device = ? AND seq <= ? ORDER BY seq DESC LIMIT 500",
                (device, top),
            ).fetchall()
            if not rows:
                break
            ops = [opcodec.decode(bytes(r[0])) for r in rows]
            out.update(o.content() for o in ops)
            top = ops[-1].seq - 1
            if ops[-1].wall_ms < since_wall_ms:
                break
        return out

    @property
    def restored(self) -> bool:
        """Put back from a backup and not yet rerouted (`reroute`)."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'restored'").fetchone()
        return row is not None and bool(row[0])

    def mark_restored(self) -> None:
        self.conn.execute(
            "INSERT INTO meta VALUES ('restored', 1) ON CONFLICT (key) DO UPDATE SET value = 1"
        )

    def reroute(self, master: Sequence[Op], devices: Mapping[str, str]) -> dict[str, int]:
        """After a restore: route master ops after `routed` like `route`, except to a stream
        that already holds a copy (the kiosk had it before the cloud was lost)."""
        if not master:
            self.conn.execute("DELETE FROM meta WHERE key = 'restored'")
            return {}
        since = min(m.wall_ms for m in master)
        held = {d: self.recent(d, since) for d in devices}
        added: dict[str, int] = {}
        last = self.routed
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            for m in master:
                if m.seq <= last:
                    continue
                last = m.seq
                self._learn_scope(m)
                for device in self._targets(m, devices):
                    if m.content() in held[device]:
                        continue
                    seq, prev = self.head(device)
                    self._set_head(device, *self._put(device, seq, prev, m))
                    added[device] = added.get(device, 0) + 1
            c.execute(
                "INSERT INTO meta VALUES ('routed', ?) ON CONFLICT (key)"
                " DO UPDATE SET value = excluded.value",
                (last,),
            )
            c.execute("DELETE FROM meta WHERE key = 'restored'")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")
        return added

    def unknown(self, devices: Iterable[str]) -> list[str]:
        """Devices whose stream has not been started yet (enrolled since the last routing)."""
        known = {r[0] for r in self.conn.execute("SELECT device FROM known")}
        return sorted(d for d in devices if d not in known)

    # -- routing ---------------------------------------------------------------------------

    def start(self, device: str, site: str, master: Iterable[Op]) -> int:
        """Start the stream of a newly enrolled kiosk: what the master chain up to `routed`
        holds for it (chunked by the caller: `master` must be that whole prefix, in order)."""
        n = self._append(master, {device: site}, advance=False)
        self.conn.execute("INSERT OR IGNORE INTO known VALUES (?)", (device,))
        return n.get(device, 0)

    def route(self, master: Iterable[Op], devices: Mapping[str, str]) -> dict[str, int]:
        """Append new master ops (contiguous after `routed`) to the streams they concern, in one
        transaction; the number of new stream ops per device."""
        return self._append(master, devices, advance=True)

    def _append(
        self, master: Iterable[Op], devices: Mapping[str, str], *, advance: bool
    ) -> dict[str, int]:
        added: dict[str, int] = {}
        heads: dict[str, tuple[int, bytes]] = {}
        last = self.routed
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            for m in master:
                if advance:
                    if m.seq <= last:
                        continue
                    if m.seq != last + 1:
                        raise ValueError(f"master op #{m.seq} after #{last}: routing needs a run")
                    last = m.seq
                    self._learn_scope(m)
                elif m.seq > last:
                    break
                for device in self._targets(m, devices):
                    seq, prev = heads.get(device) or self.head(device)
                    heads[device] = self._put(device, seq, prev, m)
                    added[device] = added.get(device, 0) + 1
            for device, (seq, digest) in heads.items():
                self._set_head(device, seq, digest)
            c.execute(
                "INSERT INTO meta VALUES ('routed', ?) ON CONFLICT (key)"
                " DO UPDATE SET value = excluded.value",
                (last,),
            )
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")
        return added

    def _learn_scope(self, m: Op) -> None:
        if m.kind is not Kind.SET:
            return
        if m.purse == HOME:
            home = m.data
        elif m.purse == rec.CARD_MEMBER and m.account.startswith(rec.CARD_PREFIX):
            home = self.home(m.data) or ""  # a card follows its member
        else:
            return
        if home:
            self.conn.execute(
                "INSERT INTO scope VALUES (?, ?) ON CONFLICT (account)"
                " DO UPDATE SET home = excluded.home",
                (m.account, home),
            )

    def _targets(self, m: Op, devices: Mapping[str, str]) -> list[str]:
        if m.kind is Kind.XFER:
            return [m.counterpart] if m.counterpart in devices else []
        if m.kind in (Kind.SET, Kind.INC):
            return self.audience(m.account, devices)
        return []  # the cloud's own debits: the snapshots carry their effect on values
