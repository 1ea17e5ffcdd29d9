"""Every report's figures against the ledger walked op by op (tests/report_helpers.Walk), on the
SQLite and the PostgreSQL cloud store; the liability matches the purses to the unit; exports
(CSV, XLSX, PDF, PNG) carry the same totals; `kiosk cloud report` prints and writes them."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from click.testing import CliRunner

from cloud_sync import report_export, reports
from cloud_sync.store import SqliteCloudStore
from edge.ledger import generate_key
from edge.ledger.store import Clock
from tests.report_helpers import START, TZ, Walk, all_ops, build, is_member


def _sqlite(tmp_path, now):
    store = SqliteCloudStore(
        tmp_path / "cloud.db", replica="cloud", key=generate_key(), durable=False
    )
    store.ledger.clock = Clock(wall_ms=lambda: now[0], mono_ms=lambda: now[0])
    return store


def _pg(dsn, now):
    from cloud_sync.pgstore import PgCloudStore

    return PgCloudStore(
        dsn, replica="cloud", key=generate_key(), clock=Clock(lambda: now[0], lambda: now[0])
    )


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def chain(request, tmp_path_factory):
    """One scenario per backend, shared by the read-only tests of this module."""
    tmp_path = tmp_path_factory.mktemp(request.param)
    now = [0]
    if request.param == "sqlite":
        store = _sqlite(tmp_path, now)
    else:
        store = _pg(request.getfixturevalue("pg_dsn_module"), now)
    c = build(store, tmp_path, now)
    yield c
    for k in c.kiosks.values():
        k.close()
    store.close()


WINDOWS = [
    (START + dt.timedelta(days=3), START + dt.timedelta(days=33), "day"),
    (START, START + dt.timedelta(days=40), "week"),
    (START - dt.timedelta(days=30), START + dt.timedelta(days=60), "month"),
]


@pytest.fixture(scope="module")
def pg_dsn_module():
    from tests.conftest import pg_database

    with pg_database() as dsn:
        yield dsn


def _window(start, end, by, site=None):
    return reports.Window(start, end, by, TZ, "¥", site)


@pytest.mark.parametrize(("start", "end", "by"), WINDOWS)
def test_every_report_matches_the_ledger_walked_op_by_op(chain, start, end, by):
    store = chain.store
    w = _window(start, end, by)
    walk = Walk(all_ops(store), store.replica, by, w.start_ms, w.end_ms)
    assert walk.sums, "the scenario wrote nothing in the window"

    def col(report, key):
        return {r["period"]: r[key] for r in report.main.rows}

    def expect(key, sign=1):
        return {p: sign * walk.sums[p][key] for p in w.periods()}

    sv = reports.stored_value(store, w)
    assert col(sv, "topped_up") == expect("cash.in")
    assert col(sv, "spent") == expect("cash.out", -1)
    assert col(sv, "refunded") == expect("cash.refund")
    assert col(sv, "corrected") == expect("cash.correct")
    assert (
        sv.main.rows[0]["outstanding"]
        == walk.before["cash"]
        + sum(walk.sums[w.periods()[0]][k] for k in ("cash.in", "cash.refund", "cash.correct"))
        - walk.sums[w.periods()[0]]["cash.out"]
    )
    assert sum(walk.sums[p]["cash.refund"] for p in walk.sums) > 0  # refunds really happened

    pts = reports.points(store, w)
    assert col(pts, "issued") == expect("points.in")
    assert col(pts, "redeemed") == expect("points.out", -1)
    assert col(pts, "taken_back") == expect("points.refund")

    sales = reports.sales(store, w)
    assert col(sales, "taps") == {p: len(walk.taps[p]) for p in w.periods()}
    assert col(sales, "cash") == expect("sales.cash")
    assert col(sales, "visits") == expect("visits.used")
    assert col(sales, "coupons") == expect("coupons.used")

    ps = reports.passes(store, w)
    assert col(ps, "visits_sold") == expect("visits.sold")
    assert col(ps, "coupons_issued") == expect("coupons.issued")
    assert col(ps, "vouchers_issued") == expect("vouchers.issued")
    assert col(ps, "vouchers_used") == expect("vouchers.used")

    top = reports.products(store, w, limit=100).main.rows
    assert {(r["kiosk"], r["purse"]): r["taps"] for r in top} == {
        k: len(v) for k, v in walk.products.items()
    }

    mem = reports.members(store, w)
    assert col(mem, "new") == {p: walk.new[p] for p in w.periods()}
    assert col(mem, "active") == {p: len(walk.active[p]) for p in w.periods()}
    assert all(r["lapsed"] == r["registered"] - r["active"] for r in mem.main.rows)

    rk = reports.risk(store, w)
    assert col(rk, "debt") == {p: walk.sums[p]["debt"] for p in w.periods()}
    assert rk.main.totals["debt"] > 0  # the risk kiosk did overspend
    held = {
        k: sum(max(0, -p.share(k).own_rights) for p in store.purses() if p.purse == "cash")
        for k in chain.kiosks
    }
    assert {r["kiosk"]: r["open_debt"] for r in rk.tables[1].rows} == {
        k: d for k, d in held.items() if d
    }


def test_outstanding_liability_equals_the_purses_to_the_unit(chain):
    store = chain.store
    w = _window(START - dt.timedelta(days=1), START + dt.timedelta(days=41), "month")
    walk = Walk(all_ops(store), store.replica, "month", 0, 2**62)
    purses = sum(p.value for p in store.purses() if is_member(p.account) and p.purse == "cash")
    sv = reports.stored_value(store, w)
    assert sv.main.rows[-1]["outstanding"] == purses == walk.outstanding["cash"]
    assert reports.liability(store) == purses
    pts = reports.points(store, w)
    points = sum(p.value for p in store.purses() if is_member(p.account) and p.purse == "points")
    assert pts.main.rows[-1]["outstanding"] == points == walk.outstanding["points"]


def test_a_site_report_counts_only_that_venues_kiosks(chain):
    store = chain.store
    w = _window(START, START + dt.timedelta(days=40), "month", site="s2")
    sales = reports.sales(store, w)
    k3 = {(o.replica, o.ref) for o in store.ops("k3") if o.kind.name in ("DEC", "DEBT")}
    assert sales.main.totals["taps"] == len(k3) > 0
    assert reports.risk(store, w).tables[1].rows[0]["kiosk"] == "k3"


def test_members_per_tier_and_category_add_up_to_every_member(chain):
    store = chain.store
    w = _window(START, START + dt.timedelta(days=40), "week")
    mix = reports.members(store, w).tables[1]
    named = [a for a, _ in store.registers_named("name") if is_member(a)]
    assert mix.totals["members"] == len(named)
    assert {r["category"] for r in mix.rows} <= {"adult", "child"}


def test_exports_carry_the_same_totals(chain, tmp_path):
    store = chain.store
    w = _window(START, START + dt.timedelta(days=40), "week")
    sv = reports.stored_value(store, w)
    rows = list(csv.reader(io.StringIO(report_export.to_csv(sv).decode())))
    total = rows[len(sv.main.rows) + 1]
    assert total[0] == "total"
    assert total[1] == report_export.amount_text(sv.main.totals["topped_up"], True)

    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(report_export.to_xlsx(sv)))
    ws = wb.worksheets[0]
    cells = [c.value for c in ws[len(sv.main.rows) + 2]]
    assert cells[0] == "total" and round(cells[1] * 100) == sv.main.totals["topped_up"]
    assert report_export.to_pdf(sv).startswith(b"%PDF")
    assert report_export.to_png(sv).startswith(b"\x89PNG")
    text = report_export.text(sv)
    assert "¥" in text and "Asia/Shanghai" in text


def test_unknown_report_and_bad_window_are_refused_in_one_line(chain):
    with pytest.raises(reports.ReportError, match="unknown report 'sale'"):
        reports.run(chain.store, "sale", _window(START, START + dt.timedelta(days=1), "day"))
    with pytest.raises(reports.ReportError, match="not after"):
        _window(START, START, "day")


def test_report_command_prints_a_table_and_writes_files(tmp_path):
    from kiosk.cli import cli as main
    from tests.console_helpers import write_cloud

    config = write_cloud(tmp_path / "cloud")
    with config.open("a") as f:
        f.write(f'[reports]\ncurrency = "¥"\ntimezone = "{TZ}"\n')
    from cloud_sync import admin
    from cloud_sync.settings import load_config
    from edge.ledger import load_private_key

    cfg = load_config(config)
    store = SqliteCloudStore(
        cfg.reconciler.store.removeprefix("sqlite:///"),
        replica="cloud",
        key=load_private_key(cfg.reconciler.key_file),
    )
    admin.register_member(store, "m1", "Alice")
    admin.top_up(store, "m1", "cash", 12_345, "R-1")
    store.close()
    today = dt.datetime.now(dt.UTC).date()
    args = ["cloud", "report", "stored-value", "--config", str(config)]
    args += ["--from", str(today - dt.timedelta(days=2)), "--to", str(today + dt.timedelta(days=2))]
    runner = CliRunner()
    out = runner.invoke(main, args)
    assert out.exit_code == 0, out.output
    assert "¥123.45" in out.output and "total" in out.output
    for fmt in ("csv", "xlsx", "pdf", "png"):
        target = tmp_path / f"r.{fmt}"
        done = runner.invoke(main, [*args, "--format", fmt, "--out", str(target)])
        assert done.exit_code == 0, done.output
        assert target.stat().st_size > 100
    bad = runner.invoke(main, [*args[:5], "--from", "2026-01-02", "--to", "2026-01-01"])
    assert bad.exit_code == 1 and bad.output.count("\n") == 1 and "not after" in bad.output


@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC"])
@pytest.mark.parametrize("by", ["day", "week", "month"])
def test_periods_in_sql_match_the_zone_across_summer_time(tz, by):
    """The integer SQL for periods against Python's zoneinfo, at random instants and at every
    minute around the summer-time changes."""
    import random
    import sqlite3
    from zoneinfo import ZoneInfo

    from cloud_sync.periods import day_label, local_midnight_ms, period_sql, period_start

    start, end = (
        local_midnight_ms(dt.date(2026, 1, 1), tz),
        local_midnight_ms(dt.date(2027, 1, 1), tz),
    )
    expr, args = period_sql("wall_ms", by, tz, start, end)
    conn = sqlite3.connect(":memory:")
    rnd = random.Random(3)
    instants = [rnd.randrange(start, end) for _ in range(2000)]
    for change in ("2026-03-29T00:30", "2026-03-08T01:30", "2026-10-25T00:30", "2026-11-01T01:30"):
        utc = dt.datetime.fromisoformat(change).replace(tzinfo=dt.UTC)
        instants += [int(utc.timestamp() * 1000) + m * 60_000 for m in range(-120, 240)]
    for ms in [*instants, start, end - 1]:
        local = dt.datetime.fromtimestamp(ms / 1000, ZoneInfo(tz)).date()
        (got,) = conn.execute(f"SELECT {expr} FROM (SELECT ? AS wall_ms)", [*args, ms]).fetchone()
        assert day_label(got) == period_start(local, by).isoformat(), (tz, by, ms)
