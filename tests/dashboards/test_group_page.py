"""The group page at the center's ``/`` in a real browser (Debian's chromium driven by
Playwright) against the group app served by uvicorn on a real center database.

Three sites: plant-a online (a message 30 s before the app's fixed now) with its own
page's address, plant-b stale (10 minutes silent) without one, plant-c never seen. Both
reporting sites have hourly rows in the last 24 hours and issued June's account; plant-c
issued none. The page (``?lang=en&period=2026-06``) must list the three sites with
their states, link plant-a's name to its page (plant-b's name is plain text), show the
carbon-free share and intensity of the API's ranking, draw one bar per hour, show June's
scorecard with plant-c named as missing, and switch to Chinese and back. Screenshots of
both languages go to ``$ZEROCARBON_TEST_ARTIFACTS/dashboards`` (else a temporary
folder). The assets are also checked without a browser: no internet address, every
text in the catalogue.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, Page, ViewportSize, async_playwright

from tests.api.conftest import hourly_row
from tests.browser_support import CHROMIUM_ARGS, ensure_chromium
from zerocarbon.accounts.period import compute_account, parse_period
from zerocarbon.api.group_app import create_group_app
from zerocarbon.api.server import api_server
from zerocarbon.config import SiteConfig
from zerocarbon.dashboards.page import STATIC_DIR
from zerocarbon.netutil import free_tcp_port
from zerocarbon.rows import HourlyCarbon, sql_columns
from zerocarbon.settings import Settings
from zerocarbon.storage.database import drop_database, ensure_database

NOW = datetime(2026, 7, 2, 8, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)
PERIOD = "2026-06"
PLANT_A_PAGE = "http://plant-a.factory.lan:8080/"
VIEWPORT: ViewportSize = {"width": 1440, "height": 900}
WAIT_MS = 30_000
CATALOGUE: dict[str, dict[str, str]] = json.loads(
    (STATIC_DIR / "i18n.json").read_text(encoding="utf-8")
)
EN, ZH = CATALOGUE["en"], CATALOGUE["zh-CN"]
URL = re.compile(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", re.IGNORECASE)
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")


# --- the assets, without a browser -------------------------------------------------------


@pytest.mark.parametrize("name", ["group.html", "group.js"])
def test_no_internet_urls_in_group_assets(name: str) -> None:
    text = (STATIC_DIR / name).read_text(encoding="utf-8")
    assert not URL.search(text), f"{name} refers to {URL.search(text)}"


def test_every_text_of_the_group_page_is_in_the_catalogue() -> None:
    html = (STATIC_DIR / "group.html").read_text(encoding="utf-8")
    js = (STATIC_DIR / "group.js").read_text(encoding="utf-8")
    js += (STATIC_DIR / "common.js").read_text(encoding="utf-8")  # loaded before group.js
    used = set(re.findall(r'data-i18n="([\w.]+)"', html))
    used |= set(re.findall(r'\bt\("([\w.]+)"', js))
    used |= {f"grp.state.{s}" for s in ("online", "stale", "never")}
    assert len(used) > 40, sorted(used)
    for book in (EN, ZH):
        assert used <= set(book), used - set(book)
    assert not CJK.search(html) and not CJK.search(js)


NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_group_script_parses() -> None:
    assert NODE is not None
    result = subprocess.run(
        [NODE, "--check", str(STATIC_DIR / "group.js")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


# --- the page in chromium ------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium (installed when missing, see tests/browser_support.py)."""
    found = ensure_chromium()
    if found.path is None:
        pytest.skip(found.reason)
    return found.path


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("ZEROCARBON_TEST_ARTIFACTS")
    folder = Path(given) / "dashboards" if given else tmp_path_factory.mktemp("group-page")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _account(site: SiteConfig, import_kwh: float, pv_kwh: float) -> dict[str, Any]:
    period = parse_period(PERIOD, site.site.timezone)
    row = hourly_row(period.start, grid_import_kwh=import_kwh, pv_kwh=pv_kwh)
    return compute_account(site, period, [row], [], []).to_json()


