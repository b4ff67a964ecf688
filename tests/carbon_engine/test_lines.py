"""Production lines: energy, output, EnPI and carbon per unit, allocated by load share."""

from __future__ import annotations

import numpy as np
import pytest

from zerocarbon.carbon_engine.lines import LINE_COLUMNS, line_hours, line_members
from zerocarbon.config import parse_site


def test_one_line_by_hand() -> None:
    # site: load 200 kWh, Scope 2 100 kg (location) / 60 kg (market) in hour 0;
    # the line uses 50 kWh (share 1/4) and makes 10 units
    r = line_hours(
        np.array([50.0, 0.0, 30.0]),
        np.array([10.0, 0.0, 0.0]),
        site_load_kwh=np.array([200.0, 100.0, 0.0]),
        scope2_location_kg=np.array([100.0, 50.0, 8.0]),
        scope2_market_kg=np.array([60.0, 30.0, 8.0]),
        scope1_kg=np.array([5.0, 0.0, 0.0]),
    )
    assert set(r) == set(LINE_COLUMNS)
    assert r["load_share"].tolist() == [0.25, 0.0, 0.0]  # site load 0: nothing shared
    assert r["scope2_location_kg"].tolist() == [25.0, 0.0, 0.0]
    assert r["scope2_market_kg"].tolist() == [15.0, 0.0, 0.0]
    assert r["kwh_per_unit"][0] == 5.0 and np.isnan(r["kwh_per_unit"][1:]).all()
    assert r["kg_per_unit_location"][0] == 3.0  # (5 + 25) / 10
    assert r["kg_per_unit_market"][0] == 2.0  # (5 + 15) / 10
    assert r["kg_per_unit"][0] == 3.0


def test_lines_add_up_to_the_site_when_submeters_cover_the_load() -> None:
    rng = np.random.default_rng(7)
    n = 48
    energy = rng.uniform(0, 100, (3, n))
    load = energy.sum(axis=0)
    loc = rng.uniform(0, 50, n)
    mkt = rng.uniform(0, 50, n)
    r = line_hours(energy, rng.uniform(0, 5, (3, n)), load, loc, mkt)
    np.testing.assert_allclose(r["scope2_location_kg"].sum(axis=0), loc)
    np.testing.assert_allclose(r["scope2_market_kg"].sum(axis=0), mkt)
    np.testing.assert_allclose(r["load_share"].sum(axis=0), 1.0)


def test_shapes_must_match() -> None:
    with pytest.raises(ValueError, match="same shape"):
        line_hours(np.zeros(3), np.zeros(2), np.zeros(3), np.zeros(3), np.zeros(3))


def test_line_members_from_the_site_file() -> None:
    site = parse_site(
        {
            "mqtt": {},
            "lines": [{"id": "press"}, {"id": "paint"}],
            "devices": [
                {
                    "id": "grid_meter",
                    "role": "grid",
                    "protocol": "modbus_tcp",
                    "host": "127.0.0.1",
                    "profile": "eastron_sdm630",
                },
                {
                    "id": "press_meter",
                    "role": "load",
                    "line": "press",
                    "protocol": "mqtt",
                    "topic": "a",
                    "fields": {"e": "energy_import_kwh"},
                },
                {
                    "id": "press_count",
                    "role": "production",
                    "line": "press",
                    "protocol": "mqtt",
                    "topic": "b",
                    "fields": {"n": "production_count_units"},
                },
                {
                    "id": "oven_gas",
                    "role": "fuel",
                    "fuel": "natural_gas",
                    "line": "paint",
                    "protocol": "mqtt",
                    "topic": "c",
                    "fields": {"v": "gas_volume_nm3"},
                },
            ],
        },
        "site.toml",
    )
    press, paint = line_members(site)
    assert (press.line_id, press.meters, press.counters, press.fuel_meters) == (
        "press",
        ("press_meter",),
        ("press_count",),
        (),
    )
    assert (paint.meters, paint.fuel_meters) == ((), ("oven_gas",))
