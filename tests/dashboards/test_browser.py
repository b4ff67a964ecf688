"""The live page in a real browser (Debian's chromium driven by Playwright) against the
running app on the simulated plant.

The demo plant runs at 120x from 09:40 in Shanghai with an extra alert rule that fires
at once (grid power above 150 kW; the plant draws 230-330 kW then) and the site's
language set to English. The page must show the site's language by default, follow a
live update, list the alert and acknowledge it with an operator token typed into the
page, switch to Chinese (and stay there after a reload, until ``?lang=en``), say that
line A's baseline is not yet available (the API answers 409: a week of data is
needed), and, once the plant is stopped and the data stand still, show the same power,
today's import and line values as the API, within the display's rounding, and list
the grid meter among the devices offline. Screenshots
of both languages are kept (their paths are in the test report's properties and in
``screenshots.txt`` of the artifacts folder: ``$ZEROCARBON_TEST_ARTIFACTS`` or a
temporary folder).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, Page, ViewportSize, async_playwright

from tests.browser_support import CHROMIUM_ARGS, ensure_chromium
from zerocarbon.api.app import create_app
from zerocarbon.api.auth import Role, new_token
from zerocarbon.api.server import api_server
from zerocarbon.carbon_service import warm_up_kernels
from zerocarbon.clock import ScaledClock
from zerocarbon.config import SiteConfig, parse_site
from zerocarbon.dashboards.page import STATIC_DIR
from zerocarbon.netutil import free_tcp_port
from zerocarbon.runtime import EnergyCenter, HttpOptions
from zerocarbon.settings import Settings
from zerocarbon.simulators.endpoints import on_free_ports
from zerocarbon.simulators.runner import PlantSimulator
from zerocarbon.storage import alerts, tokens
from zerocarbon.storage.alerts import AlertChange
from zerocarbon.storage.database import ensure_database

SPEED = 120.0  # simulated seconds per real second
START = datetime(2026, 6, 22, 1, 40, tzinfo=UTC)  # 09:40 in Shanghai
ALERT_RULE = "grid-high"
ALERT_ABOVE_KW = 150.0  # under what the plant draws from 09:40 (230-330 kW): fires at once
OPERATOR = "page-operator"
VIEWPORT: ViewportSize = {"width": 1920, "height": 1080}  # a wall screen
WAIT_MS = 60_000  # longest wait for the page to show something [ms]
CATALOGUE: dict[str, dict[str, str]] = json.loads(
    (STATIC_DIR / "i18n.json").read_text(encoding="utf-8")
)
EN, ZH = CATALOGUE["en"], CATALOGUE["zh-CN"]


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium (installed when missing, see tests/browser_support.py)."""
    found = ensure_chromium()
    if found.path is None:
        pytest.skip(found.reason)
    if found.install_s is not None:
        print(f"\ninstalled chromium in {found.install_s:.1f} s")
    return found.path


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go: $ZEROCARBON_TEST_ARTIFACTS, else a temporary folder."""
    given = os.environ.get("ZEROCARBON_TEST_ARTIFACTS")
    folder = Path(given) / "dashboards" if given else tmp_path_factory.mktemp("browser")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def browser_site(demo_site: SiteConfig, mqtt_url: str) -> SiteConfig:
    data = demo_site.model_dump(mode="json", exclude_none=True)
    data["site"]["language"] = "en"  # not the default: the page must take it from the site
    data["alerts"]["rules"].append(
        {
            "name": ALERT_RULE,
            "kind": "threshold",
            "severity": "critical",
            "device": "grid_meter",
            "metric": "active_power_kw",
            "above": ALERT_ABOVE_KW,
            "for_s": 60,
        }
    )
    return on_free_ports(parse_site(data, "browser site", demo_site.base_dir), mqtt_url)


class Plant:
    """The running app on the simulated plant; ``stop_plant()`` silences the devices."""

    def __init__(self, base_url: str, token: str, stack: contextlib.AsyncExitStack) -> None:
        self.base_url = base_url
        self.token = token
        self._plant_stack = stack

    async def stop_plant(self) -> None:
        await self._plant_stack.aclose()


@pytest.fixture(scope="module")
async def plant(
    pg_server_url: str,
    mqtt_url: str,
    demo_site: SiteConfig,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Plant]:
    url = await ensure_database(pg_server_url, f"zc_browser_{os.getpid()}", recreate=True)
    site = browser_site(demo_site, mqtt_url)
    warm_up_kernels(site)
    clock = ScaledClock(START, SPEED)
    port = free_tcp_port()
    async with contextlib.AsyncExitStack() as stack:
        # the devices first, so that the gateway finds them answering
        plant_stack = contextlib.AsyncExitStack()
        stack.push_async_callback(plant_stack.aclose)  # idempotent once stopped
        await plant_stack.enter_async_context(PlantSimulator(site, clock, mqtt_url=mqtt_url))
        center = await stack.enter_async_context(
            EnergyCenter(
                site,
                Settings(live_interval_s=0.2),
                clock,
                database_url=url,
                mqtt_url=mqtt_url,
                http=HttpOptions("127.0.0.1", port),
                spool_dir=tmp_path_factory.mktemp("browser-spool"),
            )
        )
        assert center.settings.site_language == "en"
        token = new_token()
        conn = await asyncpg.connect(url)
        try:
            await tokens.insert_token(
                conn,
                name=OPERATOR,
                prefix=token.prefix,
                role="operator",
                site=None,
                token_hash=token.token_hash,
            )
        finally:
            await conn.close()
        yield Plant(f"http://127.0.0.1:{port}", token.token, plant_stack)


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


async def text_of(page: Page, selector: str) -> str:
    return ((await page.locator(selector).first.text_content()) or "").strip()


def number(text: str) -> float:
    """A number as the page shows it in English ("1,234.5")."""
    return float(text.replace(",", ""))


def shown_close(shown: str, value: float) -> bool:
    """Whether ``shown`` is ``value`` rounded as the page rounds power (1 decimal under
    100, none from 100)."""
    decimals = 0 if abs(value) >= 100 else 1
    return abs(number(shown) - value) <= 0.5 * 10.0**-decimals + 1e-9


async def shot(page: Page, folder: Path, name: str, record: Callable[[str, object], None]) -> Path:
    path = folder / f"{name}.png"
    await page.screenshot(path=str(path))
    record(f"screenshot_{name}", str(path))
    with (folder / "screenshots.txt").open("a", encoding="utf-8") as listing:
        listing.write(f"{path}\n")
    print(f"\nscreenshot: {path}")
    return path


async def latest_of(api: httpx.AsyncClient, device: str) -> dict[str, Any]:
    res = await api.get(f"/api/v1/devices/{device}/latest")
    assert res.status_code == 200, res.text
    return {v["metric"]: v for v in res.json()["values"]}


async def test_live_page_in_a_browser(
    plant: Plant,
    browser: Browser,
    artifacts: Path,
    record_property: Callable[[str, object], None],
) -> None:
    record_property("artifacts", str(artifacts))
    context = await browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    async with httpx.AsyncClient(base_url=plant.base_url, timeout=10) as api:
        status = (await api.get("/api/v1/status")).json()
        assert status["site_language"] == "en"

        # the site's language (English), then the first values
        await page.goto(plant.base_url + "/")
        await page.wait_for_function(
            "document.getElementById('grid-value').dataset.ts", timeout=WAIT_MS
        )
        assert await page.evaluate("document.documentElement.lang") == "en"
        assert await text_of(page, "#flow-title") == EN["flow.title"]
        assert await text_of(page, "#quality-title") == EN["quality.title"]

        # a live update: a newer reading replaces the one shown
        first_ts = await page.get_attribute("#grid-value", "data-ts")
        await page.wait_for_function(
            f"document.getElementById('grid-value').dataset.ts !== {json.dumps(first_ts)}",
            timeout=WAIT_MS,
        )
        newer_ts = await page.get_attribute("#grid-value", "data-ts")
        assert newer_ts is not None and first_ts is not None and newer_ts > first_ts

        # the flow view has the lines of the site, with their power
        line_nodes = page.locator("#flow-lines .node-line:not(.node-other)")
        assert await line_nodes.count() == 2
        await page.wait_for_function(
            "[...document.querySelectorAll('#flow-lines .node-line:not(.node-other) .value')]"
            ".every((v) => v.dataset.raw !== '')",
            timeout=WAIT_MS,
        )
        # grid importing: its arrow points to the site load, drawn in the grid's colour
        assert await page.locator("#flow-arrows polygon.flow-head.grid").count() == 1

        # line A: the API has no baseline yet (409), and the page says so
        res = await api.get("/api/v1/lines/line_a/baseline")
        assert res.status_code == 409, res.text
        row_a = page.locator('#line-list li[data-line="line_a"] .line-baseline')
        await row_a.filter(has_text=EN["lines.noBaseline"]).wait_for(timeout=WAIT_MS)

        # the alert fires, is listed, and is acknowledged with a token typed in the page
        row = page.locator("#alert-list li.alert").filter(
            has=page.locator(".alert-rule", has_text=ALERT_RULE)
        )
        await row.wait_for(timeout=WAIT_MS)
        alert_id = await row.get_attribute("data-id")
        assert alert_id is not None
        await row.locator(".ack-btn").click()
        await page.locator("#token-form").wait_for(state="visible")
        assert await text_of(page, "#alerts-msg") == EN["alerts.tokenForAck"]
        await page.fill("#token-input", plant.token)
        await page.click("#token-save")
        acked = EN["alerts.ackedBy"].replace("{who}", OPERATOR)
        await row.locator(".alert-acked", has_text=acked).wait_for(timeout=WAIT_MS)
        assert await text_of(page, "#alerts-msg") == EN["alerts.done"].replace("{who}", OPERATOR)
        stored = (await api.get(f"/api/v1/alerts/{alert_id}")).json()
        assert stored["acked"] is True and stored["acked_by"] == OPERATOR

        await page.wait_for_function(
            "document.getElementById('total-import').textContent !== '—'", timeout=WAIT_MS
        )
        await shot(page, artifacts, "live-en", record_property)
        fonts = await smallest_fonts(page)
        record_property("font_px_en", fonts)

        # Chinese: the toggle, remembered over a reload; ?lang= wins
        await page.click("#lang-toggle")
        assert await page.evaluate("document.documentElement.lang") == "zh-CN"
        assert await text_of(page, "#flow-title") == ZH["flow.title"]
        assert await text_of(page, "#alerts-msg") == ZH["alerts.done"].replace("{who}", OPERATOR)
        await row.locator(".alert-acked", has_text=f"已由 {OPERATOR} 确认").wait_for()
        await row_a.filter(has_text=ZH["lines.noBaseline"]).wait_for()
        await page.reload()
        await page.wait_for_function(
            "document.getElementById('grid-value').dataset.ts", timeout=WAIT_MS
        )
        assert await page.evaluate("document.documentElement.lang") == "zh-CN"
        assert await text_of(page, "#node-grid-label") == ZH["node.grid"]
        await row_a.filter(has_text=ZH["lines.noBaseline"]).wait_for(timeout=WAIT_MS)
        await page.locator("#alert-list li.alert .alert-acked").first.wait_for(timeout=WAIT_MS)
        await shot(page, artifacts, "live-zh-CN", record_property)
        record_property("font_px_zh", await smallest_fonts(page))

        await page.goto(plant.base_url + "/?lang=en")
        await page.wait_for_function(
            "document.getElementById('grid-value').dataset.ts", timeout=WAIT_MS
        )
        assert await page.evaluate("document.documentElement.lang") == "en"

        # the plant stops: once the API's values stand still, the page shows them
        await plant.stop_plant()
        await compare_with_api(page, api)

        # the grid meter's link is down now: the data-quality panel names it
        for _attempt in range(150):
            health = (await api.get("/api/v1/devices/grid_meter/health")).json()
            if not health["online"]:
                break
            await asyncio.sleep(0.2)  # the next poll fails; a retry, not a timed assertion
        else:
            raise AssertionError(f"the grid meter stayed online: {health}")
        await page.reload()
        await page.wait_for_function(
            "document.getElementById('q-offline').dataset.devices.split(' ')"
            ".includes('grid_meter')",
            timeout=WAIT_MS,
        )
        assert "grid_meter" in await text_of(page, "#q-offline")

    # readable at three metres (1080p): no text under 20 px, the flow's figures >= 48 px
    assert fonts["smallest_text_px"] >= 20, fonts
    assert fonts["smallest_flow_value_px"] >= 48, fonts
    assert not errors, errors
    await context.close()


async def smallest_fonts(page: Page) -> dict[str, Any]:
    """The smallest font size of any visible text, and of the flow view's values [px]."""
    result: dict[str, Any] = await page.evaluate(
        """() => {
      const visible = (el) => {
        const r = el.getBoundingClientRect();
        return r.width > 0 && r.height > 0 && getComputedStyle(el).visibility !== "hidden";
      };
      let smallest = Infinity;
      let where = "";
      for (const el of document.querySelectorAll("body *")) {
        const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
        if (!own || !visible(el)) continue;
        const px = parseFloat(getComputedStyle(el).fontSize);
        if (px < smallest) { smallest = px; where = el.id || el.className || el.tagName; }
      }
      const values = [...document.querySelectorAll("#flow .value")].filter(visible)
        .map((el) => parseFloat(getComputedStyle(el).fontSize));
      return {
        smallest_text_px: smallest, smallest_text_in: String(where),
        smallest_flow_value_px: Math.min(...values),
      };
    }"""
    )
    return result


