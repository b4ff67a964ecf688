"""``[accounts]`` of the site file: the period accounts' boundary and sources (being
written)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class AccountsConfig(BaseModel):
    """``[accounts]``: what the period accounts (GB/T 32150) need beyond the meters."""

    model_config = ConfigDict(frozen=True, extra="forbid")
