"""Hourly accounting rows: columns of the storage tables, balance and factors."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime

import pytest

from zerocarbon.carbon_engine.accounting import (
    HourlyCarbon,
    HourlyEnergy,
    account_hours,
    hour_start_utc,
)
from zerocarbon.carbon_engine.factors import GridFactors
from zerocarbon.storage.schema import SCHEMA_SQL

H = 1_717_200_000  # 2024-06-01T00:00:00Z [s]
FACTORS = GridFactors("east", 2023, 0.55, 0.6096)


def _columns(table: str) -> list[str]:
    body = re.search(rf"CREATE TABLE IF NOT EXISTS {table} \((.*?)\n\);", SCHEMA_SQL, re.S)
    assert body is not None
    names = [line.split()[0] for line in body.group(1).strip().splitlines()]
    return [n for n in names if n not in ("computed_at", "PRIMARY")]


def test_hourly_carbon_has_exactly_the_table_columns() -> None:
    assert [f.name for f in dataclasses.fields(HourlyCarbon)] == _columns("hourly_carbon")


def test_hourly_energy_matches_the_table_columns() -> None:
    # storage maps device and metric names to the table's small integer keys
    expected = [c.removesuffix("_id") for c in _columns("hourly_energy")]
    assert [f.name for f in dataclasses.fields(HourlyEnergy)] == expected


def test_hour_start_utc() -> None:
    assert hour_start_utc(H) == datetime(2024, 6, 1, tzinfo=UTC)


def test_account_hours() -> None:
    rows = account_hours(
        [H, H + 3600],
        grid_import_kwh=[100.0, 0.0],
        grid_export_kwh=[0.0, 0.0],
        pv_kwh=[40.0, 0.0],
        battery_charge_kwh=[10.0, 0.0],
        battery_discharge_kwh=[0.0, 0.0],
        production_units=[500.0, 0.0],
        factors=FACTORS,
    )
    first, idle = rows
    columns = dataclasses.asdict(first)
    assert columns.pop("hour_start") == datetime(2024, 6, 1, 0, tzinfo=UTC)
    assert columns == pytest.approx(
        {
            "grid_import_kwh": 100.0,
            "grid_export_kwh": 0.0,
            "pv_kwh": 40.0,
            "battery_charge_kwh": 10.0,
            "battery_discharge_kwh": 0.0,
            "load_kwh": 130.0,
            "production_units": 500.0,
            "scope2_location_kg": 55.0,
            "scope2_market_kg": 60.96,
            "location_factor_kg_per_kwh": 0.55,
            "market_factor_kg_per_kwh": 0.6096,
            "intensity_kg_per_kwh": 55.0 / 130.0,
            "cfe_share": 40.0 / 130.0,
        }
    )
    assert type(first.load_kwh) is float
    assert idle.hour_start == datetime(2024, 6, 1, 1, tzinfo=UTC)
    assert idle.load_kwh == 0.0
    assert idle.intensity_kg_per_kwh is None and idle.cfe_share is None


def test_account_no_hours() -> None:
    empty: list[float] = []
    rows = account_hours(
        [],
        grid_import_kwh=empty,
        grid_export_kwh=empty,
        pv_kwh=empty,
        battery_charge_kwh=empty,
        battery_discharge_kwh=empty,
        production_units=empty,
        factors=FACTORS,
    )
    assert rows == []


def test_account_hours_rejects_a_short_column() -> None:
    with pytest.raises(ValueError, match="pv_kwh: expected 2 hourly values"):
        account_hours(
            [H, H + 3600],
            grid_import_kwh=[1.0, 2.0],
            grid_export_kwh=[0.0, 0.0],
            pv_kwh=[1.0],
            battery_charge_kwh=[0.0, 0.0],
            battery_discharge_kwh=[0.0, 0.0],
            production_units=[0.0, 0.0],
            factors=FACTORS,
        )
