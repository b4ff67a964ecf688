"""The accounts page at ``/accounts`` in a real browser (Debian's chromium driven by
Playwright) against the app served by uvicorn on a real PostgreSQL.

The site is the hand-computed June 2026 of :mod:`tests.accounts.test_period` (grid, PV,
a gas boiler, a press line, a green-power contract, a certificate batch, ``[accounts]``
with process emissions and heat) with the example ``[tariff]`` and ``[[offsets]]``
(``examples/tariff.toml``, ``examples/offsets.toml``); its 720 hourly rows are stored
as the engine stores them, with the grid meter's 15-minute power (one 180 kW quarter
hour). 10 t of the CCER credits are retired against June, and June's account is issued
twice: once with the shipped factor table and once, by the served app, with a revised
one (the re-issue lists the factor change). The site's language is English.

The page must show June (``?period=2026-06``) with the same figures as the API within
the display's rounding, in English and, after the language switch, in Chinese; every
section whose route answers 404, 409 or 503 (the footprints and the scorecard until
their routes exist; everything the API cannot give without the site file) must say
why in the page's language. Screenshots of both languages (whole page) are kept under
``$ZEROCARBON_TEST_ARTIFACTS/dashboards`` (else a temporary folder).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tomllib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, Page, ViewportSize, async_playwright

from tests.accounts.test_period import JUNE_START, SITE_TOML, june_rows, revised_table
from tests.browser_support import CHROMIUM_ARGS, ensure_chromium
from zerocarbon.accounts import ledger
from zerocarbon.accounts.cost_queries import ACTIVE_POWER_METRIC_ID
from zerocarbon.api.app import create_app
from zerocarbon.api.auth import Role, new_token
from zerocarbon.api.server import api_server
from zerocarbon.config import SiteConfig, parse_site
from zerocarbon.dashboards.page import STATIC_DIR
from zerocarbon.netutil import free_tcp_port
from zerocarbon.settings import Settings
from zerocarbon.storage import tokens
from zerocarbon.storage.database import create_schema, drop_database, ensure_database, register_site
from zerocarbon.storage.hourly import upsert_hourly

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ZONE = "Asia/Shanghai"
PERIOD = "2026-06"
PEAK_KW = 180.0
PEAK_BUCKET = datetime(2026, 6, 10, 6, 15, tzinfo=UTC)  # 14:15 in Shanghai
CCER_RETIRED_T = Decimal("10")
VIEWPORT: ViewportSize = {"width": 1440, "height": 900}  # a desk monitor
WAIT_MS = 30_000
CATALOGUE: dict[str, dict[str, str]] = json.loads(
    (STATIC_DIR / "i18n.json").read_text(encoding="utf-8")
)
EN, ZH = CATALOGUE["en"], CATALOGUE["zh-CN"]


PRODUCT_AND_SCORECARD = """
[[accounts.products]]
id = "panel"
line = "press"
name = "stamped panel"
unit = "pcs"
mass_kg_per_unit = 8.0
allocation = "units"
energy_limit_kgce_per_unit = 5.0
limit_standard = "GB 3xxxx-20xx Level 1 (test)"

[[accounts.products.materials]]
material = "cold-rolled steel sheet"
supplier = "the mill"
kg_per_unit = 8.4
factor_kg_co2e_per_kg = 2.0
source = "supplier EPD S-P-01234"

[[accounts.products.logistics]]
mode = "road"
tonne_km_per_unit = 0.504

