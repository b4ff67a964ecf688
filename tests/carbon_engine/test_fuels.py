"""Scope 1 fuel factors by the GB/T 32150-2015 method, with site overrides."""

from __future__ import annotations

from typing import Any

import pytest

from zerocarbon.carbon_engine.fuels import (
    FuelError,
    emission_factor_kg_per_unit,
    fuel_errors,
    fuel_factor,
    fuel_parameters,
    known_fuels,
)
from zerocarbon.config import SiteConfig, parse_site

GRID = {
    "id": "grid_meter",
    "role": "grid",
    "protocol": "modbus_tcp",
    "host": "127.0.0.1",
    "profile": "eastron_sdm630",
}


def _fuel_meter(ident: str, fuel: str, metric: str) -> dict[str, Any]:
    return {
        "id": ident,
        "role": "fuel",
        "fuel": fuel,
        "protocol": "mqtt",
        "topic": f"f/{ident}",
        "fields": {"v": metric},
    }


def _site(*devices: dict[str, Any], **fuels: dict[str, float]) -> SiteConfig:
    return parse_site({"mqtt": {}, "devices": [GRID, *devices], "fuels": fuels}, "site.toml")


def test_shipped_fuels() -> None:
    assert {"natural_gas", "diesel", "gasoline", "fuel_oil", "lpg"} <= set(known_fuels())


@pytest.mark.parametrize(
    ("fuel", "metric", "expected"),
    [
        # Table B.1: 389.31 GJ/10^4 Nm3, 15.3e-3 t C/GJ, 99 %:
        # 0.038931 GJ/Nm3 x 0.0153 x 0.99 x 44/12 x 1000 = 2.162188809 kg CO2/Nm3
        ("natural_gas", "gas_volume_nm3", 2.162188809),
        # 42.652 GJ/t, 20.2e-3, 98 %: 0.042652 x 0.0202 x 0.98 x 44/12 x 1000 per kg
        ("diesel", "fuel_mass_kg", 3.0959096373),
        # per litre with the default density 0.830 kg/l
        ("diesel", "fuel_volume_l", 3.0959096373 * 0.830),
        ("gasoline", "fuel_mass_kg", 2.92505598),
        ("fuel_oil", "fuel_mass_kg", 3.1704612427),
        ("lpg", "fuel_mass_kg", 3.1013298213),
        ("天然气", "gas_volume_nm3", 2.162188809),  # the standard's name works too
    ],
)
def test_default_factors(fuel: str, metric: str, expected: float) -> None:
    assert fuel_factor(_site(), fuel, metric) == pytest.approx(expected, rel=1e-9)


def test_formula() -> None:
    assert emission_factor_kg_per_unit(1.0, 0.012, 1.0) == pytest.approx(44.0)


def test_site_overrides_win() -> None:
    site = _site(
        natural_gas={"ncv_gj_per_unit": 0.036, "oxidation_rate": 1.0},
        diesel={"density_kg_per_l": 0.85},
    )
    p = fuel_parameters(site, "natural_gas")
    assert (p.ncv_gj_per_unit, p.carbon_content_tc_per_gj, p.oxidation_rate) == (0.036, 0.0153, 1.0)
    assert "site [fuels.natural_gas]" in p.source and "GB/T 32150-2015 Table B.1" in p.source
    assert fuel_factor(site, "natural_gas", "gas_volume_nm3") == pytest.approx(
        0.036 * 0.0153 * 44 / 12 * 1000
    )
    assert fuel_factor(site, "diesel", "fuel_volume_l") == pytest.approx(3.0959096373 * 0.85)


def test_fuel_defined_only_in_site_file() -> None:
    site = _site(
        raw_coal={
            "ncv_gj_per_unit": 0.020908,
            "carbon_content_tc_per_gj": 0.02637,
            "oxidation_rate": 0.94,
        }
    )
    expected = 0.020908 * 0.02637 * 0.94 * 44 / 12 * 1000
    assert fuel_factor(site, "raw_coal", "fuel_mass_kg") == pytest.approx(expected)
    assert fuel_parameters(site, "raw_coal").basis is None
    with pytest.raises(FuelError, match="no density"):
        fuel_factor(site, "raw_coal", "fuel_volume_l", "coal_scale")


def test_errors_name_fuel_and_device() -> None:
    site = _site()
    with pytest.raises(FuelError) as info:
        fuel_factor(site, "coal", "fuel_mass_kg", "boiler")
    assert "device 'boiler': fuel 'coal'" in str(info.value)
    assert "natural_gas" in str(info.value) and "[fuels.coal]" in str(info.value)
    with pytest.raises(FuelError, match="device 'boiler': fuel 'natural_gas' is a gas"):
        fuel_factor(site, "natural_gas", "fuel_mass_kg", "boiler")
    with pytest.raises(FuelError, match="'diesel' is tabulated per mass"):
        fuel_factor(site, "diesel", "gas_volume_nm3")
    with pytest.raises(FuelError, match="'lpg' is metered in litres but has no density"):
        fuel_factor(site, "lpg", "fuel_volume_l")
    with pytest.raises(FuelError, match="not a fuel counter"):
        fuel_factor(site, "diesel", "energy_import_kwh")


def test_incomplete_custom_fuel_and_unit_mixup() -> None:
    site = _site(biogas={"ncv_gj_per_unit": 0.02})
    with pytest.raises(FuelError, match=r"\[fuels\.biogas\] lacks carbon_content_tc_per_gj"):
        fuel_parameters(site, "biogas")
    wrong = _site(natural_gas={"ncv_gj_per_unit": 389.31})
    with pytest.raises(FuelError, match=r"fuels\.natural_gas\.ncv_gj_per_unit: 389\.31"):
        fuel_factor(wrong, "natural_gas", "gas_volume_nm3")


def test_fuel_errors_of_a_site() -> None:
    site = _site(
        _fuel_meter("boiler", "natural_gas", "gas_volume_nm3"),
        _fuel_meter("genset", "diesel", "gas_volume_nm3"),
        _fuel_meter("forklift", "petrol", "fuel_volume_l"),
        {
            "id": "heater",
            "role": "fuel",
            "fuel": "lpg",
            "protocol": "mqtt",
            "topic": "f/heater",
            "fields": {"p": "active_power_kw"},
        },
        biogas={"ncv_gj_per_unit": 0.02},
    )
    errors = fuel_errors(site)
    assert any(e.startswith("fuels.biogas:") for e in errors)
    assert any(
        e.startswith("devices[2].fuel:") and "'genset'" in e and "per mass" in e for e in errors
    )
    assert any(e.startswith("devices[3].fuel:") and "fuel 'petrol'" in e for e in errors)
    assert any(e.startswith("devices[4] (heater):") for e in errors)
    assert not any("boiler" in e for e in errors)
    assert fuel_errors(_site(_fuel_meter("boiler", "natural_gas", "gas_volume_nm3"))) == []
