"""Report periods in a site's time zone: the day, ISO week (Monday) or month an instant falls in,
named by its first local day (`2026-03-02`). The SQL stores group by the same label: PostgreSQL
with `date_trunc ... AT TIME ZONE`, SQLite through `local_period` registered as a function."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

By = Literal["day", "week", "month"]
BYS: tuple[By, ...] = ("day", "week", "month")
SLOT_MS = 900_000  # every zone's offset is a multiple of 15 minutes


@lru_cache(maxsize=8)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def period_start(day: dt.date, by: str) -> dt.date:
    if by == "week":
        return day - dt.timedelta(days=day.weekday())
    if by == "month":
        return day.replace(day=1)
    return day


@lru_cache(maxsize=65_536)
def _slot_period(slot: int, by: str, tz: str) -> str:
    local = dt.datetime.fromtimestamp(slot * SLOT_MS / 1000, zone(tz))
    return period_start(local.date(), by).isoformat()


def local_period(wall_ms: int, by: str, tz: str) -> str:
    """The label of the period holding `wall_ms` (a 15-minute slot never straddles two)."""
    return _slot_period(int(wall_ms) // SLOT_MS, by, tz)


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
