"""The hand-computed month of ``test_month_by_hand.py``, this time as meter readings
through :class:`CarbonEngine` (counters every 15 minutes, fed in arrival order): the
month's totals match the figures computed by hand to the gram."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from zerocarbon.batch import ReadingBatch, SeriesRegistry, datetime_to_us
from zerocarbon.carbon_engine.engine import CarbonEngine
from zerocarbon.config import SiteConfig, parse_site

GRAM = 1e-3  # [kg]
ZONE = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 6, 1, tzinfo=ZONE).astimezone(UTC)
STEP = timedelta(minutes=15)
STEPS = 30 * 24 * 4  # June 2026: 720 hours


def _site() -> SiteConfig:
    def dev(id_: str, role: str, field: str, **kw: object) -> dict[str, object]:
        return {
            "id": id_,
            "role": role,
            "protocol": "mqtt",
            "topic": f"works/{id_}",
            "fields": {"v": field},
            "interval_s": 900,
            **kw,
        }

    return parse_site(
        {
            "site": {"timezone": "Asia/Shanghai"},
            "grid": {"region": "east", "data_year": 2023},
            "mqtt": {},
            "devices": [
                dev("grid_meter", "grid", "energy_import_kwh"),
                dev("pv_roof", "pv", "energy_generated_kwh"),
                dev("boiler_gas", "fuel", "gas_volume_nm3", fuel="natural_gas"),
            ],
            "green_power": [{"id": "green_trade", "monthly_kwh": {"2026-06": 7200.0}}],
            "certificates": [
                {"id": "gec_june", "count": 18, "issued": "2026-05", "applies_to": "2026-06"}
            ],
        }
    )


def _readings(reg: SeriesRegistry) -> ReadingBatch:
    series, ts, values = [], [], []
    grid, pv, gas = 5_000.0, 800.0, 12_000.0
    for k in range(STEPS + 1):
        when = START + k * STEP
        if k:
            # the 15 minutes that just ended: local hour of their start
            hour = (when - STEP).astimezone(ZONE).hour
            grid += 25.0  # 100 kWh an hour
            pv += 12.5 if 8 <= hour <= 15 else 0.0  # 50 kWh an hour, 08:00-16:00
            gas += 2.5  # 10 Nm3 an hour
        for device, metric, value in (
            ("grid_meter", "energy_import_kwh", grid),
            ("pv_roof", "energy_generated_kwh", pv),
            ("boiler_gas", "gas_volume_nm3", gas),
        ):
            series.append(reg.id(device, metric))
            ts.append(datetime_to_us(when))
            values.append(value)
    return ReadingBatch.of(series, ts, values)


def test_a_month_of_readings_matches_the_hand_computed_totals() -> None:
    site = _site()
    reg = SeriesRegistry.for_site(site)
    engine = CarbonEngine(site, reg)
    batch = _readings(reg)
    changed: set[int] = set()
    for lo in range(0, len(batch), 1000):  # batch by batch, as the pipeline delivers
        idx = np.arange(lo, min(lo + 1000, len(batch)))
        changed |= set(engine.ingest(batch.take(idx)).changed_hours_s)
    rows = engine.results(changed).carbon
    assert len(rows) == 720
    assert all(r.complete for r in rows)
    total = {
        f: sum(getattr(r, f) for r in rows)
        for f in (
            "grid_import_kwh",
            "load_kwh",
            "scope1_kg",
            "scope2_location_kg",
            "scope2_market_kg",
            "green_contract_kwh",
            "certificate_kwh",
            "cfe_kwh",
        )
    }
    assert total["grid_import_kwh"] == pytest.approx(72_000.0, abs=1e-6)
    assert total["load_kwh"] == pytest.approx(84_000.0, abs=1e-6)
    assert total["scope1_kg"] == pytest.approx(15_567.7594248, abs=GRAM)
    assert total["scope2_location_kg"] == pytest.approx(39_600.0, abs=GRAM)
    assert total["green_contract_kwh"] == pytest.approx(7_200.0, abs=1e-6)
    assert total["certificate_kwh"] == pytest.approx(18_000.0, abs=1e-6)
    assert total["scope2_market_kg"] == pytest.approx(28_529.28, abs=GRAM)
    assert total["cfe_kwh"] == pytest.approx(19_200.0, abs=1e-6)
    # every hour: 10 kWh of contract, 25 kWh of certificates (pro rata, flat import)
    assert {round(r.green_contract_kwh, 9) for r in rows} == {10.0}
    assert {round(r.certificate_kwh, 9) for r in rows} == {25.0}
