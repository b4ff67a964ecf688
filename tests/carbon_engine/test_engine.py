"""CarbonEngine end to end over batches: a small site with known power profiles."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from zerocarbon.batch import ReadingBatch, SeriesRegistry
from zerocarbon.carbon_engine.engine import CarbonEngine
from zerocarbon.config import DeviceRole, SiteConfig, parse_site

H_S = 1_782_000_000 - 1_782_000_000 % 3600  # an hour start [s]
US = 1_000_000


def _site() -> SiteConfig:
    def mqtt(id_: str, role: str, fields: dict[str, object], **kw: object) -> dict[str, object]:
        return {
            "id": id_,
            "role": role,
            "protocol": "mqtt",
            "topic": f"t/{id_}",
            "fields": fields,
            "interval_s": 60,
            **kw,
        }

    return parse_site(
        {
            "site": {"timezone": "UTC"},
            "grid": {"region": "east", "data_year": 2023},
            "mqtt": {"url": "mqtt://127.0.0.1:1883"},
            "devices": [
                mqtt(
                    "grid",
                    "grid",
                    {"i": "energy_import_kwh", "x": "energy_export_kwh"},
                    rated_power_kw=500,
                ),
                mqtt("pv", "pv", {"p": "active_power_kw"}, rated_power_kw=200),
                mqtt("line_a", "load", {"e": "energy_import_kwh"}, line="a", parent="grid"),
                mqtt("out_a", "production", {"n": "production_count_units"}, line="a"),
            ],
        }
    )


def _feed(
    engine: CarbonEngine, reg: SeriesRegistry, rows: list[tuple[str, str, float, float]]
) -> list[int]:
    batch = ReadingBatch.of(
        [reg.id(d, m) for d, m, _t, _v in rows],
        [int(round((H_S + t) * US)) for _d, _m, t, _v in rows],
        [v for _d, _m, _t, v in rows],
    )
    return engine.ingest(batch).changed_hours_s


def _minutes(
    device: str, metric: str, start: float, rate_per_min: float, n: int
) -> list[tuple[str, str, float, float]]:
    return [(device, metric, 60.0 * k, start + rate_per_min * k) for k in range(n)]


def test_two_hours_balance_and_lines() -> None:
    site = _site()
    reg = SeriesRegistry.for_site(site)
    engine = CarbonEngine(site, reg)
    rows = (
        _minutes("grid", "energy_import_kwh", 1000.0, 5.0, 121)  # 300 kW
        + _minutes("grid", "energy_export_kwh", 50.0, 0.0, 121)
        + _minutes("pv", "active_power_kw", 120.0, 0.0, 121)  # 120 kW flat
        + _minutes("line_a", "energy_import_kwh", 0.0, 2.0, 121)  # 120 kW
        + _minutes("out_a", "production_count_units", 0.0, 4.0, 121)  # 240 units/h
    )
    rows.sort(key=lambda r: r[2])  # arrival order: interleaved in time
    changed = _feed(engine, reg, rows)
    assert changed == [H_S, H_S + 3600]
    res = engine.results(changed)
    assert [r.hour_start for r in res.carbon] == [
        datetime.fromtimestamp(H_S + k * 3600, UTC) for k in (0, 1)
    ]
    h0 = res.carbon[0]
    assert h0.grid_import_kwh == pytest.approx(300.0)
    assert h0.pv_kwh == pytest.approx(120.0)
    assert h0.load_kwh == pytest.approx(420.0)
    assert h0.scope2_location_kg == pytest.approx(300.0 * h0.location_factor_kg_per_kwh)
    assert h0.complete and h0.missing_devices == 0
    assert h0.submetered_kwh == pytest.approx(120.0)
    line = [r for r in res.lines if r.hour_start == h0.hour_start and r.line == "a"][0]
    assert line.energy_kwh == pytest.approx(120.0)
    assert line.production_units == pytest.approx(240.0)
    assert line.kwh_per_unit == pytest.approx(0.5)


def test_silent_grid_meter_hour_still_computed_and_marked() -> None:
    site = _site()
    reg = SeriesRegistry.for_site(site)
    engine = CarbonEngine(site, reg)
    rows = _minutes("grid", "energy_import_kwh", 0.0, 5.0, 31) + _minutes(
        "pv", "active_power_kw", 100.0, 0.0, 121
    )
    changed = _feed(engine, reg, rows)
    res = engine.results(changed)
    second = [r for r in res.carbon if r.hour_start.timestamp() == H_S + 3600][0]
    assert second.pv_kwh == pytest.approx(100.0)
    assert not second.complete and second.missing_devices >= 1


def test_late_reading_recompute_is_idempotent() -> None:
    site = _site()
    reg = SeriesRegistry.for_site(site)
    engine = CarbonEngine(site, reg)
    all_rows = _minutes("grid", "energy_import_kwh", 0.0, 5.0, 121)
    held_back = all_rows[30]
    _feed(engine, reg, [r for r in all_rows if r is not held_back])
    batch = ReadingBatch.of(
        [reg.id("grid", "energy_import_kwh")], [int((H_S + held_back[2]) * US)], [held_back[3]]
    )
    result = engine.ingest(batch)
    assert len(result.late) == 1
    sid = reg.id("grid", "energy_import_kwh")
    ts = np.array([int((H_S + r[2]) * US) for r in all_rows], np.int64)
    vals = np.array([r[3] for r in all_rows])
    for _ in range(2):
        engine.recompute(sid, ts, vals, H_S, H_S + 3600)
        assert engine.channel_energy("grid", "energy_import_kwh", H_S)[0] == pytest.approx(300.0)
        assert engine.channel_energy("grid", "energy_import_kwh", H_S + 3600)[0] == pytest.approx(
            300.0
        )


def test_far_future_reading_never_grows_state() -> None:
    site = _site()
    reg = SeriesRegistry.for_site(site)
    engine = CarbonEngine(site, reg)
    before = engine.energy.nbytes
    _feed(engine, reg, _minutes("grid", "energy_import_kwh", 0.0, 5.0, 61))
    far = ReadingBatch.of(
        [reg.id("pv", "active_power_kw")] * 2, [0, 4_070_908_800 * US], [1.0, 1.0]
    )
    # the pipeline's admission drops such readings; fed to the engine all the same, the
    # work is bounded by the ring and the arrays never grow
    engine.ingest(far)
    assert engine.energy.nbytes == before
    assert engine.stats.expired >= 1


def test_two_grid_connections_add_up() -> None:
    base = _site()
    second = base.devices[0].model_copy(update={"id": "grid2", "topic": "t/grid2"})
    site = base.model_copy(update={"devices": (*base.devices, second)})
    reg = SeriesRegistry.for_site(site)
    engine = CarbonEngine(site, reg)
    rows = _minutes("grid", "energy_import_kwh", 0.0, 5.0, 61) + _minutes(
        "grid2", "energy_import_kwh", 10.0, 1.0, 61
    )
    res = engine.results(_feed(engine, reg, rows))
    assert res.carbon[0].grid_import_kwh == pytest.approx(300.0 + 60.0)


def test_a_lines_fuel_is_in_its_carbon_per_unit() -> None:
    base = _site()
    oven = base.devices[2].model_copy(
        update={
            "id": "oven_gas",
            "role": DeviceRole.FUEL,
            "fuel": "natural_gas",
            "parent": None,
            "topic": "t/oven",
            "fields": {"v": "gas_volume_nm3"},
            "rated_power_kw": None,
        }
    )
    site = base.model_copy(update={"devices": (*base.devices, oven)})
    reg = SeriesRegistry.for_site(site)
    engine = CarbonEngine(site, reg)
    rows = (
        _minutes("grid", "energy_import_kwh", 0.0, 5.0, 61)
        + _minutes("line_a", "energy_import_kwh", 0.0, 5.0, 61)  # all the load
        + _minutes("out_a", "production_count_units", 0.0, 1.0, 61)  # 60 units
        + _minutes("oven_gas", "gas_volume_nm3", 0.0, 0.1, 61)  # 6 Nm3
    )
    res = engine.results(_feed(engine, reg, sorted(rows, key=lambda r: r[2])))
    hour = res.carbon[0]
    line = next(r for r in res.lines if r.line == "a")
    assert hour.scope1_kg == pytest.approx(6.0 * 2.162188809, rel=1e-9)
    assert line.kg_per_unit == pytest.approx(
        (hour.scope1_kg + hour.scope2_location_kg) / 60.0, rel=1e-9
    )


def test_restored_series_counts_its_still_time_from_the_restored_point() -> None:
    """A restart keeps no stream state but the newest stored point: the counter is taken
    to have last moved there, so a catch-up after the restart is spread from it."""
    site = _site()
    reg = SeriesRegistry.for_site(site)
    engine = CarbonEngine(site, reg)
    sid = reg.id("grid", "energy_import_kwh")
    engine.restore_series(sid, (H_S + 600) * US, 5000.0)
    assert engine.moved_ts[sid] == (H_S + 600) * US and engine.last_rate[sid] == 0.0
    # 360 kW (6 kWh a minute; rated 500 kW: 12.9 kWh a minute plausible), the register
    # standing still until 00:21, then caught up and counting on
    rows = [("grid", "energy_import_kwh", float(t), 5000.0) for t in range(660, 1260, 60)]
    rows += [
        ("grid", "energy_import_kwh", 1260.0, 5066.0),
        ("grid", "energy_import_kwh", 1320.0, 5072.0),
    ]
    _feed(engine, reg, rows)
    delta, _estimated = engine.channel_energy("grid", "energy_import_kwh", H_S)
    assert delta == pytest.approx(72.0)
    row = next(r for r in engine.results([H_S]).energy if r.device == "grid")
    assert row.replacements == 0 and row.gaps == 1


def test_recomputing_an_hour_inside_a_still_time_keeps_its_catch_up_share() -> None:
    """A recompute is given the readings after its hours up to the series' newest point,
    so a catch-up after them gives the hours what streaming gave them."""
    site = _site()
    reg = SeriesRegistry.for_site(site)
    engine = CarbonEngine(site, reg)
    sid = reg.id("grid", "energy_import_kwh")
    # 6 kWh a minute; the register stands still from 00:50 until 01:10
    t_s = list(range(0, 4320, 60))
    shown = [1000.0 + 0.1 * (3000 if 3000 <= t < 4200 else t) for t in t_s]
    rows = [("grid", "energy_import_kwh", float(t), v) for t, v in zip(t_s, shown, strict=True)]
    _feed(engine, reg, rows)
    assert engine.channel_energy("grid", "energy_import_kwh", H_S)[0] == pytest.approx(360.0)
    ts = np.array([(H_S + t) * US for t in t_s], np.int64)
    # the hour's readings, one before and one after only: the catch-up (01:10) and the
    # reading that confirms it lie later, the hour loses its share
    inside = np.array([t <= 3600 for t in t_s])
    engine.recompute(sid, ts[inside], np.array(shown)[inside], H_S, H_S)
    assert engine.channel_energy("grid", "energy_import_kwh", H_S)[0] == pytest.approx(300.0)
    # up to the series' newest point (what recompute_late hands over): kept
    engine.recompute(sid, ts, np.array(shown), H_S, H_S)
    assert engine.channel_energy("grid", "energy_import_kwh", H_S)[0] == pytest.approx(360.0)
    hour_1 = engine.channel_energy("grid", "energy_import_kwh", H_S + 3600)[0]
    assert hour_1 == pytest.approx(0.1 * (4260 - 3600))  # streamed, not recomputed
