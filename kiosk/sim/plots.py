"""The report's PNG plots, drawn with Pillow (already a dependency of the display): approval
rate over time against the outages, overspend, convergence time, float held per kiosk."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from kiosk.sim.engine import BUCKET_MS, Record
from kiosk.sim.scenario import Scenario

W, H = 960, 540
LEFT, RIGHT, TOP, BOTTOM = 80, 24, 56, 64
COLORS = {
    "online": (0, 0, 0),
    "common": (214, 120, 30),
    "strict": (30, 110, 200),
    "risk": (40, 160, 90),
}
SITE_COLORS = ((30, 110, 200), (214, 120, 30), (40, 160, 90), (180, 50, 60), (120, 80, 170))
OUTAGE = (250, 225, 225)
GRID = (225, 225, 225)
INK = (30, 30, 30)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


def _nice(top: float) -> float:
    """A round upper bound for an axis."""
    if top <= 0:
        return 1.0
    exp = float(10 ** math.floor(math.log10(top)))
    for m in (1, 2, 2.5, 5, 10):
        if m * exp >= top:
            return m * exp
    return 10 * exp  # pragma: no cover


class Chart:
    def __init__(
        self, title: str, xlabel: str, ylabel: str, x: tuple[float, float], y: tuple[float, float]
    ) -> None:
        self.img = Image.new("RGB", (W, H), "white")
        self.d = ImageDraw.Draw(self.img)
        self.x0, self.x1 = x
        self.y0, self.y1 = y
        self.small, self.big = _font(13), _font(18)
        self.d.text((LEFT, 8), title, fill=INK, font=self.big)
        self.d.text(
            (LEFT + (W - LEFT - RIGHT) // 2, H - 22), xlabel, fill=INK, font=self.small, anchor="mm"
        )
        self.d.text((12, TOP - 16), ylabel, fill=INK, font=self.small)
        self.legend_items: list[tuple[str, tuple[int, int, int]]] = []

    def px(self, x: float, y: float) -> tuple[float, float]:
        fx = (x - self.x0) / ((self.x1 - self.x0) or 1)
        fy = (y - self.y0) / ((self.y1 - self.y0) or 1)
        return LEFT + fx * (W - LEFT - RIGHT), H - BOTTOM - fy * (H - TOP - BOTTOM)

    def band(self, x0: float, x1: float, color: tuple[int, int, int] = OUTAGE) -> None:
        (a, top), (b, bottom) = self.px(x0, self.y1), self.px(x1, self.y0)
        self.d.rectangle((a, top, b, bottom), fill=color)

    def axes(
        self,
        xticks: Sequence[float],
        yticks: Sequence[float],
        xfmt: str = "{:g}",
        yfmt: str = "{:g}",
    ) -> None:
        for y in yticks:
            a, py = self.px(self.x0, y)
            b, _ = self.px(self.x1, y)
            self.d.line((a, py, b, py), fill=GRID)
            self.d.text((a - 6, py), yfmt.format(y), fill=INK, font=self.small, anchor="rm")
        for x in xticks:
            px, b = self.px(x, self.y0)
            self.d.line((px, b, px, b + 4), fill=INK)
            self.d.text((px, b + 8), xfmt.format(x), fill=INK, font=self.small, anchor="mt")
        a, b = self.px(self.x0, self.y0)
        c, d = self.px(self.x1, self.y1)
        self.d.line((a, b, c, b), fill=INK)
        self.d.line((a, b, a, d), fill=INK)

    def line(
        self,
        pts: Sequence[tuple[float, float]],
        color: tuple[int, int, int],
        width: int = 2,
        label: str = "",
    ) -> None:
        xy = [self.px(x, y) for x, y in pts]
        if len(xy) > 1:
            self.d.line(xy, fill=color, width=width, joint="curve")
        elif xy:
            x, y = xy[0]
            self.d.ellipse((x - 2, y - 2, x + 2, y + 2), fill=color)
        if label:
            self.legend_items.append((label, color))

    def bar(
        self, x: float, w: float, value: float, color: tuple[int, int, int], text: str = ""
    ) -> None:
        (a, top), (b, bottom) = self.px(x, value), self.px(x + w, self.y0)
        self.d.rectangle((a, top, b, bottom), fill=color)
        if text:
            self.d.text(((a + b) / 2, top - 4), text, fill=INK, font=self.small, anchor="mb")

    def label(self, x: float, text: str) -> None:
        px, b = self.px(x, self.y0)
        self.d.text((px, b + 8), text, fill=INK, font=self.small, anchor="mt")

    def legend(self) -> None:
        x: float = W - RIGHT - 10
        for text, color in reversed(self.legend_items):
            w = self.d.textlength(text, font=self.small)
            self.d.text((x, TOP - 20), text, fill=INK, font=self.small, anchor="rm")
            x -= w + 6
            self.d.rectangle((x - 14, TOP - 26, x, TOP - 14), fill=color)
            x -= 26

    def save(self, path: Path) -> Path:
        self.legend()
        self.img.save(path, optimize=True)
        return path


def _outages(chart: Chart, scenario: Scenario) -> None:
    for o in scenario.outage:
        chart.band(o.start, min(o.start + o.hours, chart.x1))


def approval_over_time(
    report: dict[str, Any], results: dict[str, Record], scenario: Scenario, path: Path
) -> Path:
    hours = scenario.fleet.hours
    chart = Chart(
        "Approval rate over time (outages shaded)",
        "hour of the day",
        "% of attempts approved (per 15 min)",
        (0, hours),
        (0, 100),
    )
    _outages(chart, scenario)
    step = 1 if hours <= 12 else 2 if hours <= 24 else 12
    chart.axes([h for h in range(0, int(hours) + 1, step)], range(0, 101, 20))
    # The always-online server last and thin, so it stays visible on top of the others.
    order = sorted(results, key=lambda n: n == "online")
    for name in order:
        buckets = results[name].buckets
        pts = [
            ((b + 0.5) * BUCKET_MS / 3_600_000, 100 * ok / n)
            for b, (n, ok) in sorted(buckets.items())
            if n
        ]
        chart.line(pts, COLORS.get(name, INK), width=1 if name == "online" else 2, label=name)
    return chart.save(path)


def overspend(report: dict[str, Any], path: Path) -> Path:
    pols = report["policies"]
    top = _nice(max([p["overspend"]["cash"] for p in pols.values()] + [1]) * 1.15)
    chart = Chart(
        "Overspend per policy (cash, minor units; sum over members)",
        "policy",
        "overspend",
        (0, len(pols)),
        (0, top),
    )
    chart.axes([], [top * i / 5 for i in range(6)], yfmt="{:,.0f}")
    for i, (name, p) in enumerate(pols.items()):
        worst = p["overspend"]["worst_member"]["amount"]
        chart.bar(
            i + 0.2,
            0.6,
            p["overspend"]["cash"],
            COLORS.get(name, INK),
            f"{p['overspend']['cash']:,} (worst member {worst:,})",
        )
        chart.label(i + 0.5, name)
    return chart.save(path)


def convergence(report: dict[str, Any], path: Path) -> Path:
    pols = report["policies"]
    labels = sorted({label for p in pols.values() for label in p["convergence_s"]})
    values = [v or 0 for p in pols.values() for v in p["convergence_s"].values()]
    top = _nice(max([*values, 0.1]) * 1.15)
    chart = Chart(
        "Convergence after each outage (all its ops stored at the cloud)",
        "outage",
        "seconds after the outage ended",
        (0, max(1, len(labels))),
        (0, top),
    )
    chart.axes([], [top * i / 5 for i in range(6)], yfmt="{:.2f}")
    width = 0.8 / max(1, len(pols))
    for i, label in enumerate(labels):
        chart.label(i + 0.5, label)
        for j, (name, p) in enumerate(pols.items()):
            v = p["convergence_s"].get(label)
            text = "-" if v is None else f"{v:.2f}"
            chart.bar(i + 0.1 + j * width, width * 0.9, v or 0, COLORS.get(name, INK), text)
    for name in pols:
        chart.legend_items.append((name, COLORS.get(name, INK)))
    return chart.save(path)


def float_held(results: dict[str, Record], scenario: Scenario, path: Path) -> Path:
    record = results.get("strict") or next(iter(results.values()))
    samples: dict[int, dict[str, int]] = record.float_samples
    kiosks = sorted({k for s in samples.values() for k in s})
    top = _nice(max([v for s in samples.values() for v in s.values()] + [1]) * 1.1)
    hours = scenario.fleet.hours
    chart = Chart(
        f"Cash rights held per kiosk ({record.policy}; one line per kiosk, colour = site)",
        "hour of the day",
        "minor units",
        (0, hours),
        (0, top),
    )
    _outages(chart, scenario)
    step = 1 if hours <= 12 else 2 if hours <= 24 else 12
    chart.axes(range(0, int(hours) + 1, step), [top * i / 5 for i in range(6)], yfmt="{:,.0f}")
    sites = sorted({k.split("-")[0] for k in kiosks})
    for k in kiosks:
        color = SITE_COLORS[sites.index(k.split("-")[0]) % len(SITE_COLORS)]
        pts = [(t / 3_600_000, s.get(k, 0)) for t, s in sorted(samples.items())]
        chart.line(pts, color, width=1)
    for i, site in enumerate(sites):
        chart.legend_items.append((site, SITE_COLORS[i % len(SITE_COLORS)]))
    return chart.save(path)


def draw_all(
    report: dict[str, Any], results: dict[str, Record], scenario: Scenario, out: Path
) -> list[Path]:
    return [
        approval_over_time(report, results, scenario, out / "approval_over_time.png"),
        overspend(report, out / "overspend.png"),
        convergence(report, out / "convergence.png"),
        float_held(results, scenario, out / "float_per_kiosk.png"),
    ]
