"""Fixtures of the simulator tests: the demo site on free ports, a day of the plant."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from zerocarbon.config import SiteConfig
from zerocarbon.simulators.endpoints import on_free_ports
from zerocarbon.simulators.plant import PlantModel

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Local midnight of the June solstice at the demo site.
MIDNIGHT_S = datetime(2026, 6, 21, 0, 0, tzinfo=SHANGHAI).timestamp()


@pytest.fixture
def local_site(demo_site: SiteConfig) -> SiteConfig:
    return on_free_ports(demo_site)


@pytest.fixture(scope="module")
def demo_day(demo_site: SiteConfig) -> PlantModel:
    """The demo plant after 24 simulated hours from local midnight (read only)."""
    plant = PlantModel(demo_site, MIDNIGHT_S)
    plant.advance(MIDNIGHT_S + 86400)
    return plant
