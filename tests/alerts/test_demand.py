"""Sliding 15-minute demand and the projection of the next window to close."""

from __future__ import annotations

import pytest

from zerocarbon.alerts.demand import DemandMeter


def run(meter: DemandMeter, samples: list[tuple[float, float]]) -> None:
    for ts_s, power_kw in samples:
        meter.add(ts_s, power_kw)


def test_steady_power_is_its_own_demand() -> None:
    meter = DemandMeter()
    run(meter, [(t, 500.0) for t in range(0, 1201, 10)])
    reading = meter.reading(1200.0)
    assert reading.average_kw == pytest.approx(500.0)
    assert reading.projected_kw == pytest.approx(500.0)
    assert reading.covered_s == pytest.approx(900.0)


def test_a_step_shows_in_the_average_and_earlier_in_the_projection() -> None:
    meter = DemandMeter()
    run(meter, [(t, 0.0) for t in range(0, 900, 60)])
    run(meter, [(t, 1000.0) for t in range(900, 1201, 60)])
    reading = meter.reading(1200.0)
    # 1000 kW for the last 300 s of the 900 s interval
    assert reading.average_kw == pytest.approx(1000.0 * 300 / 900)
    # the window closing next is [360, 1260]: 300 s at 1000 kW so far, 60 s more to come
    assert reading.projected_kw == pytest.approx(1000.0 * 360 / 900)
    assert reading.projected_kw > reading.average_kw


def test_export_is_no_import_and_old_samples_are_dropped() -> None:
    meter = DemandMeter()
    run(meter, [(t, -200.0) for t in range(0, 600, 60)])
    assert meter.reading(540.0).average_kw == 0.0
    run(meter, [(t, 300.0) for t in range(600, 5000, 60)])
    assert len(meter._samples) <= 900 / 60 + 2  # bounded by the interval
    assert meter.reading(4980.0).average_kw == pytest.approx(300.0)


def test_samples_must_come_in_order_and_the_window_be_sane() -> None:
    meter = DemandMeter()
    meter.add(10.0, 1.0)
    with pytest.raises(ValueError, match="time order"):
        meter.add(10.0, 1.0)
    with pytest.raises(ValueError, match="slide_s"):
        DemandMeter(interval_s=60.0, slide_s=120.0)
    assert DemandMeter().reading(0.0).average_kw == 0.0
