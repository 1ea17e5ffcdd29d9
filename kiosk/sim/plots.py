"""The report's PNG plots, drawn with matplotlib (the optional extra `sim`, Agg backend: no
display needed): approval rate over time against the outages, overspend, convergence time,
float held per kiosk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before anything else of matplotlib: files only, never a window

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from kiosk.sim.engine import BUCKET_MS, Record
from kiosk.sim.scenario import Scenario

SIZE = (9.6, 5.4)  # inches at 100 dpi: 960 x 540 pixels
DPI = 100
COLORS = {"online": "black", "common": "tab:orange", "strict": "tab:blue", "risk": "tab:green"}
SITE_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")
OUTAGE = "#fae1e1"
THOUSANDS = FuncFormatter(lambda v, _pos: f"{v:,.0f}")


def _figure(title: str, xlabel: str, ylabel: str) -> tuple[Figure, Axes]:
    fig = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title, loc="left")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", color="#e1e1e1")
    ax.set_axisbelow(True)
    return fig, ax


def _hours_axis(ax: Axes, scenario: Scenario) -> None:
    """x from 0 to the end of the run, each outage shaded (clipped where it runs past the end)."""
    hours = scenario.fleet.hours
    for o in scenario.outage:
        if o.start < hours:
            ax.axvspan(o.start, min(o.start + o.hours, hours), color=OUTAGE, zorder=0)
    ax.set_xlim(0, hours)


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, format="png")
    return path


def approval_over_time(
    report: dict[str, Any], results: dict[str, Record], scenario: Scenario, path: Path
) -> Path:
    fig, ax = _figure(
        "Approval rate over time (outages shaded)",
        "hour of the day",
        "% of attempts approved (per 15 min)",
    )
    _hours_axis(ax, scenario)
    ax.set_ylim(0, 100)
    # The always-online server last and thin, so it stays visible on top of the others.
    for name in sorted(results, key=lambda n: n == "online"):
        buckets = sorted(results[name].buckets.items())
        xs = [(b + 0.5) * BUCKET_MS / 3_600_000 for b, (n, _ok) in buckets if n]
        ys = [100 * ok / n for _b, (n, ok) in buckets if n]
        ax.plot(
            xs,
            ys,
            color=COLORS.get(name, "gray"),
            linewidth=1 if name == "online" else 2,
            marker="." if len(xs) == 1 else None,
            label=name,
        )
    ax.legend(loc="lower left")
    return _save(fig, path)


def overspend(report: dict[str, Any], path: Path) -> Path:
    pols = report["policies"]
    fig, ax = _figure(
        "Overspend per policy (cash, minor units; sum over members)", "policy", "overspend"
    )
    names = list(pols)
    values = [pols[n]["overspend"]["cash"] for n in names]
    bars = ax.bar(names, values, color=[COLORS.get(n, "gray") for n in names], width=0.6)
    labels = [
        f"{v:,} (worst member {pols[n]['overspend']['worst_member']['amount']:,})"
        for n, v in zip(names, values, strict=True)
    ]
    ax.bar_label(bars, labels=labels, padding=3)
    ax.set_ylim(0, max([*values, 1]) * 1.15)
    ax.yaxis.set_major_formatter(THOUSANDS)
    return _save(fig, path)


def convergence(report: dict[str, Any], path: Path) -> Path:
    pols = report["policies"]
    labels = sorted({label for p in pols.values() for label in p["convergence_s"]})
    fig, ax = _figure(
        "Convergence after each outage (all its ops stored at the cloud)",
        "outage",
        "seconds after the outage ended",
    )
    width = 0.8 / max(1, len(pols))
    top = 0.1
    for j, (name, p) in enumerate(pols.items()):
        values = [p["convergence_s"].get(label) for label in labels]
        xs = [i - 0.4 + (j + 0.5) * width for i in range(len(labels))]
        bars = ax.bar(
            xs, [v or 0 for v in values], width * 0.9, color=COLORS.get(name, "gray"), label=name
        )
        ax.bar_label(bars, labels=["-" if v is None else f"{v:.2f}" for v in values], padding=2)
        top = max([top, *(v or 0 for v in values)])
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylim(0, top * 1.3)
    ax.legend(loc="upper left", ncols=max(1, len(pols)))
    return _save(fig, path)


def float_held(results: dict[str, Record], scenario: Scenario, path: Path) -> Path:
    record = results.get("strict") or next(iter(results.values()))
    samples: dict[int, dict[str, int]] = record.float_samples
    kiosks = sorted({k for s in samples.values() for k in s})
    fig, ax = _figure(
        f"Cash rights held per kiosk ({record.policy}; one line per kiosk, colour = site)",
        "hour of the day",
        "minor units",
    )
    _hours_axis(ax, scenario)
    sites = sorted({k.split("-")[0] for k in kiosks})
    times = sorted(samples)
    labelled: set[str] = set()
    for k in kiosks:
        site_name = k.split("-")[0]
        site = sites.index(site_name)
        ax.plot(
            [t / 3_600_000 for t in times],
            [samples[t].get(k, 0) for t in times],
            color=SITE_COLORS[site % len(SITE_COLORS)],
            linewidth=1,
            label=None if site_name in labelled else site_name,  # one legend entry a site
        )
        labelled.add(site_name)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(THOUSANDS)
    if kiosks:
        ax.legend(loc="upper right")
    return _save(fig, path)


def draw_all(
    report: dict[str, Any], results: dict[str, Record], scenario: Scenario, out: Path
) -> list[Path]:
    return [
        approval_over_time(report, results, scenario, out / "approval_over_time.png"),
        overspend(report, out / "overspend.png"),
        convergence(report, out / "convergence.png"),
        float_held(results, scenario, out / "float_per_kiosk.png"),
    ]