async def compare_with_api(page: Page, api: httpx.AsyncClient) -> None:
    """The power tiles, the lines' power and today's import against the API, once the
    page shows the API's newest readings (the plant is stopped: they stand still)."""
    devices = {d["id"]: d for d in (await api.get("/api/v1/devices")).json()}
    for _attempt in range(100):
        latest = {device: await latest_of(api, device) for device in devices}
        dom = await page.evaluate(
            """() => {
              const shown = (el) => ({text: el.textContent, raw: el.dataset.raw});
              const tiles = ["grid", "pv", "battery", "load"].map(
                (k) => [k, shown(document.getElementById(k + "-value"))]);
              const lines = [...document.querySelectorAll("#flow-lines [data-line]")]
                .filter((n) => n.dataset.line)
                .map((n) => [n.dataset.line, shown(n.querySelector(".value"))]);
              return Object.fromEntries([...tiles, ...lines]);
            }"""
        )
        api_kw = {
            "grid": latest["grid_meter"]["active_power_kw"]["value"],
            "pv": latest["pv_roof"]["active_power_kw"]["value"],
            "battery": latest["battery"]["active_power_kw"]["value"],
            "line_a": latest["line_a"]["active_power_kw"]["value"],
            "line_b": latest["line_b"]["active_power_kw"]["value"],
        }
        # the page shows the API's newest readings (the raw number it was given)
        if all(dom[k]["raw"] and float(dom[k]["raw"]) == v for k, v in api_kw.items()):
            break
        await asyncio.sleep(0.2)  # the stream's next poll; a retry, not a timed assertion
    else:
        raise AssertionError(f"the page never showed the API's newest readings: {dom} {latest}")

    def kw(device: str) -> float:
        return float(latest[device]["active_power_kw"]["value"])

    assert shown_close(dom["grid"]["text"], abs(kw("grid_meter"))), (dom, latest)
    assert shown_close(dom["pv"]["text"], kw("pv_roof")), (dom, latest)
    assert shown_close(dom["battery"]["text"], abs(kw("battery"))), (dom, latest)
    load_kw = kw("grid_meter") + kw("pv_roof") + kw("battery")
    assert shown_close(dom["load"]["text"], load_kw), (dom, load_kw)
    for line in ("line_a", "line_b"):
        assert shown_close(dom[line]["text"], kw(line)), (line, dom, kw(line))

    # today's grid import: the sum of the API's hourly rows of the site's day
    for _attempt in range(100):
        snap_day = await page.evaluate(
            "() => [...document.querySelectorAll('#chart rect.bar')].length"
        )
        status = (await api.get("/api/v1/status")).json()
        newest = datetime.fromisoformat(status["newest_reading_ts"])
        day_start = newest.replace(hour=16, minute=0, second=0, microsecond=0)
        if day_start > newest:
            day_start -= timedelta(days=1)
        rows = (
            await api.get(
                "/api/v1/carbon/hourly",
                params={"start": day_start.isoformat(), "end": newest.isoformat()},
            )
        ).json()
        total = sum(r["grid_import_kwh"] for r in rows)
        shown = await text_of(page, "#total-import")
        decimals = 0 if total >= 1000 else 1
        if snap_day == len(rows) and abs(number(shown) - total) <= 0.5 * 10**-decimals + 1e-9:
            break
        await asyncio.sleep(0.2)  # an hour being recomputed; retried, not timed
    else:
        raise AssertionError(f"today's import: page {shown}, API {total}")
    assert re.fullmatch(r"[\d,]+(\.\d)?", shown), shown


