"""The PostgreSQL cloud store against the real server: exactly-once ingest, no double grant
with several processes, and two reconcilers sharing the load through a shared subscription."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from edge.ledger import Intent, Kind, generate_key, public_bytes

psycopg = pytest.importorskip("psycopg")

pytestmark = pytest.mark.postgres


@pytest.fixture
def cloud_key():
    return generate_key()


def pg_store(dsn, key):
    from cloud_sync.pgstore import PgCloudStore

    return PgCloudStore(dsn, replica="cloud", key=key)


def test_pg_ingest_is_exactly_once_in_any_order(pg_dsn, cloud_key, fleet):
    k1 = fleet.add("k1")
    store = pg_store(pg_dsn, cloud_key)
    store.trust("k1", public_bytes(fleet.keys["k1"]), "kiosk")
    k1.append([Intent(Kind.INC, "m1", "cash", 1000)])
    for i in range(9):
        k1.append([Intent(Kind.DEC, "m1", "cash", 10)], ref=f"t{i}")
    ops = list(k1.ops("k1"))
    assert store.ingest(ops[5:]) == {"applied": 0, "duplicate": 0, "pending": 5, "refused": 0}
    assert store.ingest(ops[:3])["applied"] == 3
    # applied counts the batch's two new ops and the five held ops they let through
    assert store.ingest(ops[:5]) == {"applied": 7, "duplicate": 3, "pending": 0, "refused": 0}
    assert store.pending_count() == 0
    assert store.head("k1") == k1.head()
    assert store.ingest(ops)["duplicate"] == 10
    forged = ops[3].__class__(
        **{**{f: getattr(ops[3], f) for f in ops[3].__struct_fields__}, "amount": 1}
    )
    assert store.ingest([forged])["refused"] == 1
    assert store.purse("m1", "cash").value == 910
    store.append([Intent(Kind.SET, "m1", "limit:cash", 1, data="500")])
    keys = [("m1", "cash"), ("m9", "cash")]
    assert store.purse_many(keys) == {k: store.purse(*k) for k in keys}
    assert store.purse_many(keys)[("m1", "cash")].credit_limit == 500
    assert store.ops("k1", 8) == ops[8:]
    store.close()


def test_two_processes_never_double_apply_or_double_grant(pg_dsn, cloud_key, fleet):
    k1 = fleet.add("k1")
    stores = [pg_store(pg_dsn, cloud_key) for _ in range(4)]
    stores[0].trust("k1", public_bytes(fleet.keys["k1"]), "kiosk")
    stores[0].append([Intent(Kind.INC, "m1", "cash", 1000)], ref="topup")
    k1.append([Intent(Kind.INC, "m2", "cash", 500)])
    for i in range(40):
        k1.append([Intent(Kind.DEC, "m2", "cash", 5)], ref=f"t{i}")
    ops = list(k1.ops("k1"))
    barrier = threading.Barrier(4)

    def work(i):
        barrier.wait()
        counts = stores[i].ingest(ops)  # the same batch delivered to every process
        grants = [stores[i].grant("m1", "cash", "k1", 300, 300, ref=f"rq-{j}") for j in range(5)]
        return counts, grants

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(4)))
    assert sum(c["applied"] for c, _ in results) == 41
    state = stores[0].purse("m1", "cash")
    assert state.rights("k1") == 900  # three grants of 300 fit in 1000; never more
    assert state.rights("cloud") == 100
    granted_refs = {op.ref for _, gs in results for g in gs for op in g}
    assert len(granted_refs) == 3
    assert len(stores[0].ops("cloud")) == 4
    for s in stores:
        s.close()


@pytest.mark.mqtt
async def test_two_reconcilers_share_the_load_over_postgres(pg_dsn, cloud_key, tmp_path):
    from cloud_sync.reconciler import Reconciler
    from tests.mqtt_broker import world
    from tests.test_sync_mqtt import assert_converged, spend

    async with world(tmp_path, ["k1", "k2", "k3"]) as w:
        w.keys["cloud"] = cloud_key
        store_a, store_b = pg_store(pg_dsn, cloud_key), pg_store(pg_dsn, cloud_key)
        w.store = store_a
        rec_a = Reconciler(store_a, cloud_key, chain_chunk=50)
        rec_b = Reconciler(store_b, cloud_key, chain_chunk=50)
        w.reconciler = rec_a
        for d in ("k1", "k2", "k3"):
            w.kiosk(d, batch_size=10)
        for m in ("m1", "m2"):
            store_a.append([Intent(Kind.INC, m, "cash", 3_000)], ref=f"topup-{m}")
        w.start_reconciler(rec_a, shared=True)
        w.start_reconciler(rec_b, shared=True)
        for d in ("k1", "k2", "k3"):
            w.start_agent(d)
        await w.online("k1", "k2", "k3")
        approved = 0
        for i in range(60):
            d = ("k1", "k2", "k3")[i % 3]
            m = ("m1", "m2")[i % 2]
            if not spend(w.ledgers[d], m, 70, f"{d}-{i}"):
                if await w.agents[d].request_rights(m, "cash", 70):
                    assert spend(w.ledgers[d], m, 70, f"{d}-{i}")
                    approved += 1
            else:
                approved += 1
            w.agents[d].notify()
        await w.settled()
        assert w.services[0].handled > 0 and w.services[1].handled > 0  # both did work
        total = sum(store_a.purse(m, "cash").value for m in ("m1", "m2"))
        assert total == 6_000 - 70 * approved
        assert_converged(w)
        store_b.close()
