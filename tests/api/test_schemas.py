"""The response models are derived from the row types, not declared again."""

from __future__ import annotations

from dataclasses import fields

import pytest

from zerocarbon import rows
from zerocarbon.api import schemas
from zerocarbon.api.rollup import CARBON_ROLLUP, LINE_ROLLUP


@pytest.mark.parametrize(
    ("model", "row_type", "extra"),
    [
        (schemas.HourlyCarbon, rows.HourlyCarbon, set()),
        (schemas.HourlyEnergy, rows.HourlyEnergy, {"unit"}),
        (schemas.HourlyLine, rows.HourlyLine, set()),
    ],
)
def test_hourly_models_have_every_column(
    model: type[schemas.HourlyRow], row_type: type, extra: set[str]
) -> None:
    assert set(model.model_fields) == {f.name for f in fields(row_type)} | {"computed_at"} | extra
    assert model.__name__ == row_type.__name__


def test_hourly_columns_of_the_live_page() -> None:
    assert schemas.HOURLY_COLUMNS[0] == "hour_start"
    assert set(schemas.HOURLY_COLUMNS) == set(schemas.HourlyCarbon.model_fields)


def test_descriptions_come_from_the_row_types() -> None:
    load = schemas.HourlyCarbon.model_fields["load_kwh"].description
    assert load == "import - export + pv + wind + discharge - charge"
    assert schemas.HourlyCarbon.model_fields["intensity_kg_per_kwh"].is_required()
    rollup = schemas.CarbonRollup.model_fields["intensity_kg_per_kwh"].description
    assert rollup is not None
    assert rollup.startswith("Σ scope2_location_kg / Σ load_kwh")


def test_rollups_cover_every_column() -> None:
    carbon = {a.source for a in CARBON_ROLLUP} | {"hour_start", "complete"}
    assert {f.name for f in fields(rows.HourlyCarbon)} <= carbon
    line = {a.source for a in LINE_ROLLUP} | {"hour_start", "line"}
    assert {f.name for f in fields(rows.HourlyLine)} <= line
    assert set(schemas.CarbonRollup.model_fields) >= {"hours", "complete_hours"}
