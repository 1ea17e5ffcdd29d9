"""Result rows in the shape DESIGN.md section 8 fixes, and the table `make bench` prints."""

from __future__ import annotations

import statistics
from typing import Any

Row = dict[str, Any]


def row(name: str, unit: str, value: float, baseline: str, baseline_value: float, goal: str) -> Row:
    ratio = value / baseline_value if baseline_value else float("nan")
    return {
        "name": name,
        "unit": unit,
        "value": round(value, 2),
        "baseline": baseline,
        "baseline_value": round(baseline_value, 2),
        "ratio": round(ratio, 3),
        "goal": goal,
    }


def percentile(samples: list[float], q: float) -> float:
    """q in (0, 100); inclusive method so p99 of 10,000 samples is a real tail figure."""
    return statistics.quantiles(samples, n=100, method="inclusive")[int(q) - 1]


def table(rows: list[Row]) -> str:
    head = f"{'name':<30}{'value':>12} {'unit':<6}{'baseline':<30}{'base':>12}{'ratio':>8}  goal"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['name']:<30}{r['value']:>12} {r['unit']:<6}{r['baseline']:<30}"
            f"{r['baseline_value']:>12}{r['ratio']:>8}  {r['goal']}"
        )
    return "\n".join(lines)