[accounts.scorecard]
renewable_share_min = 0.4
renewable_share_source = "Guiding Opinions on Zero-Carbon Factories (2026) (test)"
electrification_share_min = 0.9
electrification_share_source = "Guiding Opinions on Zero-Carbon Factories (2026) (test)"
base_year = 2025
base_year_t_co2 = 900.0
reduction_target_share = 0.1
reduction_target_source = "the site's zero-carbon plan 2026-2030 (test)"
offsets_rule_source = "Guiding Opinions on Zero-Carbon Factories (2026) (test)"
"""


def site_with_everything(factors_csv: Path | None = None) -> SiteConfig:
    """The hand-computed site with the example [tariff] and [[offsets]]."""
    text = SITE_TOML.replace("data_year = 2023\n", "data_year = 2023\ncontracted_demand_kw = 400\n")
    if factors_csv is not None:
        text = text.replace(
            "[accounts]\n", f'[accounts]\nfactors_csv = "{factors_csv.as_posix()}"\n', 1
        )
    text += PRODUCT_AND_SCORECARD
    text += "\n" + (EXAMPLES / "tariff.toml").read_text(encoding="utf-8")
    text += "\n" + (EXAMPLES / "offsets.toml").read_text(encoding="utf-8")
    return parse_site(tomllib.loads(text), "accounts page site")


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
    folder = Path(given) / "dashboards" if given else tmp_path_factory.mktemp("accounts-page")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.asynccontextmanager
async def serving(settings: Settings, site: SiteConfig | None) -> AsyncIterator[str]:
    """The app with ``site`` as its site file, served by uvicorn on a free port."""
    app = create_app(settings, site=site)
    port = free_tcp_port()
    server = api_server(app, settings, host="127.0.0.1", port=port, log_level="warning")
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn did not start")
            await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await task


@dataclass(frozen=True)
class Served:
    full: str  # the app with the site file (tariff, offsets, accounts) and June's data
    bare: str  # the same database, the app without a site file


async def _store_june(url: str, site: SiteConfig) -> None:
    conn = await asyncpg.connect(url)
    try:
        await create_schema(conn)
        registry = await register_site(conn, site)
        carbon, energy, lines = june_rows()
        await upsert_hourly(conn, registry, carbon, energy, lines)
        grid = registry.device_ids["grid_meter"]
        buckets = [JUNE_START, PEAK_BUCKET, datetime(2026, 6, 20, 2, tzinfo=UTC)]
        await conn.executemany(
            """INSERT INTO power_15min (bucket, device_id, metric_id, avg_value, min_value,
               max_value, samples) VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            [
                (b, grid, ACTIVE_POWER_METRIC_ID, kw, kw, kw, 15)
                for b, kw in zip(buckets, (100.0, PEAK_KW, 120.0), strict=True)
            ],
        )
        await ledger.sync_instruments(conn, site)
        await ledger.retire(
            conn,
            "offsets.ccer_forest_2025",
            period=PERIOD,
            volume=CCER_RETIRED_T,
            retired_by="energy-manager",
            reason="June 2026, after own reductions",
        )
    finally:
        await conn.close()


async def _operator(url: str) -> dict[str, str]:
    token = new_token()
    conn = await asyncpg.connect(url)
    try:
        await tokens.insert_token(
            conn,
            name="energy-manager",
            prefix=token.prefix,
            role=Role.OPERATOR.value,
            site=None,
            token_hash=token.token_hash,
        )
    finally:
        await conn.close()
    return {"Authorization": f"Bearer {token.token}"}


