"""Shared fixtures: ledgers of a small fleet (one cloud, kiosks) in temporary SQLite files, a real
pcscd with the virtual reader."""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from edge.ledger import Ledger, RiskPolicy, generate_key, public_bytes
from edge.ledger.purse import STRICT

if TYPE_CHECKING:
    from tests.pcscd_process import Pcscd


class Fleet:
    """A cloud replica and kiosks, each with its own key and file, all trusting each other."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.keys = {}
        self.ledgers: dict[str, Ledger] = {}

    def add(self, replica: str, role: str = "kiosk", risk: RiskPolicy = STRICT) -> Ledger:
        key = generate_key()
        self.keys[replica] = key
        led = Ledger(self.root / f"{replica}.db", replica=replica, key=key, role=role, risk=risk)  # type: ignore[arg-type]
        for other, o_led in self.ledgers.items():
            o_led.trust(replica, public_bytes(key), role)  # type: ignore[arg-type]
            led.trust(other, public_bytes(self.keys[other]), o_led.role)
        self.ledgers[replica] = led
        return led

    def close(self) -> None:
        for led in self.ledgers.values():
            led.close()


@pytest.fixture(scope="module")
def pcscd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pcscd]:
    """A real pcscd with the vpcd virtual reader, one per test module (skips where it cannot
    run here, saying why). Imported here: only the PC/SC tests need pyscard."""
    from tests.pcscd_process import Pcscd, why_pcscd_unusable

    reason = why_pcscd_unusable()
    if reason:
        pytest.skip(reason)
    daemon = Pcscd(tmp_path_factory.mktemp("pcscd") / "pcscd.log")
    daemon.start()
    yield daemon
    daemon.stop()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(tmp_path)
    yield f
    f.close()


PG_DSN = os.environ.get("KIOSK_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    """A uniquely named, empty PostgreSQL database for one test, dropped after it."""
    with pg_database() as dsn:
        yield dsn


@contextlib.contextmanager
def pg_database() -> Iterator[str]:
    """A uniquely named, empty PostgreSQL database, dropped after (skips without a server)."""
    psycopg = pytest.importorskip("psycopg")
    name = f"kiosk_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {PG_DSN}: {exc}")
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_DSN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def cloud_and_kiosks(fleet: Fleet) -> Callable[..., tuple[Ledger, ...]]:
    def make(n: int = 2, risk: RiskPolicy = STRICT) -> tuple[Ledger, ...]:
        cloud = fleet.add("cloud", "cloud")
        kiosks = [fleet.add(f"k{i + 1}", "kiosk", risk) for i in range(n)]
        return (cloud, *kiosks)

    return make


@pytest.fixture(autouse=True)
def _log_calls_must_format(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail any test whose log call does not format (wrong %-args hide errors in the field)."""
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.records:
        try:
            record.getMessage()
        except (TypeError, ValueError) as exc:  # pragma: no cover - the failure path
            pytest.fail(f"log call does not format: {record.msg!r} % {record.args!r}: {exc}")
