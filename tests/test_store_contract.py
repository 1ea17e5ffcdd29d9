"""The cloud store contract: every case runs on the SQLite store and on the PostgreSQL store
(a fresh database per test), and both must answer alike. Also PostgreSQL's concurrency with two
reconcilers and its numbered migrations."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_sync.errors import StoreError
from cloud_sync.protocol import DenyEntry
from cloud_sync.store import Claim, CloudStore, ForkPart, SqliteCloudStore
from edge.ledger import (
    Intent,
    Kind,
    Ledger,
    Refusal,
    SpendRefused,
    generate_key,
    public_bytes,
)
from edge.ledger.chain import ForkDebt
from edge.ledger.errors import OpRefused
from edge.ledger.op import Op

COUNTS0 = {"applied": 0, "duplicate": 0, "pending": 0, "refused": 0}


def counts(**kw: int) -> dict[str, int]:
    return {**COUNTS0, **kw}


class World:
    """A cloud store (the backend under test) and kiosk ledgers that produce ops for it."""

    def __init__(self, root: Path, open_store: Callable[[Ed25519PrivateKey], CloudStore]) -> None:
        self.root = root
        self.cloud_key = generate_key()
        self._open = open_store
        self.store = self.open()
        self.kiosks: dict[str, Ledger] = {}
        self.keys: dict[str, Ed25519PrivateKey] = {}

    def open(self) -> CloudStore:
        return self._open(self.cloud_key)

    def kiosk(self, name: str, *, enrolled: bool = True) -> Ledger:
        key = self.keys[name] = generate_key()
        led = Ledger(self.root / f"{name}.db", replica=name, key=key, durable=False)
        led.trust("cloud", public_bytes(self.cloud_key), "cloud")
        if enrolled:
            self.store.trust(name, public_bytes(key), "kiosk")
        self.kiosks[name] = led
        return led

    def close(self) -> None:
        for led in self.kiosks.values():
            led.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    stores: list[CloudStore] = []
    if request.param == "sqlite":
        path = tmp_path / "cloud.db"

        def open_store(key: Ed25519PrivateKey) -> CloudStore:
            stores.append(SqliteCloudStore(path, replica="cloud", key=key))
            return stores[-1]
    else:
        dsn = request.getfixturevalue("pg_dsn")

        def open_store(key: Ed25519PrivateKey) -> CloudStore:
            from cloud_sync.pgstore import PgCloudStore

            stores.append(PgCloudStore(dsn, replica="cloud", key=key))
            return stores[-1]

    w = World(tmp_path, open_store)
    yield w
    w.close()
    for s in stores:
        s.close()


def spends(led: Ledger, n: int, start: int = 0) -> list[Op]:
    """A top-up at the kiosk then n debits of 10: n + 1 ops of its chain."""
    if start == 0:
        led.append([Intent(Kind.INC, "m1", "cash", 1000)])
    for i in range(start, start + n):
        led.append([Intent(Kind.DEC, "m1", "cash", 10)], ref=f"t{i}")
    return list(led.ops(led.replica))


# -- placing ops ---------------------------------------------------------------------------------


def test_in_order_ingest_places_every_op(world: World) -> None:
    ops = spends(world.kiosk("k1"), 4)
    assert world.store.ingest(ops) == counts(applied=5)
    assert world.store.head("k1") == world.kiosks["k1"].head()
    assert world.store.purse("m1", "cash").value == 960
    assert world.store.ops("k1", 2) == ops[2:]


def test_reversed_batch_is_placed_whole(world: World) -> None:
    ops = spends(world.kiosk("k1"), 2)
    assert world.store.ingest(ops[::-1]) == counts(applied=3)
    assert world.store.pending_count() == 0


def test_reversed_ops_one_by_one_wait_then_place_together(world: World) -> None:
    op1, op2, op3 = spends(world.kiosk("k1"), 2)
    assert world.store.ingest([op3]) == counts(pending=1)
    assert world.store.ingest([op2]) == counts(pending=1)
    assert world.store.ingest([op1]) == counts(applied=3)  # its own and the two it let through
    assert world.store.head("k1")[0] == 3
    assert world.store.pending_count() == 0


def test_filled_gap_leaves_no_pending_rows(world: World) -> None:
    ops = spends(world.kiosk("k1"), 5)
    assert world.store.ingest(ops[3:5]) == counts(pending=2)
    # The held ops arrive again with the gap: placed from the batch, the held copies dropped.
    assert world.store.ingest(ops[:5]) == counts(applied=5)
    assert world.store.pending_count() == 0
    assert world.store.ingest([ops[5]]) == counts(applied=1)
    assert world.store.purse("m1", "cash").value == 950


def test_duplicate_ops_are_stored_once(world: World) -> None:
    ops = spends(world.kiosk("k1"), 3)
    world.store.ingest(ops)
    assert world.store.ingest(ops + ops[:1]) == counts(duplicate=5)
    assert world.store.purse("m1", "cash").value == 970
    assert len(world.store.ops("k1")) == 4


def test_a_different_op_at_a_stored_seq_is_refused(world: World) -> None:
    k1 = world.kiosk("k1")
    ops = spends(k1, 1)
    world.store.ingest(ops)
    # The same key signs another history (a restored image that kept writing).
    fork = Ledger(world.root / "k1-fork.db", replica="k1", key=world.keys["k1"], durable=False)
    fork.append([Intent(Kind.INC, "m1", "cash", 1000)])
    fork.append([Intent(Kind.DEC, "m1", "cash", 999)])
    assert world.store.ingest(list(fork.ops("k1"))) == counts(refused=2)
    fork.close()
    assert world.store.purse("m1", "cash").value == 990


def test_an_op_that_does_not_link_is_refused(world: World) -> None:
    ops = spends(world.kiosk("k1"), 2)
    world.store.ingest(ops[:1])
    fork = Ledger(world.root / "k1-fork.db", replica="k1", key=world.keys["k1"])
    fork.append([Intent(Kind.INC, "m2", "cash", 5)])
    fork.append([Intent(Kind.INC, "m2", "cash", 5)])
    assert world.store.ingest(list(fork.ops("k1"))[1:]) == counts(refused=1)
    fork.close()
    assert world.store.head("k1")[0] == 1


def test_bad_signature_is_refused(world: World) -> None:
    ops = spends(world.kiosk("k1"), 1)
    forged = msgspec.structs.replace(ops[1], amount=1)
    assert world.store.ingest([ops[0], forged]) == counts(applied=1, refused=1)
    assert world.store.purse("m1", "cash").value == 1000


def test_unknown_replica_is_refused(world: World) -> None:
    ops = spends(world.kiosk("k9", enrolled=False), 1)
    assert world.store.ingest(ops) == counts(refused=2)
    assert world.store.head("k9")[0] == 0


# -- the cloud's own writes ----------------------------------------------------------------------


def test_transfer_to_an_unenrolled_replica_is_refused(world: World) -> None:
    world.store.append([Intent(Kind.INC, "m1", "cash", 500)])
    with pytest.raises(SpendRefused) as info:
        world.store.append([Intent(Kind.XFER, "m1", "cash", 100, counterpart="k9")])
    assert info.value.reason is Refusal.XFER_NOT_VIA_CLOUD
    assert world.store.grant("m1", "cash", "k9", 100, 1, ref="rq-1") == []
    assert world.store.purse("m1", "cash").rights("cloud") == 500


def test_transfer_to_itself_is_refused(world: World) -> None:
    world.store.append([Intent(Kind.INC, "m1", "cash", 500)])
    with pytest.raises(SpendRefused) as info:
        world.store.append([Intent(Kind.XFER, "m1", "cash", 100, counterpart="cloud")])
    assert info.value.reason is Refusal.XFER_NOT_VIA_CLOUD


def test_debit_beyond_rights_is_refused_and_writes_nothing(world: World) -> None:
    world.store.append([Intent(Kind.INC, "m1", "cash", 500)])
    with pytest.raises(SpendRefused) as info:
        world.store.append(
            [Intent(Kind.DEC, "m1", "cash", 300), Intent(Kind.DEC, "m1", "cash", 300)]
        )
    assert info.value.reason is Refusal.INSUFFICIENT_RIGHTS
    assert world.store.head("cloud")[0] == 1
    assert world.store.purse("m1", "cash").value == 500


def test_rights_and_values_after_grants_spends_and_a_return(world: World) -> None:
    k1 = world.kiosk("k1")
    world.store.append([Intent(Kind.INC, "m1", "cash", 1000)], ref="topup")
    (grant,) = world.store.grant("m1", "cash", "k1", 300, 1, ref="float-1")
    assert grant.counterpart == "k1" and grant.amount == 300
    assert world.store.grant("m1", "cash", "k1", 300, 1, ref="float-1") == [grant]  # idempotent
    k1.apply_many(world.store.ops("cloud"))
    k1.append([Intent(Kind.DEC, "m1", "cash", 120)], ref="tap-1")
    k1.append([Intent(Kind.XFER, "m1", "cash", 80, counterpart="cloud")], ref="recall-1")
    assert world.store.ingest(list(k1.ops("k1"))) == counts(applied=2)
    state = world.store.purse("m1", "cash")
    assert state.value == 880
    assert state.rights("cloud") == 780
    assert state.rights("k1") == 100
    assert world.store.purse_many([("m1", "cash")]) == {("m1", "cash"): state}
    assert [p.purse for p in world.store.purses("m1")] == ["cash"]


def test_purses_of_several_accounts_read_together_equal_each_read_alone(world: World) -> None:
    world.store.append(
        [
            Intent(Kind.INC, "m1", "cash", 1000),
            Intent(Kind.INC, "m1", "visits:swim", 5),
            Intent(Kind.SET, "m1", "limit:cash", 1, data="200"),
            Intent(Kind.INC, "m2", "cash", 40),
        ]
    )
    together = world.store.purses_of(["m1", "m2", "m3"])
    assert together == {a: world.store.purses(a) for a in ("m1", "m2", "m3")}
    assert [p.purse for p in together["m1"]] == ["cash", "visits:swim"]
    assert together["m1"][0].rights("cloud") == 1200 and together["m3"] == []


def test_a_credit_limit_register_adds_to_the_clouds_rights(world: World) -> None:
    world.store.append([Intent(Kind.SET, "m1", "limit:cash", 1, data="200")])
    assert world.store.purse("m1", "cash").rights("cloud") == 200
    world.store.append([Intent(Kind.DEC, "m1", "cash", 150)])
    assert world.store.purse("m1", "cash").value == -150


def test_a_register_keeps_the_highest_version(world: World) -> None:
    k1 = world.kiosk("k1")
    world.store.append([Intent(Kind.SET, "m1", "tier", 2, data="gold")])
    world.store.append([Intent(Kind.SET, "m1", "tier", 1, data="silver")])  # older, late
    reg = world.store.register("m1", "tier")
    assert reg is not None and (reg.value, reg.version) == ("gold", 2)
    # Equal versions: the higher replica id wins, whatever the delivery order.
    world.store.append([Intent(Kind.SET, "m1", "pin_fails", 2, data="1")])
    k1.append([Intent(Kind.SET, "m1", "pin_fails", 2, data="2")])
    world.store.ingest(list(k1.ops("k1")))
    reg = world.store.register("m1", "pin_fails")
    assert reg is not None and (reg.value, reg.version, reg.replica) == ("2", 2, "k1")
    world.store.append([Intent(Kind.SET, "card:abc", "member", 1, data="m1")])
    assert world.store.account_of("member") == "card:abc"


def test_by_ref_history_and_heads(world: World) -> None:
    k1 = world.kiosk("k1")
    done = world.store.append([Intent(Kind.INC, "m1", "cash", 50)], ref="topup-7")
    assert world.store.append([Intent(Kind.INC, "m1", "cash", 50)], ref="topup-7") == done
    assert world.store.by_ref("topup-7") == done
    assert world.store.by_ref("nope") == []
    world.store.ingest(spends(k1, 2))
    assert world.store.heads() == {"cloud": 1, "k1": 3}
    history = world.store.history("m1", limit=10)
    assert len(history) == 4
    assert world.store.history("m1", limit=2) == history[:2]


# -- directory, deny list, claims ------------------------------------------------------------------


def test_devices_deny_list_and_claims(world: World) -> None:
    store = world.store
    world.kiosk("k1")
    store.enroll("k1", "s1")
    store.seen("k1", online=True, head=7, last_seen_ms=123)
    dev = store.device("k1")
    assert dev is not None
    assert (dev.site, dev.online, dev.head, dev.stored, dev.last_seen_ms) == ("s1", True, 7, 0, 123)
    assert [d.device for d in store.devices()] == ["k1"]
    assert store.device("k2") is None
    d1 = store.deny("s1", [DenyEntry(token="t1", status="lost")], 1)
    d2 = store.deny("s1", [DenyEntry(token="t2", status="frozen")], 2)
    assert (d1.version, d2.version) == (1, 2)
    assert [d.version for d in store.deny_since("s1", 1)] == [2]
    assert store.deny_since("s2", 0) == []
    claim = Claim(claim_id="c1", key=b"k" * 32, site="s1", device="", created_ms=0, expires_ms=99)
    store.add_claim(claim)
    assert store.claim("c1") == claim
    use = dict(device="k1", request=b"r", certificate=b"pem", reenroll=False, now_ms=10)
    assert store.use_claim("c1", **use) is True
    assert store.use_claim("c1", **use) is False
    used = store.claim("c1")
    assert used is not None and (used.used_by, used.used_ms) == ("k1", 10)


def test_a_forked_branch_is_recorded_once_and_continues_only_from_its_head(world: World) -> None:
    store = world.store
    first = [ForkDebt("m1", "cash", 700, 3000, 700), ForkDebt("m2", "points", 9, 5, 5)]
    assert store.fork_head("k1", 4) is None
    assert not store.record_fork(ForkPart("k1", 4, 2, (5, b"h5"), first, 10))  # not after #3
    assert store.record_fork(ForkPart("k1", 4, 3, (5, b"h5"), first, 10))
    assert not store.record_fork(ForkPart("k1", 4, 3, (5, b"h5"), first, 10))  # twice: once
    assert store.fork_head("k1", 4) == (5, b"h5")
    more = [ForkDebt("m1", "cash", 1200, 3000, 1200)]
    assert store.record_fork(ForkPart("k1", 4, 5, (6, b"h6"), more, 20))
    assert store.fork_head("k1", 4) == (6, b"h6")
    rows = store.fork_debts("k1")
    assert [(r.device, r.fork_seq, r.debt, r.recorded_ms) for r in rows] == [
        ("k1", 4, more[0], 20),
        ("k1", 4, first[1], 10),
    ]
    assert rows[1].debt.beyond == 4
    assert store.fork_debts("k2") == []
    assert len(store.fork_debts()) == 2


def test_a_reopened_store_keeps_everything(world: World) -> None:
    world.store.ingest(spends(world.kiosk("k1"), 2))
    world.store.close()
    again = world.open()
    assert again.head("k1")[0] == 3
    assert again.public_key("k1") is not None
    assert again.purse("m1", "cash").value == 980


# -- PostgreSQL only: several reconcilers, migrations --------------------------------------------


@pytest.mark.postgres
def test_two_reconcilers_ingesting_overlapping_batches_store_each_op_once(
    pg_dsn: str, tmp_path: Path
) -> None:
    from cloud_sync.pgstore import PgCloudStore

    cloud_key = generate_key()
    stores = [PgCloudStore(pg_dsn, replica="cloud", key=cloud_key) for _ in range(2)]
    ops_of: dict[str, list[Op]] = {}
    for name in ("k1", "k2"):
        key = generate_key()
        led = Ledger(tmp_path / f"{name}.db", replica=name, key=key, durable=False)
        stores[0].trust(name, public_bytes(key), "kiosk")
        led.append([Intent(Kind.INC, "m1", "cash", 10_000)])
        for i in range(59):
            led.append([Intent(Kind.DEC, "m1", "cash", 3)], ref=f"t{i}")
        ops_of[name] = list(led.ops(name))
        led.close()
    # Overlapping, out-of-order batches of both chains, as redelivery hands them out.
    batches = [
        ops_of["k1"][0:25] + ops_of["k2"][30:60],
        ops_of["k2"][0:35][::-1] + ops_of["k1"][20:45],
        ops_of["k1"][40:60] + ops_of["k2"][10:20],
        ops_of["k1"][::-1],
    ]
    barrier = threading.Barrier(2)

    def work(i: int) -> list[dict[str, int]]:
        barrier.wait()
        return [stores[i].ingest(b) for b in (batches if i == 0 else batches[::-1])]

    with ThreadPoolExecutor(2) as pool:
        results = [c for r in pool.map(work, range(2)) for c in r]
    assert sum(c["refused"] for c in results) == 0
    assert sum(c["applied"] for c in results) == 120  # each op placed by exactly one of them
    for s in stores:
        assert s.heads() == {"k1": 60, "k2": 60}
        assert s.pending_count() == 0
        state = s.purse("m1", "cash")
        assert state.value == 2 * (10_000 - 59 * 3)
        assert state.rights("k1") == state.rights("k2") == 10_000 - 59 * 3
        assert len(s.ops("k1")) == len(s.ops("k2")) == 60
    for s in stores:
        s.close()


@pytest.mark.postgres
def test_postgres_schema_is_numbered_and_applied_once(pg_dsn: str) -> None:
    import psycopg

    from cloud_sync.pgschema import MIGRATIONS, prepare
    from cloud_sync.pgstore import PgCloudStore

    store = PgCloudStore(pg_dsn, replica="cloud", key=generate_key())
    assert store.schema_version == len(MIGRATIONS)
    store.close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT version, name FROM schema_version ORDER BY version").fetchall()
        assert [r[0] for r in rows] == list(range(1, len(MIGRATIONS) + 1))

        def add_note(c: psycopg.Connection) -> None:
            c.execute("CREATE TABLE note (body TEXT)")

        def broken(c: psycopg.Connection) -> None:
            c.execute("CREATE TABLE half_done (x INT)")
            c.execute("SELECT no_such_column FROM note")

        newer = [*MIGRATIONS, ("note", add_note)]
        assert prepare(conn, newer) == len(MIGRATIONS) + 1
        assert prepare(conn, newer) == len(MIGRATIONS) + 1  # nothing left to apply
        with pytest.raises(psycopg.Error):
            prepare(conn, [*newer, ("broken", broken)])
        # A failing migration leaves nothing behind: one transaction.
        assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)
        (version,) = conn.execute("SELECT MAX(version) FROM schema_version").fetchone() or (0,)
        assert version == len(MIGRATIONS) + 1


@pytest.mark.postgres
def test_postgres_schema_newer_than_the_code_is_refused(pg_dsn: str) -> None:
    import psycopg

    from cloud_sync.pgschema import MIGRATIONS
    from cloud_sync.pgstore import PgCloudStore

    PgCloudStore(pg_dsn, replica="cloud", key=generate_key()).close()
    future = len(MIGRATIONS) + 98
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_version VALUES (%s, 'from_the_future', 0)", (future,))
    with pytest.raises(StoreError) as info:
        PgCloudStore(pg_dsn, replica="cloud", key=generate_key())
    message = str(info.value)
    assert "\n" not in message
    assert f"schema version {future}" in message
    assert f"knows up to {len(MIGRATIONS)}" in message
    assert "upgrade kiosk-edge" in message


@pytest.mark.postgres
def test_a_postgres_database_from_before_migrations_is_adopted(pg_dsn: str) -> None:
    import psycopg

    from cloud_sync.pgschema import MIGRATIONS
    from cloud_sync.pgstore import PgCloudStore

    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # what the old code created
        conn.execute(
            "CREATE TABLE heads (replica TEXT PRIMARY KEY, seq BIGINT NOT NULL,"
            " hash BYTEA NOT NULL)"
        )
        conn.execute("INSERT INTO heads VALUES ('k1', 4, '\\x00')")
    store = PgCloudStore(pg_dsn, replica="cloud", key=generate_key())
    assert store.schema_version == len(MIGRATIONS)  # adopted as 1, then migrated
    assert store.head("k1")[0] == 4
    store.close()


# -- what a kiosk may write (issue 12 item 2) ----------------------------------------------------


def _forged(world: World, name: str, **fields: object) -> Op:
    led = world.kiosks[name]
    seq, prev = led.head()
    base: dict[str, object] = {
        "replica": name,
        "seq": seq + 1,
        "wall_ms": 1,
        "mono_ms": 0,
        "kind": Kind.SET,
        "account": "m1",
        "purse": "pin_fails",
        "amount": 1,
        "counterpart": "",
        "ref": "",
        "data": "",
        "prev": prev,
    }
    base.update(fields)
    return Op(**base).signed(world.keys[name])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"account": "card:c1", "purse": "status", "data": "active"}, "register 'status'"),
        ({"purse": "tier", "data": "gold"}, "register 'tier'"),
        ({"purse": "limit:cash", "data": "1000000"}, "register 'limit:cash'"),
        ({"account": "kiosk:other", "purse": "service", "data": "open"}, "own account"),
        ({"amount": 2**63 - 1}, "out of range"),
        ({"ref": "r" * 257}, "longer than 256"),
        ({"data": "d" * 65_537}, "longer than 65536"),
    ],
)
def test_a_kiosk_writes_only_its_own_locks_and_counters(
    world: World, fields: dict[str, object], why: str
) -> None:
    world.kiosk("k1")
    placed = world.store.ingest([_forged(world, "k1", **fields)])
    assert placed == counts(refused=1)
    assert world.store.head("k1")[0] == 0
    with pytest.raises(OpRefused, match=why):
        world.kiosks["k1"].apply(_forged(world, "k1", **fields))


def test_a_kiosk_lock_register_is_accepted(world: World) -> None:
    world.kiosk("k1")
    assert world.store.ingest([_forged(world, "k1")]) == counts(applied=1)
    reg = world.store.register("m1", "pin_fails")
    assert reg is not None and reg.replica == "k1"


def test_pending_ops_of_a_replica_are_capped(world: World) -> None:
    from edge.ledger.chain import MAX_PENDING

    world.kiosk("k1")
    far = _forged(world, "k1", seq=MAX_PENDING + 5)
    assert world.store.ingest([far]) == counts(refused=1)
    near = _forged(world, "k1", seq=3)
    assert world.store.ingest([near]) == counts(pending=1)
    assert world.store.pending_count() == 1