async def _store(url: str, demo_site: SiteConfig) -> None:
    conn = await asyncpg.connect(url)
    try:
        ids: dict[str, int] = {}
        for site, name, page_url, seen in (
            ("plant-a", "Plant A", PLANT_A_PAGE, NOW - timedelta(seconds=30)),
            ("plant-b", "Plant B", "", NOW - timedelta(minutes=10)),
            ("plant-c", "Plant C", "", None),
        ):
            ids[site] = await conn.fetchval(
                """INSERT INTO sites (site, name, page_url, last_seen, uplink_lag_s, status)
                   VALUES ($1, $2, $3, $4, $5, $6::jsonb) RETURNING id""",
                site,
                name,
                page_url,
                seen,
                None if seen is None else 0.8,
                json.dumps({"backlog_messages": 2, "backlog_bytes": 2048, "outbox_readings": 5}),
            )
        columns = [c for c, _t, _n in sql_columns(HourlyCarbon)]
        insert = (
            f"INSERT INTO site_hourly_carbon (site_id, computed_at, {', '.join(columns)}) "
            f"VALUES ($1, $2, {', '.join(f'${n}' for n in range(3, len(columns) + 3))})"
        )
        this_hour = NOW.replace(minute=0)
        for k in range(6):
            hour = this_hour - k * HOUR
            a = hourly_row(hour, grid_import_kwh=400.0 + 10 * k, pv_kwh=100.0)
            b = hourly_row(hour, grid_import_kwh=50.0, pv_kwh=150.0)
            await conn.execute(insert, ids["plant-a"], NOW, *_values(a))
            await conn.execute(insert, ids["plant-b"], NOW, *_values(b))
        for site, report_id, account in (
            ("plant-a", 11, _account(demo_site, 1000.0, 250.0)),
            ("plant-b", 4, _account(demo_site, 300.0, 300.0)),
        ):
            await conn.execute(
                """INSERT INTO site_accounts (site_id, report_id, period, issued_at, issued_by,
                                              account)
                   VALUES ($1, $2, $3, $4, 'energy-manager', $5::jsonb)""",
                ids[site],
                report_id,
                PERIOD,
                NOW - 24 * HOUR,
                json.dumps(account),
            )
    finally:
        await conn.close()


def _values(row: HourlyCarbon) -> list[Any]:
    return [getattr(row, c) for c, _t, _n in sql_columns(HourlyCarbon)]


@pytest.fixture(scope="module")
async def served(pg_server_url: str, demo_site: SiteConfig) -> AsyncIterator[str]:
    name = f"zc_group_page_{os.getpid()}"
    url = await ensure_database(pg_server_url, name, recreate=True)
    app = create_group_app(url, clock=lambda: NOW)
    port = free_tcp_port()
    server = api_server(app, Settings(), host="127.0.0.1", port=port, log_level="warning")
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # the lifespan has created the center's schema
            if task.done():
                task.result()
                raise RuntimeError("uvicorn did not start")
            await asyncio.sleep(0.01)
    try:
        await _store(url, demo_site)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await task
        await drop_database(pg_server_url, name)


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=chromium, args=list(CHROMIUM_ARGS), headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


def number(text: str) -> float:
    return float(text.strip().replace(",", "").split(" ")[0])


async def text_of(page: Page, selector: str) -> str:
    return ((await page.locator(selector).first.text_content()) or "").strip()


async def shot(page: Page, folder: Path, name: str, record: Callable[[str, object], None]) -> None:
    path = folder / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    record(f"screenshot_{name}", str(path))
    print(f"\nscreenshot: {path}")


