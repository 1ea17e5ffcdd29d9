"""Report periods in a site's time zone: the day, ISO week (Monday) or month an instant falls in,
named by its first local day (`2026-03-02`). In SQL the period is computed with integer
arithmetic alone (the same text on SQLite and PostgreSQL, and cheap per row): the zone's offset
is a CASE over its changes within the window, the local day is `(wall_ms + offset) / 86400000`,
a week is a multiple of 7 days from a Monday, a month a CASE over its first days."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from itertools import pairwise
from typing import Literal
from zoneinfo import ZoneInfo

By = Literal["day", "week", "month"]
BYS: tuple[By, ...] = ("day", "week", "month")


@lru_cache(maxsize=8)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def period_start(day: dt.date, by: str) -> dt.date:
    if by == "week":
        return day - dt.timedelta(days=day.weekday())
    if by == "month":
        return day.replace(day=1)
    return day


def periods_between(start: dt.date, end: dt.date, by: str) -> list[str]:
    """Every period label from the one holding `start` to the one holding `end - 1 day`."""
    out: list[str] = []
    day = period_start(start, by)
    while day < end:
        out.append(day.isoformat())
        if by == "day":
            day += dt.timedelta(days=1)
        elif by == "week":
            day += dt.timedelta(days=7)
        else:
            day = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return out


def local_midnight_ms(day: dt.date, tz: str) -> int:
    return int(dt.datetime.combine(day, dt.time(), zone(tz)).timestamp() * 1000)


EPOCH = dt.date(1970, 1, 1)
DAY_MS = 86_400_000


def _offset_ms(ms: int, tz: str) -> int:
    off = dt.datetime.fromtimestamp(ms / 1000, zone(tz)).utcoffset()
    return int(off.total_seconds() * 1000) if off else 0


def offset_segments(start_ms: int, end_ms: int, tz: str) -> list[tuple[int, int]]:
    """(from_ms, offset_ms) of each stretch of constant UTC offset in [start_ms, end_ms)."""
    segs = [(start_ms, _offset_ms(start_ms, tz))]
    t = start_ms
    while t < end_ms:
        nxt = min(t + DAY_MS, end_ms)
        if _offset_ms(nxt - 1, tz) != segs[-1][1]:
            lo, hi = t, nxt - 1  # the offset changes between lo and hi: find the instant
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if _offset_ms(mid, tz) == segs[-1][1] else (lo, mid)
            segs.append((hi, _offset_ms(hi, tz)))
        t = nxt
    return segs


def period_sql(column: str, by: str, tz: str, start_ms: int, end_ms: int) -> tuple[str, list[int]]:
    """SQL (with `?` parameters) giving the local day number (days since 1970-01-01) of the first
    day of the period holding `column`, for rows in [start_ms, end_ms)."""
    segs = offset_segments(start_ms, end_ms, tz)
    if len(segs) == 1:
        offset, args = "?", [segs[0][1]]
    else:
        offset, args = "CASE", []
        for (_, off), (until, _) in pairwise(segs):
            offset += f" WHEN {column} < ? THEN ?"
            args += [until, off]
        offset += " ELSE ? END"
        args.append(segs[-1][1])
    day = f"(({column} + {offset}) / {DAY_MS})"
    if by == "week":  # 1970-01-01 was a Thursday: day + 3 is a whole number of weeks on Mondays
        return f"(({day} + 3) / 7 * 7 - 3)", args
    if by == "month":
        first = dt.datetime.fromtimestamp(start_ms / 1000, zone(tz)).date()
        last = dt.datetime.fromtimestamp((end_ms - 1) / 1000, zone(tz)).date()
        months = periods_between(first, last + dt.timedelta(days=1), "month")
        starts = [(dt.date.fromisoformat(p) - EPOCH).days for p in months]
        if len(starts) == 1:
            return "?", [starts[0]]
        case = "CASE"
        cargs: list[int] = []
        for begin, nxt in pairwise(starts):
            case += f" WHEN {day} < ? THEN ?"
            cargs += [*args, nxt, begin]
        case += " ELSE ? END"
        return case, [*cargs, starts[-1]]
    return day, args


def day_label(day_number: int) -> str:
    return (EPOCH + dt.timedelta(days=int(day_number))).isoformat()
