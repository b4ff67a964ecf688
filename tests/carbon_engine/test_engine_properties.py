"""Properties of the whole engine (hypothesis): whatever the order readings arrive in,
however often, and however late, the hourly results equal those of the same readings
fed once in time order — with late readings recomputed the way the service does it
(:func:`zerocarbon.carbon_service.recompute_late`, here from an in-memory store of
what has arrived, standing in for the readings table).

Also checked on the site rows: market-based Scope 2 is never below zero and the
certificates allocated never exceed the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from zerocarbon.batch import ReadingBatch, SeriesRegistry
from zerocarbon.carbon_engine.engine import CarbonEngine
from zerocarbon.carbon_service import recompute_late
from zerocarbon.config import SiteConfig, parse_site

H_S = 1_782_000_000 - 1_782_000_000 % 3600  # an hour start [s]
US = 1_000_000


def _site(certificates: int = 0) -> SiteConfig:
    def dev(id_: str, role: str, fields: dict[str, str]) -> dict[str, Any]:
        return {
            "id": id_,
            "role": role,
            "protocol": "mqtt",
            "topic": f"t/{id_}",
            "fields": fields,
            "interval_s": 60,
            "rated_power_kw": 500,
        }

    data: dict[str, Any] = {
        "site": {"timezone": "UTC"},
        "grid": {"region": "east", "data_year": 2023},
        "mqtt": {},
        "devices": [
            dev("grid", "grid", {"i": "energy_import_kwh", "x": "energy_export_kwh"}),
            dev("pv", "pv", {"p": "active_power_kw"}),
            dev("line", "load", {"e": "energy_import_kwh"}),
        ],
    }
    if certificates:
        month = "2026-06"
        data["certificates"] = [
            {"id": "gec", "count": certificates, "issued": month, "applies_to": month}
        ]
    return parse_site(data)


@st.composite
def readings(draw: st.DrawFn) -> tuple[list[tuple[str, str, int, float]], list[int], int]:
    """Readings of three series over ~3 hours, an arrival order, and a batch size."""
    rows: list[tuple[str, str, int, float]] = []
    for device, metric, power in (
        ("grid", "energy_import_kwh", False),
        ("line", "energy_import_kwh", False),
        ("pv", "active_power_kw", True),
    ):
        n = draw(st.integers(2, 40))
        steps = draw(st.lists(st.integers(20, 900), min_size=n, max_size=n))
        t = H_S * US + draw(st.integers(0, 1800)) * US + np.cumsum(steps) * US
        if power:
            values = draw(st.lists(st.floats(-50, 300), min_size=n, max_size=n))
        else:
            kw = draw(st.lists(st.floats(0, 400), min_size=n, max_size=n))
            values = list(1000.0 + np.cumsum(np.array(kw) * np.array(steps) / 3600.0))
        rows += [(device, metric, int(ti), float(v)) for ti, v in zip(t, values, strict=True)]
    order = draw(st.permutations(range(len(rows))))
    dups = draw(st.lists(st.integers(0, len(rows) - 1), max_size=10))
    batch = draw(st.integers(1, 25))
    return rows, [*order, *dups], batch


def _batch(reg: SeriesRegistry, rows: Sequence[tuple[str, str, int, float]]) -> ReadingBatch:
    return ReadingBatch.of(
        [reg.id(d, m) for d, m, _t, _v in rows],
        [t for *_x, t, _v in rows],
        [v for *_x, v in rows],
    )


def _energies(engine: CarbonEngine) -> dict[tuple[str, str, int], tuple[float, float]]:
    res = engine.results(engine.hours())
    return {
        (r.device, r.metric, int(r.hour_start.timestamp())): (r.delta, r.estimated)
        for r in res.energy
        if r.delta or r.estimated
    }


def _in_order(site: SiteConfig, rows: list[tuple[str, str, int, float]]) -> CarbonEngine:
    reg = SeriesRegistry.for_site(site)
    engine = CarbonEngine(site, reg)
    engine.ingest(_batch(reg, sorted(rows, key=lambda r: r[2])))
    return engine


def _as_delivered(
    site: SiteConfig, rows: list[tuple[str, str, int, float]], order: list[int], size: int
) -> CarbonEngine:
    reg = SeriesRegistry.for_site(site)
    engine = CarbonEngine(site, reg)
    stored: dict[int, dict[int, float]] = {}  # series -> ts -> value: what has arrived

    async def fetch(
        sid: int, start_us: int, end_us: int
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        ts = np.array(sorted(stored.get(sid, {})), np.int64)
        inside = (ts >= start_us) & (ts < end_us)
        pick = np.flatnonzero(inside).tolist()
        before = np.flatnonzero(ts < start_us)
        after = np.flatnonzero(ts >= end_us)
        if before.size:
            pick.insert(0, int(before[-1]))
        if after.size:
            pick.append(int(after[0]))
        t = ts[pick]
        return t, np.array([stored[sid][int(x)] for x in t], np.float64)

    for lo in range(0, len(order), size):
        chunk = _batch(reg, [rows[i] for i in order[lo : lo + size]])
        for s, t, v in zip(
            chunk.series.tolist(), chunk.ts_us.tolist(), chunk.value.tolist(), strict=True
        ):
            stored.setdefault(s, {})[t] = v  # the writer stores before the engine runs
        result = engine.ingest(chunk)
        if len(result.late):
            asyncio.run(recompute_late(engine, result.late, fetch))
    return engine


@settings(
    max_examples=60, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(readings())
def test_results_do_not_depend_on_arrival(case: tuple[list[Any], list[int], int]) -> None:
    rows, order, size = case
    site = _site()
    expected = _energies(_in_order(site, rows))
    got = _energies(_as_delivered(site, rows, order, size))
    assert got.keys() == expected.keys()
    for key, (delta, est) in expected.items():
        assert np.isclose(got[key][0], delta, rtol=1e-9, atol=1e-9), (key, got[key], delta)
        assert np.isclose(got[key][1], est, rtol=1e-9, atol=1e-9), (key, got[key], est)


@settings(max_examples=40, derandomize=True, deadline=None)
@given(readings(), st.integers(1, 3))
def test_market_based_never_below_zero_and_certificates_counted_once(
    case: tuple[list[Any], list[int], int], certificates: int
) -> None:
    rows, _order, _size = case
    # move the readings into June 2026, where the certificate batch applies
    shift = (1_780_272_000 - H_S) * US  # 2026-06-01T00:00Z
    rows = [(d, m, t + shift, v) for d, m, t, v in rows]
    engine = _in_order(_site(certificates), rows)
    res = engine.results(engine.hours())
    assert all(r.scope2_market_kg >= 0.0 for r in res.carbon)
    assert all(r.certificate_kwh <= r.grid_import_kwh + 1e-9 for r in res.carbon)
    assert sum(r.certificate_kwh for r in res.carbon) <= certificates * 1000.0 + 1e-6
