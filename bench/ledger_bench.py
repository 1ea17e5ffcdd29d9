"""Ledger benchmarks: durable signed append vs the raw floor; chain verify vs raw Ed25519 verify."""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

from bench.report import Row, percentile, row
from edge.ledger import Intent, Kind, Ledger, generate_key, verify

SCRATCH = "/var/tmp"  # a real disk, like the kiosk's SD card (not tmpfs)


def _floor_conn(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB, sig BLOB)")
    return conn


class Floor:
    """The floor of a durable tap: one raw sqlite3 insert+commit (WAL, synchronous=FULL) plus one
    Ed25519 signature, with no code of ours in between."""

    def __init__(self, directory: Path) -> None:
        self.key = generate_key()
        self.conn = _floor_conn(directory / "floor.db")
        self.body = bytes(range(100))

    def once_us(self) -> float:
        t0 = time.perf_counter_ns()
        sig = self.key.sign(self.body)
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("INSERT INTO t (body, sig) VALUES (?, ?)", (self.body, sig))
        self.conn.execute("COMMIT")
        return (time.perf_counter_ns() - t0) / 1000

    def close(self) -> None:
        self.conn.close()


def append_latency(n: int = 3000, block: int = 100) -> list[Row]:
    """Interleave blocks of our append and of the floor so both see the same disk weather."""
    key = generate_key()
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        led = Ledger(Path(tmp) / "k.db", replica="k1", key=key)
        led.append([Intent(Kind.INC, "m1", "cash", 10**12)])
        floor = Floor(Path(tmp))
        ours: list[float] = []
        base: list[float] = []
        for b in range(n // block):
            for i in range(block):
                base.append(floor.once_us())
                t0 = time.perf_counter_ns()
                led.append([Intent(Kind.DEC, "m1", "cash", 1)], ref=f"t{b}-{i}")
                ours.append((time.perf_counter_ns() - t0) / 1000)
        led.close()
        floor.close()
    return [
        row(
            "ledger_append_p50",
            "us",
            percentile(ours, 50),
            "floor_insert_sign_p50",
            percentile(base, 50),
            "<= 2.0",
        ),
        row(
            "ledger_append_p99",
            "us",
            percentile(ours, 99),
            "floor_insert_sign_p99",
            percentile(base, 99),
            "<= 2.0",
        ),
    ]


def verify_rate(n: int = 3000) -> list[Row]:
    key = generate_key()
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        led = Ledger(Path(tmp) / "k.db", replica="k1", key=key, durable=False)  # a fixture
        led.append([Intent(Kind.INC, "m1", "cash", 10**12)])
        for i in range(n - 1):
            led.append([Intent(Kind.DEC, "m1", "cash", 1)], ref=f"t{i}")
        ops = list(led.ops("k1"))
        pub = key.public_key()
        bodies = [(op.sig, b"kiosk-edge/op/v1\x00" + op.body()) for op in ops]
        best_raw = best_ours = 0.0
        for _ in range(3):
            t0 = time.perf_counter()
            for sig, msg in bodies:
                pub.verify(sig, msg)
            best_raw = max(best_raw, len(bodies) / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            report = verify(led)
            best_ours = max(best_ours, report.total_ops / (time.perf_counter() - t0))
            assert report.ok
        led.close()
    return [
        row("ledger_verify_rate", "ops/s", best_ours, "raw_ed25519_verify_rate", best_raw, ">= 0.8")
    ]


def run() -> list[Row]:
    return [*append_latency(), *verify_rate()]
