"""The shift report: per operator and local day, from the audit trail (the console's database),
what they did: actions, refusals, top-ups and refunds with the cash they moved."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from backoffice.audit.models import Action
from cloud_sync.periods import zone
from cloud_sync.reports import Column, Report, Table, Window

# action -> (count column, cash column); the API's actions carry the same names
CASH_MOVES = {"top_up": ("top_ups", "topped_up"), "refund": ("refunds", "refunded")}


def _cash_moved(action: Action) -> int:
    before = (action.before or {}).get("balances", {}).get("cash", 0)
    after = (action.after or {}).get("balances", {}).get("cash", 0)
    try:
        return int(after) - int(before)
    except (TypeError, ValueError):
        return 0


def shifts(w: Window) -> Report:
    start = dt.datetime.combine(w.start, dt.time(), zone(w.tz))
    end = dt.datetime.combine(w.end, dt.time(), zone(w.tz))
    actions = Action.objects.filter(when__gte=start, when__lt=end)
    if w.site is not None:
        actions = actions.filter(site=w.site)
    acc: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for a in actions.order_by("when"):
        day = a.when.astimezone(zone(w.tz)).date().isoformat()
        row = acc[(day, a.actor)]
        row["actions"] += 1
        row["refused"] += 0 if a.allowed else 1
        if a.action in CASH_MOVES and a.allowed:
            count, cash = CASH_MOVES[a.action]
            row[count] += 1
            row[cash] += _cash_moved(a)
    cols = (
        Column("day", "day"),
        Column("operator", "operator"),
        Column("actions", "actions"),
        Column("refused", "refused"),
        Column("top_ups", "top-ups"),
        Column("topped_up", "topped up", money=True),
        Column("refunds", "refunds"),
        Column("refunded", "refunded", money=True),
    )
    keys = [c.key for c in cols[2:]]
    rows: list[dict[str, Any]] = [
        {"day": day, "operator": who, **{k: int(v.get(k, 0)) for k in keys}}
        for (day, who), v in sorted(acc.items())
    ]
    totals = {k: sum(r[k] for r in rows) for k in keys}
    table = Table("Shifts per operator", cols, rows, totals)
    return Report("shifts", "Shift report per operator", w, [table], ["from the audit trail"])
