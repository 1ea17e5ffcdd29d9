"""Reports on 100k members and 1M ops on PostgreSQL, beside a raw `SELECT count(*)` over the same
ops table measured in the same run.

The data: 100k members registered by the cloud (name, tier, category, a counter top-up: 400k
cloud ops) and 300k paid taps at 10 kiosks on 3 sites (a cash debit and the points it earns:
600k kiosk ops), spread over a year. Every op is a real one: encoded, signed with its replica's
Ed25519 key and hash-chained, by two worker processes (one chain each at a time), then loaded
with COPY (text format) together with the purse totals, heads and registers the store keeps.
Reports do not verify signatures, but the rows are what a real store holds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import multiprocessing
import os
import time
import uuid
from collections import defaultdict
from typing import Any

from bench.report import Row, row

PG_DSN = os.environ.get("KIOSK_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
MEMBERS = 100_000
KIOSKS = 10
TAPS_PER_KIOSK = 30_000
YEAR_START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
YEAR_MS = 365 * 86_400_000
TZ = "Asia/Shanghai"

_COLUMNS = "replica, seq, wall_ms, mono_ms, kind, account, purse, amount, counterpart, ref, data"
_COLUMNS += ", prev, sig, hash"


def _chain(args: tuple[str, int]) -> tuple[str, bytes, dict[tuple[str, str], list[int]], int]:
    """Sign one replica's chain; (replica, COPY text, {(account, purse): [inc, dec]}, head)."""
    from edge.ledger import generate_key
    from edge.ledger.op import GENESIS, SIGNING_CONTEXT, Kind, Op

    replica, n = args
    key = generate_key()
    t0 = int(YEAR_START.timestamp() * 1000)
    lines: list[str] = []
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    prev, seq = GENESIS, 0

    def put(wall: int, kind: Kind, account: str, purse: str, amount: int, ref: str, d: str) -> None:
        nonlocal prev, seq
        seq += 1
        body = Op(replica, seq, wall, wall, kind, account, purse, amount, "", ref, d, prev).body()
        sig = key.sign(SIGNING_CONTEXT + body)  # what Op.signed does, without a second encode
        h = hashlib.sha256(body + sig).digest()  # Op.hash
        lines.append(
            f"{replica}\t{seq}\t{wall}\t{wall}\t{int(kind)}\t{account}\t{purse}\t{amount}\t\t"
            f"{ref}\t{d}\t\\\\x{prev.hex()}\t\\\\x{sig.hex()}\t\\\\x{h.hex()}\n"
        )
        prev = h
        if kind is Kind.INC:
            totals[(account, purse)][0] += amount
        elif kind is Kind.DEC:
            totals[(account, purse)][1] += amount

    if replica == "cloud":
        for i in range(n):
            m = f"m{i:06d}"
            wall = t0 + i * (YEAR_MS // n)
            put(wall, Kind.SET, m, "name", wall, "", f"Member {i}")
            put(wall, Kind.SET, m, "tier", wall, "", ("silver", "gold", "")[i % 3])
            put(wall, Kind.SET, m, "category", wall, "", ("adult", "child")[i % 2])
            put(wall, Kind.INC, m, "cash", 10_000, f"R-{i}", "")
    else:
        k = int(replica[1:])
        for t in range(n):
            m = f"m{(t * KIOSKS + k) * 7919 % MEMBERS:06d}"
            wall = t0 + (t * KIOSKS + k) * (YEAR_MS // (n * KIOSKS))
            ref = f"{replica}-{t}"
            put(wall, Kind.DEC, m, "cash", 1500, ref, "")
            put(wall, Kind.INC, m, "points", 15, ref, "")
    return replica, "".join(lines).encode(), dict(totals), seq


def load(dsn: str) -> tuple[Any, float]:
    """A PostgreSQL cloud store holding the data; (store, seconds taken to make and load it)."""
    from cloud_sync.pgstore import PgCloudStore
    from edge.ledger import generate_key

    t0 = time.perf_counter()
    store = PgCloudStore(dsn, replica="cloud", key=generate_key())
    jobs = [("cloud", MEMBERS)] + [(f"k{k:02d}", TAPS_PER_KIOSK) for k in range(KIOSKS)]
    import psycopg

    with (
        multiprocessing.get_context("fork").Pool(2) as pool,
        psycopg.connect(dsn, autocommit=True) as conn,
    ):
        for k in range(KIOSKS):
            conn.execute(
                "INSERT INTO devices (device, site) VALUES (%s, %s)", (f"k{k:02d}", f"s{k % 3}")
            )
        for replica, text, totals, head in pool.imap_unordered(_chain, jobs):
            with conn.cursor() as cur:
                with cur.copy(f"COPY ops ({_COLUMNS}) FROM STDIN") as cp:
                    cp.write(text)
                with cur.copy("COPY shares (account, purse, replica, inc, dec) FROM STDIN") as cp:
                    for (a, p), (inc, dec) in totals.items():
                        cp.write_row((a, p, replica, inc, dec))
                cur.execute(
                    "INSERT INTO heads VALUES (%s, %s, '\\x00') ON CONFLICT (replica) DO UPDATE"
                    " SET seq = excluded.seq",
                    (replica, head),
                )
        with conn.cursor() as cur, cur.copy("COPY registers FROM STDIN") as cp:
            for i in range(MEMBERS):
                m = f"m{i:06d}"
                cp.write_row((m, "name", f"Member {i}", 1, "cloud"))
                cp.write_row((m, "tier", ("silver", "gold", "")[i % 3], 1, "cloud"))
                cp.write_row((m, "category", ("adult", "child")[i % 2], 1, "cloud"))
        conn.execute("ANALYZE")
    return store, time.perf_counter() - t0


def _timed(fn: Any, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def run() -> list[Row]:
    import psycopg

    from cloud_sync import reports

    name = f"kiosk_bench_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        print(f"report bench skipped: no PostgreSQL at {PG_DSN}: {exc}")
        return []
    admin.execute(f'CREATE DATABASE "{name}"')
    dsn = f"{PG_DSN.rsplit('/', 1)[0]}/{name}"
    try:
        store, load_s = load(dsn)
        try:
            (count,) = store.query("SELECT count(*) FROM ops")[0]
            assert count >= 1_000_000, count
            sample = store.ops("k00", 0, 1000)  # the rows read back as ops, chained by hash
            assert all(b.prev == a.hash() for a, b in itertools.pairwise(sample))
            w = reports.Window(dt.date(2026, 1, 1), dt.date(2027, 1, 1), "month", TZ, "¥")
            base = _timed(lambda: store.query("SELECT count(*) FROM ops"))
            sv = _timed(lambda: reports.stored_value(store, w))
            slowest, which = max(
                (_timed(lambda fn=fn: fn(store, w), repeat=1), name)  # type: ignore[misc]
                for name, fn in reports.REPORTS.items()
            )
            day = reports.Window(dt.date(2026, 3, 1), dt.date(2026, 3, 2), "day", TZ, "¥")
            one_day = _timed(lambda: [fn(store, day) for fn in reports.REPORTS.values()])
        finally:
            store.close()
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
    print(f"report bench: {count} ops, 100k members made, signed and loaded in {load_s:.1f} s")
    print(f"report bench: slowest report over the year: {which}")
    return [
        row("report_stored_value_year_1m", "ms", sv, "pg_count_star_1m_ops", base, "<= 5000 ms"),
        row("report_slowest_year_1m", "ms", slowest, "pg_count_star_1m_ops", base, "<= 5000 ms"),
        row("report_all_7_one_day_1m", "ms", one_day, "pg_count_star_1m_ops", base, "<= 2000 ms"),
    ]


if __name__ == "__main__":
    from bench.report import table

    print(table(run()))
