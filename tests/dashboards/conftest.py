"""The app's own client for the page tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from zerocarbon.api.app import create_app
from zerocarbon.settings import Settings


@pytest.fixture
async def page_client(pg_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(database_url=pg_url, site_name="Page test"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://zerocarbon.test") as c:
            yield c
