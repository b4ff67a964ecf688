"""A month of a small site, computed by hand, against the engine's pieces end to end.

The site (Asia/Shanghai): grid region east, MEE data year 2023; a gas boiler; rooftop PV;
one monthly green-power contract and one batch of green electricity certificates, both
for June 2026. June 2026 has 30 days x 24 h = 720 hours (China has no daylight saving).

Inputs, every hour of June (local time):
- grid import 100 kWh; no export; no battery;
- PV 50 kWh in the local hours 08:00-15:00 (8 hours a day: 240 daylight hours), else 0;
- natural gas 10 Nm3.

By hand:
- grid import = 720 x 100 = 72,000 kWh; load = 240 x 150 + 480 x 100 = 84,000 kWh.
- Scope 1: natural gas, GB/T 32150-2015 Table B.1 (389.31 GJ/10^4 Nm3, 15.3e-3 t C/GJ,
  99 %): EF = 0.038931 x 0.0153 x 0.99 x 44/12 x 1000 = 2.162188809 kg CO2/Nm3;
  7,200 Nm3 x 2.162188809 = 15,567.7594248 kg.
- Scope 2 location: 72,000 kWh x 0.5500 (MEE 2023, East China grid) = 39,600.000 kg.
- Contract 7,200 kWh for 2026-06, pro rata to uncovered import (100 kWh every hour):
  10 kWh every hour, 7,200 kWh in all, nothing unused.
- GEC batch of 18 certificates = 18,000 kWh for 2026-06, against what the contract left
  (90 kWh every hour, 64,800 kWh): 18,000 / 720 = 25 kWh every hour; nothing unused.
- Scope 2 market: uncovered 100 - 10 - 25 = 65 kWh an hour, 46,800 kWh x 0.6096
  (MEE 2023 national excluding market-traded non-fossil) = 28,529.280 kg.
- CFE (certificates do not count): daylight hours 50 (PV to load) + 10 (contract) = 60 kWh,
  other hours 10 kWh: 240 x 60 + 480 x 10 = 19,200 kWh; share 19,200 / 84,000.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import numpy as np
import pytest

from zerocarbon.carbon_engine import balance, balance_reference
from zerocarbon.carbon_engine.factors import hourly_factor_source, resolve_grid_factors
from zerocarbon.carbon_engine.fuels import fuel_factor
from zerocarbon.carbon_engine.instruments import (
    allocate_instruments,
    load_contract_volumes,
    month_bounds_s,
)
from zerocarbon.config import SiteConfig, parse_site

GRAM = 1e-3  # [kg]


def _site() -> SiteConfig:
    return parse_site(
        {
            "site": {"name": "hand-computed works", "timezone": "Asia/Shanghai"},
            "grid": {"region": "east", "data_year": 2023},
            "mqtt": {},
            "devices": [
                {
                    "id": "grid_meter",
                    "role": "grid",
                    "protocol": "modbus_tcp",
                    "host": "127.0.0.1",
                    "profile": "eastron_sdm630",
                },
                {
                    "id": "pv_roof",
                    "role": "pv",
                    "protocol": "modbus_tcp",
                    "host": "127.0.0.1",
                    "profile": "sunspec_inverter_103",
                    "port": 1502,
                },
                {
                    "id": "boiler_gas",
                    "role": "fuel",
                    "fuel": "natural_gas",
                    "protocol": "mqtt",
                    "topic": "works/boiler",
                    "fields": {"volume": "gas_volume_nm3"},
                },
            ],
            "green_power": [{"id": "green_trade", "monthly_kwh": {"2026-06": 7200.0}}],
            "certificates": [
                {"id": "gec_june", "count": 18, "issued": "2026-05", "applies_to": "2026-06"}
            ],
        },
        "site.toml",
    )


def test_june_2026_matches_the_hand_computation() -> None:
    site = _site()
    zone = ZoneInfo(site.site.timezone)
    start_s, end_s = month_bounds_s("2026-06", zone)
    hours = np.arange(start_s, end_s, 3600, dtype=np.int64)
    assert hours.shape == (720,)
    local_hour = (hours - start_s) // 3600 % 24  # June starts at local midnight
    n = hours.shape[0]

    imp = np.full(n, 100.0)
    pv = np.where((local_hour >= 8) & (local_hour < 16), 50.0, 0.0)
    gas_nm3 = np.full(n, 10.0)
    zeros = np.zeros(n)

    factors = resolve_grid_factors(site)
    loc_f, mkt_f, from_series = hourly_factor_source(site, factors).factors_for(hours)
    assert not from_series.any()
    scope1_in = gas_nm3 * fuel_factor(site, "natural_gas", "gas_volume_nm3", "boiler_gas")
    alloc = allocate_instruments(hours, imp, load_contract_volumes(site), site.certificates, zone)
    res = balance.balance_site_hours(
        imp,
        zeros,
        pv,
        zeros,
        zeros,
        zeros,
        scope1_in,
        alloc.contract_kwh,
        alloc.gec_kwh,
        loc_f,
        mkt_f,
        0.0,
        0.0,
    )
    load, scope1, loc_kg, mkt_kg, cfe_kwh, cfe_share = res[:6]

    # month totals, to the gram
    assert pv.sum() == 240 * 50.0
    assert load.sum() == pytest.approx(84_000.0, abs=GRAM)
    assert scope1.sum() == pytest.approx(15_567.7594248, abs=GRAM)
    assert loc_kg.sum() == pytest.approx(39_600.000, abs=GRAM)
    assert mkt_kg.sum() == pytest.approx(28_529.280, abs=GRAM)
    assert alloc.contract_kwh.sum() == pytest.approx(7_200.0, abs=GRAM)
    assert alloc.gec_kwh.sum() == pytest.approx(18_000.0, abs=GRAM)
    assert cfe_kwh.sum() == pytest.approx(19_200.0, abs=GRAM)
    assert cfe_kwh.sum() / load.sum() == pytest.approx(19_200 / 84_000)

    # hour by hour, as computed in the module docstring
    np.testing.assert_allclose(alloc.contract_kwh, 10.0)
    np.testing.assert_allclose(alloc.gec_kwh, 25.0)
    np.testing.assert_allclose(cfe_kwh, np.where(pv > 0, 60.0, 10.0))
    np.testing.assert_allclose(cfe_share, np.where(pv > 0, 60 / 150, 10 / 100))

    # the instruments' own totals are the sums of their hourly rows; nothing unused
    contract, gec = alloc.instruments
    assert (contract.id, gec.id) == ("green_trade", "gec_june")
    assert contract.allocated_kwh == pytest.approx(alloc.contract_kwh.sum(), abs=GRAM)
    assert gec.allocated_kwh == pytest.approx(alloc.gec_kwh.sum(), abs=GRAM)
    assert contract.unused_kwh == pytest.approx(0.0, abs=GRAM)
    assert gec.unused_kwh == pytest.approx(0.0, abs=GRAM)

    # the numpy twin gives the same month, and the daily rows add up to the month
    twin = balance_reference.balance_site_hours(
        imp,
        zeros,
        pv,
        zeros,
        zeros,
        zeros,
        scope1_in,
        alloc.contract_kwh,
        alloc.gec_kwh,
        loc_f,
        mkt_f,
        0.0,
        0.0,
    )
    for mine, theirs in zip(res[:5], twin[:5], strict=True):
        assert mine.sum() == pytest.approx(theirs.sum(), abs=GRAM)
    daily_market = mkt_kg.reshape(30, 24).sum(axis=1)
    np.testing.assert_allclose(daily_market, 24 * 65 * 0.6096)
    assert daily_market.sum() == pytest.approx(28_529.280, abs=GRAM)
