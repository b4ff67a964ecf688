"""``/api/v1/alerts``: (being written)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])
