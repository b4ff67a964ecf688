"""The operator's live page: ``/`` serves ``static/index.html``; its script, style and
nothing else (no CDN, no web fonts: factory LANs have no internet) come from
``/static``. The page reads ``/api/v1/devices`` and ``/api/v1/live``."""

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


def add_dashboard(app: FastAPI) -> None:
    """Serve the live page at ``/`` and its assets under ``/static``."""
    app.include_router(router)
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="dashboard-static")
