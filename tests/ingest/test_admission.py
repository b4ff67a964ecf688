"""The admission step, through the real Pipeline: bad readings are dropped and counted
per device, logged once per device and reason per minute, and never cost another
device its readings."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from tests.ingest.clocks import ManualClock
from zerocarbon.batch import METRIC_SLOTS, ReadingBatch, SeriesRegistry, datetime_to_us
from zerocarbon.config import SiteConfig
from zerocarbon.ingest.admission import MAX_COUNTER_VALUE, Admission, DeviceDrops
from zerocarbon.ingest.pipeline import Pipeline

NOW = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
NOW_US = datetime_to_us(NOW)


class RecordingSink:
    name = "recording"

    def __init__(self) -> None:
        self.batches: list[ReadingBatch] = []

    async def write_batch(self, batch: ReadingBatch) -> None:
        self.batches.append(batch)

    def rows(self) -> ReadingBatch:
        return ReadingBatch.concat(self.batches)


async def _through_pipeline(admission: Admission, *batches: ReadingBatch) -> RecordingSink:
    sink = RecordingSink()
    pipeline = Pipeline([sink], admission=admission, batch_rows=100_000, flush_interval_s=60)
    task = asyncio.create_task(pipeline.run())
    for batch in batches:
        await pipeline.put(batch)
    await pipeline.close()
    async with asyncio.timeout(5):
        await task
    return sink


def _good(registry: SeriesRegistry) -> ReadingBatch:
    """Readings of the healthy devices, including edge values that must pass."""
    rows = [
        ("grid_meter", "active_power_kw", NOW_US, -120.5),  # gauges may be negative
        ("grid_meter", "energy_import_kwh", NOW_US, 0.0),  # counter limits included
        ("grid_meter", "energy_export_kwh", NOW_US, MAX_COUNTER_VALUE),
        ("battery", "state_of_charge_pct", NOW_US - 720 * 3_600_000_000, 50.0),  # window ends
        ("battery", "energy_charged_kwh", NOW_US + 300_000_000, 1234.5),
    ]
    return ReadingBatch.of(
        [registry.id(d, m) for d, m, _, _ in rows], [t for *_, t, _ in rows], [v for *_, v in rows]
    )


def _us(ts: datetime) -> int:
    return datetime_to_us(ts)


BAD = {
    # name: (metric of pv_roof, ts_us, value, reason)
    "2099-01-01": ("active_power_kw", _us(datetime(2099, 1, 1, tzinfo=UTC)), 1.0, "out_of_window"),
    "9999-12-31": (
        "active_power_kw",
        _us(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
        1.0,
        "out_of_window",
    ),
    "0001-01-01": ("active_power_kw", _us(datetime(1, 1, 1, tzinfo=UTC)), 1.0, "out_of_window"),
    "just past the future end": ("active_power_kw", NOW_US + 300_000_001, 1.0, "out_of_window"),
    "just before the past end": (
        "active_power_kw",
        NOW_US - 720 * 3_600_000_000 - 1,
        1.0,
        "out_of_window",
    ),
    "NaN": ("active_power_kw", NOW_US, float("nan"), "not_finite"),
    "+inf": ("energy_generated_kwh", NOW_US, float("inf"), "not_finite"),
    "-inf": ("active_power_kw", NOW_US, float("-inf"), "not_finite"),
    "negative counter": ("energy_generated_kwh", NOW_US, -0.001, "counter_range"),
    "1e300 kWh counter": ("energy_generated_kwh", NOW_US, 1e300, "counter_range"),
    "counter just above 1e12": (
        "energy_generated_kwh",
        NOW_US,
        np.nextafter(MAX_COUNTER_VALUE, np.inf),
        "counter_range",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
async def test_bad_reading_is_dropped_and_counted_others_delivered(
    demo_site: SiteConfig, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = SeriesRegistry.for_site(demo_site)
    admission = Admission(demo_site, registry, ManualClock(NOW))
    metric, ts_us, value, reason = BAD[case]
    bad_id = registry.id("pv_roof", metric)
    good = _good(registry)
    mixed = ReadingBatch.concat([ReadingBatch.of([bad_id] * 3, [ts_us] * 3, [value] * 3), good])
    with caplog.at_level(logging.WARNING, logger="zerocarbon.ingest.admission"):
        sink = await _through_pipeline(admission, mixed, good)

    delivered = sink.rows()
    expected = ReadingBatch.concat([good, good])
    np.testing.assert_array_equal(delivered.series, expected.series)
    np.testing.assert_array_equal(delivered.ts_us, expected.ts_us)
    np.testing.assert_array_equal(delivered.value, expected.value)
    drops = admission.stats.by_device
    assert set(drops) == {"pv_roof"}  # the healthy devices lost nothing
    assert drops["pv_roof"] == DeviceDrops(**{reason: 3})
    assert admission.stats.dropped == 3 and admission.stats.admitted == 2 * len(good)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1  # one line per device and reason, not one per reading
    assert "pv_roof" in lines[0] and metric in lines[0] and "dropped 3 reading(s)" in lines[0]
    assert repr(float(value)) in lines[0]


async def test_unknown_series_ids_are_dropped_and_counted(
    demo_site: SiteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    registry = SeriesRegistry.for_site(demo_site)
    admission = Admission(demo_site, registry, ManualClock(NOW))
    pv_no_metric = registry.device_index("pv_roof") * METRIC_SLOTS + (METRIC_SLOTS - 1)
    beyond = registry.size + 5
    good = _good(registry)
    bad = ReadingBatch.of([pv_no_metric, beyond, -1], [NOW_US] * 3, [1.0, 2.0, 3.0])
    with caplog.at_level(logging.WARNING, logger="zerocarbon.ingest.admission"):
        sink = await _through_pipeline(admission, ReadingBatch.concat([good, bad]))
    np.testing.assert_array_equal(sink.rows().series, good.series)
    assert admission.stats.by_device["pv_roof"] == DeviceDrops(unknown_series=1)
    assert admission.stats.by_device["<no device>"] == DeviceDrops(unknown_series=2)
    assert len(caplog.records) == 2
    assert any(f"<series id {pv_no_metric}>" in r.getMessage() for r in caplog.records)


async def test_first_failing_check_decides_the_reason(demo_site: SiteConfig) -> None:
    registry = SeriesRegistry.for_site(demo_site)
    admission = Admission(demo_site, registry, ManualClock(NOW))
    counter = registry.id("grid_meter", "energy_import_kwh")
    far = _us(datetime(2099, 1, 1, tzinfo=UTC))
    batch = ReadingBatch.of([counter, counter], [far, NOW_US], [float("nan"), -5.0])
    assert len(admission.admit(batch)) == 0
    assert admission.stats.by_device["grid_meter"] == DeviceDrops(not_finite=1, counter_range=1)


async def test_one_log_line_per_device_and_reason_per_interval(
    demo_site: SiteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    registry = SeriesRegistry.for_site(demo_site)
    clock = ManualClock(NOW)
    admission = Admission(demo_site, registry, clock)
    pv = registry.id("pv_roof", "energy_generated_kwh")
    grid = registry.id("grid_meter", "energy_import_kwh")

    def negative(series_id: int, n: int) -> ReadingBatch:
        now_us = round(clock.now_s() * 1_000_000)
        return ReadingBatch.of([series_id] * n, [now_us] * n, [-1.0] * n)

    with caplog.at_level(logging.WARNING, logger="zerocarbon.ingest.admission"):
        await _through_pipeline(admission, negative(pv, 3), negative(grid, 1))
        assert len(caplog.records) == 2  # one per device
        clock.advance(30)
        await _through_pipeline(admission, negative(pv, 2))
        clock.advance(20)
        await _through_pipeline(admission, negative(pv, 4))
        assert len(caplog.records) == 2  # still inside the minute: counted, not logged
        clock.advance(10)
        await _through_pipeline(admission, negative(pv, 1))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert "pv_roof" in lines[2] and "dropped 7 reading(s) since the last report" in lines[2]
    assert admission.stats.by_device["pv_roof"].counter_range == 10
    assert admission.stats.by_device["grid_meter"].counter_range == 1


async def test_window_follows_the_injected_clock(demo_site: SiteConfig) -> None:
    registry = SeriesRegistry.for_site(demo_site)
    clock = ManualClock(NOW)
    admission = Admission(demo_site, registry, clock)
    batch = ReadingBatch.of([registry.id("battery", "active_power_kw")], [NOW_US], [1.0])
    clock.advance(timedelta(hours=721).total_seconds())
    assert len(admission.admit(batch)) == 0
    assert admission.stats.by_device["battery"].out_of_window == 1


async def test_power_beyond_the_rating_is_stored_flagged_suspect_and_counted(
    demo_site: SiteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """A PV inverter rated 600 kW cannot report 6 MW (or -6 MW): kept, never as good."""
    registry = SeriesRegistry.for_site(demo_site)
    admission = Admission(demo_site, registry, ManualClock(NOW))
    pv = registry.id("pv_roof", "active_power_kw")
    grid = registry.id("grid_meter", "active_power_kw")  # no rating: never flagged
    batch = ReadingBatch.of(
        [pv, pv, pv, pv, grid],
        [NOW_US - 4, NOW_US - 3, NOW_US - 2, NOW_US - 1, NOW_US],
        [500.0, 6000.0, -6000.0, 899.0, 1e6],
    )
    with caplog.at_level(logging.WARNING, logger="zerocarbon.ingest.admission"):
        out = admission.admit(batch)
    assert len(out) == 5 and out.value.tolist() == batch.value.tolist()
    assert out.quality.tolist() == [0, 2, 2, 0, 0]  # GOOD, SUSPECT, SUSPECT, GOOD, GOOD
    assert batch.quality.tolist() == [0] * 5  # the input is not changed
    assert admission.stats.flagged == {"pv_roof": 2}
    assert admission.stats.dropped == 0
    lines = [r.getMessage() for r in caplog.records if "rated power" in r.getMessage()]
    assert len(lines) == 1 and "pv_roof" in lines[0] and "6000.0" in lines[0]
