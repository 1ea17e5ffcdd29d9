"""The reports page of the console in a real browser (Debian chromium through Playwright) on six
weeks of a small chain: the chart is in the page, the totals are the library's, CSV/XLSX/PDF
download, a cashier is refused, and a venue's operator sees only its venue. Writes the
screenshot `docs/console/reports-en.png` and the README's chart `docs/report-stored-value.png`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from cloud_sync import report_export, reports
from cloud_sync.store import SqliteCloudStore
from edge.ledger import load_private_key
from edge.ledger.store import Clock
from tests.console_helpers import SHOTS, Console, browser, login, write_cloud
from tests.report_helpers import START, TZ, build

playwright = pytest.importorskip("playwright.async_api")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian chromium"),
]
DOCS = Path(__file__).resolve().parent.parent / "docs"
FROM, TO = START, START + dt.timedelta(days=42)


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    root = tmp_path_factory.mktemp("reports")
    c = Console(write_cloud(root / "cloud"))
    with c.config.open("a") as f:
        f.write(f'[reports]\ncurrency = "¥"\ntimezone = "{TZ}"\n')
    s = c.cfg.reconciler
    store = SqliteCloudStore(
        s.store.removeprefix("sqlite:///"), replica="cloud", key=load_private_key(s.key_file)
    )
    now = [0]
    store.ledger.clock = Clock(wall_ms=lambda: now[0], mono_ms=lambda: now[0])
    chain = build(store, root, now)
    w = reports.Window(FROM, TO, "week", TZ, "¥")
    expected = reports.stored_value(store, w)
    (DOCS / "report-stored-value.png").write_bytes(report_export.to_png(expected))
    for k in chain.kiosks.values():
        k.close()
    store.close()
    c.start()
    c.django()
    c.expected = expected
    try:
        yield c
    finally:
        c.stop()


def _query(name: str = "stored-value", site: str = "") -> str:
    return f"/reports/?name={name}&start={FROM}&end={TO}&by=week&site={site}"


async def test_reports_page_shows_the_chart_and_the_librarys_totals(console, tmp_path):
    console.operator("manager1", "venue manager")
    console.operator("cashier1", "cashier")
    async with playwright.async_playwright() as pw:
        b = await browser(pw)
        page = await b.new_page(viewport={"width": 1280, "height": 1100})
        await login(page, console.url, "manager1")
        await page.goto(console.url + _query())
        assert await page.locator("#report-chart").count() == 1
        total = page.locator(".report-table tr.total").first
        want = report_export.amount_text(console.expected.main.totals["topped_up"], True, "¥")
        assert want in await total.inner_text()
        await page.screenshot(path=str(SHOTS / "reports-en.png"), full_page=True)
        for fmt, magic in (("csv", b"period"), ("xlsx", b"PK"), ("pdf", b"%PDF")):
            async with page.expect_download() as info:
                await page.click(f"#download-{fmt}")
            path = tmp_path / f"r.{fmt}"
            await (await info.value).save_as(path)
            assert path.read_bytes().startswith(magic)
        await page.goto(console.url + _query("shifts"))
        assert await page.locator("#report-title").count() == 1
        await page.click("#logout-form button")
        await login(page, console.url, "cashier1")
        await page.goto(console.url + _query())
        assert await page.locator("#report-chart").count() == 0
        await b.close()
    assert console.actions(actor="manager1", action="report_pdf", allowed=True)
    assert console.actions(actor="cashier1", allowed=False)


async def test_a_venue_operator_sees_only_its_venue(console):
    console.operator("s2-manager", "venue manager", site="s2")
    async with playwright.async_playwright() as pw:
        b = await browser(pw)
        page = await b.new_page()
        await login(page, console.url, "s2-manager")
        await page.goto(console.url + _query("sales", site="s1"))  # asks for s1: gets s2
        assert "s2" in await page.inner_text("#report-title")
        await b.close()