def _change(state: Literal["firing", "resolved"]) -> AlertChange:
    t0 = datetime(2026, 3, 1, 6, 20, tzinfo=UTC)
    return AlertChange(
        rule="grid_demand",
        kind="demand",
        subject="site",
        episode=1,
        state=state,
        severity="critical",
        ts=t0,
        since=t0,
        message_en="Demand over the contract",
        message_zh="需量超过合同值",
        evidence={"demand_kw": 520.0},
    )


async def test_page_asks_for_a_token_when_reads_need_one(
    pg_url: str, pg_conn: asyncpg.Connection, browser: Browser
) -> None:
    """With ``ZEROCARBON_API_READ_ROLE=viewer`` the page (in Chinese, the default when
    the site's language cannot be read yet) asks for a token, then reads the stream
    with it; a viewer token cannot acknowledge."""
    await pg_conn.execute("TRUNCATE alerts, alert_events, api_tokens RESTART IDENTITY CASCADE")
    token = new_token()
    await tokens.insert_token(
        pg_conn,
        name="wall-screen",
        prefix=token.prefix,
        role="viewer",
        site=None,
        token_hash=token.token_hash,
    )
    await alerts.record_change(pg_conn, _change("firing"), [], datetime.now(UTC))
    settings = Settings(database_url=pg_url, live_interval_s=0.05, api_read_role=Role.VIEWER)
    app = create_app(settings)
    port = free_tcp_port()
    server = api_server(app, settings, host="127.0.0.1", port=port, log_level="warning")
    task = asyncio.create_task(server.serve())
    context = await browser.new_context(viewport=VIEWPORT)
    try:
        async with asyncio.timeout(WAIT_MS / 1000):
            while not server.started:
                assert not task.done()
                await asyncio.sleep(0.01)
        page = await context.new_page()
        await page.goto(f"http://127.0.0.1:{port}/")
        message = page.locator("#alerts-msg", has_text=ZH["alerts.tokenForRead"])
        await message.wait_for(timeout=WAIT_MS)
        assert await page.evaluate("document.documentElement.lang") == "zh-CN"
        assert await page.locator("#alert-list li").count() == 0
        await page.fill("#token-input", token.token)
        await page.click("#token-save")
        row = page.locator("#alert-list li.alert.sev-critical")
        await row.wait_for(timeout=WAIT_MS)
        assert "需量超过合同值" in (await row.text_content() or "")
        await page.locator("#conn-text", has_text=ZH["conn.live"]).wait_for(timeout=WAIT_MS)
        await row.locator(".ack-btn").click()
        refused = ZH["alerts.forbidden"].split("{detail}")[0]
        await page.locator("#alerts-msg", has_text=refused).wait_for(timeout=WAIT_MS)
        assert await row.locator(".ack-btn").count() == 1  # still offered
    finally:
        await context.close()
        server.should_exit = True
        await task
