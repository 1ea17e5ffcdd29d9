"""A report as a file or a picture: a text table, CSV, XLSX (openpyxl), PDF and PNG charts
(matplotlib, Agg and its PDF backend). Money leaves as exact decimal text in CSV and the text
table, as a number with two decimals in XLSX."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

from cloud_sync.errors import ConfigError
from cloud_sync.reports import Column, Report, Table

FORMATS = ("table", "csv", "xlsx", "pdf", "png")


def amount_text(value: int, money: bool, currency: str = "") -> str:
    if not money:
        return f"{value}"
    sign = "-" if value < 0 else ""
    return f"{sign}{currency}{Decimal(abs(value)) / 100:.2f}"


def _cell(col: Column, value: Any, currency: str = "") -> str:
    return amount_text(int(value), col.money, currency) if isinstance(value, int) else str(value)


def _heading(report: Report) -> str:
    w = report.window
    where = f", venue {w.site}" if w.site else ""
    return f"{report.title}: {w.start} to {w.end} (exclusive) by {w.by}, {w.tz}{where}"


def text(report: Report) -> str:
    cur = report.window.currency
    out = [_heading(report)]
    for t in report.tables:
        cells = [[c.label for c in t.columns]]
        cells += [[_cell(c, r[c.key], cur) for c in t.columns] for r in t.rows]
        if t.totals:
            cells.append(
                ["total"]
                + [
                    _cell(c, t.totals[c.key], cur) if c.key in t.totals else ""
                    for c in t.columns[1:]
                ]
            )
        widths = [max(len(row[i]) for row in cells) for i in range(len(t.columns))]
        out += ["", t.title]
        for n, row in enumerate(cells):
            out.append(
                "  ".join(
                    v.ljust(widths[0]) if i == 0 else v.rjust(widths[i]) for i, v in enumerate(row)
                )
            )
            if n == 0:
                out.append("  ".join("-" * wd for wd in widths))
    out += [f"note: {n}" for n in report.notes]
    return "\n".join(out) + "\n"


def to_csv(report: Report) -> bytes:
    """Every table one after another, a blank line between; money as exact decimals."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    for n, t in enumerate(report.tables):
        if n:
            writer.writerow([])
        writer.writerow([c.label for c in t.columns])
        for r in t.rows:
            writer.writerow([_cell(c, r[c.key]) for c in t.columns])
        if t.totals:
            writer.writerow(
                ["total"]
                + [_cell(c, t.totals[c.key]) if c.key in t.totals else "" for c in t.columns[1:]]
            )
    return buf.getvalue().encode()


def to_xlsx(report: Report) -> bytes:
    try:
        from openpyxl import Workbook
    except ImportError:
        raise ConfigError("XLSX needs openpyxl: pip install 'kiosk-edge[console]'") from None
    wb = Workbook()
    wb.remove(wb.active)
    for t in report.tables:
        ws = wb.create_sheet(t.title[:31])
        ws.append([c.label for c in t.columns])
        rows = [*t.rows, {"_total": True, **t.totals}] if t.totals else t.rows
        for r in rows:
            line: list[Any] = []
            for i, c in enumerate(t.columns):
                v = r.get(c.key, "total" if i == 0 and "_total" in r else None)
                line.append(Decimal(v) / 100 if c.money and isinstance(v, int) else v)
            ws.append(line)
        for i, c in enumerate(t.columns, start=1):
            if c.money:
                for (cell,) in ws.iter_rows(min_row=2, min_col=i, max_col=i):
                    cell.number_format = "#,##0.00"
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("charts need matplotlib: pip install 'kiosk-edge[console]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def chart_figure(report: Report, table: Table | None = None) -> Any:
    """A bar chart of the flows per period (money in currency units), with the outstanding
    balance as a line where the report has one; None for a table without periods."""
    plt = _pyplot()
    t = table or report.main
    if t.columns[0].key != "period" or not t.rows:
        return None
    cols = [c for c in t.chart_columns() if c.key != "outstanding"]
    x = list(range(len(t.rows)))
    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=100)
    width = 0.8 / max(len(cols), 1)
    scale = {c.key: 100 if c.money else 1 for c in t.columns}
    for i, c in enumerate(cols):
        ax.bar(
            [v + i * width - 0.4 + width / 2 for v in x],
            [r[c.key] / scale[c.key] for r in t.rows],
            width,
            label=c.label,
        )
    if any(c.key == "outstanding" for c in t.columns):
        ax.plot(
            x, [r["outstanding"] / scale["outstanding"] for r in t.rows], "k-o", label="outstanding"
        )
    step = max(1, len(x) // 12)
    ax.set_xticks(x[::step], [r["period"] for r in t.rows][::step], rotation=30, ha="right")
    money = any(c.money for c in cols)
    ax.set_ylabel(f"{report.window.currency or 'amount'} (currency units)" if money else "count")
    ax.set_title(_heading(report), fontsize=9)
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def figure_png(fig: Any) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png")
    _pyplot().close(fig)
    return out.getvalue()


def to_png(report: Report) -> bytes:
    fig = chart_figure(report)
    if fig is None:
        raise ConfigError(f"report {report.name} has no periods to chart: use csv, xlsx or pdf")
    return figure_png(fig)


def to_pdf(report: Report) -> bytes:
    """The chart on the first page, then each table (matplotlib's PDF backend)."""
    plt = _pyplot()
    from matplotlib.backends.backend_pdf import PdfPages

    out = io.BytesIO()
    cur = report.window.currency
    with PdfPages(out) as pdf:
        fig = chart_figure(report)
        if fig is not None:
            pdf.savefig(fig)
            plt.close(fig)
        for t in report.tables:
            body = [[_cell(c, r[c.key], cur) for c in t.columns] for r in t.rows]
            if t.totals:
                body.append(
                    ["total"]
                    + [
                        _cell(c, t.totals[c.key], cur) if c.key in t.totals else ""
                        for c in t.columns[1:]
                    ]
                )
            for start in range(0, max(len(body), 1), 40):
                fig, ax = plt.subplots(figsize=(8.27, 11.69))  # A4
                ax.axis("off")
                ax.set_title(f"{t.title} — {_heading(report)}", fontsize=8)
                chunk = body[start : start + 40] or [["(none)"] + [""] * (len(t.columns) - 1)]
                tab = ax.table(
                    cellText=chunk, colLabels=[c.label for c in t.columns], loc="upper center"
                )
                tab.auto_set_font_size(False)
                tab.set_fontsize(7)
                pdf.savefig(fig)
                plt.close(fig)
    return out.getvalue()


def render(report: Report, fmt: str) -> bytes:
    if fmt == "table":
        return text(report).encode()
    if fmt == "csv":
        return to_csv(report)
    if fmt == "xlsx":
        return to_xlsx(report)
    if fmt == "pdf":
        return to_pdf(report)
    if fmt == "png":
        return to_png(report)
    raise ConfigError(f"unknown format {fmt!r}: use {', '.join(FORMATS)}")
