"""The live page at ``/``: served, and self-contained (factory LANs have no internet)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Literal

import httpx
import pytest

from zerocarbon.api.app import create_app
from zerocarbon.dashboards.page import STATIC_DIR
from zerocarbon.settings import Settings

ASSETS = ("index.html", "common.js", "app.js", "style.css", "i18n.json")
URL = re.compile(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", re.IGNORECASE)


@pytest.mark.parametrize("name", ASSETS)
def test_no_internet_urls_in_assets(name: str) -> None:
    text = (STATIC_DIR / name).read_text(encoding="utf-8")
    assert not URL.search(text), f"{name} refers to {URL.search(text)}"
    assert "@import" not in text and "fonts." not in text


async def test_index_is_served_at_root(page_client: httpx.AsyncClient) -> None:
    res = await page_client.get("/")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/html")
    assert res.text == (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    refs = re.findall(r'(?:src|href)="([^"]+)"', res.text)
    assert "static/common.js" in refs and "static/app.js" in refs and "static/style.css" in refs
    assert refs.index("static/common.js") < refs.index("static/app.js")
    for ref in refs:
        if ref.startswith("data:"):
            continue
        assert not ref.startswith("/"), (
            f"{ref}: relative URLs keep the page working behind a prefix"
        )
        asset = await page_client.get("/" + ref)
        assert asset.status_code == 200, ref


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/static/app.js", "javascript"), ("/static/style.css", "text/css")],
)
async def test_static_assets(page_client: httpx.AsyncClient, path: str, content_type: str) -> None:
    res = await page_client.get(path)
    assert res.status_code == 200
    assert content_type in res.headers["content-type"]
    assert res.text == (STATIC_DIR / path.removeprefix("/static/")).read_text(encoding="utf-8")


async def test_page_uses_the_api(page_client: httpx.AsyncClient) -> None:
    script = (await page_client.get("/static/app.js")).text
    assert 'new EventSource("api/v1/live")' in script
    assert 'getJson("api/v1/devices")' in script and 'getJson("api/v1/lines")' in script
    assert "api/v1/lines/hourly?" in script and "/baseline?" in script and "/health`" in script
    for event in ("snapshot", "readings", "hourly"):
        assert f'addEventListener("{event}"' in script


async def test_unknown_static_file_is_404(page_client: httpx.AsyncClient) -> None:
    assert (await page_client.get("/static/nope.js")).status_code == 404


# --- the alerts panel ------------------------------------------------------------------


def script() -> str:
    return (STATIC_DIR / "app.js").read_text(encoding="utf-8")


def common_script() -> str:
    """The helpers every page loads before its own script (language, texts, formats)."""
    return (STATIC_DIR / "common.js").read_text(encoding="utf-8")


def test_alerts_panel_is_in_the_page() -> None:
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    for element_id in (
        "alerts-panel",
        "alert-list",
        "alerts-empty",
        "alerts-msg",
        "token-form",
        "lang-toggle",
    ):
        assert f'id="{element_id}"' in html, element_id
    assert re.search(r'<input id="token-input" type="password"', html)
    assert 'role="status"' in html  # errors are told in the panel, not by alert()
    assert "alert(" not in script().replace("putAlert(", "").replace("onAlert(", "")


def catalogue() -> dict[str, dict[str, str]]:
    data: dict[str, dict[str, str]] = json.loads(
        (STATIC_DIR / "i18n.json").read_text(encoding="utf-8")
    )
    return data


PLACEHOLDER = re.compile(r"\{(\w+)\}")
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")


def test_catalogue_has_both_languages_alike() -> None:
    book = catalogue()
    assert set(book) == {"zh-CN", "en"}
    assert set(book["zh-CN"]) == set(book["en"]), set(book["zh-CN"]) ^ set(book["en"])
    for key, english in book["en"].items():
        chinese = book["zh-CN"][key]
        assert english.strip() and chinese.strip(), key
        assert set(PLACEHOLDER.findall(english)) == set(PLACEHOLDER.findall(chinese)), key
    assert book["zh-CN"]["lines.noBaseline"] == "基线尚未建立"
    assert book["en"]["lines.noBaseline"] == "baseline not yet available"


def test_every_text_of_the_page_is_in_the_catalogue() -> None:
    """The page and its script name catalogue keys; no text of either language is
    written in them (numbers, units and symbols aside)."""
    book = catalogue()["en"]
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    js = script() + common_script()
    used = set(re.findall(r'data-i18n="([\w.]+)"', html))
    used |= set(re.findall(r'\bt\("([\w.]+)"', js))
    used |= set(re.findall(r'(?:askToken|showAlertsMessage|setBanner)\("([\w.]+)"', js))
    used |= set(re.findall(r'setConnection\("\w+", "([\w.]+)"\)', js))
    used |= {f"alerts.severity.{s}" for s in ("critical", "warning", "info")}
    assert len(used) > 60, sorted(used)
    assert used <= set(book), used - set(book)
    assert not CJK.search(html) and not CJK.search(js)
    # English words only in comments, ids and keys: every element with words has a key
    for tag in re.findall(r"<(h[1-3]|dt|label|button)\b[^>]*>([^<]*)<", html):
        assert not tag[1].strip() or tag[1] == "zerocarbon", tag  # the product's name


def test_script_acknowledges_with_a_bearer_token() -> None:
    js = script()
    ack = re.search(
        r"fetch\(`api/v1/alerts/\$\{encodeURIComponent\(id\)\}/ack`, \{(.*?)\}\);", js, re.S
    )
    assert ack, "app.js does not POST to api/v1/alerts/{id}/ack"
    assert 'method: "POST"' in ack[1] and "...authHeaders()" in ack[1]
    assert "Authorization: `Bearer ${token}`" in js
    assert "sessionStorage.getItem(TOKEN_KEY)" in js and "sessionStorage.setItem(TOKEN_KEY" in js
    # reads send the token too: the devices, and the stream read with fetch
    assert 'fetch(url, { cache: "no-store", headers: authHeaders() })' in js
    assert 'getJson("api/v1/devices")' in js and 'getJson("api/v1/status")' in js
    assert re.search(r'fetch\("api/v1/live", \{\s*headers: \{ \.\.\.authHeaders\(\)', js)
    assert 'addEventListener("alert", parse(onAlert))' in js


def test_fields_the_script_reads_are_served() -> None:
    from zerocarbon.api.schemas import Alert, LiveAlertEvent, LiveSnapshot

    js = script()
    read = set(re.findall(r"\balert\.(\w+)", js))
    assert {"rule", "subject", "since", "acked", "acked_by", "messages"} <= read
    assert read <= set(Alert.model_fields), read - set(Alert.model_fields)
    assert "alerts" in LiveSnapshot.model_fields and "snap.alerts" in js
    assert "alert" in LiveAlertEvent.model_fields and "item.alert" in js


NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="node is not installed")
@pytest.mark.parametrize("name", ["common.js", "app.js"])
def test_script_parses(name: str) -> None:
    assert NODE is not None
    result = subprocess.run(
        [NODE, "--check", str(STATIC_DIR / name)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("language", ["zh-CN", "en"])
async def test_status_gives_the_site_language(
    pg_url: str, language: Literal["zh-CN", "en"]
) -> None:
    """The page's default language is the site's (``[site] language``), from the status."""
    app = create_app(Settings(database_url=pg_url, site_language=language))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://zerocarbon.test") as c:
            res = await c.get("/api/v1/status")
    assert res.status_code == 200
    assert res.json()["site_language"] == language


def test_status_language_defaults_to_chinese(pg_url: str) -> None:
    assert Settings(database_url=pg_url).site_language == "zh-CN"


# --- the accounts page (/accounts) ------------------------------------------------------

ACCOUNTS_ASSETS = ("accounts.html", "accounts.js")


@pytest.mark.parametrize("name", ACCOUNTS_ASSETS)
def test_no_internet_urls_in_accounts_assets(name: str) -> None:
    text = (STATIC_DIR / name).read_text(encoding="utf-8")
    assert not URL.search(text), f"{name} refers to {URL.search(text)}"
    assert "@import" not in text and "fonts." not in text


async def test_accounts_page_is_served_with_no_external_asset(
    page_client: httpx.AsyncClient,
) -> None:
    res = await page_client.get("/accounts")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/html")
    assert res.text == (STATIC_DIR / "accounts.html").read_text(encoding="utf-8")
    refs = re.findall(r'(?:src|href)="([^"]+)"', res.text)
    assert "static/common.js" in refs and "static/accounts.js" in refs
    assert refs.index("static/common.js") < refs.index("static/accounts.js")
    assert "static/style.css" in refs
    assert "./" in refs  # the link back to the live page
    for ref in refs:
        if ref.startswith("data:") or ref == "./":
            continue
        assert not ref.startswith("/") and "//" not in ref, ref
        asset = await page_client.get("/" + ref)
        assert asset.status_code == 200, ref
    script_res = await page_client.get("/static/accounts.js")
    assert "javascript" in script_res.headers["content-type"]
    # no asset from elsewhere: every fetch of the script is a relative path of this app
    fetched = re.findall(r'getJson\(\s*[`"]([^`"$]+)', script_res.text)
    fetched += re.findall(r'fetch\("([^"]+)"', script_res.text)
    assert fetched and all(f.startswith(("api/v1/", "static/")) for f in fetched), fetched


def test_live_page_and_accounts_link_to_each_other() -> None:
    live = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    accounts = (STATIC_DIR / "accounts.html").read_text(encoding="utf-8")
    assert re.search(r'<a class="nav-link" id="nav-accounts" href="accounts"', live)
    assert re.search(r'<a class="nav-link" id="nav-live" href="\./"', accounts)
    assert 'id="lang-toggle"' in accounts and 'href="static/style.css"' in accounts


def test_every_text_of_the_accounts_page_is_in_the_catalogue() -> None:
    book = catalogue()
    html = (STATIC_DIR / "accounts.html").read_text(encoding="utf-8")
    js = (STATIC_DIR / "accounts.js").read_text(encoding="utf-8") + common_script()
    used = set(re.findall(r'data-i18n="([\w.]+)"', html))
    used |= set(re.findall(r'\bt\("([\w.]+)"', js))
    used |= set(re.findall(r'"(acc\.[\w.]+\.\d{3})"', js))
    used |= set(re.findall(r'\["(acc\.[\w.]+)"', js))  # the totals' labels
    assert len(used) > 80, sorted(used)
    for lang in ("en", "zh-CN"):
        assert used <= set(book[lang]), (lang, used - set(book[lang]))
    # the keys made from the API's values: categories, bill lines, kinds, statuses
    for prefix, names in {
        "acc.cat.": ("combustion", "process", "purchased_electricity", "purchased_heat"),
        "acc.bill.": ("energy_peak", "surcharge", "demand_charge", "export_credit"),
        "acc.ledger.kind.": ("gec", "green_power", "ccer", "allowance"),
        "acc.ledger.status.": ("held", "partly_retired", "retired", "cancelled"),
        "acc.unavailable.": ("404", "409", "503"),
    }.items():
        for name in names:
            assert prefix + name in book["en"] and prefix + name in book["zh-CN"], prefix + name
    assert not CJK.search(html) and not CJK.search(js)
    for tag in re.findall(r"<(h[1-3]|dt|label|button|th|option)\b[^>]*>([^<]*)<", html):
        assert not tag[1].strip() or tag[1] == "zerocarbon", tag


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_accounts_script_parses() -> None:
    assert NODE is not None
    result = subprocess.run(
        [NODE, "--check", str(STATIC_DIR / "accounts.js")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_accounts_page_prints() -> None:
    """The style has a print sheet for the accounts: white paper, no controls."""
    css = (STATIC_DIR / "style.css").read_text(encoding="utf-8")
    block = css[css.index("@media print") :]
    assert "body.desk" in block and "background: #fff" in block
    assert ".desk .period-form, .desk .lang-toggle, .desk .nav-link { display: none; }" in block
