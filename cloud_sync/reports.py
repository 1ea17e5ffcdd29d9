"""Reports over the cloud store: each is a library function returning a `Report` (tables of
integer figures, money in minor units), computed by SQL aggregates that group by the site's
local day, week or month in the database, so 1M ops come back as a few hundred rows.

What the ops tell (DESIGN.md section 4): a member account is an id with no `:` in it (cards,
coupons, vouchers and unclaimed coins are accounts of their own); a kiosk's `dec`/`debt` on a
member is a paid tap (grouped by its tap id), its `inc` a top-up (coins, bonus, voucher) or
points earned; the cloud's `inc` is a counter top-up, or a refund (`refund:` ref) or a
correction (`correct:` ref, either sign). Time-pass entries move no purse and so write no op:
they are not in these reports.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cloud_sync.errors import SyncError
from cloud_sync.periods import BYS, day_label, local_midnight_ms, period_sql, periods_between
from cloud_sync.store import CloudStore

INC, DEC, DEBT, SET = 1, 2, 4, 5  # edge.ledger.Kind numbers, as stored
MEMBER = "%:%"  # `account NOT LIKE ?`: ids with a colon are not members
REFUND_REF, CORRECT_REF = "refund:%", "correct:%"


class ReportError(SyncError):
    """A report asked for something that does not exist (name, period, dates)."""


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    money: bool = False  # minor units of the site's currency


@dataclass(slots=True)
class Table:
    title: str
    columns: tuple[Column, ...]
    rows: list[dict[str, Any]]
    totals: dict[str, int] = field(default_factory=dict)  # summed columns (flows, counts)

    def chart_columns(self) -> list[Column]:
        return [c for c in self.columns[1:] if c.key in self.totals or c.key == "outstanding"]


@dataclass(slots=True)
class Report:
    name: str
    title: str
    window: Window
    tables: list[Table]
    notes: list[str] = field(default_factory=list)

    @property
    def main(self) -> Table:
        return self.tables[0]


@dataclass(frozen=True, slots=True)
class Window:
    """Local dates [start, end) of a site, cut into periods."""

    start: dt.date
    end: dt.date
    by: str = "day"  # day, week or month (checked)
    tz: str = "UTC"
    currency: str = ""
    site: str | None = None

    def __post_init__(self) -> None:
        if self.by not in BYS:
            raise ReportError(f"unknown period {self.by!r}: use day, week or month")
        if self.end <= self.start:
            raise ReportError(f"--to {self.end} is not after --from {self.start}")

    @property
    def start_ms(self) -> int:
        return local_midnight_ms(self.start, self.tz)

    @property
    def end_ms(self) -> int:
        return local_midnight_ms(self.end, self.tz)

    def periods(self) -> list[str]:
        return periods_between(self.start, self.end, self.by)


# -- SQL helpers --------------------------------------------------------------------------------


def _where(store: CloudStore, w: Window, *, kiosks_only: bool = False) -> tuple[str, list[object]]:
    """The window's time range, and the site's kiosks (a site filter leaves out the cloud's own
    ops: counter top-ups and refunds belong to the chain, not to one venue's kiosks)."""
    sql = "wall_ms >= ? AND wall_ms < ?"
    args: list[object] = [w.start_ms, w.end_ms]
    if w.site is not None:
        sql += " AND replica IN (SELECT device FROM devices WHERE site = ?)"
        args.append(w.site)
    elif kiosks_only:
        sql += " AND replica <> ?"
        args.append(store.replica)
    return sql, args


def _by_period(
    store: CloudStore, w: Window, select: str, where: str, args: Sequence[object]
) -> dict[str, tuple[Any, ...]]:
    """`SELECT <period>, <select> FROM ops WHERE <where> GROUP BY <period>` as {period: row}."""
    period, pargs = period_sql("wall_ms", w.by, w.tz, w.start_ms, w.end_ms)
    sql = f"SELECT {period} AS period, {select} FROM ops WHERE {where} GROUP BY 1"
    return {day_label(r[0]): tuple(r[1:]) for r in store.query(sql, [*pargs, *args])}


def _by_period_of(
    store: CloudStore,
    w: Window,
    keys: str,
    inner: str,
    outer: str,
    where: str,
    args: Sequence[object],
) -> dict[str, tuple[Any, ...]]:
    """Distinct counts as two hash aggregates (cheaper than COUNT(DISTINCT ...) on 1M rows):
    first per period and `keys` (a tap: replica, ref), then per period."""
    period, pargs = period_sql("wall_ms", w.by, w.tz, w.start_ms, w.end_ms)
    sql = (
        f"SELECT p, {outer} FROM (SELECT {period} AS p, {inner} FROM ops WHERE {where}"
        f" GROUP BY 1, {keys}) t GROUP BY p"
    )
    return {day_label(r[0]): tuple(r[1:]) for r in store.query(sql, [*pargs, *args])}


def _int(v: object) -> int:
    return int(v) if v is not None else 0  # type: ignore[call-overload]


def _rows(
    w: Window, columns: tuple[Column, ...], found: dict[str, tuple[Any, ...]]
) -> list[dict[str, Any]]:
    """One row per period of the window (periods with nothing are zeros)."""
    keys = [c.key for c in columns[1:]]
    rows = []
    for p in w.periods():
        values = found.get(p) or (0,) * len(keys)
        rows.append({"period": p, **{k: _int(v) for k, v in zip(keys, values, strict=True)}})
    return rows


def _summed(rows: list[dict[str, Any]], keys: Sequence[str]) -> dict[str, int]:
    return {k: sum(int(r[k]) for r in rows) for k in keys}


PERIOD = Column("period", "period")


# -- the reports --------------------------------------------------------------------------------


def sales(store: CloudStore, w: Window) -> Report:
    """Paid taps at kiosks (entries and sales) and what paid for them."""
    where, args = _where(store, w, kiosks_only=True)
    cols = (
        PERIOD,
        Column("taps", "paid taps"),
        Column("cash", "cash sales", money=True),
        Column("visits", "visits used"),
        Column("coupons", "coupons used"),
        Column("points", "points redeemed"),
    )
    found = _by_period_of(
        store,
        w,
        "replica, ref",
        "MAX(CASE WHEN account NOT LIKE ? OR purse = 'use' THEN 1 ELSE 0 END) AS paid,"
        " SUM(CASE WHEN purse = 'cash' AND account NOT LIKE ? THEN amount ELSE 0 END) AS cash,"
        " SUM(CASE WHEN purse LIKE ? THEN amount ELSE 0 END) AS visits,"
        " SUM(CASE WHEN account LIKE ? THEN amount ELSE 0 END) AS coupons,"
        " SUM(CASE WHEN purse = 'points' THEN amount ELSE 0 END) AS points",
        "SUM(paid), SUM(cash), SUM(visits), SUM(coupons), SUM(points)",
        f"kind IN ({DEC}, {DEBT}) AND {where}",
        [MEMBER, MEMBER, "visits:%", "coupon:%", *args],
    )
    rows = _rows(w, cols, found)
    table = Table("Sales and entries", cols, rows, _summed(rows, [c.key for c in cols[1:]]))
    return Report("sales", "Sales and entries", w, [table])


def _flows(
    store: CloudStore, w: Window, purse: str, before: bool = False
) -> tuple[dict[str, tuple[Any, ...]], int]:
    """Per period: credited (kiosks, counter), debited at kiosks, refunded, corrected (signed),
    of one purse over member accounts; and the outstanding value before the window."""
    cloud = store.replica
    select = (
        "SUM(CASE WHEN kind = 1 AND NOT (replica = ? AND (ref LIKE ? OR ref LIKE ?))"
        " THEN amount ELSE 0 END),"
        " SUM(CASE WHEN kind <> 1 AND NOT (replica = ? AND (ref LIKE ? OR ref LIKE ?))"
        " THEN amount ELSE 0 END),"
        " SUM(CASE WHEN replica = ? AND ref LIKE ? THEN"
        "  (CASE WHEN kind = 1 THEN amount ELSE -amount END) ELSE 0 END),"
        " SUM(CASE WHEN replica = ? AND ref LIKE ? THEN"
        "  (CASE WHEN kind = 1 THEN amount ELSE -amount END) ELSE 0 END)"
    )
    sargs: list[object] = [cloud, REFUND_REF, CORRECT_REF, cloud, REFUND_REF, CORRECT_REF]
    sargs += [cloud, REFUND_REF, cloud, CORRECT_REF]
    where, args = _where(store, w)
    base = f"kind IN ({INC}, {DEC}, {DEBT}) AND purse = ? AND account NOT LIKE ?"
    found = _by_period(store, w, select, f"{base} AND {where}", [*sargs, purse, MEMBER, *args])
    opening = 0
    if w.site is None:
        (row,) = store.query(
            "SELECT COALESCE(SUM(CASE WHEN kind = 1 THEN amount ELSE -amount END), 0) FROM ops"
            f" WHERE {base} AND wall_ms < ?",
            [purse, MEMBER, w.start_ms],
        )
        opening = _int(row[0])
    return found, opening


def _with_outstanding(rows: list[dict[str, Any]], opening: int, flows: Sequence[str]) -> int:
    """Each row's `outstanding`: the running balance at the period's end; the final one."""
    running = opening
    for r in rows:
        running += sum(int(r[k]) for k in flows)
        r["outstanding"] = running
    return running


def stored_value(store: CloudStore, w: Window) -> Report:
    """Cash on members' cards: topped up, spent, refunded, corrected, and what is outstanding
    (the liability) at the end of each period."""
    found, opening = _flows(store, w, "cash")
    cols = (
        PERIOD,
        Column("topped_up", "topped up", money=True),
        Column("spent", "spent", money=True),
        Column("refunded", "refunded", money=True),
        Column("corrected", "corrected", money=True),
        Column("outstanding", "outstanding", money=True),
    )
    rows = _rows(w, cols[:5], found)
    for r in rows:
        r["spent"] = -r["spent"]  # shown as a debit
    _with_outstanding(rows, opening, ["topped_up", "spent", "refunded", "corrected"])
    totals = _summed(rows, ["topped_up", "spent", "refunded", "corrected"])
    table = Table("Stored value", cols, rows, totals)
    notes = [] if w.site is None else ["per venue: kiosk activity only; outstanding is chain-wide"]
    return Report("stored-value", "Stored value (liability)", w, [table], notes)


def points(store: CloudStore, w: Window) -> Report:
    """Points earned, redeemed, taken back by refunds, corrected, and outstanding."""
    found, opening = _flows(store, w, "points")
    cols = (
        PERIOD,
        Column("issued", "issued"),
        Column("redeemed", "redeemed"),
        Column("taken_back", "taken back (refunds)"),
        Column("corrected", "corrected or expired"),
        Column("outstanding", "outstanding"),
    )
    rows = _rows(w, cols[:5], found)
    for r in rows:
        r["redeemed"] = -r["redeemed"]
    _with_outstanding(rows, opening, ["issued", "redeemed", "taken_back", "corrected"])
    totals = _summed(rows, ["issued", "redeemed", "taken_back", "corrected"])
    notes = ["points do not expire by themselves: an expiry is a correction (kiosk cloud correct)"]
    return Report("points", "Points", w, [Table("Points", cols, rows, totals)], notes)


def passes(store: CloudStore, w: Window) -> Report:
    """Visit passes sold and used; coupons and vouchers issued and used."""
    where, args = _where(store, w)
    cols = (
        PERIOD,
        Column("visits_sold", "visits sold"),
        Column("visits_used", "visits used"),
        Column("coupons_issued", "coupons issued"),
        Column("coupons_used", "coupons used"),
        Column("vouchers_issued", "vouchers issued", money=True),
        Column("vouchers_used", "vouchers redeemed", money=True),
    )
    found = _by_period(
        store,
        w,
        "SUM(CASE WHEN kind = 1 AND purse LIKE ? AND account NOT LIKE ? THEN amount ELSE 0 END),"
        " SUM(CASE WHEN kind <> 1 AND purse LIKE ? AND account NOT LIKE ? THEN amount ELSE 0 END),"
        " SUM(CASE WHEN kind = 1 AND account LIKE ? THEN amount ELSE 0 END),"
        " SUM(CASE WHEN kind <> 1 AND account LIKE ? THEN amount ELSE 0 END),"
        " SUM(CASE WHEN kind = 1 AND account LIKE ? THEN amount ELSE 0 END),"
        " SUM(CASE WHEN kind <> 1 AND account LIKE ? THEN amount ELSE 0 END)",
        f"kind IN ({INC}, {DEC}, {DEBT}) AND {where}",
        [
            "visits:%",
            MEMBER,
            "visits:%",
            MEMBER,
            "coupon:%",
            "coupon:%",
            "voucher:%",
            "voucher:%",
            *args,
        ],
    )
    rows = _rows(w, cols, found)
    table = Table(
        "Passes, coupons and vouchers", cols, rows, _summed(rows, [c.key for c in cols[1:]])
    )
    return Report("passes", "Visit passes, coupons and vouchers", w, [table])


def members(store: CloudStore, w: Window) -> Report:
    """Members new, active (a kiosk op on their account) and lapsed (registered, not active)
    per period; and today's members per tier and category."""
    first, fargs = period_sql("first_ms", w.by, w.tz, w.start_ms, w.end_ms)
    new: dict[str, int] = {}
    registered = 0  # before the window
    for p, n in store.query(
        f"SELECT CASE WHEN first_ms < ? THEN -1 ELSE {first} END, COUNT(*) FROM"
        f" (SELECT MIN(wall_ms) AS first_ms FROM ops WHERE kind = {SET} AND purse = 'name'"
        " AND account NOT LIKE ? GROUP BY account) f WHERE first_ms < ? GROUP BY 1",
        [w.start_ms, *fargs, MEMBER, w.end_ms],
    ):
        if int(p) < 0:
            registered = _int(n)
        else:
            new[day_label(p)] = _int(n)
    where, args = _where(store, w, kiosks_only=True)
    active = _by_period_of(
        store,
        w,
        "account",
        "COUNT(*) AS n",
        "COUNT(*)",
        f"kind IN ({INC}, {DEC}, {DEBT}) AND account NOT LIKE ? AND {where}",
        [MEMBER, *args],
    )
    cols = (
        PERIOD,
        Column("new", "new"),
        Column("active", "active"),
        Column("lapsed", "lapsed"),
        Column("registered", "registered"),
    )
    rows = []
    for p in w.periods():
        registered += new.get(p, 0)
        act = _int(active.get(p, (0,))[0])
        rows.append(
            {"period": p, "new": new.get(p, 0), "active": act, "lapsed": registered - act}
            | {"registered": registered}
        )
    mix = store.query(
        "SELECT COALESCE(t.value, ''), COALESCE(c.value, ''), COUNT(*) FROM registers n"
        " LEFT JOIN registers t ON t.account = n.account AND t.name = 'tier'"
        " LEFT JOIN registers c ON c.account = n.account AND c.name = 'category'"
        " WHERE n.name = 'name' AND n.account NOT LIKE ? GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2",
        [MEMBER],
    )
    mix_cols = (
        Column("tier", "tier"),
        Column("category", "category"),
        Column("members", "members"),
    )
    mix_rows = [{"tier": t or "-", "category": c or "-", "members": _int(n)} for t, c, n in mix]
    return Report(
        "members",
        "Members",
        w,
        [
            Table("Members", cols, rows, {"new": sum(new.values())}),
            Table(
                "Members per tier and category", mix_cols, mix_rows, _summed(mix_rows, ["members"])
            ),
        ],
        ["active: a kiosk op on the account in the period; lapsed: registered, not active"],
    )


def products(store: CloudStore, w: Window, limit: int = 20) -> Report:
    """What sold most: paid taps and amount per kiosk and purse (a gate sells its product; a
    visit pass is `visits:<product>`)."""
    where, args = _where(store, w, kiosks_only=True)
    rows = store.query(
        "SELECT replica, purse, COUNT(DISTINCT ref), SUM(amount) FROM ops"
        f" WHERE kind IN ({DEC}, {DEBT}) AND account NOT LIKE ? AND {where}"
        " GROUP BY replica, purse ORDER BY 3 DESC, 4 DESC, 1, 2",
        [MEMBER, *args],
    )
    cols = (
        Column("product", "product"),
        Column("kiosk", "kiosk"),
        Column("purse", "paid from"),
        Column("taps", "taps"),
        Column("amount", "amount"),
    )
    out = [
        {
            "product": p.removeprefix("visits:") if p.startswith("visits:") else f"sale at {k}",
            "kiosk": k,
            "purse": p,
            "taps": _int(n),
            "amount": _int(a),
        }
        for k, p, n, a in rows[:limit]
    ]
    table = Table("Top products", cols, out, _summed(out, ["taps"]))
    return Report("products", "Top products", w, [table], ["amount is in the purse's unit"])


def risk(store: CloudStore, w: Window) -> Report:
    """Offline risk mode: taps a kiosk let through beyond its rights (debt ops) per period, and
    the debt each kiosk still holds now (negative rights)."""
    where, args = _where(store, w, kiosks_only=True)
    cols = (
        PERIOD,
        Column("taps", "paid taps"),
        Column("debt_taps", "taps on debt"),
        Column("debt", "overspend", money=True),
    )
    found = _by_period_of(
        store,
        w,
        "replica, ref",
        f"MAX(CASE WHEN kind = {DEBT} THEN 1 ELSE 0 END) AS on_debt,"
        f" SUM(CASE WHEN kind = {DEBT} AND purse = 'cash' THEN amount ELSE 0 END) AS debt",
        "COUNT(*), SUM(on_debt), SUM(debt)",
        f"kind IN ({DEC}, {DEBT}) AND account NOT LIKE ? AND {where}",
        [MEMBER, *args],
    )
    rows = _rows(w, cols, found)
    site = "" if w.site is None else " AND replica IN (SELECT device FROM devices WHERE site = ?)"
    held = store.query(
        "SELECT replica, SUM(CASE WHEN inc + xin - xout - dec < 0 THEN dec - inc - xin + xout"
        " ELSE 0 END) FROM shares WHERE purse = 'cash' AND replica <> ?"
        f"{site} GROUP BY replica HAVING SUM(debt) > 0 ORDER BY 2 DESC",
        [store.replica] + ([w.site] if w.site is not None else []),
    )
    kcols = (Column("kiosk", "kiosk"), Column("open_debt", "open debt now", money=True))
    krows = [{"kiosk": k, "open_debt": _int(d)} for k, d in held]
    return Report(
        "risk",
        "Offline activity and risk-mode debt",
        w,
        [
            Table("Risk mode", cols, rows, _summed(rows, ["taps", "debt_taps", "debt"])),
            Table("Open debt per kiosk", kcols, krows, _summed(krows, ["open_debt"])),
        ],
    )


REPORTS: dict[str, Callable[[CloudStore, Window], Report]] = {
    "sales": sales,
    "stored-value": stored_value,
    "points": points,
    "passes": passes,
    "members": members,
    "products": products,
    "risk": risk,
}


def run(store: CloudStore, name: str, w: Window) -> Report:
    try:
        report = REPORTS[name]
    except KeyError:
        known = ", ".join([*REPORTS, "shifts"])
        raise ReportError(f"unknown report {name!r} (known: {known})") from None
    return report(store, w)


def liability(store: CloudStore) -> int:
    """The stored value outstanding now, from the materialised purse totals (a cross-check of
    the stored-value report, which sums ops)."""
    (row,) = store.query(
        "SELECT COALESCE(SUM(inc - dec), 0) FROM shares"
        " WHERE purse = 'cash' AND account NOT LIKE ?",
        [MEMBER],
    )
    return _int(row[0])
