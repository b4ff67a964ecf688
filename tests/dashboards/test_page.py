"""The live page at ``/``: served, and self-contained (factory LANs have no internet)."""

from __future__ import annotations

import re

import httpx
import pytest

from zerocarbon.dashboards.page import STATIC_DIR

ASSETS = ("index.html", "app.js", "style.css")
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
    assert "static/app.js" in refs and "static/style.css" in refs
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
    assert 'fetch("api/v1/devices"' in script
    for event in ("snapshot", "readings", "hourly"):
        assert f'addEventListener("{event}"' in script


async def test_unknown_static_file_is_404(page_client: httpx.AsyncClient) -> None:
    assert (await page_client.get("/static/nope.js")).status_code == 404