@pytest.fixture(scope="module")
async def served(
    pg_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    url = await ensure_database(pg_server_url, f"zc_accounts_page_{os.getpid()}", recreate=True)
    settings = Settings(
        database_url=url, site_name="Hand-computed works", site_timezone=ZONE, site_language="en"
    )
    await _store_june(url, site_with_everything())
    operator = await _operator(url)
    # June issued with the shipped factors, then re-issued by the served app (revised)
    first = create_app(settings, site=site_with_everything())
    async with first.router.lifespan_context(first):
        transport = httpx.ASGITransport(app=first)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            res = await c.post(
                "/api/v1/accounts/reports", json={"period": PERIOD}, headers=operator
            )
            assert res.status_code == 201, res.text
    revised = site_with_everything(revised_table(tmp_path_factory.mktemp("factors")))
    async with serving(settings, revised) as full, serving(settings, None) as bare:
        async with httpx.AsyncClient(base_url=full) as c:
            res = await c.post(
                "/api/v1/accounts/reports", json={"period": PERIOD}, headers=operator
            )
            assert res.status_code == 201, res.text
            assert res.json()["changes"], "the re-issue lists no change"
        yield Served(full, bare)
    await drop_database(pg_server_url, f"zc_accounts_page_{os.getpid()}")


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


# --- reading the page -------------------------------------------------------------------


def number(text: str) -> float:
    """The first number of a shown figure ("−1,100.000 t", "12.3 %", "¥" aside)."""
    head = text.strip().replace(",", "").replace("−", "-").split(" ")[0]
    return float(head)


def shown_equal(shown: str, value: float | str, digits: int) -> bool:
    """Whether ``shown`` is ``value`` rounded to ``digits`` decimals."""
    return abs(number(shown) - float(value)) <= 0.5 * 10.0**-digits + 1e-9


async def text_of(page: Page, selector: str) -> str:
    return ((await page.locator(selector).first.text_content()) or "").strip()


async def loaded(page: Page, period: str) -> None:
    await page.wait_for_function(
        "p => document.body.dataset.loaded === p", arg=period, timeout=WAIT_MS
    )


async def shot(page: Page, folder: Path, name: str, record: Callable[[str, object], None]) -> Path:
    path = folder / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    record(f"screenshot_{name}", str(path))
    with (folder / "screenshots.txt").open("a", encoding="utf-8") as listing:
        listing.write(f"{path}\n")
    print(f"\nscreenshot: {path}")
    return path


async def api_json(base: str, path: str, **params: str) -> tuple[int, Any]:
    async with httpx.AsyncClient(base_url=base) as c:
        res = await c.get(path, params=params)
    return res.status_code, res.json() if res.headers.get("content-type", "").startswith(
        "application/json"
    ) else None


async def check_unavailable(page: Page, state_id: str, status: int, book: dict[str, str]) -> None:
    """The section's state says why, in the page's language."""
    box = page.locator(f"#{state_id} .sec-why")
    await box.wait_for(timeout=WAIT_MS)
    assert (await box.text_content()) == book[f"acc.unavailable.{status}"]
    assert await page.locator(f"#{state_id}").get_attribute("data-status") == str(status)


async def check_figures(page: Page, base: str, book: dict[str, str]) -> None:
    """Every figure the page shows for June equals the API's, within display rounding."""
    # the period account
    status, account = await api_json(base, "/api/v1/accounts", period=PERIOD)
    assert status == 200
    totals = account["totals"]
    for field in ("scope1_t", "scope2_location_t", "scope2_market_t", "total_location_t"):
        shown = await text_of(page, f"#account-totals dd[data-field={field}]")
        assert shown_equal(shown, totals[field], 3), (field, shown, totals[field])
    rows = page.locator("#sources-body tr")
    assert await rows.count() == len(account["sources"])
    for s in account["sources"]:
        row = page.locator(f'#sources-body tr[data-source="{s["id"]}"]')
        emissions = await text_of(
            page, f'#sources-body tr[data-source="{s["id"]}"] td[data-field=emissions_t]'
        )
        assert shown_equal(emissions, s["sign"] * s["emissions_kg"] / 1000.0, 3), (
            s["id"],
            emissions,
        )
        activity = await row.locator("td[data-field=activity]").text_content() or ""
        digits = 0 if abs(s["activity"]) >= 1000 else 2
        assert shown_equal(activity, s["activity"], digits) and s["activity_unit"] in activity
        assert s["factor"]["revision"] in (await row.text_content() or "")
        assert s["factor"]["source"] in (await row.text_content() or "")
    grid = page.locator('#sources-body tr[data-source="purchased_electricity:grid"]')
    assert book["acc.cat.purchased_electricity"] in (await grid.text_content() or "")
    assert book["acc.quality.gaps"].replace("{n}", "5") in (await grid.text_content() or "")
    # the issued reports: the re-issue supersedes the first and lists the factor change
    status, reports = await api_json(base, "/api/v1/accounts/reports", period=PERIOD)
    assert status == 200 and [r["id"] for r in reports] == [1, 2]
    second = page.locator('#report-list li[data-report="2"]')
    text = await second.text_content() or ""
    assert book["acc.reports.supersedes"].replace("{id}", "1") in text
    assert "2026-09/2023" in text and reports[1]["changes"][0]["why"] in text
    assert await page.locator("#report-list > li").count() == 2
    # the month's bill
    status, bill = await api_json(base, "/api/v1/cost/monthly", month=PERIOD)
    assert status == 200
    assert shown_equal(
        await text_of(page, "#cost-totals dd[data-field=total_cny]"), bill["total_cny"], 2
    )
    assert shown_equal(await text_of(page, "#bill-total"), bill["total_cny"], 2)
    assert shown_equal(
        await text_of(page, "#cost-totals dd[data-field=pv_savings_cny]"), bill["pv_savings_cny"], 2
    )
    assert bill["max_demand"]["demand_kw"] == pytest.approx(PEAK_KW)
    assert shown_equal(await text_of(page, "#cost-totals dd[data-field=max_demand_kw]"), PEAK_KW, 1)
    peak_local = datetime.fromisoformat(bill["max_demand"]["bucket"]).astimezone(ZoneInfo(ZONE))
    assert peak_local.strftime("%H:%M") in await text_of(
        page, "#cost-totals dd[data-field=max_demand_at]"
    )
    per_unit = bill["cost_per_unit_cny"]
    assert per_unit is not None
    assert shown_equal(
        await text_of(page, "#cost-totals dd[data-field=cost_per_unit_cny]"), per_unit, 4
    )
    assert await page.locator("#bill-body tr").count() == len(bill["lines"])
    for line in bill["lines"]:
        row = page.locator(f'#bill-body tr[data-item="{line["item"]}"]')
        assert (await row.locator("td").first.text_content()) == book[f"acc.bill.{line['item']}"]
        amount = await row.locator("td[data-field=amount_cny]").text_content() or ""
        assert shown_equal(amount, line["amount_cny"], 2), (line, amount)
    # the ledger: held and retired, June's retirement, the offsets used
    status, book_ledger = await api_json(base, "/api/v1/ledger")
    assert status == 200
    for i in book_ledger["instruments"]:
        row = page.locator(f'#ledger-body-rows tr[data-instrument="{i["id"]}"]')
        for field in ("volume", "retired", "held"):
            shown = await row.locator(f"td[data-field={field}]").text_content() or ""
            assert shown_equal(shown, i[field], 3), (i["id"], field, shown)
        assert book[f"acc.ledger.kind.{i['kind']}"] in (await row.text_content() or "")
    ccer = page.locator('#ledger-body-rows tr[data-instrument="offsets.ccer_forest_2025"]')
    assert shown_equal(
        await ccer.locator("td[data-field=retired_period]").text_content() or "", 10, 3
    )
    assert Decimal(book_ledger["offsets_used_t"][PERIOD]) == CCER_RETIRED_T
    assert shown_equal(await text_of(page, "#offsets-used dd[data-field=offsets_used_t]"), 10, 3)
    # the product footprints: per unit, both boundaries, each component and its source
    status, footprints = await api_json(base, "/api/v1/footprints", period=PERIOD)
    assert status == 200 and len(footprints["products"]) == 1
    for fp in footprints["products"]:
        card = page.locator(f'#footprints-body .footprint[data-product="{fp["product"]}"]')
        per_unit = fp["per_unit"]
        for field, key in (
            ("gate_to_gate", "gate_to_gate_kg_per_unit"),
            ("gate_to_gate_market", "gate_to_gate_market_kg_per_unit"),
            ("cradle_to_gate", "cradle_to_gate_kg_per_unit"),
            ("cradle_to_gate_market", "cradle_to_gate_market_kg_per_unit"),
        ):
            shown = await card.locator(f"dd[data-field={field}]").text_content() or ""
            assert shown_equal(shown, per_unit[key], 3), (field, shown, per_unit[key])
            assert shown.endswith(f"kg CO₂e/{fp['declared_unit']}")
        assert per_unit["cradle_to_gate_kg_per_unit"] > per_unit["gate_to_gate_kg_per_unit"]
        assert await card.locator("tbody tr").count() == len(fp["components"])
        for c in fp["components"]:
            row = card.locator(f'tr[data-component="{c["id"]}"]')
            shown = await row.locator("td[data-field=per_unit]").text_content() or ""
            assert shown_equal(shown, c["kg_co2e"] / fp["units"], 4), (c["id"], shown)
            text = await row.text_content() or ""
            if c["data_source"] in ("metered", "supplier"):
                assert book[f"acc.ds.{c['data_source']}"] in text, (c["id"], text)
            if c["source_detail"]:
                assert c["source_detail"] in text
    # the scorecard: value, threshold, document, met or not, a trend of 12 months
    status, scorecard = await api_json(base, "/api/v1/scorecard", period=PERIOD)
    assert status == 200
    marks = set()
    for ind in scorecard["indicators"]:
        row = page.locator(f'#scorecard-body tr[data-indicator="{ind["id"]}"]')
        shown = await row.locator("td[data-field=value]").text_content() or ""
        if ind["unit"] == "-":
            assert shown.endswith(" %") and shown_equal(shown, 100 * ind["value"], 1), shown
        else:
            assert shown_equal(shown, ind["value"], 3), (ind["id"], shown)
        if ind["threshold"] is not None:
            shown = (await row.locator("td[data-field=threshold]").text_content() or "")[2:]
            scale = 100 if ind["unit"] == "-" else 1
            assert shown_equal(shown, scale * ind["threshold"], 1 if scale == 100 else 3)
        mark = row.locator("td.mark")
        assert await mark.get_attribute("data-met") == str(ind["met"]).lower().replace(
            "none", "null"
        )
        label = {True: book["acc.met"], False: book["acc.notMet"], None: book["acc.metUnknown"]}
        assert label[ind["met"]] in (await mark.text_content() or "")
        marks.add(ind["met"])
        assert ind["source"] in (await row.text_content() or "")
        assert await row.locator("svg.spark circle").count() >= 1  # June has data
    assert marks >= {True, False}  # the site is on both sides of its thresholds
    renewable = page.locator('#scorecard-body tr[data-indicator="renewable_share"] td').first
    assert await renewable.text_content() == book["acc.ind.renewable_share"]


async def test_accounts_page_in_both_languages(
    served: Served,
    browser: Browser,
    artifacts: Path,
    record_property: Callable[[str, object], None],
) -> None:
    page = await browser.new_page(viewport=VIEWPORT, locale="en-US")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        await page.goto(f"{served.full}/accounts?period={PERIOD}")
        await loaded(page, PERIOD)
        # the site's language (English), June in the picker
        assert await page.locator("html").get_attribute("lang") == "en"
        assert await text_of(page, "#account-title span") == EN["acc.account.title"]
        assert await page.locator("#period-kind").input_value() == "month"
        assert await page.locator("#period-year").input_value() == "2026"
        assert await page.locator("#period-part").input_value() == "6"
        assert await text_of(page, "#nav-live") == EN["nav.live"]
        await page.locator("#account-body").wait_for(state="visible", timeout=WAIT_MS)
        assert not errors, errors
        await check_figures(page, served.full, EN)
        await shot(page, artifacts, "accounts-en", record_property)
        # printed: no controls, white paper, the figures kept
        await page.emulate_media(media="print")
        assert await page.locator("#period-form").is_hidden()
        assert await page.locator("#lang-toggle").is_hidden()
        background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(255, 255, 255)"
        total_colour = await page.evaluate(
            "getComputedStyle(document.getElementById('bill-total')).color"
        )
        assert total_colour == "rgb(0, 0, 0)"  # black on white paper
        await shot(page, artifacts, "accounts-print-en", record_property)
        await page.emulate_media(media="screen")

        await page.locator("#lang-toggle").click()
        assert await page.locator("html").get_attribute("lang") == "zh-CN"
        assert await text_of(page, "#account-title span") == ZH["acc.account.title"]
        assert await text_of(page, "#nav-live") == ZH["nav.live"]
        await check_figures(page, served.full, ZH)
        await shot(page, artifacts, "accounts-zh-CN", record_property)

        # the choice is kept (shared with the live page) until ?lang= says otherwise
        await page.reload()
        await loaded(page, PERIOD)
        assert await page.locator("html").get_attribute("lang") == "zh-CN"
        await page.goto(f"{served.full}/accounts?period={PERIOD}&lang=en")
        await loaded(page, PERIOD)
        assert await page.locator("html").get_attribute("lang") == "en"
    finally:
        await page.close()
    assert not errors, errors


async def test_a_quarter_and_the_link_to_the_live_page(served: Served, browser: Browser) -> None:
    """Choosing 2026-Q2 in the picker shows the quarter's account (the API's totals) and
    says the bill is monthly; the header links to the live page and back."""
    page = await browser.new_page(viewport=VIEWPORT)
    try:
        await page.goto(f"{served.full}/accounts?period={PERIOD}&lang=en")
        await loaded(page, PERIOD)
        await page.locator("#period-kind").select_option("quarter")
        await page.locator("#period-part").select_option("2")
        await page.locator("#period-show").click()
        await loaded(page, "2026-Q2")
        assert "period=2026-Q2" in page.url
        _status, quarter = await api_json(served.full, "/api/v1/accounts", period="2026-Q2")
        shown = await text_of(page, "#account-totals dd[data-field=total_location_t]")
        assert shown_equal(shown, quarter["totals"]["total_location_t"], 3)
        assert await text_of(page, "#account-totals dd[data-field=hours]") == "720 of 2,184"
        assert await text_of(page, "#cost-state") == EN["acc.cost.monthOnly"]
        # June's retirement is inside the quarter
        ccer = page.locator('#ledger-body-rows tr[data-instrument="offsets.ccer_forest_2025"]')
        shown = await ccer.locator("td[data-field=retired_period]").text_content() or ""
        assert shown_equal(shown, float(CCER_RETIRED_T), 3)
        assert shown_equal(
            await text_of(page, "#offsets-used dd[data-field=offsets_used_t]"), 10, 3
        )
        assert await page.locator("#cost-body").is_hidden()
        await page.locator("#nav-live").click()
        await page.wait_for_url(f"{served.full}/")
        # the live page in the site's language (English, once its status is read)
        link = page.locator("#nav-accounts", has_text=EN["nav.accounts"])
        await link.wait_for(timeout=WAIT_MS)
        await link.click()
        await page.wait_for_url(f"{served.full}/accounts")
        await page.wait_for_function("() => !!document.body.dataset.loaded", timeout=WAIT_MS)
    finally:
        await page.close()


@pytest.mark.parametrize(("language", "book"), [("en", EN), ("zh-CN", ZH)])
async def test_sections_say_why_they_are_missing(
    served: Served, browser: Browser, language: str, book: dict[str, str]
) -> None:
    """Without the site file the accounts, footprints and scorecard answer 503 and the
    cost 404: the page says so in its language, and the ledger (stored) is still shown."""
    status_account, _ = await api_json(served.bare, "/api/v1/accounts", period=PERIOD)
    status_cost, _ = await api_json(served.bare, "/api/v1/cost/monthly", month=PERIOD)
    assert (status_account, status_cost) == (503, 404)
    page = await browser.new_page(viewport=VIEWPORT)
    try:
        await page.goto(f"{served.bare}/accounts?period={PERIOD}&lang={language}")
        await loaded(page, PERIOD)
        await check_unavailable(page, "account-state", 503, book)
        await check_unavailable(page, "cost-state", 404, book)
        await check_unavailable(page, "scorecard-state", 503, book)
        await check_unavailable(page, "footprints-state", 503, book)
        assert "site file" in await text_of(page, "#account-state .sec-detail")
        assert await page.locator("#account-body").is_hidden()
        assert await page.locator("#cost-body").is_hidden()
        await page.locator("#ledger-body").wait_for(state="visible")
        assert await page.locator("#ledger-body-rows tr").count() >= 2
    finally:
        await page.close()


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 7, 3, 1, tzinfo=UTC), "2026-06"),
        # 2026-01-01 01:00 in Shanghai, still December in UTC: the site's zone decides
        (datetime(2025, 12, 31, 17, tzinfo=UTC), "2025-12"),
        (datetime(2025, 12, 31, 15, tzinfo=UTC), "2025-11"),
    ],
)
async def test_default_period_is_the_last_complete_month(
    served: Served, browser: Browser, now: datetime, expected: str
) -> None:
    """Without ?period= the page shows the last complete month in the site's zone (the
    browser's clock is set)."""
    page = await browser.new_page(viewport=VIEWPORT)
    try:
        await page.clock.set_fixed_time(now)
        await page.goto(f"{served.full}/accounts?lang=en")
        await loaded(page, expected)
        assert await page.locator("#period-part").input_value() == str(int(expected[5:]))
        assert await page.locator("#period-year").input_value() == expected[:4]
    finally:
        await page.close()
