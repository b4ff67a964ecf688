"""``[tariff]`` of the site file: the electricity tariff (being written)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class TariffConfig(BaseModel):
    """``[tariff]``: the site's electricity tariff."""

    model_config = ConfigDict(frozen=True, extra="forbid")
