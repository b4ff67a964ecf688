"""The simulated outdoor temperature and a sensor device that reports it: plausible
values, a daily and a seasonal cycle, and no energy in the carbon engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from zerocarbon.batch import ReadingBatch, SeriesRegistry, datetime_to_us
from zerocarbon.carbon_engine.engine import CarbonEngine
from zerocarbon.config import DeviceRole, parse_site
from zerocarbon.simulators.plant import PlantModel
from zerocarbon.simulators.weather import OutdoorTemperature

SHANGHAI_MIDNIGHT = datetime(2026, 7, 20, 16, 0, tzinfo=UTC)  # 21 July, 00:00 local


def _series(start: datetime, hours: int, step_min: int = 10) -> np.ndarray:
    weather = OutdoorTemperature("Asia/Shanghai", seed=1)
    n = hours * 60 // step_min
    return np.array(
        [
            weather.temperature_c((start + timedelta(minutes=step_min * k)).timestamp())
            for k in range(n)
        ]
    )


def test_summer_days_are_warm_with_afternoon_peaks() -> None:
    july = _series(SHANGHAI_MIDNIGHT, 24 * 7).reshape(7, -1)  # a week, a row a local day
    assert 20.0 < july.mean() < 36.0
    warmest_hour = july.argmax(axis=1) * 10 / 60
    assert np.all((warmest_hour > 10) & (warmest_hour < 18))
    coldest_hour = july.argmin(axis=1) * 10 / 60
    assert np.all((coldest_hour < 8) | (coldest_hour > 22))


def test_winter_is_colder_than_summer() -> None:
    january = _series(SHANGHAI_MIDNIGHT - timedelta(days=190), 24 * 7)
    assert january.mean() < 10.0 < 20.0 < _series(SHANGHAI_MIDNIGHT, 24 * 7).mean()


def test_same_seed_same_weather() -> None:
    t = SHANGHAI_MIDNIGHT.timestamp() + 12_345.0
    a, b = OutdoorTemperature("UTC", 7), OutdoorTemperature("UTC", 7)
    assert a.temperature_c(t) == b.temperature_c(t)
    assert a.temperature_c(t) != OutdoorTemperature("UTC", 8).temperature_c(t)


def _site() -> Any:
    return parse_site(
        {
            "site": {"timezone": "Asia/Shanghai"},
            "mqtt": {},
            "devices": [
                {
                    "id": "grid_meter",
                    "role": "grid",
                    "protocol": "mqtt",
                    "topic": "f/grid",
                    "fields": {"e": "energy_import_kwh"},
                },
                {
                    "id": "weather",
                    "role": "sensor",
                    "protocol": "mqtt",
                    "topic": "f/weather",
                    "fields": {"t": "temperature_c"},
                    "interval_s": 60,
                },
            ],
        }
    )


def test_a_sensor_reports_the_outdoor_temperature_and_no_energy() -> None:
    site = _site()
    assert site.device("weather").role is DeviceRole.SENSOR
    plant = PlantModel(site, SHANGHAI_MIDNIGHT.timestamp())
    plant.advance(SHANGHAI_MIDNIGHT.timestamp() + 14 * 3600)
    (value,) = plant.values("weather").values()
    expected = OutdoorTemperature("Asia/Shanghai", site.simulation.seed).temperature_c(plant.now_s)
    assert value == expected and 20.0 < value < 40.0
    # through the carbon engine: the hour is complete without energy from the sensor
    reg = SeriesRegistry.for_site(site)
    engine = CarbonEngine(site, reg)
    series, ts, values = [], [], []
    for k in range(7):
        when = datetime_to_us(SHANGHAI_MIDNIGHT + timedelta(minutes=15 * k))
        series += [reg.id("grid_meter", "energy_import_kwh"), reg.id("weather", "temperature_c")]
        ts += [when, when]
        values += [100.0 + 25.0 * k, 30.0]
    result = engine.ingest(ReadingBatch.of(series, ts, values))
    (row,) = [r for r in engine.results(sorted(result.changed_hours_s)).carbon if r.complete]
    assert row.grid_import_kwh == 100.0 and row.missing_devices == 0
