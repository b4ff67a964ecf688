from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from zerocarbon.simulators.ground_truth import GroundTruth, SiteQuantity

H0 = datetime(2026, 6, 20, 16, 0, tzinfo=UTC)  # local midnight in Shanghai
H0_S = H0.timestamp()
HOUR = timedelta(hours=1)


def test_step_across_an_hour_boundary_is_split_by_time() -> None:
    truth = GroundTruth()
    truth.add(SiteQuantity.GRID_IMPORT_KWH, H0_S + 3597.0, H0_S + 3602.0, 5.0)
    assert truth.hourly(SiteQuantity.GRID_IMPORT_KWH) == {H0: 3.0, H0 + HOUR: 2.0}


def test_long_interval_parts_sum_to_the_amount() -> None:
    truth = GroundTruth()
    amount = 1234.567
    truth.add(("grid_meter", "energy_import_kwh"), H0_S + 1800.0, H0_S + 3 * 3600 + 900.0, amount)
    hourly = truth.hourly(("grid_meter", "energy_import_kwh"))
    assert list(hourly) == [H0, H0 + HOUR, H0 + 2 * HOUR, H0 + 3 * HOUR]
    duration = 2.75 * 3600
    assert hourly[H0] == pytest.approx(amount * 1800 / duration, rel=1e-15)
    assert hourly[H0 + HOUR] == pytest.approx(amount * 3600 / duration, rel=1e-15)
    assert hourly[H0 + 3 * HOUR] == pytest.approx(amount * 900 / duration, rel=1e-12)
    assert sum(hourly.values()) == pytest.approx(amount, abs=1e-12)
    assert all(h.tzinfo is UTC for h in hourly)


def test_boundaries_belong_to_the_hour_they_start() -> None:
    truth = GroundTruth()
    truth.add("pv_kwh", H0_S + 3595.0, H0_S + 3600.0, 1.0)  # ends on the boundary
    truth.add("pv_kwh", H0_S + 3600.0, H0_S + 3605.0, 2.0)  # starts on it
    truth.add("pv_kwh", H0_S + 3605.0, H0_S + 3605.0, 0.0)  # empty step
    assert truth.hourly(SiteQuantity.PV_KWH) == {H0: 1.0, H0 + HOUR: 2.0}
    with pytest.raises(ValueError, match="non-zero"):
        truth.add("pv_kwh", H0_S, H0_S, 1.0)
    with pytest.raises(ValueError, match="ends before"):
        truth.add("pv_kwh", H0_S + 1, H0_S, 1.0)


def test_complete_hours() -> None:
    truth = GroundTruth()
    assert truth.complete_hours() == []
    truth.add("load_kwh", H0_S - 600.0, H0_S + 2 * 3600 + 5.0, 100.0)
    assert truth.complete_hours() == [H0, H0 + HOUR]
    assert truth.complete_hours(now_s=H0_S + 3600.0) == [H0]


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    truth = GroundTruth()
    truth.add("grid_import_kwh", H0_S + 3000.0, H0_S + 4000.0, 10.0 / 3.0)
    truth.add(("battery", "energy_charged_kwh"), H0_S, H0_S + 5.0, 0.1)
    path = tmp_path / "out" / "truth.json"
    truth.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["truth.json"]  # no temporary left
    doc = json.loads(path.read_text())
    assert doc["format"] == "zerocarbon.ground_truth/1"
    assert doc["site"]["grid_import_kwh"]["2026-06-20T16:00:00+00:00"] == pytest.approx(2.0)
    assert doc["devices"]["battery"]["energy_charged_kwh"] == {"2026-06-20T16:00:00+00:00": 0.1}
    loaded = GroundTruth.load(path)
    assert loaded.to_dict() == truth.to_dict()
    assert loaded.hourly("grid_import_kwh") == truth.hourly(SiteQuantity.GRID_IMPORT_KWH)
    assert math.isclose(loaded.total(("battery", "energy_charged_kwh")), 0.1)
    with pytest.raises(ValueError, match="not a ground-truth"):
        GroundTruth.from_dict({"format": "x"})
