"""The operator's live page: ``/`` serves ``static/index.html``; its scripts (``common.js``, the
helpers the three pages share: language, texts, number formats; then ``app.js``), style,
text catalogue (``i18n.json``: every text in Chinese and English) and nothing else (no
CDN, no web fonts: factory LANs have no internet) come from ``/static``. It shows the energy
flow (grid, PV, battery, site load, the production lines), carbon intensity, today by
hour, each line's energy per unit against its baseline, data quality and the firing
alerts, which an operator acknowledges with ``POST /api/v1/alerts/{id}/ack``. Its
language is ``?lang=``, else the one the user chose (kept in ``localStorage``), else the
site's (``[site] language``, given by ``GET /api/v1/status``). The API
token is asked for in the page when needed and kept in the tab's ``sessionStorage``;
when reads need a token too (``ZEROCARBON_API_READ_ROLE``), every request sends it in
``Authorization: Bearer`` and the stream is read with ``fetch`` (``EventSource`` cannot
send a header; the API takes no token in the query string, which would end up in
access logs).

``/accounts`` serves ``static/accounts.html``: the desk view of the figures a zero-carbon
factory is judged by, for a month, quarter or year (the scorecard, the period account by
GB/T 32150, product footprints, the month's energy bill and the instruments ledger), in
the same two languages, from the same style and catalogue, printable.

The group's center serves ``static/group.html`` at ``/`` instead
(:func:`add_group_page`): every site with its uplink state, the group's hourly carbon,
the sites ranked and the group scorecard, each site linking to its own page."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_URL = "/static"

router = APIRouter(tags=["dashboard"])


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/accounts", include_in_schema=False)
async def accounts() -> FileResponse:
    return FileResponse(STATIC_DIR / "accounts.html", headers={"Cache-Control": "no-cache"})


def add_dashboard(app: FastAPI) -> None:
    """Serve the live page at ``/``, the accounts at ``/accounts`` and their assets under
    ``/static``."""
    app.include_router(router)
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="dashboard-static")


group_router = APIRouter(tags=["dashboard"])


@group_router.get("/", include_in_schema=False)
async def group_index() -> FileResponse:
    return FileResponse(STATIC_DIR / "group.html", headers={"Cache-Control": "no-cache"})


def add_group_page(app: FastAPI) -> None:
    """Serve the group page at ``/`` and its assets under ``/static``."""
    app.include_router(group_router)
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="dashboard-static")