async def test_group_page_in_both_languages(
    served: str,
    browser: Browser,
    artifacts: Path,
    record_property: Callable[[str, object], None],
) -> None:
    async with httpx.AsyncClient(base_url=served) as c:
        ranking = (await c.get("/api/v1/group/ranking")).json()
        hourly = (await c.get("/api/v1/group/hourly")).json()
    totals = {s["site"]: s for s in ranking["sites"]}

    page = await browser.new_page(viewport=VIEWPORT, locale="en-US")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{served}/?lang=en&period={PERIOD}")
    await page.wait_for_function("document.body.dataset.loaded === '1'", timeout=WAIT_MS)
    assert not errors, errors
    assert await page.locator("html").get_attribute("lang") == "en"

    # the sites, their states and their links
    rows = page.locator("#sites-body tr")
    assert await rows.count() == 3
    states = {
        site: await page.locator(f'#sites-body tr[data-site="{site}"]').get_attribute("data-state")
        for site in ("plant-a", "plant-b", "plant-c")
    }
    assert states == {"plant-a": "online", "plant-b": "stale", "plant-c": "never"}
    a_row = '#sites-body tr[data-site="plant-a"]'
    assert await text_of(page, f"{a_row} .grp-state") == EN["grp.state.online"]
    link = page.locator(f"{a_row} td[data-field=name] a")
    assert await link.get_attribute("href") == PLANT_A_PAGE
    assert await link.text_content() == "Plant A"
    b_name = page.locator('#sites-body tr[data-site="plant-b"] td[data-field=name]')
    assert await b_name.locator("a").count() == 0 and await b_name.text_content() == "Plant B"
    assert (
        await text_of(page, '#sites-body tr[data-site="plant-c"] .grp-state')
        == (EN["grp.state.never"])
    )
    # carbon-free share and intensity as the API's ranking gives them
    for site in ("plant-a", "plant-b"):
        row = f'#sites-body tr[data-site="{site}"]'
        cfe = await text_of(page, f"{row} td[data-field=cfe_share]")
        assert cfe.endswith(" %")
        assert abs(number(cfe) - 100 * totals[site]["cfe_share"]) <= 0.05 + 1e-9, (site, cfe)
        intensity = await text_of(page, f"{row} td[data-field=intensity]")
        assert abs(number(intensity) - totals[site]["intensity_kg_per_kwh"]) <= 0.0005 + 1e-9
    # the ranking: plant-b (cleaner) first, plant-c unranked last
    ranked = await page.locator("#ranking-body tr").evaluate_all(
        "rows => rows.map(r => r.dataset.site)"
    )
    assert ranked == [s["site"] for s in ranking["sites"]] == ["plant-b", "plant-a", "plant-c"]
    # the chart: one bar per hour the API gave
    assert len(hourly["hours"]) == 6
    assert await page.locator("#chart rect.bar").count() == 6
    # June's scorecard: both accounts, the group's sum, plant-c missing
    assert await page.locator("#scorecard-body tr").count() == 2
    assert (
        await page.locator('#scorecard-body tr[data-site="plant-a"] a').get_attribute("href")
        == PLANT_A_PAGE
    )
    missing = await text_of(page, "#scorecard-missing")
    assert missing == EN["grp.scorecard.missing"].replace("{sites}", "Plant C")
    group_load = await text_of(page, "#scorecard-foot td[data-field=load_kwh]")
    assert number(group_load) == 1250.0 + 600.0
    await shot(page, artifacts, "group-en", record_property)

    # to Chinese, and the choice is kept on reload without ?lang
    await page.locator("#lang-toggle").click()
    assert await page.locator("html").get_attribute("lang") == "zh-CN"
    assert await text_of(page, "#sites-title span") == ZH["grp.sites.title"]
    assert await text_of(page, f"{a_row} .grp-state") == ZH["grp.state.online"]
    assert await text_of(page, "#scorecard-missing") == ZH["grp.scorecard.missing"].replace(
        "{sites}", "Plant C"
    )
    assert await link.get_attribute("href") == PLANT_A_PAGE
    await shot(page, artifacts, "group-zh", record_property)
    await page.goto(f"{served}/?period={PERIOD}")
    await page.wait_for_function("document.body.dataset.loaded === '1'", timeout=WAIT_MS)
    assert await page.locator("html").get_attribute("lang") == "zh-CN"
    assert await text_of(page, "#lang-toggle") == ZH["lang.switch"]
    await page.locator("#lang-toggle").click()
    assert await text_of(page, "#sites-title span") == EN["grp.sites.title"]
    assert not errors, errors
    await page.close()
