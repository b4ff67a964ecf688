"""``/api/v1/lines``: (being written)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/lines", tags=["baseline"])
