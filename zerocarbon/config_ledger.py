"""``[[offsets]]`` of the site file: carbon credits and allowances (being written)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class OffsetConfig(BaseModel):
    """One ``[[offsets]]`` entry."""

    model_config = ConfigDict(frozen=True, extra="forbid")
