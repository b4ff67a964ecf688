"""CarbonEngine on synthetic readings of a known power profile (the demo site)."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import numpy as np
import pytest
from numpy.typing import NDArray

from zerocarbon.carbon_engine.accounting import HourlyCarbon, HourlyEnergy
from zerocarbon.carbon_engine.engine import CarbonEngine
from zerocarbon.config import SiteConfig
from zerocarbon.ingest.reading import Reading

H = 1_717_200_000  # 2024-06-01T00:00:00Z [s]
HOURS = [H, H + 3600, H + 7200]
END_S = 3 * 3600.0  # the profile runs for three hours
RESET_INDEX = 700  # the grid meter is cleared right after reading 699 (in hour 1)


def _times(interval_s: float, end_s: float = END_S) -> NDArray[np.float64]:
    """Reading times every ``interval_s`` from H, plus one exactly at the end."""
    return np.append(np.arange(0.0, end_s, interval_s), end_s)


def _readings(
    device: str,
    metric: str,
    interval_s: float,
    counter: Callable[[float], float],
    end_s: float = END_S,
) -> list[Reading]:
    return [
        Reading(datetime.fromtimestamp(H + t, UTC), device, metric, counter(t))
        for t in _times(interval_s, end_s).tolist()
    ]


def _grid_import(t: float) -> float:
    """100 kW constant; the meter is cleared right after the reading before RESET_INDEX."""
    t_reset = 7.0 * (RESET_INDEX - 1)
    if t <= t_reset:
        return 12_345.6 + 100.0 * t / 3600.0
    return 100.0 * (t - t_reset) / 3600.0


def _battery_charged(t: float) -> float:
    """10 kW charging during hour 1 only."""
    return 200.0 + 10.0 * min(max(t - 3600.0, 0.0), 3600.0) / 3600.0


def _profile() -> list[Reading]:
    return [
        *_readings("grid_meter", "energy_import_kwh", 7.0, _grid_import),
        *_readings("grid_meter", "energy_export_kwh", 7.0, lambda t: 321.0),
        *_readings("grid_meter", "active_power_kw", 7.0, lambda t: 100.0),  # gauge: ignored
        # PV: 40 kW, and it keeps reporting one hour after the grid meter stops
        *_readings("pv_roof", "energy_generated_kwh", 5.0, lambda t: 40.0 * t / 3600.0, 4 * 3600.0),
        *_readings("battery", "energy_charged_kwh", 5.0, _battery_charged),
        *_readings("battery", "energy_discharged_kwh", 5.0, lambda t: 150.0),
        *_readings("battery", "state_of_charge_pct", 5.0, lambda t: 50.0),  # gauge: ignored
        *_readings("output_counter", "production_count_units", 10.0, lambda t: 9e5 + t / 7.2),
        *_readings("line_a", "energy_import_kwh", 10.0, lambda t: 777.0 + 60.0 * t / 3600.0),
        *_readings("no_such_device", "energy_import_kwh", 600.0, lambda t: t),
    ]


def _ingest_in_time_chunks(engine: CarbonEngine, readings: list[Reading]) -> set[int]:
    """Feed the readings in chunks of 1000 s, shuffled inside each chunk."""
    rng = random.Random(11)
    chunks: dict[int, list[Reading]] = {}
    for r in readings:
        chunks.setdefault(int((r.ts.timestamp() - H) // 1000), []).append(r)
    changed: set[int] = set()
    for key in sorted(chunks):
        batch = chunks[key]
        rng.shuffle(batch)
        changed |= engine.ingest(batch)
    return changed


@pytest.fixture
def engine(demo_site: SiteConfig) -> CarbonEngine:
    return CarbonEngine(demo_site)


def test_factors_of_the_demo_site(engine: CarbonEngine) -> None:
    assert engine.factors.region == "east" and engine.factors.data_year == 2023
    assert engine.factors.location_kg_per_kwh == pytest.approx(0.55)
    assert engine.factors.market_kg_per_kwh == pytest.approx(0.6096)


def test_hourly_carbon_of_a_known_profile(engine: CarbonEngine) -> None:
    changed = _ingest_in_time_chunks(engine, _profile())
    assert changed == {*HOURS, H + 10800}
    assert engine.resets == 1
    assert engine.late_points == 0
    assert engine.unknown_readings == 19  # no_such_device: 18 + the end reading

    carbon, _energy = engine.results(changed)
    # hour 3 has PV only: no carbon row without the grid meter's import
    assert [c.hour_start for c in carbon] == [datetime(2024, 6, 1, h, tzinfo=UTC) for h in range(3)]
    for k, row in enumerate(carbon):
        charge = 10.0 if k == 1 else 0.0
        load = 100.0 + 40.0 - charge
        assert row.grid_import_kwh == pytest.approx(100.0, rel=1e-9)
        assert row.grid_export_kwh == 0.0
        assert row.pv_kwh == pytest.approx(40.0, rel=1e-9)
        assert row.battery_charge_kwh == pytest.approx(charge, abs=1e-9)
        assert row.battery_discharge_kwh == 0.0
        assert row.load_kwh == pytest.approx(load, rel=1e-9)
        assert row.production_units == pytest.approx(500.0, rel=1e-9)
        assert row.location_factor_kg_per_kwh == pytest.approx(0.55)
        assert row.market_factor_kg_per_kwh == pytest.approx(0.6096)
        # Scope 2 = import x factor, exactly as computed from the row's own import
        assert row.scope2_location_kg == pytest.approx(row.grid_import_kwh * 0.55, rel=1e-15)
        assert row.scope2_market_kg == pytest.approx(row.grid_import_kwh * 0.6096, rel=1e-15)
        assert row.scope2_location_kg == pytest.approx(55.0, rel=1e-9)
        assert row.scope2_market_kg == pytest.approx(60.96, rel=1e-9)
        assert row.intensity_kg_per_kwh == pytest.approx(55.0 / load, rel=1e-9)
        assert row.cfe_share == pytest.approx(40.0 / load, rel=1e-9)


def test_hourly_energy_per_device(engine: CarbonEngine) -> None:
    changed = _ingest_in_time_chunks(engine, _profile())
    _carbon, energy = engine.results(changed)
    by_key = {(e.hour_start, e.device, e.metric): e for e in energy}
    assert len(by_key) == len(energy) == 7 * 3 + 1  # seven counters x 3 h + PV in hour 3
    hour1 = datetime(2024, 6, 1, 1, tzinfo=UTC)
    grid1 = by_key[(hour1, "grid_meter", "energy_import_kwh")]
    assert (grid1.delta, grid1.resets) == pytest.approx((100.0, 1))
    assert sum(e.resets for e in energy) == 1
    line_a = [e for e in energy if e.device == "line_a"]
    assert [e.delta for e in line_a] == pytest.approx([60.0] * 3)
    assert {e.metric for e in line_a} == {"energy_import_kwh"}
    hour3 = datetime(2024, 6, 1, 3, tzinfo=UTC)
    in_hour3 = [e for e in energy if e.hour_start == hour3]
    assert [e.device for e in in_hour3] == ["pv_roof"]
    assert in_hour3[0].delta == pytest.approx(40.0)
    # rows come by hour, then device, then metric
    keys = [(e.hour_start, e.device, e.metric) for e in energy]
    assert keys == sorted(keys)


def test_late_readings_change_nothing(engine: CarbonEngine) -> None:
    readings = _profile()
    _ingest_in_time_chunks(engine, readings)
    before = engine.results(HOURS)
    old = [r for r in readings if r.device == "grid_meter" and r.metric == "energy_import_kwh"]
    assert engine.ingest([old[10], old[-1]]) == set()
    assert engine.late_points == 2
    assert engine.results(HOURS) == before


def test_columnar_path_gives_the_same_rows(engine: CarbonEngine, demo_site: SiteConfig) -> None:
    readings = _profile()
    _ingest_in_time_chunks(engine, readings)
    columnar = CarbonEngine(demo_site)
    series: dict[tuple[str, str], list[Reading]] = {}
    for r in readings:
        series.setdefault((r.device, r.metric), []).append(r)
    for (device, metric), rs in series.items():
        if metric in ("active_power_kw", "state_of_charge_pct") or device == "no_such_device":
            with pytest.raises(KeyError, match="not a counter"):
                columnar.ingest_series(device, metric, [H], [1.0])
            continue
        ts = [r.ts.timestamp() for r in rs]
        columnar.ingest_series(device, metric, ts, [r.value for r in rs])
    assert columnar.hours() == engine.hours()
    carbon_a, energy_a = engine.results(engine.hours())
    carbon_b, energy_b = columnar.results(columnar.hours())
    _assert_rows_close(energy_a, energy_b)
    _assert_rows_close(carbon_a, carbon_b)


def _assert_rows_close(
    a: Sequence[HourlyCarbon | HourlyEnergy], b: Sequence[HourlyCarbon | HourlyEnergy]
) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert type(x) is type(y)
        for field in dataclasses.fields(x):
            vx, vy = getattr(x, field.name), getattr(y, field.name)
            if isinstance(vx, float):
                assert vx == pytest.approx(vy, rel=1e-12, abs=1e-12), field.name
            else:
                assert vx == vy, field.name


def test_results_of_hours_without_data_and_bad_hours(engine: CarbonEngine) -> None:
    assert engine.results([H]) == ([], [])
    assert engine.ingest([]) == set()
    with pytest.raises(ValueError, match="not a multiple of 3600"):
        engine.results([H + 1])


def test_prune(engine: CarbonEngine) -> None:
    _ingest_in_time_chunks(engine, _profile())
    assert engine.prune(H + 7200) == 2
    assert engine.hours() == [H + 7200, H + 10800]
    assert engine.expired_parts == 0
    carbon, _energy = engine.results(HOURS)
    assert [c.hour_start.hour for c in carbon] == [2]
